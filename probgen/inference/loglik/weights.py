"""Importance weights per data point: the Monte Carlo error of log-mean-exp estimates, and PSIS k-hat.

IWAE estimates log p(x) = log E_q[w], Appendix D estimates -log p(x) = log E_post[w'] (w' = q / p(x, z)).
Both are the log of a sample mean of positive weights, so their standard error in nats is, by the
delta method, sd(w) / (mean(w) sqrt(n_eff)), with n_eff the number of draws for independent ones
(IWAE) and an effective number for autocorrelated ones (Appendix D: batch means over chains).

That standard error is itself a sample quantity and is unreliable when the weights are heavy-tailed:
then a rare huge weight, not yet drawn, would move the estimate. The Pareto k-hat of the largest
weights (Vehtari et al. 2024, "Pareto smoothed importance sampling", through ArviZ's ``psislw``)
measures that: k-hat > 0.7 means the variance of the weights is (or behaves as if) infinite and the
estimate and its error bar cannot be trusted; such points are flagged ``heavy-tailed-weights``.
"""

from __future__ import annotations

import math
import warnings

import arviz as az
import numpy as np
import torch

__all__ = ["KHAT_MAX", "log_mean_se", "log_weight_summary", "pareto_khat"]

#: Pareto k-hat above which a point's weights are flagged ``heavy-tailed-weights`` (Vehtari et al. 2024).
KHAT_MAX = 0.7


def log_mean_se(log_w: torch.Tensor, dim: int = 0, n_eff: torch.Tensor | float | None = None) -> torch.Tensor:
    """Standard error, in nats, of log(mean(exp(log_w))) along ``dim`` (delta method).

    se = sd(w) / (mean(w) sqrt(n_eff)); n_eff defaults to the number of draws (independent draws).
    Computed from weights scaled by their maximum, so that it never overflows.
    """
    lw = log_w.double()
    n = lw.shape[dim]
    w = torch.exp(lw - lw.amax(dim, keepdim=True))
    mean = w.mean(dim)
    var = w.var(dim, correction=1) if n > 1 else torch.zeros_like(mean)
    n_eff = float(n) if n_eff is None else n_eff
    return (var / n_eff).sqrt() / mean


def pareto_khat(log_w: torch.Tensor, reff: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Pareto k-hat of the weights of each point: ``log_w`` is (K, N) with draws along dim 0.

    ArviZ's ``psislw`` fits a generalised Pareto distribution to the largest 20% (at most
    3 sqrt(K / reff)) weights; ``reff`` (a float or (N,)) is the relative efficiency ESS / K of
    autocorrelated draws. Returns k-hat (N,) as float64: -inf where all weights are equal (the
    estimate is exact), NaN where there are too few draws for a fit (ArviZ needs > 4 tail draws, so
    K >~ 25); NaN and -inf never flag.
    """
    lw = log_w.detach().double().cpu().numpy()
    n = lw.shape[1]
    reffs = np.broadcast_to(np.asarray(reff.cpu() if isinstance(reff, torch.Tensor) else reff, dtype=float), (n,))
    out = np.empty(n)
    for i in range(n):
        col = lw[:, i]
        finite = col[np.isfinite(col)]
        if finite.size and finite.max() - finite.min() < 1e-10 and finite.size == col.size:
            out[i] = -math.inf
            continue
        with warnings.catch_warnings():  # ArviZ warns on k-hat > 0.7; the caller flags it instead
            warnings.simplefilter("ignore")
            _, k = az.psislw(col.copy(), reff=float(np.clip(reffs[i], 1e-3, 1.0)))
        out[i] = float(k) if np.isfinite(k) else math.nan
    return torch.from_numpy(out)


def _log_normal_se(var: torch.Tensor, chains: torch.Tensor | int) -> torch.Tensor:
    """sqrt((e^var - 1) / C): the se of log mean(w) for log-normal weights of log-variance ``var``."""
    return torch.sqrt(torch.expm1(var) / chains)


def _upper_var(lw: torch.Tensor) -> torch.Tensor:
    """Per point (N,), from log weights (C, N) (NaN where a row holds no chain): the mean square of the
    values above their median, about the median (sigma^2 for normal log weights; robust to chains far
    below the rest). 0 where no value lies above the median."""
    med = lw.nanmedian(0).values
    dev = lw - med
    up = dev > 0  # NaN compares False
    return torch.where(up, dev.square(), 0.0).sum(0) / up.sum(0).clamp_min(1)


def log_weight_summary(log_w: torch.Tensor, counts: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per point, from log weights (C, N): the variance of the log weights, the weights' effective
    number of chains (sum w)^2 / sum w^2, and the standard error of log mean(w) by the delta method.

    ``counts`` (N,), when given, says how many of the C rows hold each point's weights (the first
    ones; the rest are padding, -inf), as after an adaptive stop.

    With w normalised by the largest weight, se(log mean w) ~ sd(w) / (sqrt(C) mean(w)), which in
    terms of the ESS is sqrt((C / ESS - 1) / (C - 1)). It is itself an estimate from C chains: with
    few chains, or heavy-tailed weights whose large values no chain has drawn yet, it is noisy and
    tends to be too small (sd(w) is then read off the few weights drawn). So the se is the larger of
    that and sqrt((e^{s^2} - 1) / C), its value for log-normal weights of log-weight variance s^2,
    which an undrawn large weight does not shrink. s^2 is read off the upper half of the chains (the
    mean square of the log weights above their median, about the median: sigma^2 for a normal), since
    the se is about the weights' right tail: a chain stuck far below the others (a low log weight)
    hardly moves log mean(w), yet it would inflate the plain variance, and through e^{s^2} the se, by
    orders of magnitude (measured: 2 of 400 repeats of a latent-2 point, with se in the hundreds).
    ``log_weight_var`` is the plain variance, which :func:`ais` flags when it is large.
    """
    lw = log_w.double()
    ess = torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0))
    if counts is None:
        c = log_w.shape[0]
        if c < 2:
            nan = torch.full_like(ess, math.nan)
            return {"log_weight_var": nan, "weights_ess": ess, "se": nan}
        var = lw.var(0)
        se = torch.maximum(torch.sqrt(((c / ess - 1.0) / (c - 1)).clamp_min(0.0)), _log_normal_se(_upper_var(lw), c))
        return {"log_weight_var": var, "weights_ess": ess, "se": se}
    c = counts.to(lw.device, torch.float64)
    held = torch.arange(lw.shape[0], device=lw.device)[:, None] < c  # (C, N): the rows of each point
    mean = torch.where(held, lw, 0.0).sum(0) / c
    var = torch.where(held, (lw - mean).square(), 0.0).sum(0) / (c - 1)
    upper = _upper_var(torch.where(held, lw, math.nan))
    se = torch.maximum(torch.sqrt(((c / ess - 1.0) / (c - 1)).clamp_min(0.0)), _log_normal_se(upper, c))
    few = c < 2
    return {"log_weight_var": var.masked_fill(few, math.nan), "weights_ess": ess, "se": se.masked_fill(few, math.nan)}
