import math

import pytest
import torch
from torch import nn

from probgen.config import GANConfig
from probgen.models.dcgan import Discriminator, Generator, output_range, sample_latent


@pytest.mark.parametrize(("size", "channels", "n_convt"), [(32, 3, 4), (64, 1, 5), (16, 1, 3)])
def test_shapes_follow_radford(size, channels, n_convt):
    cfg = GANConfig(latent_dim=12, g_channels=8, d_channels=8)
    g, d = Generator(cfg, (channels, size, size)), Discriminator(cfg, (channels, size, size))
    z = sample_latent(5, cfg)
    x = g(z)
    assert x.shape == (5, channels, size, size)
    assert d(x).shape == (5,)
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in g.modules()) == n_convt  # 1x1 -> 4x4, then doublings
    assert sum(isinstance(m, nn.Conv2d) for m in d.modules()) == n_convt  # halvings to 4x4, then the logit conv
    first = next(m for m in g.modules() if isinstance(m, nn.ConvTranspose2d))
    assert first.out_channels == 8 * 2 ** (n_convt - 2)  # ngf * 8 at 64 px, ngf * 4 at 32 px


def test_output_ranges():
    z = sample_latent(16, GANConfig(latent_dim=4))
    for output, (lo, hi) in (("tanh", (-1, 1)), ("sigmoid", (0, 1))):
        cfg = GANConfig(latent_dim=4, g_channels=4, output=output, init="he")
        x = Generator(cfg, (1, 16, 16))(z * 50)  # saturate
        assert output_range(cfg) == (lo, hi)
        assert x.min() >= lo and x.max() <= hi and x.min() < lo + 0.5 and x.max() > hi - 0.5


def test_normalisation_is_chosen_per_network():
    cfg = GANConfig(g_norm="instance", d_norm="none", g_channels=4, d_channels=4)
    g, d = Generator(cfg, (1, 32, 32)), Discriminator(cfg, (1, 32, 32))
    assert any(isinstance(m, nn.InstanceNorm2d) for m in g.modules())
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) for m in d.modules())
    assert all(m.bias is not None for m in d.modules() if isinstance(m, nn.Conv2d))  # no norm: convs keep biases
    bn = Discriminator(GANConfig(d_channels=4), (1, 32, 32))
    convs = [m for m in bn.modules() if isinstance(m, nn.Conv2d)]
    assert isinstance(bn.net[2], nn.Conv2d) and isinstance(bn.net[3], nn.BatchNorm2d)
    assert not isinstance(bn.net[1], nn.BatchNorm2d)  # no normalisation after the first layer (Radford et al.)
    assert convs[1].bias is None


def test_init_schemes():
    torch.manual_seed(0)
    g = Generator(GANConfig(g_channels=64, init="normal"), (3, 64, 64))
    w = g.net[0].weight
    assert w.std().item() == pytest.approx(0.02, rel=0.02) and abs(w.mean().item()) < 1e-3
    bn = g.net[1]
    assert bn.weight.std().item() == pytest.approx(0.02, rel=0.1) and bn.weight.mean().item() == pytest.approx(
        1, abs=0.01
    )
    d = Discriminator(GANConfig(d_channels=64, init="he", leaky_slope=0.2), (3, 64, 64))
    conv = d.net[2]
    fan_in = conv.weight[0].numel()
    expected = math.sqrt(2 / (1 + 0.2**2)) / math.sqrt(fan_in)
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.02)


def test_latent_distributions():
    g = torch.Generator().manual_seed(0)
    n = sample_latent(4000, GANConfig(latent_dim=8), generator=g)
    assert abs(n.mean().item()) < 0.03 and n.std().item() == pytest.approx(1.0, rel=0.03)
    u = sample_latent(4000, GANConfig(latent_dim=8, latent_dist="uniform"), generator=g)
    assert u.min() >= -1 and u.max() <= 1 and u.min() < -0.99
    u01 = sample_latent(4000, GANConfig(latent_dim=8, latent_dist="uniform01"), generator=g)
    assert u01.min() >= 0 and u01.max() <= 1


def test_unsupported_sizes_are_refused():
    with pytest.raises(ValueError, match="power of two"):
        Generator(GANConfig(), (1, 28, 28))
