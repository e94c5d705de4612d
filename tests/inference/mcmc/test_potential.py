import pyro
import pyro.distributions as dist
import pytest
import torch

from probgen.inference.mcmc.potential import encoder_proposal, from_pyro_model
from probgen.inference.testing.ppca import PPCA
from tests.factories import tiny_vae

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_ppca_log_joint_matches_closed_form_and_bayes_rule():
    m = PPCA.random(obs_dim=7, latent_dim=3, s=0.6)
    x = m.simulate(5)
    target = from_pyro_model(m.model, x)
    assert (target.num_data, target.latent_dim, target.data_dim) == (5, 3, 7)
    z = torch.randn(4, 5, 3, dtype=torch.float64)  # (C, N, D)
    lp, ll = target.log_joint(z)
    assert lp.shape == ll.shape == (4, 5)
    assert torch.allclose(lp, dist.Normal(0.0, 1.0).log_prob(z).sum(-1))
    assert torch.allclose(ll, dist.Normal(z @ m.W.T + m.b, m.s).log_prob(x).sum(-1))
    # log p(z) + log p(x|z) - log p(z|x) = log p(x) at every z
    mean, cov = m.posterior(x)
    log_post = dist.MultivariateNormal(mean, covariance_matrix=cov).log_prob(z)
    assert torch.allclose(lp + ll - log_post, m.log_evidence(x).expand(4, 5), atol=1e-9)


def test_potential_is_tempered_and_carries_the_likelihood():
    m = PPCA.random(obs_dim=4, latent_dim=2)
    x = m.simulate(3)
    target = from_pyro_model(m.model, x)
    z = torch.randn(2, 3, 2, dtype=torch.float64)
    lp, ll = target.log_joint(z)
    u, aux = target.potential(0.25)(z)
    assert torch.allclose(u, -(lp + 0.25 * ll)) and torch.allclose(aux, ll)


def test_a_subset_of_points_is_their_own_target_with_or_without_select():
    m = PPCA.random(obs_dim=5, latent_dim=2, s=0.4)
    x = m.simulate(6)
    index = torch.tensor([4, 1, 4])  # a point may be chosen twice (ais-laplace: one copy per mode)
    for full in (from_pyro_model(m.model, x), m.target(x)):  # traced (select) and hand-written (a view)
        sub = full.subset(index)
        assert (sub.num_data, sub.latent_dim, sub.data_dim) == (3, 2, 5)
        z = torch.randn(3, 3, 2, dtype=torch.float64, requires_grad=True)
        lp, ll = sub.log_joint(z)
        want = from_pyro_model(m.model, x[index]).log_joint(z)
        assert torch.allclose(lp, want[0]) and torch.allclose(ll, want[1])
        (g,) = torch.autograd.grad((lp + ll).sum(), z)
        (g_want,) = torch.autograd.grad(sum(w.sum() for w in want), z)
        assert torch.allclose(g, g_want) and g.abs().sum() > 0
        assert sub.sample_prior(7).shape == (7, 3, 2)
    assert from_pyro_model(m.model, x).select is not None and m.target(x).select is None
    with pytest.raises(IndexError):
        m.target(x).subset(torch.tensor([6]))


def test_prior_draws_have_chain_and_data_dims():
    m = PPCA.random(obs_dim=4, latent_dim=2)
    target = from_pyro_model(m.model, m.simulate(3))
    pyro.set_rng_seed(0)
    z = target.sample_prior(4000)
    assert z.shape == (4000, 3, 2) and not z.requires_grad
    assert z.mean().abs() < 0.05 and (z.std() - 1).abs() < 0.05  # 24000 standard normals


def _vae(likelihood="bernoulli"):
    return tiny_vae((1, 16, 16), seed=0, conv_channels=(8, 8), hidden_dims=(16,), likelihood=likelihood).eval()


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_vae_target_is_unscaled_and_batched_over_chains(likelihood):
    vae = _vae(likelihood)
    x = torch.rand(4, 1, 16, 16).round()
    z = torch.randn(3, 4, 3)
    lp, ll = from_pyro_model(vae.model, x).log_joint(z)
    # the decoder runs once on all C x N latents; check each chain against a plain per-chain evaluation
    for c in range(3):
        assert torch.allclose(ll[c], vae.obs_dist(z[c]).log_prob(x), rtol=1e-5)
        assert torch.allclose(lp[c], dist.Normal(0.0, 1.0).log_prob(z[c]).sum(-1), rtol=1e-5)
    # a beta-VAE's poutine.scale on z is a training device, not part of p(x, z)
    lp_beta, ll_beta = from_pyro_model(vae.model, x, beta=0.1).log_joint(z)
    assert torch.equal(lp_beta, lp) and torch.equal(ll_beta, ll)
    assert from_pyro_model(vae.model, x).data_dim == 256


def test_encoder_proposal_is_the_guide_distribution():
    vae = _vae()
    x = torch.rand(5, 1, 16, 16).round()
    q = encoder_proposal(vae.guide, x)
    loc, scale = vae.encode(x)
    assert q.batch_shape == (5,) and q.event_shape == (3,)
    assert torch.allclose(q.mean, loc) and torch.allclose(q.stddev, scale)
    assert q.sample((7,)).shape == (7, 5, 3)


def test_model_without_the_sites_is_rejected():
    def model(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))

    with pytest.raises(ValueError, match="no sample site 'z'"):
        from_pyro_model(model, torch.zeros(3, 2))

    def scalar_latent(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    with pytest.raises(ValueError, match="event dim 1"):
        from_pyro_model(scalar_latent, torch.zeros(3))
