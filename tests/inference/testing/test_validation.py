"""The scoring of estimates against exact values (issue 21's criteria) and of error bars (coverage)."""

import math

import torch

from probgen.inference import LoglikResult
from probgen.inference.testing.validation import coverage, coverage_failures, failures, score


def _result(method, err, se, flags=None):
    exact = torch.linspace(-30.0, -20.0, len(err), dtype=torch.float64)
    est = exact + torch.tensor(err, dtype=torch.float64)
    r = LoglikResult(method, est, 1, se=torch.tensor(se, dtype=torch.float64), flags=flags)
    return r, exact


def test_a_result_within_every_criterion_passes():
    r, exact = _result("ais-laplace", [0.05, -0.1, 0.0, -0.2], [0.05] * 4, [[], [], [], ["ais-variance"]])
    row = score(r, exact)
    assert row["flagged"] == 1 and row["flag_reasons"] == {"ais-variance": 1}
    assert math.isclose(row["mean_error_unflagged"], -0.05 / 3) and math.isclose(row["worst_unflagged"], -0.1)
    assert row["lower_bound"] and row["above_beyond_3se"] == 0 and failures(row) == []


def test_each_criterion_fails_on_its_own():
    # an unflagged point 0.6 nats low (also pulls the unflagged mean beyond 0.15)
    row = score(*_result("appendix-d", [0.0, -0.6, 0.0, 0.0], [0.01] * 4))
    assert [f.split(":")[1].split()[1] for f in failures(row)] == ["unflagged", "mean"]
    assert not row["lower_bound"] and "above_beyond_3se" not in row  # Appendix D is not a lower bound
    # an unflagged mean of -0.2 with no single point beyond 0.5
    assert "unflagged mean error -0.200" in failures(score(*_result("ais", [-0.2] * 4, [0.1] * 4)))[0]
    # two of four flagged: more than a quarter, even though every estimate is right
    flagged = failures(score(*_result("ais", [0.0] * 4, [0.1] * 4, [["rhat"], ["ess"], [], []])))
    assert flagged == ["ais: 2/4 flagged (> 25%) {'rhat': 1, 'ess': 1}"]


def test_a_lower_bound_above_exact_fails_flagged_or_not_but_only_beyond_3_se_plus_tol():
    row = score(*_result("iwae", [0.1 + 2.9 * 0.1, -0.3], [0.1, 0.1]))  # 2.9 se above: allowed
    assert row["above_beyond_3se"] == 0 and failures(row) == []
    row = score(*_result("iwae", [0.1 + 3.2 * 0.1, 0.0], [0.1, 0.1], [["heavy-tailed-weights"], []]))
    assert row["above_beyond_3se"] == 1 and "above exact beyond 3 se + 0.1 (worst 3.2 se)" in failures(row)[-1]
    r, exact = _result("ais", [0.3, 0.0], [0.1, 0.1])
    r.se = None  # no error bar: no allowance beyond the 0.1 nats
    assert score(r, exact)["above_beyond_3se"] == 1


def test_coverage_of_calibrated_error_bars_passes_and_of_wrong_ones_fails():
    g = torch.Generator().manual_seed(0)
    se = 0.1 + 0.05 * torch.rand(4000, generator=g, dtype=torch.float64)
    est = -50.0 + se * torch.randn(4000, generator=g, dtype=torch.float64)
    ok = coverage(est, se, -50.0)
    assert (
        abs(ok["within_2se"] - 0.954) < 0.02
        and abs(ok["variance_ratio"] - 1) < 0.1
        and coverage_failures("x", ok) == []
    )
    small = coverage(est, se / 1.5, -50.0)  # error bars 1.5 x too small
    assert [f.split(" ")[1] for f in coverage_failures("x", small)] == [f"{small['within_2se']:.1%}", "var(estimate)"]
    biased = coverage(est - 0.15, se, -50.0)  # a bias of 1.2 se: too few within 2 se, variance right
    fails = coverage_failures("x", biased)
    assert len(fails) == 1 and "bias -0.15" in fails[0] and biased["bias_in_se"] < -50
