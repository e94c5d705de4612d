"""Every architecture of the five reports is expressible with VAEConfig, and the zoo's models behave."""

import pyro
import pytest
import torch
from pyro import poutine
from torch import nn

from probgen.config import VAEConfig
from probgen.models.autoencoder import Autoencoder
from probgen.models.cvae import CVAE
from probgen.models.vae import VAE
from probgen.models.vaegan import Discriminator, adversarial_losses, generator_images
from tests.factories import tiny_net


def _count(module: nn.Module, cls: type) -> int:
    return sum(isinstance(m, cls) for m in module.modules())


# (name, config, image shape): the networks of R1-R5 (see docs/experiments/)
REPORT_NETS = [
    ("R1 64px latent 128", VAEConfig(latent_dim=128, conv_channels=(32, 64, 128, 256), hidden_dims=(),
                                     activation="leaky_relu", negative_slope=0.01, likelihood="gaussian"), (3, 64, 64)),
    ("R1 256px latent 64", VAEConfig(latent_dim=64, conv_channels=(16, 32, 64, 128, 256), hidden_dims=(),
                                     activation="leaky_relu", negative_slope=0.01, likelihood="gaussian"),
     (3, 256, 256)),
    ("R2 256px bottleneck 256", VAEConfig(latent_dim=256, conv_channels=(32, 64, 128, 256), kernel_size=4,
                                          hidden_dims=(), activation="relu", likelihood="bernoulli"), (3, 256, 256)),
    ("R3 CelebA 5 blocks", VAEConfig(latent_dim=512, conv_channels=(16, 32, 64, 128, 256), kernel_size=3,
                                     hidden_dims=(), batch_norm=True, activation="leaky_relu", likelihood="gaussian"),
     (3, 64, 64)),
    ("R3 dSprites MLP", VAEConfig(arch="mlp", latent_dim=6, hidden_dims=(1200, 1200), likelihood="bernoulli"),
     (1, 64, 64)),
    ("R5 MNIST 2-D", VAEConfig(latent_dim=2, conv_channels=(32, 64), kernel_size=3, hidden_dims=(16,),
                               likelihood="bernoulli"), (1, 28, 28)),
    ("R5 MNIST deeper, dropout both", VAEConfig(latent_dim=5, conv_channels=(32, 64, 128), kernel_size=3,
                                                hidden_dims=(64,), dropout=0.2, dropout_in="both",
                                                likelihood="bernoulli"), (1, 32, 32)),
]  # fmt: skip


@pytest.mark.parametrize("name,cfg,shape", REPORT_NETS, ids=[n for n, _, _ in REPORT_NETS])
def test_report_architectures_are_expressible(name, cfg, shape):
    torch.manual_seed(0)
    vae = VAE(cfg, shape)
    n_conv = len(cfg.conv_channels) if cfg.arch == "conv" else 0
    assert _count(vae.encoder, nn.Conv2d) == n_conv and _count(vae.decoder, nn.ConvTranspose2d) == n_conv
    assert _count(vae, nn.BatchNorm2d) == (2 * n_conv - 1 if cfg.batch_norm else 0)  # not on the output layer
    if cfg.activation == "leaky_relu":
        assert {m.negative_slope for m in vae.modules() if isinstance(m, nn.LeakyReLU)} == {0.01}
    if cfg.dropout:
        assert _count(vae.encoder, nn.Dropout) > 0 and _count(vae.decoder, nn.Dropout) > 0
    assert vae.encoder.head.out_features == 2 * cfg.latent_dim
    vae.eval()
    x = torch.rand(2, *shape)
    loc, scale = vae.encode(x)
    assert loc.shape == scale.shape == (2, cfg.latent_dim) and bool((scale > 0).all())
    d = vae.obs_dist(loc)
    assert d.event_shape == shape and d.log_prob(x.round()).shape == (2,)


def test_r2_bottleneck_and_plain_autoencoder_shapes():
    cfg = VAEConfig(latent_dim=256, conv_channels=(32, 64, 128, 256), hidden_dims=(), likelihood="bernoulli")
    vae = VAE(cfg, (3, 256, 256))
    assert vae.encoder.head.in_features == 256 * 16 * 16  # the linear bottleneck the variant removes
    ae = Autoencoder(cfg, (3, 256, 256), bottleneck=False)
    assert ae.code_shape == (256, 16, 16) and _count(ae, nn.Linear) == 0
    x = torch.rand(1, 3, 256, 256)
    assert ae.encode(x).shape == (1, 256, 16, 16) and ae.reconstruct(x).shape == x.shape


def _small(**kw) -> VAEConfig:
    return tiny_net(**{"conv_channels": (4, 4), "hidden_dims": (8,), "latent_dim": 2, **kw})


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "gaussian-learned"])
def test_autoencoder_loss_is_the_summed_likelihood(likelihood):
    ae = Autoencoder(_small(likelihood=likelihood), (1, 8, 8), bottleneck=True)
    x = torch.rand(3, 1, 8, 8).round()
    out = ae.decoder(ae.encode(x))
    if likelihood == "bernoulli":
        want = nn.functional.binary_cross_entropy_with_logits(out, x, reduction="sum")
    else:
        sigma = 0.1 if likelihood == "gaussian" else float(ae.obs_scale().detach())
        want = torch.distributions.Normal(torch.sigmoid(out), sigma).log_prob(x).sum().neg()
    torch.testing.assert_close(ae.loss(x), want)


def test_autoencoder_samples_from_its_fitted_code_density():
    from probgen.errors import UserError

    ae = Autoencoder(_small(), (1, 8, 8), bottleneck=True).eval()
    with pytest.raises(UserError, match="not fitted"):
        ae.sample(2)
    codes = torch.randn(500, 2) * torch.tensor([2.0, 0.5]) + torch.tensor([1.0, -1.0])
    ae.fit_code_density(codes)
    torch.testing.assert_close(ae.code_mean, codes.mean(0))
    torch.testing.assert_close(ae.code_std, codes.std(0))
    assert ae.sample(5).shape == (5, 1, 8, 8)
    assert set(ae.state_dict()) >= {"code_mean", "code_std", "code_fitted"}  # saved with the checkpoint


def test_cvae_sites_condition_on_the_label():
    cvae = CVAE(_small(), (1, 8, 8), num_classes=3)
    x = torch.rand(4, 1, 8, 8).round()
    y = torch.tensor([0, 1, 2, 1])
    guide_tr = poutine.trace(cvae.guide).get_trace(x, y, 0.5)
    model_tr = poutine.trace(poutine.replay(cvae.model, trace=guide_tr)).get_trace(x, y, 0.5)
    ys = model_tr.nodes["y"]
    assert ys["is_observed"] and torch.equal(ys["value"], y) and ys["fn"].batch_shape == (4,)
    torch.testing.assert_close(ys["fn"].log_prob(y), torch.full((4,), -torch.log(torch.tensor(3.0))))
    assert model_tr.nodes["z"]["scale"] == guide_tr.nodes["z"]["scale"] == 0.5
    assert model_tr.nodes["x"]["fn"].event_shape == (1, 8, 8)
    # the guide and the decoder see the label
    loc_a, _ = cvae.encode(x, y)
    loc_b, _ = cvae.encode(x, (y + 1) % 3)
    assert not torch.allclose(loc_a, loc_b)
    z = torch.randn(4, 2)
    assert not torch.allclose(cvae.mean_image(z, y), cvae.mean_image(z, (y + 1) % 3))
    # the decoder broadcasts over a leading (chain) dimension like the VAE's
    assert cvae.obs_dist(torch.randn(5, 4, 2), y).batch_shape == (5, 4)
    assert cvae.sample(6, labels=torch.tensor([2] * 6)).shape == (6, 1, 8, 8)


def test_vaegan_generator_loss_trains_the_decoder_only():
    torch.manual_seed(0)
    vae = VAE(_small(), (1, 8, 8))
    disc = Discriminator((4, 4), 4, (1, 8, 8))
    x = torch.rand(6, 1, 8, 8).round()
    recon, prior = generator_images(vae, x)
    assert recon.shape == prior.shape == x.shape and disc(x).shape == (6,)
    g, d = adversarial_losses(disc, x, recon, prior)
    g.backward()
    assert all(p.grad is None for p in vae.encoder.parameters())  # as in Larsen et al.
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in vae.decoder.parameters())
    for p in vae.parameters():
        p.grad = None
    d.backward()
    assert all(p.grad is None for p in vae.parameters())  # D's loss sees detached images
    assert g > 0 and d > 0


def test_conditional_encoder_demands_its_condition():
    cvae = CVAE(_small(), (1, 8, 8), num_classes=2)
    with pytest.raises(ValueError, match="conditional"):
        cvae.encoder(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="labels"):
        cvae.encode(torch.rand(1, 1, 8, 8))
    pyro.clear_param_store()
