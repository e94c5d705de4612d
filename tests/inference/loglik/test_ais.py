import math

import pyro
import pytest
import torch

from probgen.inference.loglik.ais import (
    MAX_LOG_WEIGHT_VAR,
    _result_with_flags,
    ais,
    ais_schedule,
    anneal,
    geometric_schedule,
    geometric_sigmoid_schedule,
    pilot_plan,
    respace_schedule,
    variance_threshold_factor,
)
from probgen.inference.loglik.weights import log_weight_summary
from probgen.inference.testing.folded import FoldedDecoder
from probgen.inference.testing.ppca import PPCA

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sharp_ppca() -> PPCA:
    """Observation scale 0.05: the posterior sd is ~0.012, 80 times narrower than the prior."""
    return PPCA.random(obs_dim=16, latent_dim=2, s=0.05, seed=0)


def test_schedules_start_small_rise_and_end_at_one():
    for t in (1, 3, 10, 1000):
        for b in (geometric_schedule(t), geometric_sigmoid_schedule(t), ais_schedule(t, "sigmoid")):
            assert b.shape == (t + 1,) and b[0] == 0 and b[-1] == 1 and (b.diff() > 0).all()
    b = geometric_sigmoid_schedule(1000)
    assert b[1] == pytest.approx(1e-7)
    k = int((b <= 1e-3 + 1e-15).sum()) - 1  # the join, at 1e-3
    ratios = b[2 : k + 2] / b[1 : k + 1]
    assert ratios.max() / ratios.min() < 1.01  # constant ratio, and no kink in log beta at the join
    assert ais_schedule(1000, "sigmoid")[1] == pytest.approx(1.47e-4, rel=0.01)  # the plain sigmoid's first step
    with pytest.raises(ValueError, match="unknown AIS schedule"):
        ais_schedule(10, "linear")
    with pytest.raises(ValueError, match="increasing values"):
        ais_schedule(2, torch.tensor([0.0, 0.7, 0.5]))


def test_respacing_splits_the_thermodynamic_length_equally():
    pilot = torch.linspace(0, 1, 4001, dtype=torch.float64)
    flat = respace_schedule(pilot, torch.ones(4001, 3), 100, uniform_share=0.0)  # constant sd: uniform in beta
    assert torch.allclose(flat, torch.linspace(0, 1, 101, dtype=torch.float64), atol=1e-9)
    pilot = geometric_schedule(4000, start=1e-9)
    sd = (1.0 / pilot.clamp_min(1e-9)).unsqueeze(-1).expand(-1, 2)  # sd ~ 1 / beta: a sharp posterior's
    b = respace_schedule(pilot, torch.cat([sd[:1], sd[:-1]]), 200, uniform_share=0.0)
    ratios = (b[20:-1] / b[19:-2]).log()  # geometric beyond the first steps
    assert ratios.max() / ratios.min() < 1.05


def test_log_weight_summary_is_the_delta_method_over_chains():
    torch.manual_seed(0)
    lw = 1.5 * torch.randn(40, 3, dtype=torch.float64) - 1000.0  # far from 1: normalised stably
    s = log_weight_summary(lw)
    w = torch.exp(lw - lw.max(0).values)
    delta = w.std(0) / (math.sqrt(40) * w.mean(0))
    med = lw.median(0).values  # the se floor: the log-normal se of the upper half's variance about the median
    upper = torch.stack([((lw[:, i][lw[:, i] > med[i]] - med[i]) ** 2).mean() for i in range(3)])
    log_normal = torch.sqrt(torch.expm1(upper) / 40)
    assert torch.allclose(s["se"], torch.maximum(delta, log_normal)) and (delta < log_normal).any()
    assert torch.allclose(s["weights_ess"], w.sum(0).square() / w.square().sum(0))
    assert torch.allclose(s["log_weight_var"], lw.var(0))
    same = log_weight_summary(torch.zeros(8, 2))
    assert torch.allclose(same["se"], torch.zeros(2, dtype=torch.float64)) and torch.allclose(
        same["weights_ess"], torch.full((2,), 8.0, dtype=torch.float64)
    )
    # per-point counts (an adaptive stop): rows past a point's count are padding (-inf)
    counts = torch.tensor([40, 12, 1])
    padded = torch.where(torch.arange(40)[:, None] < counts, lw, -math.inf)
    p = log_weight_summary(padded, counts)
    for i, c in enumerate(counts.tolist()[:2]):
        alone = log_weight_summary(lw[:c, i : i + 1])
        assert all(torch.allclose(p[k][i : i + 1], alone[k]) for k in ("se", "weights_ess", "log_weight_var"))
    assert p["se"][2].isnan() and p["log_weight_var"][2].isnan() and p["weights_ess"][2] == 1.0


def test_a_chain_stuck_far_below_the_others_does_not_blow_up_the_se_but_is_flagged():
    """One chain of 8 with a log weight 200 nats below the rest hardly moves log mean(w) (by log 8/7); the
    plain variance of the log weights (5000) would make the log-normal se astronomically large. The se
    stays that of the other chains' spread; the point is still flagged for its variance."""
    torch.manual_seed(1)
    lw = 0.3 * torch.randn(8, 2, dtype=torch.float64)
    stuck = lw.clone()
    stuck[0, 1] = -200.0
    s, t = log_weight_summary(lw), log_weight_summary(stuck)
    assert t["se"][1] < 1.0 and t["se"][1] < 3 * s["se"][1] + 0.2 and torch.allclose(t["se"][0], s["se"][0])
    target = PPCA.random(obs_dim=2, latent_dim=1).target(torch.zeros(2, 2, dtype=torch.float64))
    result = _result_with_flags("ais", target, torch.logsumexp(stuck, 0) - math.log(8), stuck)
    assert result.flags == [[], ["ais-variance"]]


def test_ais_variance_flags_a_large_log_weight_variance_or_a_dominant_chain():
    target = PPCA.random(obs_dim=2, latent_dim=1).target(torch.zeros(3, 2, dtype=torch.float64))
    base = 0.1 * torch.randn(16, 3, dtype=torch.float64)
    lw = base.clone()
    lw[:, 1] *= 2 * math.sqrt(MAX_LOG_WEIGHT_VAR) / 0.1  # variance ~4
    lw[0, 2] += 3.0  # one chain 3 nats above 15 others: variance 0.5, but an ESS of ~3 of 16
    r = _result_with_flags("ais", target, torch.logsumexp(lw, 0) - math.log(16), lw)
    assert r.flags == [[], ["ais-variance"], ["ais-variance"]]
    assert r.per_point["log_weight_var"][2] < MAX_LOG_WEIGHT_VAR and r.per_point["weights_ess"][2] < 4


@pytest.mark.parametrize("chains", [4, 8, 16])
def test_the_variance_rule_fires_at_every_chain_count(chains):
    # 4000 points of normal log weights: a true variance of 2 must be flagged nearly always (at 4
    # chains and a fixed threshold of 1 it passed a third of the time), a true variance of 1 (the
    # threshold) 4 times in 5, and a harmless one of 0.1 almost never
    target = PPCA.random(obs_dim=2, latent_dim=1).target(torch.zeros(4000, 2, dtype=torch.float64))
    g = torch.Generator().manual_seed(chains)
    rates = {}
    for var in (2.0, MAX_LOG_WEIGHT_VAR, 0.1):
        lw = math.sqrt(var) * torch.randn(chains, 4000, generator=g, dtype=torch.float64)
        r = _result_with_flags("ais", target, torch.logsumexp(lw, 0) - math.log(chains), lw)
        rates[var] = sum(bool(f) for f in r.flags) / 4000
    missed_at_2 = {4: 0.12, 8: 0.06, 16: 0.02}[chains]  # chi2 tails: 0.08, 0.035, 0.009
    assert rates[2.0] > 1 - missed_at_2 and abs(rates[MAX_LOG_WEIGHT_VAR] - 0.8) < 0.03, rates
    assert rates[0.1] < {4: 0.03, 8: 0.01, 16: 0.01}[chains], rates  # chi2 tails: 0.018, 0.002, 0
    assert float(variance_threshold_factor(torch.tensor([8.0]))) == pytest.approx(0.546, abs=0.002)


@pytest.mark.parametrize("chains", [4, 8])
def test_the_ess_rule_is_live_at_small_chain_counts(chains):
    # one chain 2.5 nats above the others: the ESS falls below 2 (the rule's floor; C / 4 would be
    # unreachable at 4 chains); the variance alone, 2.5^2 / C, would not flag it at 8 chains... it does
    # at 4, so the ESS reading is checked on its own too
    target = PPCA.random(obs_dim=2, latent_dim=1).target(torch.zeros(1, 2, dtype=torch.float64))
    lw = torch.zeros(chains, 1, dtype=torch.float64)
    lw[0] = 2.5 if chains == 4 else 3.0
    r = _result_with_flags("ais", target, torch.logsumexp(lw, 0) - math.log(chains), lw)
    assert float(r.per_point["weights_ess"][0]) < 2 and r.flags == [["ais-variance"]]


def test_forward_and_reverse_weights_are_unbiased_for_p_and_1_over_p():
    # 100 steps on a frozen pilot plan: log weights vary by ~0.5 nat and E[log w] is visibly below
    # log p(x) (resp. -log p(x)), yet mean(w) over 2000 chains estimates p(x) (resp. 1 / p(x)) to ~2%;
    # an error in the weight increments (e.g. one taken after instead of before its transition, or a
    # reverse run on misaligned step sizes) biases mean(w) far more. (With much shorter runs the
    # reverse weights are heavy-tailed: 2000 chains would not see the rare large ones.)
    pyro.set_rng_seed(0)
    m = PPCA.random(obs_dim=4, latent_dim=2, s=0.5, seed=1)
    x = m.simulate(3)
    target, exact = m.target(x), m.log_evidence(x)
    plan = pilot_plan(target, 100, pilot_chains=8, leapfrog_steps=3)
    fwd = anneal(target, target.sample_prior(2000), plan.betas, plan.step_sizes, leapfrog_steps=3)
    mean, cov = m.posterior(x)
    z_post = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov).sample((2000,))
    rev = anneal(target, z_post, plan.betas.flip(0), plan.step_sizes.flip(0), leapfrog_steps=3)
    for log_w, sign in ((fwd.log_w, 1.0), (rev.log_w, -1.0)):
        ratio = torch.exp(log_w - sign * exact)  # w / p(x) forward, w p(x) reverse: both mean 1
        assert (log_w.var(0) > 0.1).all() and ((log_w - sign * exact).mean(0) < -0.05).all()
        se = ratio.std(0) / math.sqrt(2000)
        assert ((ratio.mean(0) - 1).abs() < 4 * se + 0.01).all(), (ratio.mean(0), se)


def test_sharp_posterior_new_schedule_within_its_error_bar_old_schedule_far_off():
    m = _sharp_ppca()
    x = m.simulate(4, seed=3)
    exact = m.log_evidence(x)
    pyro.set_rng_seed(0)
    new = ais(m.target(x), num_chains=16, num_steps=200, leapfrog_steps=5)
    err = new.log_px - exact
    assert (err.abs() < 3 * new.se + 0.1).all(), (err, new.se)
    assert new.info["schedule"] == "adaptive" and new.info["pilot_chains"] == 4
    pyro.set_rng_seed(0)
    old = ais(m.target(x), num_chains=16, num_steps=200, leapfrog_steps=5, schedule="sigmoid", pilot_chains=0)
    # the plain sigmoid's first steps (1.5e-4 at 1000 steps, each next one doubling beta) leave log
    # weights that vary by hundreds of nats: every point is flagged, and the estimates are far off
    assert old.per_point["log_weight_var"].min() > 100 * new.per_point["log_weight_var"].max()
    assert old.flag_counts() == {"ais-variance": 4}
    assert (old.log_px - exact).mean() < err.mean() - 1.0


@pytest.mark.slow
def test_ais_is_one_sided_on_the_sharp_posterior_over_seeds():
    m = _sharp_ppca()
    errs, ses, trusted = [], [], []
    for seed in range(5):
        x = m.simulate(8, seed=10 + seed)
        pyro.set_rng_seed(seed)
        r = ais(m.target(x), num_chains=16, num_steps=500, leapfrog_steps=5)
        errs.append(r.log_px - m.log_evidence(x))
        ses.append(r.se)
        trusted.append(r.trusted)
    err, se, ok = torch.cat(errs), torch.cat(ses), torch.cat(trusted)
    assert (err < 3 * se + 0.05).all(), (err, se)  # never above the truth beyond its error bar
    # unflagged points within 4 se (40 points: a 3.3 se draw happens; the 16-chain se is itself noisy)
    assert (err[ok].abs() < 4 * se[ok] + 0.1).all() and ok.sum() >= 20, (err, se, ok)
    assert -0.3 < float(err.mean()) < 3 * float(se.square().mean().sqrt() / math.sqrt(err.numel()))


def test_ais_on_a_folded_posterior_matches_quadrature_and_visits_both_modes():
    dec = FoldedDecoder.random(s=0.2, k=1.0)  # the decoder sees z1 only through |z1|
    x = dec.simulate(torch.tensor([[2.0, 0.5], [1.5, -1.0], [-2.5, 0.0]], dtype=torch.float64))
    pyro.set_rng_seed(0)
    r, z = ais(dec.target(x), num_chains=16, num_steps=200, leapfrog_steps=5, return_states=True)
    err = r.log_px - dec.log_evidence(x)
    assert (err.abs() < 3 * r.se + 0.1).all(), (err, r.se)
    assert z.shape == (16, 3, 2)
    left = float((z[..., 0] < 0).double().mean())  # two modes of equal mass: about half the chains in each
    assert 0.25 < left < 0.75


@pytest.mark.slow
def test_diagonal_mass_from_the_encoder_variance():
    pyro.set_rng_seed(1)
    m = PPCA.random(obs_dim=12, latent_dim=3, s=0.5, seed=2)
    m.W[:, 0] *= 4.0  # an anisotropic posterior: sds 0.04 to 0.15
    x = m.simulate(4)
    _, cov = m.posterior(x)
    var = cov.diagonal().expand(4, 3) * 1.3  # an encoder's variance: the right scale, a little wide
    r = ais(m.target(x), num_chains=16, num_steps=1000, leapfrog_steps=5, posterior_variance=var)
    err = r.log_px - m.log_evidence(x)
    assert (err.abs() < 3 * r.se + 0.1).all() and r.info["diagonal_mass"]


def test_tiny_runs_stay_finite_and_adaptive_needs_a_pilot():
    m = PPCA.random(obs_dim=6, latent_dim=2, s=0.3)
    target = m.target(m.simulate(2))
    for steps in (1, 2, 3):
        for chains, pilot in ((1, None), (2, 1)):
            r = ais(target, chains, steps, 2, pilot_chains=pilot)
            assert torch.isfinite(r.log_px).all() and r.log_px.shape == (2,)
    with pytest.raises(ValueError, match="pilot"):
        ais(target, 4, 10, 2, pilot_chains=0)  # the adaptive schedule is made by the pilot


def _adaptive_stop_runs(seeds: range) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Errors against the exact PPCA value, se and chains per point of adaptive-stop AIS runs."""
    m = PPCA.random(obs_dim=6, latent_dim=2, s=1.0, seed=4)
    errs, ses, chains = [], [], []
    for seed in seeds:
        x = m.simulate(6, seed=20 + seed)
        pyro.set_rng_seed(seed)
        r = ais(m.target(x), num_chains=4, num_steps=200, leapfrog_steps=3, target_se=0.1, max_chains=64)
        # every point reached the target on at least 8 chains or used every chain it was allowed
        reached = r.se <= 0.1
        assert (reached & (r.per_point["chains"] >= 8) | (r.per_point["chains"] + 4 > 64)).all()
        assert [("se-above-target" in f) for f in r.flags] == (~reached).tolist()
        assert r.info["chains_total"] == int(r.per_point["chains"].sum()) and r.info["target_se"] == 0.1
        errs.append(r.log_px - m.log_evidence(x))
        ses.append(r.se)
        chains.append(r.per_point["chains"])
    return torch.cat(errs), torch.cat(ses), torch.cat(chains)


def test_adaptive_stop_adds_chains_where_the_error_bar_is_wide():
    err, se, c = _adaptive_stop_runs(range(1))
    assert c.min() >= 8 and c.max() > c.min() and (c % 4 == 0).all(), c  # chains went where needed
    assert (err < 4 * se + 0.1).all(), (err, se)


@pytest.mark.slow
def test_adaptive_stop_stays_one_sided_over_seeds():
    # the stop looks at the weights (a sequential rule); over 48 points the pooled estimate must stay
    # a lower bound: no point far above the truth, and the mean error not above its own noise
    err, se, _ = _adaptive_stop_runs(range(8))
    assert (err < 4 * se + 0.1).all(), (err, se)
    assert float(err.mean()) < 2 * float(err.std() / math.sqrt(err.numel()))
    assert float(err.mean()) > -0.1  # and not far below: 200 steps suffice on this posterior


def test_adaptive_stop_gives_up_at_max_chains_with_a_flag():
    m = _sharp_ppca()
    x = m.simulate(3, seed=5)
    pyro.set_rng_seed(0)
    r = ais(m.target(x), num_chains=2, num_steps=5, leapfrog_steps=2, target_se=1e-4, max_chains=6)
    assert r.per_point["chains"].tolist() == [6.0, 6.0, 6.0]
    assert all("se-above-target" in f for f in r.flags) and r.info["num_se_above_target"] == 3
    with pytest.raises(ValueError, match="frozen plan"):
        ais(m.target(x), 2, 5, 2, schedule="sigmoid", pilot_chains=0, target_se=0.1)
