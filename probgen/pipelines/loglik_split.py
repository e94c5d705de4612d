"""The split's mean log p(x) with a 95% interval: a two-phase difference estimator.

Phase 1 scores a simple random sample S1 of n1 of the split's N points with a cheap bound y_i
(IWAE with few samples); phase 2 scores a simple random subsample S2 of S1 (n2 points) with the
trusted estimators, t_i. With the gap g_i = t_i - y_i,

    mu^ = mean_{S1}(y) + mean_{S2}(g),

the difference estimator of two-phase sampling (Cochran 1977, ch. 12; Sarndal et al. 1992, 9.3). Its
variance, for sampling without replacement in both phases and Monte Carlo noise independent across
points (derivation in docs/loglik.md, "The split's mean"), is

    V = (1/n1 - 1/N) S_t^2 + (1/n2 - 1/n1) S_g^2 + sigma^2 / N

estimated with S_t^2 ~ s_y^2 (over S1) + s_g^2 + 2 s_yg (over S2), S_g^2 ~ s_g^2, and sigma^2 ~ the
mean over S2 of the trusted estimates' squared standard errors. The sample variances are of the
noisy per-point values, so they already hold the Monte Carlo noise; the last term puts back the part
of it that the finite-population factors (1/n - 1/N) take out: a split scored in full still has the
noise of its per-point estimates. The interval is mu^ +- t_{0.975, df} sqrt(V), with df from
Welch-Satterthwaite over the two sampled terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from scipy import stats

__all__ = ["SplitMean", "deep_values", "two_phase_mean"]

#: the trusted estimators in the order their unflagged value is taken for the gap
PREFERENCE = ("ais-laplace", "appendix-d")
#: estimators whose value is a stochastic lower bound on log p(x) (the conservative value of a point
#: that no trusted estimator may score)
LOWER_BOUNDS = ("ais-laplace", "iwae")


@dataclass
class SplitMean:
    """The two-phase estimate: tensors of the batch shape of the inputs (scalars for one run).

    ``lo``/``hi`` are the 95% interval, ``hi`` including ``widening`` (the flagged deep points' allowance,
    see :func:`deep_values`); ``variance`` = ``phase1 + phase2 + mc`` (its three terms); ``df`` the
    Welch-Satterthwaite degrees of freedom of the t quantile.
    """

    log_px: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    variance: torch.Tensor
    phase1: torch.Tensor
    phase2: torch.Tensor
    mc: torch.Tensor
    df: torch.Tensor
    n_cheap: int
    n_deep: int
    population: int
    widening: torch.Tensor


def two_phase_mean(
    cheap: torch.Tensor,
    cheap_deep: torch.Tensor,
    trusted: torch.Tensor,
    trusted_se: torch.Tensor,
    population: int,
    widening: torch.Tensor | float = 0.0,
    level: float = 0.95,
) -> SplitMean:
    """The difference estimator of the population mean of log p(x) and its ``level`` interval.

    ``cheap`` (..., n1): the cheap bound on the phase-1 sample; ``cheap_deep``, ``trusted`` and
    ``trusted_se`` (..., n2): on the phase-2 subsample, its cheap values, trusted values and their
    Monte Carlo standard errors (nats). ``population``: N, the size of the split (n1 = N: the whole
    split was scored cheaply). ``widening`` (...) is added to the interval's upper end. Leading
    dimensions are independent repeats (batched). Needs n2 >= 2.
    """
    n1, n2 = cheap.shape[-1], trusted.shape[-1]
    if n2 < 2 or n1 < n2 or population < n1:
        raise ValueError(f"need 2 <= n_deep <= n_cheap <= population, got {n2}, {n1}, {population}")
    cheap, cheap_deep, trusted, se = (v.double() for v in (cheap, cheap_deep, trusted, trusted_se))
    gap = trusted - cheap_deep
    estimate = cheap.mean(-1) + gap.mean(-1)
    s_y = cheap.var(-1) if n1 > 1 else torch.zeros_like(estimate)
    s_g = gap.var(-1)
    s_yg = ((cheap_deep - cheap_deep.mean(-1, keepdim=True)) * (gap - gap.mean(-1, keepdim=True))).sum(-1) / (n2 - 1)
    s_t = (s_y + s_g + 2 * s_yg).clamp(min=0.0)  # the variance of t over the split, estimated
    phase1 = (1 / n1 - 1 / population) * s_t
    phase2 = (1 / n2 - 1 / n1) * s_g
    mc = se.square().mean(-1) / population
    variance = phase1 + phase2 + mc
    # Welch-Satterthwaite: the MC term counts as known (its se come from many draws per point)
    denom = phase1.square() / max(n1 - 1, 1) + phase2.square() / (n2 - 1)
    df = torch.where(denom > 0, variance.square() / denom.clamp(min=1e-300), torch.full_like(variance, math.inf))
    quantile = torch.as_tensor(stats.t.ppf(0.5 + level / 2, df.numpy()), dtype=torch.float64)
    half = quantile * variance.sqrt()
    widening = torch.as_tensor(widening, dtype=torch.float64)
    return SplitMean(
        estimate, estimate - half, estimate + half + widening, variance, phase1, phase2, mc, df, n1, n2, population,
        widening,
    )  # fmt: skip


def deep_values(
    values: dict[str, torch.Tensor], se: dict[str, torch.Tensor], trusted: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Per deep point (n2,): the value that enters the gap, its se, the upper allowance, and its source.

    ``values``, ``se`` and ``trusted`` (bool, unflagged) map method names (``iwae``, ``ais-laplace``,
    ``appendix-d``) to (n2,) tensors. Where an estimator of :data:`PREFERENCE` is unflagged its value
    is taken (the first in that order), with allowance 0. Where every one is flagged, the point gets
    its most conservative value: the highest of the lower bounds (:data:`LOWER_BOUNDS`: IWAE, AIS
    from a Laplace fit), which log p(x) exceeds but for a rare large weight, so the mean is biased
    down, never up; its allowance is how far the highest of all its estimates lies above that, and
    the mean of the allowances over S2 widens the interval's upper end (``flagged`` in the output).
    A NaN se (not known) counts as 0.
    """
    n = next(iter(values.values())).numel()
    value = torch.full((n,), math.nan, dtype=torch.float64)
    err = torch.zeros(n, dtype=torch.float64)
    allowance = torch.zeros(n, dtype=torch.float64)
    source = [""] * n
    lowers = [m for m in LOWER_BOUNDS if m in values]
    for i in range(n):
        pick = next((m for m in PREFERENCE if m in values and bool(trusted[m][i])), None)
        if pick is None:  # no trusted estimate: the highest lower bound, and the spread above it
            pick = max(lowers, key=lambda m: float(values[m][i]))
            allowance[i] = max(float(v[i]) for v in values.values()) - float(values[pick][i])
            source[i] = f"flagged:{pick}"
        else:
            source[i] = pick
        value[i] = float(values[pick][i])
        s = float(se[pick][i]) if pick in se else math.nan
        err[i] = 0.0 if math.isnan(s) else s
    return value, err, allowance, source
