"""The ELBO and IWAE estimates of log p(x), and the check of the estimators' expected order.

Pure functions of a :class:`~probgen.inference.mcmc.potential.LatentTarget` (batched log p(z) and
log p(x | z) of N data points) and the encoder's q(z | x). Each returns a :class:`LoglikResult` with
log p(x) per data point in nats.

In expectation ELBO <= IWAE(k) <= log p(x) (Burda et al. 2016), and AIS (``loglik/ais.py``) is a
stochastic lower bound (Neal 2001; Wu et al. 2017). Appendix D (Kingma & Welling 2013,
``loglik/appendix_d.py``) estimates 1/p(x) without bias, so its log is a stochastic *upper* bound; its
authors trust it for latent dimension < 5 only.
"""

from __future__ import annotations

import math

import pyro
import torch

from probgen.config.estimators import IWAESettings
from probgen.inference.loglik.result import LoglikResult, _logmeanexp, _result
from probgen.inference.loglik.weights import KHAT_MAX, log_mean_se, pareto_khat
from probgen.inference.mcmc.potential import LatentTarget
from probgen.utils.progress import progress as progress_bar

__all__ = ["elbo_iwae", "ordering_warnings"]


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
    num_samples: int = IWAESettings.samples,
    max_batch: int = IWAESettings.max_batch,
    progress: bool = False,
) -> tuple[LoglikResult, LoglikResult]:
    """ELBO and IWAE bound from the same ``num_samples`` draws of the encoder q(z | x) per point.

    ``proposal`` has batch shape (N,) and event shape (D,). Draws are made and scored
    ``max_batch // N`` at a time, so that memory stays bounded whatever k is. ELBO = mean of the log
    weights; IWAE_k = log of their mean (Burda et al. 2016).

    Standard errors: the ELBO's is sd(log w) / sqrt(k); IWAE's is the delta method's
    sd(w) / (mean(w) sqrt(k)) (:func:`~probgen.inference.loglik.weights.log_mean_se`). IWAE points whose
    weights have Pareto k-hat > 0.7 are flagged ``heavy-tailed-weights`` (their se is unreliable, and
    a weight not yet drawn could move the estimate; per_point ``khat``, ``weights_ess``). The ELBO is
    a bound however heavy the tails are (it averages log weights), so it is not flagged for them.
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
    lw = torch.cat(log_w).double()  # (K, N)
    ess = torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0))
    info = {"num_samples": num_samples}
    elbo = _result("elbo", lw.mean(0), target, **info)
    elbo.se = (lw.std(0) / math.sqrt(num_samples)).cpu() if num_samples > 1 else torch.full_like(elbo.log_px, math.nan)
    iwae = _result("iwae", _logmeanexp(lw, 0), target, **info, weights_ess_mean=float(ess.mean()))
    iwae.se = log_mean_se(lw, 0).cpu()
    khat = pareto_khat(lw)
    iwae.per_point = {"khat": khat, "weights_ess": ess.cpu()}
    for i in (khat > KHAT_MAX).nonzero().flatten().tolist():
        iwae.add_flag(i, "heavy-tailed-weights")
    return elbo, iwae


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
