import math

import pyro
import pytest
import torch

from probgen.inference.loglik.laplace import _components, ais_laplace, whitened
from probgen.inference.loglik.laplace_fit import _distinct_basins, laplace_fit
from probgen.inference.mcmc.potential import LatentTarget
from probgen.inference.testing.bimodal import Bimodal
from probgen.inference.testing.folded import FoldedDecoder
from probgen.inference.testing.ppca import PPCA

pytestmark = pytest.mark.usefixtures("one_torch_thread")


#: seeds beyond the first run in the slow suite (-m slow); the default suite keeps seed 0 of each test
SLOW_SEEDS = [pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)]


def _starts(target, r: int = 6) -> torch.Tensor:
    return target.sample_prior(r)


def test_on_a_gaussian_posterior_the_laplace_fit_is_exact_and_so_is_the_estimate():
    pyro.set_rng_seed(0)
    m = PPCA.random(obs_dim=16, latent_dim=3, s=0.05, seed=0)  # sharp: posterior sd ~0.012
    x = m.simulate(5)
    target = m.target(x)
    fit = laplace_fit(target, _starts(target))
    mean, cov = m.posterior(x)
    assert torch.allclose(fit.mean, mean, atol=1e-8)
    assert torch.allclose(fit.scale @ fit.scale.transpose(-1, -2), cov.expand(5, 3, 3), rtol=1e-6)
    assert (fit.other_optima == 0).all() and (fit.grad_norm < 1e-6).all()
    r = ais_laplace(target, _starts(target), num_chains=4, num_steps=20, leapfrog_steps=3)
    # the path starts at the posterior itself: every weight is p(x) (a wrong log|L| or base would show)
    assert torch.allclose(r.log_px, m.log_evidence(x), atol=1e-8), r.log_px - m.log_evidence(x)
    assert r.method == "ais-laplace" and r.trusted.all()


def test_whitened_target_integrates_to_the_evidence_and_subsets():
    m = PPCA.random(obs_dim=8, latent_dim=2, s=0.5, seed=3)
    x = m.simulate(4)
    target = m.target(x)
    fit = laplace_fit(target, _starts(target))
    fit = fit._replace(scale=fit.scale * 1.7, log_det_scale=fit.log_det_scale + 2 * math.log(1.7))  # a wider q
    w = whitened(target, fit)
    torch.manual_seed(0)
    u = w.sample_prior(200_000)
    base, rest = w.log_joint(u)
    # E_base[exp(rest)] = p(x): plain importance sampling from the whitened base
    est = torch.logsumexp(rest, 0) - math.log(u.shape[0])
    assert torch.allclose(est, m.log_evidence(x), atol=0.02)
    sub = w.subset(torch.tensor([2, 0]))
    b2, r2 = sub.log_joint(u[:5, [2, 0]])
    assert torch.allclose(r2, rest[:5, [2, 0]]) and torch.allclose(b2, base[:5, [2, 0]])


@pytest.mark.parametrize("seed", [0, *SLOW_SEEDS])
def test_on_non_gaussian_posteriors_it_is_a_lower_bound_and_anneals_to_every_mode_found(seed):
    """Bimodal decoder (z1 seen through z1^2), posteriors from one-moded to two-moded; truth by quadrature."""
    m = Bimodal.random(obs_dim=12, s=0.3, tilt=0.08, seed=seed)
    z = torch.tensor([[0.0, 0.5], [0.4, -1.0], [1.5, 0.0], [-2.0, 1.0], [2.5, -0.5], [0.8, 0.8]], dtype=torch.float64)
    x = m.simulate(z, seed=seed)
    exact = m.quadrature(x)
    pyro.set_rng_seed(seed)
    target = m.target(x)
    r = ais_laplace(target, _starts(target, 8), num_chains=16, num_steps=100, leapfrog_steps=5)
    err = r.log_px - exact["log_px"]
    # one-sided: never above the truth beyond its error bar, flagged or not
    assert (err < 3 * r.se + 0.05).all(), (err, r.se)
    ok = r.trusted
    assert (err[ok].abs() < 3 * r.se[ok] + 0.1).all(), (err, r.se, r.flags)
    # a point whose posterior holds two modes of real mass is never passed with one of them missing
    two = (exact["mass_right"] > 0.05) & (exact["mass_right"] < 0.95)
    for i in torch.nonzero(two).flatten().tolist():
        assert not ok[i] or err[i].abs() < 3 * r.se[i] + 0.1, (i, err[i], r.flags[i])
    assert two.any() and (r.per_point["num_modes"][two] > 1).any()
    # both basins annealed to, not flagged: at most one point of six (before: every two-basin one)
    assert int(r.trusted.sum()) >= 5, r.flags


@pytest.mark.parametrize("seed", [0, *SLOW_SEEDS])
@pytest.mark.parametrize("k", [1.0, 2.0])
def test_folded_posterior_both_modes_found_and_annealed_to(k, seed):
    """The decoder sees z1 only through |z1| (k = 1: two equal modes; k = 2: one twice as narrow): a
    single basin's AIS would sit log 2 (or log 3) low; the mixture of both fits must not."""
    dec = FoldedDecoder.random(s=0.2, k=k)
    x = dec.simulate(torch.tensor([[2.0, 0.5], [1.5, -1.0], [-2.5, 0.0]], dtype=torch.float64))
    pyro.set_rng_seed(seed)
    target = dec.target(x)
    r = ais_laplace(target, _starts(target, 8), num_chains=8, num_steps=100, leapfrog_steps=5)
    err = r.log_px - dec.log_evidence(x)
    assert (r.per_point["num_modes"] == 2).all() and r.trusted.all(), (r.per_point, r.flags)
    assert (err.abs() < 3 * r.se + 0.05).all() and (r.se < 0.2).all(), (err, r.se)
    assert r.info["num_multimodal"] == 3 and r.info["num_missed_mode"] == 0


def test_mixture_shares_sum_to_the_evidence():
    """Importance sampling each component's whitened target: the shares of a point's two fits sum to p(x)."""
    dec = FoldedDecoder.random(s=0.2, k=2.0)
    x = dec.simulate(torch.tensor([[2.0, 0.5], [-1.5, 1.0]], dtype=torch.float64))
    target = dec.target(x)
    torch.manual_seed(0)
    fit = laplace_fit(target, _starts(target, 8))
    point_of, comp, mixture = _components(target, fit)
    assert point_of.tolist() == [0, 1, 0, 1]
    wide = comp._replace(scale=comp.scale * 3, log_det_scale=comp.log_det_scale + 2 * math.log(3))  # heavier tails
    w = whitened(target.subset(point_of), wide, mixture)  # any base and any split keep the sum p(x)
    u = w.sample_prior(400_000)
    _, rest = w.log_joint(u)
    share = torch.logsumexp(rest, 0) - math.log(u.shape[0])  # (4,): each component's share of its p(x)
    total = torch.logaddexp(share[:2], share[2:])
    assert torch.allclose(total, dec.log_evidence(x), atol=0.02), total - dec.log_evidence(x)
    assert (share.view(2, 2) > total + math.log(0.05)).all()  # both modes hold real mass
    sub = w.subset(torch.tensor([3, 0]))
    _, r2 = sub.log_joint(u[:5, [3, 0]])
    assert torch.allclose(r2, rest[:5, [3, 0]])


def test_basins_beyond_the_cap_are_counted_and_flagged():
    # 6 starts of one point: z* at 0, and five others 10 sds apart (all other basins)
    optima = torch.tensor([[[0.0, 0.0]], [[10.0, 0.0]], [[10.1, 0.0]], [[-10.0, 0.0]], [[0.0, 10.0]], [[0.0, -10.0]]])
    f_all = torch.tensor([[0.0], [-1.0], [-1.2], [-2.0], [-3.0], [-4.0]])
    other = torch.tensor([[False], [True], [True], [True], [True], [True]])
    basins, found, left_out = _distinct_basins(optima, f_all, other, torch.eye(2).expand(1, 2, 2), 3)
    # the best first; (10.1, 0) is in (10, 0)'s basin; of the four distinct ones the cap keeps three
    assert found.tolist() == [[True, True, True]] and left_out.tolist() == [1]
    assert basins[0].tolist() == [[10.0, 0.0], [-10.0, 0.0], [0.0, 10.0]]


def test_bad_starts_are_refused():
    target = PPCA.random(obs_dim=6, latent_dim=2).target(torch.zeros(3, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="starts must be"):
        laplace_fit(target, torch.zeros(2, 3, 3, dtype=torch.float64))


def test_a_start_that_ends_non_finite_is_never_chosen():
    m = PPCA.random(obs_dim=8, latent_dim=2, s=0.3, seed=1)
    x = m.simulate(3)
    exact = m.target(x)

    def log_joint(z):  # NaN far out, as a decoder that overflows there
        lp, ll = exact.log_joint(z)
        return lp, torch.where(z[..., 0] > 50, torch.nan, ll)

    target = LatentTarget(log_joint, exact.sample_prior, 3, 2, 8)
    starts = torch.cat([torch.full((1, 3, 2), 100.0, dtype=torch.float64), exact.sample_prior(3)])
    fit = laplace_fit(target, starts)
    mean, _ = m.posterior(x)
    assert torch.allclose(fit.mean, mean, atol=1e-6) and torch.isfinite(fit.log_joint).all()


def _gaussian_mixture_posterior(means, scales, log_weights, n: int = 1) -> LatentTarget:
    """p(x, z) = sum_k w_k N(z; m_k, s_k^2 I) for each of n points (so log p(x) = log sum w_k exactly),
    written as prior N(0, I) times the rest."""
    means = torch.as_tensor(means, dtype=torch.float64)  # (K, D)
    scales = torch.as_tensor(scales, dtype=torch.float64)  # (K,)
    log_w = torch.as_tensor(log_weights, dtype=torch.float64)
    d = means.shape[1]
    prior = torch.distributions.Normal(torch.zeros((), dtype=torch.float64), 1.0)

    def log_joint(z):
        comp = torch.distributions.Normal(means, scales[:, None]).log_prob(z.unsqueeze(-2)).sum(-1)  # (C, N, K)
        lp = prior.log_prob(z).sum(-1)
        return lp, torch.logsumexp(comp + log_w, -1) - lp

    def sample_prior(c):
        return torch.randn(c, n, d, dtype=torch.float64)

    return LatentTarget(log_joint, sample_prior, n, d, 1)


@pytest.mark.parametrize("seed", [0, *SLOW_SEEDS])
def test_a_broad_basin_that_holds_most_of_the_mass_is_chosen_over_a_higher_narrow_peak(seed):
    # latent 10: a broad basin (sd 0.5, 90% of p(x)) whose peak is 21 nats below a narrow one's (sd
    # 0.05, 10%). Chosen by peak (as before), the broad basin was left out, unflagged, 2.3 nats low.
    d = 10
    means = torch.zeros(2, d)
    means[0, 0], means[1, 0] = -1.5, 1.5
    target = _gaussian_mixture_posterior(means, [0.5, 0.05], [math.log(0.9), math.log(0.1)], n=2)
    pyro.set_rng_seed(seed)
    starts = torch.cat([target.sample_prior(14), means[:, None].expand(2, 2, d).double()])
    fit = laplace_fit(target, starts)
    assert torch.allclose(fit.mean[:, 0], torch.full((2,), -1.5, dtype=torch.float64), atol=1e-3)  # the broad one
    r = ais_laplace(target, starts, num_chains=8, num_steps=100, leapfrog_steps=5)
    assert (r.per_point["num_modes"] == 2).all() and r.trusted.all(), (r.per_point, r.flags)
    err = r.log_px  # the exact log p(x) is log(0.9 + 0.1) = 0
    assert (err < 3 * r.se + 0.05).all() and (err.abs() < 3 * r.se + 0.1).all(), (err, r.se)


def test_a_point_with_more_basins_than_ais_laplace_anneals_to_is_flagged_missed_mode():
    # five equal, well-separated basins at latent 3, every start in one of them: four are annealed to,
    # the fifth is left out, and the estimate (about log 4/5 low) must carry the flag
    means = 6.0 * torch.eye(3).repeat(2, 1)[:5] * torch.tensor([1, 1, 1, -1, -1])[:, None]
    target = _gaussian_mixture_posterior(means, [0.3] * 5, [math.log(0.2)] * 5)
    starts = means[:, None].double() + 0.01
    r = ais_laplace(target, starts, num_chains=8, num_steps=30, leapfrog_steps=3)
    assert r.flags == [["missed-mode"]] and r.info["num_missed_mode"] == 1
    assert int(r.per_point["num_modes"][0]) == 4 and float(r.log_px[0]) < math.log(0.9)


@pytest.mark.xfail(
    strict=True,
    reason="known limitation (docs/loglik.md): Adam's first steps (lr 0.2) jump out of a "
    "peak 0.02 wide, so no start ends there; the point comes out log 0.7 low with se 1e-16, unflagged",
)
def test_a_narrow_peak_inside_a_broad_basin_gets_its_own_component():
    # latent 10: a narrow peak (sd 0.02, 30% of p(x)) 0.5 broad sds from the centre of a broad basin
    # (sd 1, 70%): log p(x, z) has no dip between them, and annealing from the broad Gaussian alone
    # never finds a spike 50 times narrower in every direction: every chain's weight is the same
    d = 10
    means = torch.zeros(2, d)
    means[1, 0] = 0.5
    target = _gaussian_mixture_posterior(means, [1.0, 0.02], [math.log(0.7), math.log(0.3)], n=2)
    pyro.set_rng_seed(0)
    starts = torch.cat([target.sample_prior(6), means[:, None].expand(2, 2, d).double() + 0.01])
    r = ais_laplace(target, starts, num_chains=8, num_steps=100, leapfrog_steps=5)
    assert (r.per_point["num_modes"] == 2).all(), r.per_point
    err = r.log_px  # exact: log(0.7 + 0.3) = 0
    assert (err.abs() < 3 * r.se + 0.05).all() and r.trusted.all(), (err, r.se, r.flags)


def test_laplace_excess_is_zero_when_the_base_is_the_posterior():
    gauss = _gaussian_mixture_posterior(torch.zeros(1, 10), [0.3], [0.0], n=2)
    pyro.set_rng_seed(0)
    r = ais_laplace(gauss, gauss.sample_prior(4), num_chains=8, num_steps=20, leapfrog_steps=3)
    assert r.per_point["laplace_excess"].abs().max() < 1e-6 and r.trusted.all(), r.per_point["laplace_excess"]


@pytest.mark.xfail(
    strict=True,
    reason="known limitation (docs/loglik.md): a spike on a broad basin is its only maximum; from the "
    "spike's Laplace base the chains never reach the broad 90%: log 0.1 low, excess 0, unflagged",
)
def test_a_spike_at_the_centre_of_a_broad_basin_is_estimated_or_flagged():
    # latent 10: a spike (sd 0.1, 10% of p(x)) at the centre of a broad basin (sd 1, 90%)
    d = 10
    target = _gaussian_mixture_posterior(torch.zeros(2, d), [1.0, 0.1], [math.log(0.9), math.log(0.1)], n=2)
    pyro.set_rng_seed(0)
    r = ais_laplace(target, target.sample_prior(4), num_chains=8, num_steps=50, leapfrog_steps=5)
    err = r.log_px  # exact: log(0.9 + 0.1) = 0
    assert ((err.abs() < 0.5) | ~r.trusted).all(), (err, r.se, r.flags, r.per_point["laplace_excess"])
