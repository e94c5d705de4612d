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
from dataclasses import dataclass, field
from typing import Any

import pyro
import torch

from probgen.inference.hmc import HMCResult, run_hmc
from probgen.inference.potential import LatentTarget
from probgen.inference.transition import find_reasonable_step_size, hmc_transition, init_state
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


#: The reasons a per-point estimate can be flagged (``flag_<method>`` in loglik.csv).
FLAG_REASONS = ("rhat", "ess", "divergences", "missed-mode", "heavy-tailed-weights", "ais-variance")


@dataclass
class LoglikResult:
    """log p(x) per data point (N,) in nats (float64, CPU), with the settings that produced it.

    ``se`` (N,) is each point's Monte Carlo standard error in nats (None: not known), and ``flags``
    holds, per point, the reasons (from :data:`FLAG_REASONS`) its estimate is not trusted; an empty
    list means trusted.
    """

    method: str
    log_px: torch.Tensor
    data_dim: int
    info: dict[str, Any] = field(default_factory=dict)
    se: torch.Tensor | None = None
    flags: list[list[str]] | None = None

    def __post_init__(self) -> None:
        n = self.log_px.numel()
        if self.flags is None:
            self.flags = [[] for _ in range(n)]
        if len(self.flags) != n:
            raise ValueError(f"flags has {len(self.flags)} entries for {n} points")
        for reasons in self.flags:
            unknown = set(reasons) - set(FLAG_REASONS)
            if unknown:
                raise ValueError(f"unknown flag reasons {sorted(unknown)}; known: {FLAG_REASONS}")

    def add_flag(self, index: int, reason: str) -> None:
        """Flag point ``index`` with ``reason`` (once)."""
        if reason not in FLAG_REASONS:
            raise ValueError(f"unknown flag reason {reason!r}; known: {FLAG_REASONS}")
        if reason not in self.flags[index]:
            self.flags[index].append(reason)

    @property
    def trusted(self) -> torch.Tensor:
        """(N,) bool: True where the point carries no flag."""
        return torch.tensor([not f for f in self.flags], dtype=torch.bool)

    def flag_strings(self) -> list[str]:
        """Per point, its reasons joined by '+' ('' when trusted), as written to loglik.csv."""
        return ["+".join(f) for f in self.flags]

    def flag_counts(self) -> dict[str, int]:
        """How many points carry each reason (reasons with no point are left out)."""
        counts: dict[str, int] = {}
        for reasons in self.flags:
            for r in reasons:
                counts[r] = counts.get(r, 0) + 1
        return counts

    @property
    def mean(self) -> float:
        return float(self.log_px.mean())

    @property
    def stderr(self) -> float:
        """Standard error of the mean over data points (0 for one point)."""
        n = self.log_px.numel()
        return float(self.log_px.std() / math.sqrt(n)) if n > 1 else 0.0

    @property
    def bits_per_dim(self) -> torch.Tensor:
        """-log2 p(x) / D per data point, D = pixels x channels."""
        return -self.log_px / (self.data_dim * math.log(2.0))

    def to_dict(self) -> dict[str, Any]:
        scale = self.data_dim * math.log(2.0)
        trusted = self.trusted
        return {
            "method": self.method,
            "log_px_mean": self.mean,
            "log_px_stderr": self.stderr,
            "bits_per_dim_mean": -self.mean / scale,
            "bits_per_dim_stderr": self.stderr / scale,
            "num_data": int(self.log_px.numel()),
            "data_dim": self.data_dim,
            "log_px_mean_trusted": float(self.log_px[trusted].mean()) if trusted.any() else None,
            "num_trusted": int(trusted.sum()),
            "num_flagged": int((~trusted).sum()),
            "flag_counts": self.flag_counts(),
            **self.info,
        }


def _result(method: str, log_px: torch.Tensor, target: LatentTarget, **info: Any) -> LoglikResult:
    return LoglikResult(method, log_px.detach().double().cpu(), target.data_dim, info)


def _logmeanexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])


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


def sigmoid_schedule(num_steps: int, delta: float = 4.0) -> torch.Tensor:
    """Inverse temperatures beta_0 = 0 < ... < beta_T = 1 (T + 1 values) spaced along a sigmoid
    (Grosse et al. 2015; Wu et al. 2017): dense near 0 and 1, where the intermediate targets change fastest."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    s = torch.sigmoid(delta * (2.0 * torch.arange(num_steps + 1, dtype=torch.float64) / num_steps - 1.0))
    return (s - s[0]) / (s[-1] - s[0])


def ais(
    target: LatentTarget,
    num_chains: int = 16,
    num_steps: int = 1000,
    leapfrog_steps: int = 10,
    target_accept_prob: float = 0.65,
    delta: float = 4.0,
    progress: bool = False,
) -> LoglikResult:
    """Annealed importance sampling from the prior to the posterior, with HMC transitions (Wu et al. 2017).

    Intermediate targets p(z) p(x | z)^beta_t with a :func:`sigmoid_schedule`; one HMC transition of
    ``leapfrog_steps`` steps per temperature. After each temperature, each point's step size is
    multiplied by exp(0.5 (a - target)), a = its acceptance averaged over chains: Wu et al. use a fixed
    +-2%, which cannot follow a posterior that sharpens 100-fold within a few hundred temperatures.
    log p(x) per point is the log mean of the ``num_chains`` importance weights.
    """
    betas = sigmoid_schedule(num_steps, delta).tolist()
    z = target.sample_prior(num_chains)  # (C, N, D)
    state = init_state(target.potential(0.0), z)
    step = find_reasonable_step_size(state, target.potential(0.0), z.new_full((target.num_data,), 0.1))
    log_w = torch.zeros(z.shape[:2], dtype=torch.float64, device=z.device)
    accept_sum = torch.zeros_like(step)
    bar = progress_bar(total=num_steps, desc="AIS", enabled=progress)
    for t in range(1, num_steps + 1):
        bar.update()
        log_w += (betas[t] - betas[t - 1]) * state.aux.double()  # log f_t(z) - log f_{t-1}(z), aux = log p(x|z)
        if t == num_steps:
            break
        potential = target.potential(betas[t])
        state = init_state(potential, state.z)  # the gradient changes with beta
        state, acc, _ = hmc_transition(state, potential, step, leapfrog_steps, jitter=0.1)
        acc = acc.mean(0)
        accept_sum += acc
        step = step * torch.exp(0.5 * (acc - target_accept_prob))
    bar.close()
    info = {
        "chains": num_chains,
        "ais_steps": num_steps,
        "leapfrog_steps": leapfrog_steps,
        "accept_rate_mean": float(accept_sum.mean() / max(num_steps - 1, 1)),
    }
    return _result("ais", _logmeanexp(log_w, 0), target, **info)


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
