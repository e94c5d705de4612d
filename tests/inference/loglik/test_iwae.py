import math

import pyro
import pytest
import torch

from probgen.inference.loglik.ais import ais, sigmoid_schedule
from probgen.inference.loglik.appendix_d import appendix_d, fit_gaussian
from probgen.inference.loglik.iwae import elbo_iwae, ordering_warnings
from probgen.inference.loglik.result import LoglikResult
from probgen.inference.mcmc.potential import encoder_proposal
from probgen.inference.testing.ppca import PPCA

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("latent_dim", [2, 4])
def test_appendix_d_recovers_the_exact_ppca_evidence(latent_dim):
    pyro.set_rng_seed(latent_dim)
    m = PPCA.random(obs_dim=16, latent_dim=latent_dim, s=0.5, seed=latent_dim)
    x = m.simulate(6)
    target = m.target(x)
    result, run = appendix_d(target, target.sample_prior(4), 150, 200, num_steps=8)
    exact = m.log_evidence(x)
    # the weights q/p(z|x) of a Gaussian posterior under the shrunk fit have relative variance < 0.1, so
    # 800 draws put each estimate within ~0.03 nats; a few tenths is the documented accuracy
    assert (result.log_px - exact).abs().max() < 0.3
    assert result.method == "appendix-d" and result.info["fit_draws"] == 200
    assert run.samples.shape == (4, 400, 6, latent_dim)


def test_ais_recovers_the_exact_evidence_at_latent_dim_10():
    pyro.set_rng_seed(0)
    m = PPCA.random(obs_dim=20, latent_dim=10, s=1.0)
    x = m.simulate(6)
    result = ais(m.target(x), num_chains=16, num_steps=1000, leapfrog_steps=5)
    err = result.log_px - m.log_evidence(x)
    assert err.mean().abs() < 0.3 and err.abs().max() < 1.0
    assert 0.5 < result.info["accept_rate_mean"] < 0.8  # adapted towards 0.65


def test_iwae_is_below_the_evidence_and_tightens_with_k():
    pyro.set_rng_seed(0)
    m = PPCA.random(obs_dim=16, latent_dim=3, s=0.5)
    # 4 points, each repeated 100 times, so that the mean over points estimates E[IWAE_k] to ~0.02 nats
    x = m.simulate(4).repeat(100, 1)
    target = m.target(x)
    q = encoder_proposal(m.guide, x, inflate=0.6)  # mean-field and too narrow: a poor proposal
    exact = m.log_evidence(x)
    gaps, ses = [], []
    for k in (1, 10, 100, 10000):
        elbo, iwae = elbo_iwae(target, q, num_samples=k, max_batch=2**17)
        d = iwae.log_px - exact
        gaps.append(float(d.mean()))
        ses.append(float(d.std() / 20))
        assert float(elbo.log_px.mean()) <= gaps[-1] + float(exact.mean()) + 1e-9  # ELBO <= IWAE_k
    assert gaps[0] < -0.3  # the proposal is poor enough for the test to mean something
    for a, b, se_a, se_b in zip(gaps, gaps[1:], ses, ses[1:]):
        assert b - a > 3 * (se_a**2 + se_b**2) ** 0.5  # IWAE_k grows with k ...
    assert -0.05 < gaps[-1] < 3 * ses[-1]  # ... towards log p(x), from below


def test_iwae_draws_in_chunks_of_bounded_size():
    m = PPCA.random(obs_dim=4, latent_dim=2)
    x = m.simulate(5)
    target = m.target(x)
    sizes = []

    def log_joint(z):
        sizes.append(z.shape[0])
        return target.log_joint(z)

    chunked = type(target)(log_joint, target.sample_prior, 5, 2, 4)
    elbo_iwae(chunked, encoder_proposal(m.guide, x), num_samples=23, max_batch=20)
    assert sizes == [4, 4, 4, 4, 4, 3]  # 20 // 5 points = 4 samples per chunk


def test_elbo_equals_the_analytic_expectation_for_gaussian_q():
    # E_q[log p(x, z) - log q(z)] = log p(x) - KL(q || p(z|x)), exactly computable for PPCA
    pyro.set_rng_seed(1)
    m = PPCA.random(obs_dim=6, latent_dim=2, s=0.7)
    x = m.simulate(4)
    q = encoder_proposal(m.guide, x)
    elbo, _ = elbo_iwae(m.target(x), q, num_samples=20000)
    mean, cov = m.posterior(x)
    post = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    q_full = torch.distributions.MultivariateNormal(q.mean, covariance_matrix=torch.diag_embed(q.variance))
    expected = m.log_evidence(x) - torch.distributions.kl_divergence(q_full, post)
    assert torch.allclose(elbo.log_px, expected, atol=0.05)  # sd of log w ~ 1 nat / sqrt(20000)


def test_fit_gaussian_recovers_moments_and_shrinks():
    torch.manual_seed(0)
    cov = torch.tensor([[1.0, 0.6], [0.6, 2.0]], dtype=torch.float64)
    z = torch.distributions.MultivariateNormal(torch.tensor([1.0, -2.0], dtype=torch.float64), cov).sample(
        (4, 5000, 3)
    )  # (C, S, N, D)
    q = fit_gaussian(z, shrink=0.5)
    assert q.batch_shape == (3,) and torch.allclose(q.mean, torch.tensor([1.0, -2.0], dtype=torch.float64), atol=0.05)
    assert torch.allclose(q.covariance_matrix, 0.5 * cov.expand(3, 2, 2), atol=0.05)


def test_sigmoid_schedule():
    b = sigmoid_schedule(100, delta=4.0)
    assert b.shape == (101,) and b[0] == 0 and b[-1] == 1 and (b.diff() > 0).all()
    steps = b.diff()
    assert steps[50] > 5 * steps[0]  # dense at both ends, coarse in the middle


def test_result_units():
    r = LoglikResult("iwae", torch.tensor([-100.0, -102.0], dtype=torch.float64), data_dim=10)
    assert r.mean == -101.0 and r.stderr == pytest.approx(1.0)
    assert torch.allclose(r.bits_per_dim, torch.tensor([100.0, 102.0], dtype=torch.float64) / (10 * math.log(2)))
    d = r.to_dict()
    assert d["bits_per_dim_mean"] == pytest.approx(101.0 / (10 * math.log(2)))
    assert d["bits_per_dim_stderr"] == pytest.approx(1.0 / (10 * math.log(2)))


def _res(method, values):
    return LoglikResult(method, torch.tensor(values, dtype=torch.float64), data_dim=1)


def test_ordering_warnings():
    ok = {"elbo": _res("elbo", [-12.0, -11.0, -13.0]), "iwae": _res("iwae", [-10.0, -9.0, -11.0])}
    ok["ais"] = _res("ais", [-10.01, -8.98, -11.02])  # equal to IWAE within noise
    assert ordering_warnings(ok, latent_dim=2) == []
    bad = dict(ok, ais=_res("ais", [-11.0, -10.0, -12.0]))  # IWAE above AIS by 1 nat on every point
    (msg,) = ordering_warnings(bad, latent_dim=2)
    assert msg.startswith("iwae exceeds ais by 1.000")
    (msg,) = ordering_warnings({"appendix-d": _res("appendix-d", [-1.0])}, latent_dim=5)
    assert "appendix-d at latent dimension 5" in msg


def test_iwae_and_elbo_se_match_the_spread_over_repeats_and_stay_below_the_evidence():
    # one point repeated 300 times: the spread over copies is each estimator's Monte Carlo error
    pyro.set_rng_seed(5)
    m = PPCA.random(obs_dim=8, latent_dim=2, s=0.5, seed=5)
    x1 = m.simulate(1, seed=5)
    x = x1.repeat(300, 1)
    elbo, iwae = elbo_iwae(m.target(x), encoder_proposal(m.guide, x, inflate=1.3), num_samples=200)
    for r in (elbo, iwae):
        assert r.se is not None and r.se.shape == (300,)
        ratio = float(r.log_px.std() / r.se.square().mean().sqrt())
        assert 1 / 1.3 < ratio < 1.3, (r.method, ratio)
    assert iwae.flags == [[]] * 300  # a Gaussian proposal wider than the posterior: light tails
    assert float(iwae.per_point["khat"].max()) < 0.7


@pytest.mark.parametrize("seed", range(4))
def test_lower_bounds_are_never_above_the_exact_evidence_beyond_their_error_bar(seed):
    pyro.set_rng_seed(seed)
    m = PPCA.random(obs_dim=10, latent_dim=3, s=0.5, seed=seed)
    x = m.simulate(50, seed=seed + 10)
    exact = m.log_evidence(x)
    elbo, iwae = elbo_iwae(m.target(x), encoder_proposal(m.guide, x, inflate=1.3), num_samples=500)
    for r in (elbo, iwae):
        # 50 points x 4 seeds at 3.5 se: a false alarm has probability ~ 200 x 2e-4 = 0.05 at worst
        assert (r.log_px - exact < 3.5 * r.se).all(), r.method
    assert (elbo.log_px <= iwae.log_px + 1e-9).all()


def test_iwae_flags_heavy_tailed_weights_of_a_too_narrow_proposal():
    # a proposal 3x narrower than the posterior: w = p/q grows like exp(+c z^2) in the tails, infinite
    # variance; k-hat sees it where the sample variance does not
    pyro.set_rng_seed(6)
    m = PPCA.random(obs_dim=8, latent_dim=2, s=0.5, seed=6)
    x = m.simulate(20, seed=6)
    _, iwae = elbo_iwae(m.target(x), encoder_proposal(m.guide, x, inflate=0.33), num_samples=2000)
    assert (iwae.per_point["khat"] > 0.7).float().mean() > 0.6  # k-hat is itself noisy at k = 2000
    assert sum(f == ["heavy-tailed-weights"] for f in iwae.flags) == int((iwae.per_point["khat"] > 0.7).sum())
