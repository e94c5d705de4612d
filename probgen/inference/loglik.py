"""Marginal log-likelihood estimators: ELBO, IWAE, Kingma & Welling's Appendix D, and AIS.

All are pure functions of a :class:`~probgen.inference.potential.LatentTarget` (batched log p(z) and
log p(x | z) of N data points) and, for ELBO/IWAE, the encoder's q(z | x). Each returns a
:class:`LoglikResult` with log p(x) per data point in nats.

In expectation ELBO <= IWAE(k) <= log p(x) (Burda et al. 2016), and AIS is a stochastic lower bound
(Neal 2001; Wu et al. 2017). Appendix D (Kingma & Welling 2013) estimates 1/p(x) without bias, so its
log is a stochastic *upper* bound; its authors trust it for latent dimension < 5 only.
"""

from __future__ import annotations

import math
from typing import Any

import pyro
import torch

from probgen.inference.ais import ais, sigmoid_schedule
from probgen.inference.hmc import HMCResult, run_hmc
from probgen.inference.potential import LatentTarget
from probgen.inference.result import FLAG_REASONS, LoglikResult, _logmeanexp, _result
from probgen.utils.progress import progress as progress_bar

__all__ = [
    "FLAG_REASONS",
    "LoglikResult",
    "ais",
    "appendix_d",
    "appendix_d_from_samples",
    "elbo_iwae",
    "fit_gaussian",
    "ordering_warnings",
    "sigmoid_schedule",
]


@torch.no_grad()
def _log_weights(
    target: LatentTarget,
    z: torch.Tensor,
    log_q: torch.Tensor,
    chunk: int,
) -> torch.Tensor:
    """log p(z) + log p(x | z) - log q(z) for z (K, N, D), evaluated K-chunk by K-chunk; returns (K, N)."""
    out = []
    with pyro.validation_enabled(False):  # argument checks cost Python time per call and check nothing new
        for start in range(0, z.shape[0], chunk):
            lp, ll = target.log_joint(z[start : start + chunk])
            out.append(lp + ll - log_q[start : start + chunk])
    return torch.cat(out)


@torch.no_grad()
def elbo_iwae(
    target: LatentTarget,
    proposal: torch.distributions.Distribution,
    num_samples: int = 5000,
    max_batch: int = 4096,
    progress: bool = False,
) -> tuple[LoglikResult, LoglikResult]:
    """ELBO and IWAE bound from the same ``num_samples`` draws of the encoder q(z | x) per point.

    ``proposal`` has batch shape (N,) and event shape (D,). Draws are made and scored
    ``max_batch // N`` at a time, so that memory stays bounded whatever k is. ELBO = mean of the log
    weights; IWAE_k = log of their mean (Burda et al. 2016).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    per_chunk = max(1, max_batch // target.num_data)
    log_w = []
    done = 0
    with progress_bar(total=num_samples, desc="IWAE", enabled=progress) as bar:
        while done < num_samples:
            k = min(per_chunk, num_samples - done)
            z = proposal.sample((k,))  # (k, N, D)
            log_w.append(_log_weights(target, z, proposal.log_prob(z), k))
            done += k
            bar.update(k)
    lw = torch.cat(log_w)  # (K, N)
    ess = torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0))
    info = {"num_samples": num_samples}
    return (
        _result("elbo", lw.mean(0), target, **info),
        _result("iwae", _logmeanexp(lw, 0), target, **info, weights_ess_mean=float(ess.mean())),
    )


def fit_gaussian(samples: torch.Tensor, shrink: float) -> torch.distributions.MultivariateNormal:
    """Per-point full-covariance Gaussian fit to samples (C, S, N, D), covariance scaled by ``shrink``.

    ``shrink`` < 1 makes q lighter-tailed than a Gaussian posterior of the same covariance, which the
    Appendix D estimator needs for finite variance (q^2 / p(z | x) must be integrable).
    """
    c, s, n, d = samples.shape
    z = samples.reshape(c * s, n, d).double()
    mean = z.mean(0)  # (N, D)
    centred = z - mean
    cov = torch.einsum("knd,kne->nde", centred, centred) / (c * s - 1)  # (N, D, D)
    jitter = 1e-6 * cov.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)
    cov = cov + jitter[:, None, None] * torch.eye(d, dtype=cov.dtype, device=cov.device)
    return torch.distributions.MultivariateNormal(mean, covariance_matrix=shrink * cov)


def appendix_d_from_samples(
    target: LatentTarget, run: HMCResult, num_fit: int, shrink: float = 0.8, **info: Any
) -> LoglikResult:
    """Stages 2 and 3 of Appendix D on posterior chains ``run`` (samples (C, S, N, D)).

    The first ``num_fit`` draws of each chain fit q; the remaining ones estimate
    log p(x) = -logmeanexp(log q(z) - log p(z) - log p(x|z)), with -log p(z, x) read from
    ``run.potential``, so no decoder pass is needed.
    """
    if not 0 < shrink <= 1:
        raise ValueError(f"shrink must be in (0, 1], got {shrink}")
    c, s, n, _ = run.samples.shape
    if not 2 <= num_fit < s:
        raise ValueError(f"num_fit must be in [2, {s}), got {num_fit}")
    q = fit_gaussian(run.samples[:, :num_fit], shrink)
    fresh = run.samples[:, num_fit:]
    log_q = q.log_prob(fresh.double())  # (C, S', N)
    log_ratio = log_q + run.potential[:, num_fit:].double()  # log q - log p(z) - log p(x|z)
    log_px = -_logmeanexp(log_ratio.reshape(-1, n), 0)
    info = {"chains": c, "fit_draws": num_fit, "estimate_draws": s - num_fit, "shrink": shrink, **info}
    return _result("appendix-d", log_px, target, **info)


def appendix_d(
    target: LatentTarget,
    z0: torch.Tensor,
    num_warmup: int,
    num_samples: int,
    shrink: float = 0.8,
    progress: bool = False,
    **hmc_options: Any,
) -> tuple[LoglikResult, HMCResult]:
    """Kingma & Welling (2013), Appendix D: log p(x) from posterior samples and a fitted density.

    1. Run :func:`run_hmc` from z0 (C, N, D) for ``num_warmup`` + 2 x ``num_samples`` transitions.
    2. Fit q(z) = N(mean, shrink x cov) per point to the first ``num_samples`` draws of each chain.
    3. With the next ``num_samples`` draws (fresh, not used by the fit):
       1/p(x) = E_{p(z|x)}[q(z) / (p(z) p(x|z))], so log p(x) = -logmeanexp(log q - log p(z) - log p(x|z)).

    Returns the estimate and the HMC run of both stages (for diagnostics).
    """
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples}")
    run = run_hmc(target.potential(), z0, num_warmup, 2 * num_samples, progress=progress, desc="HMC", **hmc_options)
    return appendix_d_from_samples(
        target, run, num_samples, shrink, warmup=num_warmup, leapfrog_steps=run.num_steps
    ), run


def _paired(a: LoglikResult, b: LoglikResult) -> tuple[float, float]:
    """Mean and standard error of the per-point difference a - b."""
    d = a.log_px - b.log_px
    se = float(d.std() / math.sqrt(d.numel())) if d.numel() > 1 else 0.0
    return float(d.mean()), se


def ordering_warnings(
    results: dict[str, LoglikResult], latent_dim: int, num_se: float = 3.0, tol: float = 0.05
) -> list[str]:
    """Warnings for ELBO <= IWAE <= AIS violated beyond noise, and for Appendix D at latent dim >= 5.

    A pair (lower, upper) is violated when mean(lower - upper) over the same points exceeds
    ``num_se`` paired standard errors plus ``tol`` nats.
    """
    out = []
    order = [m for m in ("elbo", "iwae", "ais") if m in results]
    for lo, hi in zip(order, order[1:]):
        diff, se = _paired(results[lo], results[hi])
        if diff > num_se * se + tol:
            out.append(
                f"{lo} exceeds {hi} by {diff:.3f} +- {se:.3f} nats: expected {lo} <= {hi}; "
                f"the {hi} estimate has too few samples/steps or its chains did not mix"
            )
    if "appendix-d" in results and latent_dim >= 5:
        out.append(
            f"appendix-d at latent dimension {latent_dim}: Kingma & Welling trust it only below 5 "
            "dimensions; compare with --method ais"
        )
    return out
