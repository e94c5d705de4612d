"""Kingma & Welling (2013), Appendix D, made safe for multimodal posteriors: per-mode estimates.

Since 1/p(x) = E_{p(z|x)}[q(z) / p(x, z)] for any normalised density q, log p(x) follows from
posterior draws and a density q fitted to other posterior draws. probgen does this per data point and
per *mode*:

1. **Overdispersed starts** (:func:`overdispersed_init`): half the chains start from the encoder,
   half from prior draws annealed to the posterior by a short tempered HMC run (geometric inverse
   temperatures), so that chains can land in modes the encoder does not know about.
2. **Modes** (:func:`cluster_chains`): per point, chains whose means lie within ``mode_separation``
   within-chain standard deviations of each other (Mahalanobis, transitively) form one mode. Each
   mode gets a shrunk full-covariance Gaussian q_k fitted to its chains' fit-stage draws.
3. **Per-mode estimate**: z-space is partitioned into regions R_k = {z : q_k(z) is the largest}; by
   the identity restricted to a region, 1 / p(x, z in R_k) = E_{p(z | x, R_k)}[q_k(z) 1_{R_k}(z) /
   (m_k p(x, z))] with m_k = P_{q_k}(R_k) (a Monte Carlo integral over q_k, no decoder pass), and
   p(x) = sum_k p(x, R_k). The draws that fall in R_k estimate its term, whichever chain made them.

Why per mode: chains that do not cross between modes visit them in proportions set by where they
started, not by the modes' masses, so pooling their draws (even under a mixture q whose weights are
the chains' fractions, still a valid normalised q) gives 1/p(x) times sum_k f_k pi_k / P_k, which is
1 only when the chain fractions f_k equal the unknown masses P_k. The per-mode sum needs only that
the draws within each region follow the posterior restricted to that region, which holds both when
chains mix between modes and when each stays in its basin. With one mode it is exactly the classic
estimator. What it cannot fix is a mode no chain visited: that is what the overdispersed starts and
the AIS cross-check (``missed-mode``) are for.

Per point, the result carries a Monte Carlo standard error (batch means over each chain's draws, as
a ratio estimator per region, combined by the delta method) and flags: ``rhat`` and ``ess`` computed
*within* modes (chains in different modes make the across-chain R-hat huge, which is expected here
and handled by the per-mode estimate), ``divergences``, and ``heavy-tailed-weights`` (Pareto k-hat
of the weights q / p(x, z) > 0.7).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import arviz as az
import numpy as np
import torch

from probgen.inference.loglik.result import LoglikResult
from probgen.inference.loglik.weights import KHAT_MAX, pareto_khat
from probgen.inference.mcmc.hmc import HMCResult, run_hmc
from probgen.inference.mcmc.modes import Modes, cluster_chains, fit_modes
from probgen.inference.mcmc.potential import LatentTarget
from probgen.inference.mcmc.starts import overdispersed_init

__all__ = [
    "Modes",
    "appendix_d",
    "appendix_d_from_samples",
    "chain_checks",
    "cluster_chains",
    "fit_gaussian",
    "fit_modes",
    "overdispersed_init",
]

Q_FITS = ("per-mode", "mixture", "single")


def fit_gaussian(samples: torch.Tensor, shrink: float) -> torch.distributions.MultivariateNormal:
    """Per-point full-covariance Gaussian fit to samples (C, S, N, D), covariance scaled by ``shrink``.

    ``shrink`` < 1 makes q lighter-tailed than a Gaussian posterior of the same covariance, which the
    Appendix D estimator needs for finite variance (q^2 / p(z | x) must be integrable).
    """
    c, s, n, d = samples.shape
    labels = torch.zeros(n, c, dtype=torch.long, device=samples.device)
    modes = fit_modes(samples, labels, shrink)
    return torch.distributions.MultivariateNormal(modes.mean[:, 0], scale_tril=modes.scale_tril[:, 0])


# --- overdispersed starts ---------------------------------------------------------------------------


# --- chain diagnostics within modes ----------------------------------------------------------------


def _rhat_ess(z: np.ndarray, lp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Worst-latent rank-normalised R-hat, bulk and tail ESS of z (C, S, N, D), and bulk ESS of lp (C, S, N)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = az.convert_to_dataset({"z": z, "lp": lp})
        rhat = az.rhat(ds, var_names=["z"])["z"].values
        bulk = az.ess(ds, method="bulk")
        tail = az.ess(ds, var_names=["z"], method="tail")["z"].values
    return rhat.max(-1), bulk["z"].values.min(-1), tail.min(-1), bulk["lp"].values


def chain_checks(
    run: HMCResult, labels: torch.Tensor, rhat_max: float = 1.01, min_ess_per_chain: float = 100.0
) -> dict[str, torch.Tensor]:
    """Per point: R-hat and ESS of z within modes, ESS of lp, divergences; and the failures.

    For a point whose chains form one mode this is ArviZ's rank-normalised split R-hat and bulk/tail
    ESS over all chains (as :func:`probgen.inference.mcmc.diagnostics.diagnose`). For a point with several
    modes, each mode's chains are checked on their own (a single chain by its split halves): R-hat is
    the worst over modes, ESS per chain the smallest, and ESS of lp the sum over modes. Returns (N,)
    tensors ``rhat``, ``ess_per_chain`` (worst of bulk and tail), ``ess_lp``, ``divergences``, and bool
    ``fail_rhat``, ``fail_ess``, ``fail_divergences`` (NaN diagnostics fail).
    """
    z = run.samples.detach().double().cpu().numpy()
    lp = -run.potential.detach().double().cpu().numpy()
    c = z.shape[0]
    rhat, bulk, tail, ess_lp = _rhat_ess(z, lp)
    ess_pc = np.minimum(bulk, tail) / c
    labels_np = labels.cpu().numpy()
    for i in np.nonzero((labels_np != labels_np[:, :1]).any(1))[0]:  # points with several modes
        r, e, lps = [], [], 0.0
        for k in np.unique(labels_np[i]):
            idx = np.nonzero(labels_np[i] == k)[0]
            zk, lpk = z[idx][:, :, i : i + 1], lp[idx][:, :, i : i + 1]
            if len(idx) == 1:  # ArviZ wants 2 chains: give it the halves (it splits them again)
                half = zk.shape[1] // 2
                zk, lpk = zk[0, : 2 * half].reshape(2, half, *zk.shape[2:]), lpk[0, : 2 * half].reshape(2, half, 1)
            rk, bk, tk, lk = _rhat_ess(zk, lpk)
            r.append(rk[0])
            e.append(min(bk[0], tk[0]) / len(idx))
            lps += lk[0]
        rhat[i], ess_pc[i], ess_lp[i] = max(r), min(e), lps
    div = run.diverging.sum((0, 1)).cpu()
    with np.errstate(invalid="ignore"):
        return {
            "rhat": torch.from_numpy(rhat),
            "ess_per_chain": torch.from_numpy(ess_pc),
            "ess_lp": torch.from_numpy(ess_lp),
            "divergences": div,
            "fail_rhat": torch.from_numpy(~(rhat <= rhat_max)),
            "fail_ess": torch.from_numpy(~(ess_pc >= min_ess_per_chain)),
            "fail_divergences": div > 0,
        }


# --- the estimator ----------------------------------------------------------------------------------


def _batch_index(c: int, s: int, num_batches: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """Batch of each draw (C, S) for batch means: each chain's draws cut into contiguous batches."""
    b = max(1, min(num_batches, s // 2))
    return (torch.arange(c, device=device)[:, None] * b + torch.arange(s, device=device) * b // s), c * b


def _region_terms(
    log_w: torch.Tensor, region: torch.Tensor, k: int, num_batches: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per region: log of the mean weight (N, K), its relative variance by batch means, draw counts.

    ``log_w`` (C, S, N) are log weights q_k(z) / (m_k p(x, z)) of each draw under its region's q_k;
    ``region`` (C, S, N) the region of each draw. The region's mean weight is the ratio
    sum_b S_b / sum_b n_b of per-batch sums and counts; its variance is the ratio estimator's
    G / (G - 1) sum_b (S_b - u n_b)^2 / (sum_b n_b)^2 over G batches.
    """
    c, s, n = log_w.shape
    onehot = torch.nn.functional.one_hot(region, k).bool()  # (C, S, N, K)
    lw = torch.where(onehot, log_w[..., None], torch.full_like(log_w[..., None], -math.inf))
    shift = lw.amax((0, 1))  # (N, K)
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    w = torch.exp(lw - shift)  # (C, S, N, K), 0 outside the region
    batch, g = _batch_index(c, s, num_batches, log_w.device)
    sums = torch.zeros(g, n, k, dtype=w.dtype, device=w.device).index_add_(0, batch.reshape(-1), w.reshape(c * s, n, k))
    cnts = torch.zeros_like(sums).index_add_(0, batch.reshape(-1), onehot.reshape(c * s, n, k).to(w.dtype))
    total_n = cnts.sum(0)
    u = sums.sum(0) / total_n.clamp_min(1)
    var = g / max(g - 1, 1) * (sums - u * cnts).square().sum(0) / total_n.clamp_min(1).square()
    rel = var / u.square()
    return torch.log(u) + shift, rel, total_n


def appendix_d_from_samples(
    target: LatentTarget,
    run: HMCResult,
    num_fit: int,
    shrink: float = 0.8,
    *,
    q_fit: str = "per-mode",
    mode_separation: float = 3.0,
    num_batches: int = 10,
    mass_draws: int = 4096,
    rhat_max: float = 1.01,
    min_ess_per_chain: float = 100.0,
    **info: Any,
) -> LoglikResult:
    """Stages 2 and 3 of Appendix D on posterior chains ``run`` (samples (C, S, N, D)), with se and flags.

    The first ``num_fit`` draws of each chain find the modes (:func:`cluster_chains`) and fit q; the
    remaining ones estimate log p(x), with -log p(x, z) read from ``run.potential`` (no decoder pass).
    ``q_fit``: ``"per-mode"`` (default; see the module docstring), ``"mixture"`` (one estimate with
    q = sum_k (chains in k / C) q_k: unbiased for 1/p(x) only if chains are spread over modes in
    proportion to their masses), or ``"single"`` (one Gaussian over all chains: the classic estimator).

    ``se`` is the Monte Carlo standard error in nats from batch means (``num_batches`` per chain);
    flags ``rhat``/``ess`` (within modes, thresholds ``rhat_max`` and ``min_ess_per_chain`` x chains),
    ``divergences`` (any), ``heavy-tailed-weights`` (Pareto k-hat > 0.7 in any region with draws).
    ``per_point`` holds ``num_modes``, ``rhat``, ``ess_per_chain``, ``ess_lp`` and ``khat``.
    """
    if not 0 < shrink <= 1:
        raise ValueError(f"shrink must be in (0, 1], got {shrink}")
    if q_fit not in Q_FITS:
        raise ValueError(f"q_fit must be one of {Q_FITS}, got {q_fit!r}")
    c, s, n, _ = run.samples.shape
    if not 2 <= num_fit < s:
        raise ValueError(f"num_fit must be in [2, {s}), got {num_fit}")
    fit = run.samples[:, :num_fit]
    labels = cluster_chains(fit, mode_separation)
    if q_fit == "single":
        labels = torch.zeros_like(labels)
    modes = fit_modes(fit, labels, shrink)
    fresh = run.samples[:, num_fit:].double()
    neg_log_joint = run.potential[:, num_fit:].double()  # -log p(x, z)
    lq = modes.log_q(fresh)  # (C, S', N, K)
    if q_fit == "mixture":
        log_pi = torch.log(modes.count / c)
        log_w = torch.logsumexp(lq + log_pi, -1) + neg_log_joint
        region = torch.zeros_like(neg_log_joint, dtype=torch.long)
        log_mass_var = torch.zeros(n, 1, dtype=torch.float64, device=fresh.device)
        k = 1
    else:
        k = modes.mean.shape[1]
        region = lq.argmax(-1)
        mass, log_mass_var = modes.region_mass(mass_draws) if q_fit == "per-mode" else (None, None)
        lq_own = lq.gather(-1, region[..., None])[..., 0]
        if mass is not None:
            lq_own = lq_own - torch.log(mass).expand(c, s - num_fit, n, k).gather(-1, region[..., None])[..., 0]
        log_w = lq_own + neg_log_joint  # log q_k(z) / (m_k p(x, z))
        log_mass_var = torch.zeros(n, k, dtype=torch.float64, device=fresh.device) if mass is None else log_mass_var
    log_u, rel, counts = _region_terms(log_w, region, k, num_batches)
    seen = counts > 0
    neg = torch.where(seen, -log_u, torch.full_like(log_u, -math.inf))  # log p(x, R_k)
    log_px = torch.logsumexp(neg, -1)
    share = torch.softmax(neg, -1)
    se = (share.square() * torch.where(seen, rel + log_mass_var, torch.zeros_like(rel))).sum(-1).sqrt()

    checks = chain_checks(run, labels, rhat_max, min_ess_per_chain)
    reff = (checks["ess_lp"] / (c * s)).clamp(1e-3, 1.0)
    khat = _region_khat(log_w, region, counts, reff)
    result = LoglikResult(
        "appendix-d",
        log_px.detach().cpu(),
        target.data_dim,
        {
            "chains": c,
            "fit_draws": num_fit,
            "estimate_draws": s - num_fit,
            "shrink": shrink,
            "q_fit": q_fit,
            "points_with_several_modes": int((modes.num_modes > 1).sum()),
            **info,
        },
        se=se.detach().cpu(),
        per_point={
            "num_modes": modes.num_modes.cpu(),
            "rhat": checks["rhat"],
            "ess_per_chain": checks["ess_per_chain"],
            "ess_lp": checks["ess_lp"],
            "khat": khat,
        },
    )
    for reason, failed in (
        ("rhat", checks["fail_rhat"]),
        ("ess", checks["fail_ess"]),
        ("divergences", checks["fail_divergences"]),
        ("heavy-tailed-weights", khat > KHAT_MAX),
    ):
        for i in failed.nonzero().flatten().tolist():
            result.add_flag(i, reason)
    return result


def _region_khat(log_w: torch.Tensor, region: torch.Tensor, counts: torch.Tensor, reff: torch.Tensor) -> torch.Tensor:
    """Worst Pareto k-hat over each point's regions that hold >= 25 draws (N,); NaN if none does."""
    c, s, n = log_w.shape
    flat_w, flat_r = log_w.reshape(c * s, n).cpu(), region.reshape(c * s, n).cpu()
    counts, reff = counts.cpu(), reff.cpu()
    single = (counts > 0).sum(-1) <= 1
    out = torch.full((n,), math.nan, dtype=torch.float64)
    if single.any():
        idx = single.nonzero().flatten()
        out[idx] = pareto_khat(flat_w[:, idx], reff[idx])
    for i in (~single).nonzero().flatten().tolist():
        ks = [
            float(pareto_khat(flat_w[flat_r[:, i] == k, i : i + 1], reff[i : i + 1])[0])
            for k in (counts[i] >= 25).nonzero().flatten().tolist()
        ]
        ks = [v for v in ks if not math.isnan(v)]
        out[i] = max(ks) if ks else math.nan
    return out


def appendix_d(
    target: LatentTarget,
    z0: torch.Tensor,
    num_warmup: int,
    num_samples: int,
    shrink: float = 0.8,
    progress: bool = False,
    *,
    q_fit: str = "per-mode",
    mode_separation: float = 3.0,
    num_batches: int = 10,
    rhat_max: float = 1.01,
    min_ess_per_chain: float = 100.0,
    **hmc_options: Any,
) -> tuple[LoglikResult, HMCResult]:
    """Kingma & Welling (2013), Appendix D, per mode: log p(x) from posterior samples and fitted densities.

    1. Run :func:`run_hmc` from z0 (C, N, D) (e.g. :func:`overdispersed_init`) for ``num_warmup`` +
       2 x ``num_samples`` transitions.
    2. Find each point's modes among its chains and fit q_k = N(mean_k, shrink x cov_k) to the first
       ``num_samples`` draws of each mode's chains.
    3. With the next ``num_samples`` draws (fresh, not used by the fit), sum the per-mode estimates of
       p(x, z in R_k) (:func:`appendix_d_from_samples`).

    Returns the estimate (with se and flags) and the HMC run of both stages (for diagnostics).
    """
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples}")
    run = run_hmc(target.potential(), z0, num_warmup, 2 * num_samples, progress=progress, desc="HMC", **hmc_options)
    result = appendix_d_from_samples(
        target,
        run,
        num_samples,
        shrink,
        q_fit=q_fit,
        mode_separation=mode_separation,
        num_batches=num_batches,
        rhat_max=rhat_max,
        min_ess_per_chain=min_ess_per_chain,
        warmup=num_warmup,
        leapfrog_steps=run.num_steps,
    )
    return result, run
