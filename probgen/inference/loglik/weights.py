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

__all__ = ["KHAT_MAX", "log_mean_se", "pareto_khat"]

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
