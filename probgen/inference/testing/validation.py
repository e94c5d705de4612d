"""Scoring log p(x) estimates against exact values: issue 21's "done" criteria and the coverage of error bars.

Per estimator, on points whose exact log p(x) is known (:mod:`probgen.inference.testing`):

- no unflagged point is off by more than :data:`MAX_UNFLAGGED_ERROR` nats;
- the mean error over unflagged points is within :data:`MAX_MEAN_ERROR` nats;
- at most :data:`MAX_FLAGGED_FRACTION` of the points are flagged;
- a lower bound (ELBO, IWAE, AIS, ais-laplace, BDMC's forward AIS) is never above the exact value by
  more than ``3 se + 0.1`` nats, flagged or not (one-sided: being far below is the first criterion's job).

Coverage (:func:`coverage`): from many independent estimates of the same point, the fraction whose
error is below 2 se (at least :data:`MIN_WITHIN_2SE`) and var(estimate) / mean(se^2) (within
:data:`VARIANCE_RATIO`): an se that is right on average and for most estimates.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from probgen.inference.loglik.result import LoglikResult
from probgen.inference.loglik.trust import LOWER

__all__ = [
    "MAX_FLAGGED_FRACTION",
    "MAX_MEAN_ERROR",
    "MAX_UNFLAGGED_ERROR",
    "MIN_WITHIN_2SE",
    "VARIANCE_RATIO",
    "coverage",
    "coverage_failures",
    "failures",
    "score",
]

MAX_UNFLAGGED_ERROR = 0.5
MAX_MEAN_ERROR = 0.15
MAX_FLAGGED_FRACTION = 0.25
#: a lower bound may exceed the exact value by at most ABOVE_SE x se + ABOVE_TOL nats
ABOVE_SE, ABOVE_TOL = 3.0, 0.1
MIN_WITHIN_2SE = 0.9
VARIANCE_RATIO = (0.75, 1.33)


def score(result: LoglikResult, exact: torch.Tensor) -> dict[str, Any]:
    """One estimator's result against the exact log p(x) (N,): errors (estimate - exact, nats) over all
    and unflagged points, the worst point, flag counts by reason, and for a lower bound the largest
    excess over exact in units of se (``max_above_in_se``: (error - 0.1) / se, over every point)."""
    err = (result.log_px.double().cpu() - exact.double().cpu()).tolist()
    ok = result.trusted.cpu().tolist()
    un = [e for e, o in zip(err, ok) if o]
    reasons: dict[str, int] = {}
    for f in result.flags:
        for r in f:
            reasons[r] = reasons.get(r, 0) + 1
    row: dict[str, Any] = {
        "estimator": result.method,
        "points": len(err),
        "flagged": len(err) - len(un),
        "flag_reasons": reasons,
        "mean_error": sum(err) / len(err),
        "mean_error_unflagged": sum(un) / len(un) if un else math.nan,
        "worst_error": max(err, key=abs),
        "worst_unflagged": max(un, key=abs) if un else math.nan,
        "unflagged_off_by_0.5": sum(abs(e) > MAX_UNFLAGGED_ERROR for e in un),
        "lower_bound": result.method in LOWER,
    }
    if result.method in LOWER:
        se = result.se.double().cpu() if result.se is not None else torch.full((len(err),), math.nan)
        excess = (torch.tensor(err, dtype=torch.float64) - ABOVE_TOL) / se
        excess = torch.where(torch.isnan(excess), torch.full_like(excess, math.inf), excess)  # no se: no allowance
        above = torch.tensor(err, dtype=torch.float64) > ABOVE_TOL
        row["max_above_in_se"] = float(excess[above].max()) if above.any() else -math.inf
        row["above_beyond_3se"] = int((above & (excess > ABOVE_SE)).sum())
    return row


def failures(row: dict[str, Any]) -> list[str]:
    """The criteria (module docstring) that a :func:`score` row fails, one line each (empty: it passes)."""
    name, n = row["estimator"], row["points"]
    out = []
    if row["unflagged_off_by_0.5"]:
        out.append(f"{name}: {row['unflagged_off_by_0.5']} unflagged point(s) off by > {MAX_UNFLAGGED_ERROR} nats "
                   f"(worst {row['worst_unflagged']:+.3f})")  # fmt: skip
    if not math.isnan(row["mean_error_unflagged"]) and abs(row["mean_error_unflagged"]) > MAX_MEAN_ERROR:
        out.append(f"{name}: unflagged mean error {row['mean_error_unflagged']:+.3f} beyond {MAX_MEAN_ERROR}")
    if row["flagged"] > MAX_FLAGGED_FRACTION * n:
        out.append(f"{name}: {row['flagged']}/{n} flagged (> {MAX_FLAGGED_FRACTION:.0%}) {row['flag_reasons']}")
    if row.get("above_beyond_3se"):
        out.append(f"{name}: {row['above_beyond_3se']} point(s) above exact beyond {ABOVE_SE:g} se + {ABOVE_TOL:g} "
                   f"(worst {row['max_above_in_se']:.1f} se)")  # fmt: skip
    return out


def coverage(estimates: torch.Tensor, se: torch.Tensor, exact: float | torch.Tensor) -> dict[str, float]:
    """Calibration of error bars from R independent estimates (R,) of one point, with their se (R,):
    ``within_2se`` (the fraction with |estimate - exact| < 2 se), ``variance_ratio`` (var(estimate) /
    mean(se^2)), ``bias`` (mean estimate - exact, nats) and ``bias_in_se`` (bias / sd of the mean)."""
    est, se = estimates.double().cpu(), se.double().cpu()
    exact_t = torch.as_tensor(exact, dtype=torch.float64).cpu()
    err = est - exact_t
    r = est.numel()
    return {
        "repeats": r,
        "within_2se": float((err.abs() < 2 * se).double().mean()),
        "variance_ratio": float(est.var() / se.square().mean()),
        "bias": float(err.mean()),
        "bias_in_se": float(err.mean() / (est.std() / math.sqrt(r))),
        "mean_se": float(se.mean()),
    }


def coverage_failures(name: str, cov: dict[str, float]) -> list[str]:
    """The coverage criteria (module docstring) that a :func:`coverage` summary fails, one line each."""
    out = []
    if not cov["within_2se"] >= MIN_WITHIN_2SE:
        out.append(f"{name}: {cov['within_2se']:.1%} of |error| < 2 se (need >= {MIN_WITHIN_2SE:.0%}); "
                   f"bias {cov['bias']:+.4f} nats, mean se {cov['mean_se']:.4f}")  # fmt: skip
    lo, hi = VARIANCE_RATIO
    if not lo <= cov["variance_ratio"] <= hi:
        out.append(f"{name}: var(estimate) / mean(se^2) = {cov['variance_ratio']:.2f}, outside [{lo}, {hi}]")
    return out
