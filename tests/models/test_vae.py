import pyro
import pytest
import torch
from pyro import poutine

from probgen.config import VAEConfig
from probgen.errors import UserError
from probgen.models.vae import VAE, BernoulliImage, resolve_likelihood
from tests.factories import tiny_vae

_vae = tiny_vae  # (1, 64, 64) images, conv 8-8-8-8, latent 3


VARIANTS = [
    {},
    {"arch": "mlp"},
    {"batch_norm": True, "activation": "leaky_relu"},
    {"kernel_size": 3, "dropout": 0.1, "dropout_in": "both"},
    {"kernel_size": 5},
]


@pytest.mark.parametrize("kw", VARIANTS)
def test_model_and_guide_sites_and_shapes(kw):
    vae = _vae(**kw)
    x = torch.rand(5, 1, 64, 64).round()
    guide_tr = poutine.trace(vae.guide).get_trace(x)
    model_tr = poutine.trace(poutine.replay(vae.model, trace=guide_tr)).get_trace(x)
    gz = guide_tr.nodes["z"]
    assert gz["fn"].batch_shape == (5,) and gz["fn"].event_shape == (3,)
    assert model_tr.nodes["z"]["fn"].event_shape == (3,)
    xs = model_tr.nodes["x"]
    assert xs["is_observed"] and xs["fn"].batch_shape == (5,) and xs["fn"].event_shape == (1, 64, 64)
    assert {f.name for f in xs["cond_indep_stack"]} == {"data"}
    params = {n for n, s in guide_tr.nodes.items() if s["type"] == "param"}
    assert any(n.startswith("encoder$$$") for n in params)
    params = {n for n, s in model_tr.nodes.items() if s["type"] == "param"}
    assert any(n.startswith("decoder$$$") for n in params)
    assert vae.sample(7).shape == (7, 1, 64, 64)
    assert vae.reconstruct(x).shape == x.shape


def test_beta_scales_the_latent_site_in_model_and_guide():
    vae = _vae()
    x = torch.rand(2, 1, 64, 64).round()
    guide_tr = poutine.trace(vae.guide).get_trace(x, 0.25)
    model_tr = poutine.trace(poutine.replay(vae.model, trace=guide_tr)).get_trace(x, 0.25)
    assert guide_tr.nodes["z"]["scale"] == 0.25
    assert model_tr.nodes["z"]["scale"] == 0.25
    assert model_tr.nodes["x"]["scale"] == 1.0


def test_obs_dist_broadcasts_over_chains():
    vae = _vae(likelihood="gaussian-learned")
    z = torch.randn(4, 6, 3)  # (chain, data point, latent)
    d = vae.obs_dist(z)
    assert d.batch_shape == (4, 6) and d.event_shape == (1, 64, 64)
    assert d.log_prob(torch.rand(6, 1, 64, 64)).shape == (4, 6)


def test_likelihood_resolution():
    assert resolve_likelihood(VAEConfig(), binary_data=True) == "bernoulli"
    assert resolve_likelihood(VAEConfig(), binary_data=False) == "gaussian"
    assert resolve_likelihood(VAEConfig(likelihood="gaussian-learned"), binary_data=True) == "gaussian-learned"


def test_image_size_must_divide_by_the_conv_stack():
    with pytest.raises(UserError, match="--conv-channels"):
        VAE(VAEConfig(likelihood="bernoulli"), (1, 40, 40))


def test_two_vaes_do_not_share_weights_through_the_param_store():
    a, b = _vae(), _vae()
    x = torch.rand(2, 1, 64, 64).round()
    pyro.clear_param_store()
    poutine.trace(a.guide).get_trace(x)
    poutine.trace(b.guide).get_trace(x)  # same names in the param store
    assert not torch.equal(a.encoder.head.weight, b.encoder.head.weight)


def test_bernoulli_image_equals_torch_bernoulli_to_event_bitwise():
    torch.manual_seed(0)
    logits = 3 * torch.randn(5, 1, 6, 7, requires_grad=True)
    x = torch.rand(5, 1, 6, 7).round()
    ours, ref = BernoulliImage(logits, 3), pyro.distributions.Bernoulli(logits=logits).to_event(3)
    assert ours.batch_shape == ref.batch_shape == (5,) and ours.event_shape == ref.event_shape
    assert torch.equal(ours.log_prob(x), ref.log_prob(x))
    (g1,) = torch.autograd.grad(ours.log_prob(x).sum(), logits)
    (g2,) = torch.autograd.grad(ref.log_prob(x).sum(), logits)
    assert torch.equal(g1, g2)
    # broadcast over chains (C, N) against data (N,), and expand, as the log-likelihood estimators use it
    chains = 3 * torch.randn(4, 5, 1, 6, 7)
    ours, ref = BernoulliImage(chains, 3), pyro.distributions.Bernoulli(logits=chains).to_event(3)
    assert torch.equal(ours.log_prob(x), ref.log_prob(x)) and ours.log_prob(x).shape == (4, 5)
    assert ours.expand((4, 5)) is ours
    big = BernoulliImage(logits.detach(), 3).expand((2, 5))
    one = pyro.distributions.Bernoulli(logits=logits.detach()).to_event(3).log_prob(x)
    assert big.batch_shape == (2, 5) and torch.equal(big.log_prob(x)[1], one)
    torch.manual_seed(1)
    a = BernoulliImage(logits.detach(), 3).sample((2,))
    torch.manual_seed(1)
    b = pyro.distributions.Bernoulli(logits=logits.detach()).to_event(3).sample((2,))
    assert a.shape == (2, 5, 1, 6, 7) and torch.equal(a, b)
    assert torch.equal(ours.mean, torch.sigmoid(chains))


def test_register_once_keeps_the_param_store_and_drops_per_call_param_sites():
    vae = _vae()
    x = torch.rand(2, 1, 64, 64).round()
    pyro.clear_param_store()
    vae.register_once()
    store = pyro.get_param_store()
    assert store["encoder$$$head.weight"] is vae.encoder.head.weight  # the live tensors: current as they train
    assert any(k.startswith("decoder$$$") for k in store.keys())
    for trace in (poutine.trace(vae.guide).get_trace(x), poutine.trace(vae.model).get_trace(x)):
        assert not [n for n, s in trace.nodes.items() if s["type"] == "param"]
