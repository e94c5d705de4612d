import math

import pyro
import pytest
import torch

from probgen.inference.loglik.ais import ais
from probgen.inference.loglik.result import LoglikResult
from probgen.inference.loglik.trust import cross_check, disagreement_threshold
from probgen.inference.testing.folded import FoldedDecoder


def _res(method, values, se=None, flags=None):
    t = lambda v: None if v is None else torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return LoglikResult(method, t(values), data_dim=1, se=t(se), flags=flags)


def test_threshold_is_combined_noise_capped_by_the_markov_bound():
    lo, up = _res("ais", [0.0, 0.0], se=[0.3, 100.0]), _res("appendix-d", [0.0, 0.0], se=[0.4, 0.1])
    thr = disagreement_threshold(lo, up, num_se=3.0, tol=0.1, alpha=1e-3)
    assert thr[0] == pytest.approx(3 * 0.5 + 0.1)
    assert thr[1] == pytest.approx(2 * math.log(2000))  # ~15.2 nats whatever the standard errors say
    unknown = disagreement_threshold(_res("ais", [0.0]), _res("appendix-d", [0.0]))
    assert unknown[0] == pytest.approx(2 * math.log(2000))


def test_missed_mode_fires_where_ais_is_above_appendix_d_beyond_noise():
    # point 0: agree; point 1: AIS 3.9 nats above (the dSprites point of issue 12); point 2: 0.5 above
    # but within 3 combined se (0.2 each: margin 0.95); point 3: 20 nats above with no usable se
    ais = _res("ais", [-10.0, -20.0, -30.0, -40.0], se=[0.05, 0.05, 0.2, math.nan])
    appd = _res("appendix-d", [-10.02, -23.9, -30.5, -60.0], se=[0.01, 0.01, 0.2, 0.01])
    results = {"ais": ais, "appendix-d": appd}
    cross_check(results)
    assert appd.flags == [[], ["missed-mode"], [], ["missed-mode"]]
    assert ais.flags == [[], [], [], []]  # AIS is not accused: its direction of error is known


def test_a_correct_set_of_estimates_gets_no_flag():
    ais = _res("ais", [-10.1, -20.0], se=[0.1, 0.1])
    appd = _res("appendix-d", [-10.0, -19.9], se=[0.05, 0.05])
    iwae = _res("iwae", [-10.3, -20.2], se=[0.1, 0.1])  # below, within 3 combined se + 0.1 (0.44)
    elbo = _res("elbo", [-12.0, -22.0], se=[0.1, 0.1])
    results = {"elbo": elbo, "iwae": iwae, "ais": ais, "appendix-d": appd}
    cross_check(results)
    assert all(r.trusted.all() for r in results.values())


def test_a_lower_bound_above_a_trusted_upper_flags_both_but_not_an_untrusted_one():
    appd = _res("appendix-d", [-10.0, -10.0], se=[0.05, 0.05], flags=[[], ["rhat"]])
    iwae = _res("iwae", [-8.9, -8.9], se=[0.1, 0.1])  # 1.1 nats above on both points
    cross_check({"iwae": iwae, "appendix-d": appd})
    assert appd.flags == [["missed-mode"], ["rhat"]]
    assert iwae.flags == [["heavy-tailed-weights"], []]  # point 1's upper estimate was not trusted


def test_a_lower_estimate_far_below_a_trusted_appendix_d_is_a_loose_bound():
    # point 0: AIS 1.34 nats below (the dSprites point whose 8 AIS chains all ended in one of two
    # modes, weights' variance 0.11); point 1: 0.3 below, within noise; point 2: far below an
    # Appendix D that is itself flagged, which cannot accuse it
    appd = _res("appendix-d", [-91.45, -87.12, -50.0], se=[0.01, 0.01, 0.01], flags=[[], [], ["rhat"]])
    ais = _res("ais", [-92.79, -87.42, -60.0], se=[0.11, 0.1, 0.1])
    iwae = _res("iwae", [-116.7, -87.2, -60.0], se=[0.5, 0.05, 0.1])
    elbo = _res("elbo", [-130.0, -95.0, -70.0], se=[0.1, 0.1, 0.1])
    cross_check({"elbo": elbo, "iwae": iwae, "ais": ais, "appendix-d": appd})
    assert ais.flags == [["loose-bound"], [], []] and iwae.flags == [["loose-bound"], [], []]
    assert appd.flags == [[], [], ["rhat"]] and elbo.trusted.all()  # the ELBO is a bound, not an estimate


def test_a_lower_estimate_far_below_another_trusted_lower_one_is_a_loose_bound():
    # point 0: agree; 1: ais-laplace sat in a lesser basin, 2 nats below trusted AIS; 2: AIS 2 nats
    # below ais-laplace, but AIS is flagged (it accuses no one, and is not accused twice); 3: within noise
    ais = _res("ais", [-10.0, -20.0, -32.0, -40.0], se=[0.1, 0.1, 0.1, 0.3], flags=[[], [], ["ais-variance"], []])
    lap = _res("ais-laplace", [-10.05, -22.0, -30.0, -40.8], se=[0.05, 0.05, 0.05, 0.05])
    iwae = _res("iwae", [-11.0, -21.0, -31.0, -41.0], se=[0.1] * 4, flags=[["heavy-tailed-weights"]] * 4)
    cross_check({"iwae": iwae, "ais": ais, "ais-laplace": lap})
    assert lap.flags == [[], ["loose-bound"], [], []]
    assert ais.flags == [[], [], ["ais-variance", "loose-bound"], []]
    assert all(f == ["heavy-tailed-weights", "loose-bound"] for f in iwae.flags[:3])  # 1 nat below, se 0.14


def test_bdmc_bounds_are_checked_against_each_other():
    lower = _res("bdmc-lower", [-10.0, -9.0], se=[0.05, 0.05])
    upper = _res("bdmc-upper", [-9.9, -10.0], se=[0.05, 0.05])
    cross_check({"bdmc-lower": lower, "bdmc-upper": upper})
    assert lower.flags == [[], ["ais-variance"]] and upper.flags == [[], ["ais-variance"]]


def test_results_on_different_points_are_refused():
    with pytest.raises(ValueError, match="same points"):
        cross_check({"ais": _res("ais", [0.0]), "appendix-d": _res("appendix-d", [0.0, 1.0])})


def test_missed_mode_fires_against_real_ais_on_a_folded_posterior_and_not_when_both_are_right():
    # k = 3: x made at z1* = 3.5 is explained as well at z1 ~ -1.2, a mode with most of the mass.
    # An Appendix D whose chains all sat in the z1 > 0 mode returns at best log p(x, z1 > 0) (taken
    # exactly from quadrature here, with a small se): AIS, which anneals from the prior, sees both.
    dec = FoldedDecoder.random(s=0.2, k=3.0)
    x = dec.simulate(torch.tensor([[3.5, -0.5], [2.5, 0.5]], dtype=torch.float64))
    exact, one_mode = dec.log_evidence(x), dec.log_evidence(x, side=1)
    assert (exact - one_mode > 1.1).all()  # the missed mode is worth > 1.1 nats on both points
    pyro.set_rng_seed(0)
    a = ais(dec.target(x), num_chains=16, num_steps=200, leapfrog_steps=5)
    se = torch.full((2,), 0.02, dtype=torch.float64)
    missed = {"ais": a, "appendix-d": LoglikResult("appendix-d", one_mode, 8, se=se)}
    cross_check(missed)
    assert missed["appendix-d"].flags == [["missed-mode"], ["missed-mode"]]
    a.flags = [[], []]
    right = {"ais": a, "appendix-d": LoglikResult("appendix-d", exact, 8, se=se)}
    cross_check(right)
    assert right["appendix-d"].trusted.all() and a.trusted.all()
