"""MixturePrior: its closed-form log p(x) and posterior against the Pyro model's own density, at latent 2
(grid quadrature) and at latent 10 to 50 (the identity log p(x, z) - log p(z | x) = log p(x) for every z)."""

import math

import pytest
import torch

from probgen.inference import encoder_proposal, from_pyro_model, grid_log_px
from probgen.inference.testing import MixturePrior

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("build", [MixturePrior.random, MixturePrior.broad_narrow])
def test_latent_2_evidence_matches_grid_quadrature_of_the_pyro_model(build):
    m = build(2, num_components=2, seed=3) if build is MixturePrior.random else build(2, seed=3)
    x = m.simulate(6, seed=4)
    q = grid_log_px(from_pyro_model(m.model, x), lim=8.0, coarse=161, fine=241)
    assert (q["error"] < 1e-6).all()
    assert torch.allclose(m.log_evidence(x), q["log_px"], atol=1e-6), m.log_evidence(x) - q["log_px"]


def _log_posterior(m: MixturePrior, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(z | x) (C, N) of z (C, N, D) under the exact posterior mixture."""
    log_w, means, cov = m.posterior(x)
    comp = torch.distributions.MultivariateNormal(means, covariance_matrix=cov)  # batch (N, K)
    return torch.logsumexp(log_w + comp.log_prob(z[:, :, None, :]), -1)


def _sample_posterior(m: MixturePrior, x: torch.Tensor, c: int, g: torch.Generator) -> torch.Tensor:
    log_w, means, cov = m.posterior(x)
    k = torch.multinomial(log_w.exp(), c, replacement=True, generator=g).T  # (C, N)
    eps = torch.randn(c, x.shape[0], m.latent_dim, 1, generator=g, dtype=x.dtype)
    return means[torch.arange(x.shape[0]), k] + (torch.linalg.cholesky(cov)[k] @ eps)[..., 0]


@pytest.mark.parametrize("latent_dim", [10, 20, 50])
@pytest.mark.parametrize("variant", ["random", "broad_narrow"])
def test_posterior_and_evidence_satisfy_bayes_rule_under_the_models_own_density(latent_dim, variant):
    """Every posterior draw z gives log p(x, z) - log p(z | x) = log p(x): a wrong weight, mean,
    covariance or evidence would make the difference vary or shift."""
    m = getattr(MixturePrior, variant)(latent_dim, seed=latent_dim)
    x = m.simulate(8, seed=1)
    g = torch.Generator().manual_seed(0)
    z = _sample_posterior(m, x, 5, g)
    lp, ll = from_pyro_model(m.model, x).log_joint(z)
    diff = lp + ll - _log_posterior(m, x, z)
    assert torch.allclose(diff, m.log_evidence(x).expand_as(diff), atol=1e-8), diff - m.log_evidence(x)
    # and at draws from the prior (far from the posterior), the same identity
    z = from_pyro_model(m.model, x).sample_prior(3)
    lp, ll = from_pyro_model(m.model, x).log_joint(z)
    diff = lp + ll - _log_posterior(m, x, z)
    assert torch.allclose(diff, m.log_evidence(x).expand_as(diff), atol=1e-6)


@pytest.mark.parametrize("latent_dim", [10, 20, 50])
def test_random_posteriors_have_several_basins_of_real_mass(latent_dim):
    m = MixturePrior.random(latent_dim, seed=0)
    x = m.simulate(16, seed=1)
    log_w, means, cov = m.posterior(x)
    assert int(((log_w.exp() > 0.05).sum(-1) > 1).sum()) >= 8
    # the basins are separate: means several posterior sds apart along the line joining them
    for a, b in ((0, 1), (0, 2), (1, 2)):
        gap = means[:, a] - means[:, b]  # (N, D)
        unit = gap / gap.norm(dim=-1, keepdim=True)
        sd = torch.einsum("nd,kde,ne->nk", unit, cov, unit).sqrt().amax(-1)  # (N,): the wider basin's
        assert (gap.norm(dim=-1) > 3 * sd).all()


@pytest.mark.parametrize("latent_dim", [10, 20, 50])
def test_broad_narrow_highest_peak_does_not_hold_most_of_the_mass(latent_dim):
    """Per point: log p(x, z) at each basin's centre (the model's own density) and each basin's mass."""
    for seed in (0, 1, 2):
        m = MixturePrior.broad_narrow(latent_dim, seed=seed)
        x = m.simulate(16, seed=seed + 1)
        log_w, means, _ = m.posterior(x)
        lp, ll = from_pyro_model(m.model, x).log_joint(means.transpose(0, 1))  # (K, N): each basin's centre
        peak = (lp + ll).argmax(0)
        mass_at_peak = log_w.exp().gather(1, peak[:, None])[:, 0]
        assert int((mass_at_peak < 0.5).sum()) >= 10, (seed, mass_at_peak)
        # and the narrow basin is a real one: at least 5% of the mass on several points
        assert int((log_w.exp().min(-1).values > 0.05).sum()) >= 4


def test_simulate_is_reproducible_and_the_guide_sits_on_the_heaviest_basin():
    m = MixturePrior.random(10, seed=2)
    x = m.simulate(5, seed=7)
    assert torch.equal(x, m.simulate(5, seed=7)) and x.shape == (5, m.obs_dim)
    q = encoder_proposal(m.guide, x)
    log_w, means, _ = m.posterior(x)
    assert q.batch_shape == (5,) and q.event_shape == (10,)
    assert torch.allclose(q.mean, means[torch.arange(5), log_w.argmax(-1)])
    assert math.isfinite(float(from_pyro_model(m.model, x).log_joint(q.sample((2,)))[1].sum()))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="num_components"):
        MixturePrior.random(3, num_components=5)
    with pytest.raises(ValueError, match="weights"):
        MixturePrior.random(10, num_components=2, weights=(1.0, 0.0))
