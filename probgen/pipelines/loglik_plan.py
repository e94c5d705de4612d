"""How long `probgen loglik` will take: decoder evaluations per estimator x the measured cost of one.

Before the work starts, :func:`estimate` times a few batched gradient evaluations of log p(x, z)
(and forward-only ones for IWAE) on the first batch, counts the evaluations each estimator will make
with the configured settings, and multiplies. It is printed as, e.g.,
``estimated 4.2 min for 32 points (appendix-d 2.9 min, ais 1.1 min, ...; 0.31 ms per image gradient)``.

Counts, per data point (C chains, L leapfrog steps, T AIS temperatures, k importance samples), as each
registered estimator's ``cost`` gives them (:mod:`probgen.inference.loglik.estimators`):

- ELBO/IWAE: k forward evaluations;
- Appendix D: C (warm-up + 2 samples) (L + 1) gradients, plus the overdispersed starts (C / 2 chains
  x 4 particles x 100 tempered transitions x 6 gradients); L comes from ``--trajectory-length`` and
  the adapted step size (chosen in warm-up), so the estimate assumes L = trajectory length / 0.6
  (a typical adapted step in units of the posterior scale), or ``--leapfrog-steps`` when it is 0;
- AIS: (C + pilot) T (L + 1) gradients, pilot = max(2, C / 4) chains (with ``--target-se``, up to
  (max chains + pilot) T (L + 1), printed as a second figure);
- AIS from a Laplace fit: as AIS, plus the fit: 16 starts x 200 Adam steps, and at most 10
  Hessians of D double-backward passes each (counted as 2 gradients; 1 + 3 Newton steps of up to 3
  tries), plus 8 forward evaluations per start for the basin check;
- BDMC: (2 C + pilot) T (L + 1) gradients.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from probgen.config import LoglikConfig
from probgen.config.estimators import pilot_chains
from probgen.inference.loglik.estimators import estimators_for
from probgen.inference.mcmc.potential import LatentTarget
from probgen.pipelines.loglik_stages import estimator_settings

log = logging.getLogger("probgen")

__all__ = [
    "SplitPlan", "estimate", "evaluation_counts", "format_duration", "per_point_seconds", "plan_split",
    "sampling_report", "scaled_deep",
]  # fmt: skip

#: the adapted HMC step size, in units of the posterior scale, assumed before warm-up has chosen it
TYPICAL_STEP = 0.6
MAX_LEAPFROG = 256


def _hmc_leapfrog(cfg: LoglikConfig) -> int:
    if not cfg.trajectory_length:
        return cfg.leapfrog_steps
    return max(1, min(MAX_LEAPFROG, math.ceil(cfg.trajectory_length / TYPICAL_STEP)))


def evaluation_counts(cfg: LoglikConfig, num_points: int, latent_dim: int = 0) -> dict[str, tuple[float, float]]:
    """Per method: (image-level gradient evaluations, forward-only evaluations) over ``num_points``
    points of a ``latent_dim``-dimensional latent, as each registered estimator counts them
    (:mod:`probgen.inference.loglik.estimators`); Appendix D at the leapfrog steps it is assumed to choose."""
    settings = estimator_settings(cfg)
    hmc = dataclasses.replace(settings.hmc, trajectory_length=0.0, leapfrog_steps=_hmc_leapfrog(cfg))
    settings = dataclasses.replace(settings, hmc=hmc)
    out: dict[str, tuple[float, float]] = {}
    for estimator in estimators_for(cfg.methods):
        asked = [m for m in estimator.methods if m in cfg.methods]
        name = estimator.name if len(asked) > 1 else asked[0]  # "elbo+iwae", or the one asked for
        out[name] = estimator.cost(settings, num_points, latent_dim)
    return out


def _time(fn: Any, repeats: int) -> float:
    fn()  # warm-up (allocations, lazy init)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def measure(target: LatentTarget, chains: int, fwd_batch: int, repeats: int = 3) -> tuple[float, float]:
    """Seconds per image-level gradient of log p(x, z) (at C = ``chains`` chains of the batch's points)
    and per forward evaluation (at ``fwd_batch`` draws per point, as IWAE scores them)."""
    z = target.sample_prior(chains).requires_grad_(True)
    potential = target.potential()

    def grad() -> None:
        u, _ = potential(z)
        torch.autograd.grad(u.sum(), z)
        if z.is_cuda:
            torch.cuda.synchronize(z.device)

    zf = target.sample_prior(fwd_batch)

    def forward() -> None:
        with torch.no_grad():
            lp, ll = target.log_joint(zf)
            (lp + ll).sum().item()

    n = target.num_data
    return _time(grad, repeats) / (chains * n), _time(forward, repeats) / (fwd_batch * n)


def format_duration(seconds: float) -> str:
    """3 s, 4.2 min, 1.3 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def estimate(cfg: LoglikConfig, target: LatentTarget, num_points: int) -> tuple[float, str, float]:
    """(seconds, one line, seconds per image gradient) for the configured methods on ``num_points``
    points, timed on ``target`` (the first batch still to do)."""
    fwd_batch = max(1, min(cfg.max_batch // target.num_data, cfg.iwae_samples))
    t_grad, t_fwd = measure(target, cfg.chains, fwd_batch)
    parts = {m: g * t_grad + f * t_fwd for m, (g, f) in evaluation_counts(cfg, num_points, target.latent_dim).items()}
    total = sum(parts.values())
    detail = ", ".join(f"{m} {format_duration(s)}" for m, s in parts.items())
    for m in ("ais", "ais-laplace"):
        if m in parts and cfg.target_se:  # the adaptive stop: up to max_chains per point
            cap = cfg.max_chains or 8 * cfg.chains
            pilot = pilot_chains(cfg.chains)
            worst = parts[m] * (cap + pilot) / (cfg.chains + pilot)
            detail += f"; {m} up to {format_duration(worst)} if every point needs --max-chains {cap} for --target-se"
    hmc = ""
    if "appendix-d" in cfg.methods and cfg.sampler == "hmc" and cfg.trajectory_length:
        hmc = f"; appendix-d assumes {_hmc_leapfrog(cfg)} leapfrog steps per transition (warm-up chooses)"
    line = (
        f"estimated {format_duration(total)} for {num_points} points ({detail}; {t_grad * 1e3:.3g} ms per image "
        f"gradient, {t_fwd * 1e3:.3g} ms per forward pass{hmc})"
    )
    return total, line, t_grad


def sampling_report(cfg: LoglikConfig, seconds_per_grad: float) -> Callable[[Any], None]:
    """The ``on_warmup`` of the Appendix D chains: once warm-up has fixed the leapfrog counts, log
    how long the draws will take (the longest point's count sets every transition's length)."""

    def report(kernel: Any) -> None:
        steps = kernel.num_steps
        chains, points = kernel.num_chains, kernel.step_size.numel()
        seconds = 2 * cfg.samples * (steps + 1) * chains * points * seconds_per_grad
        per = kernel.steps_per_point
        spread = "" if per is None else f" (points: {int(per.min())} to {steps}, median {int(per.median())})"
        log.info(
            "appendix-d: warm-up chose %d leapfrog steps per transition%s; the %d draws per chain will take about %s",
            steps, spread, 2 * cfg.samples, format_duration(seconds),
        )  # fmt: skip

    return report


#: the default run: the share of its time that goes to the cheap phase (IWAE on many points) when the
#: split is larger than that can cover, the fewest deep points (the gap's variance needs two; fewer than
#: 8 makes the t quantile wide), and the seconds kept for the report (cross-checks, chains.nc, PNGs)
CHEAP_SHARE, MIN_DEEP, REPORT_SECONDS = 0.5, 8, 15.0
#: when MIN_DEEP points at the deep budget do not fit the time, the deep phase's warm-up, samples and
#: AIS temperatures are scaled down by the largest of these factors that fits (never below the last)
DEEP_SCALES = (1.0, 0.75, 0.5, 0.35, 0.25)


@dataclass
class SplitPlan:
    """How the default run spends ``--time``: IWAE (k = ``iwae_samples``) on ``n_cheap`` random
    points of the split, the trusted estimators on the first ``n_deep`` of them; seconds per point
    of each phase as measured, and the seconds already spent (loading) and kept for the report."""

    n_cheap: int
    n_deep: int
    iwae_samples: int
    seconds_per_cheap: float
    seconds_per_deep: float
    seconds_before: float
    seconds_report: float
    seconds_per_gradient: float
    #: the factor on the deep budget's warm-up, samples and AIS temperatures (:func:`scaled_deep`)
    deep_scale: float = 1.0

    @property
    def seconds(self) -> float:
        """The whole run's planned wall time, loading included."""
        work = self.n_cheap * self.seconds_per_cheap + self.n_deep * self.seconds_per_deep
        return self.seconds_before + work + self.seconds_report

    def line(self, deep: str) -> str:
        """The printed estimate, e.g. ``estimated 7.9 min in all (...)``."""
        return (
            f"estimated {format_duration(self.seconds)} in all: IWAE (k={self.iwae_samples}) on {self.n_cheap} "
            f"points {format_duration(self.n_cheap * self.seconds_per_cheap)}, {deep} on {self.n_deep} of them "
            f"{format_duration(self.n_deep * self.seconds_per_deep)}"
            + (f" (at {self.deep_scale:.0%} of the budget's steps)" if self.deep_scale < 1 else "")
            + f", loading {format_duration(self.seconds_before)}"
            f", report ~{format_duration(self.seconds_report)} ({self.seconds_per_gradient * 1e3:.3g} ms per image "
            "gradient)"
        )


def scaled_deep(cfg: LoglikConfig, factor: float) -> LoglikConfig:
    """``cfg`` with its warm-up, samples and AIS temperatures scaled by ``factor`` (at least 2 each)."""
    if factor >= 1:
        return cfg
    return dataclasses.replace(
        cfg, warmup=max(2, round(cfg.warmup * factor)), samples=max(2, round(cfg.samples * factor)),
        ais_steps=max(2, round(cfg.ais_steps * factor)),
    )  # fmt: skip


def plan_split(
    seconds: float,
    split_size: int,
    seconds_per_cheap: float,
    seconds_per_deep: float | Callable[[float], float],
    iwae_samples: int,
    seconds_before: float = 0.0,
    seconds_per_gradient: float = math.nan,
) -> SplitPlan:
    """Size the default run to ``seconds`` of wall time (``--time`` x 60) on a split of ``split_size``.

    The cheap phase gets :data:`CHEAP_SHARE` of the time left after loading (``seconds_before``) and
    the report, or all of the split if that costs less; the deep phase gets the rest, at least
    :data:`MIN_DEEP` points and at most as many as the cheap phase scored. For the variance
    S_t^2 / n1 + S_g^2 / n2 at cost c1 n1 + c2 n2, the best split of the time is n1 c1 / (n2 c2) =
    (S_t / S_g) sqrt(c1 / c2) (Neyman); on the README's model S_t / S_g ~ 10 and c2 / c1 ~ 100, so
    about half (docs/loglik.md).

    ``seconds_per_deep`` may be a function of a factor on the deep budget's steps
    (:func:`scaled_deep`): then, when :data:`MIN_DEEP` points at the full budget would overrun, the
    largest factor of :data:`DEEP_SCALES` whose MIN_DEEP points fit is taken (the smallest when none does).
    """
    per_deep = seconds_per_deep if callable(seconds_per_deep) else lambda _f: seconds_per_deep
    left = max(0.0, seconds - seconds_before - REPORT_SECONDS)
    floor = min(MIN_DEEP, split_size)
    n_cheap = min(split_size, max(floor, int(CHEAP_SHARE * left / seconds_per_cheap)))
    rest = left - n_cheap * seconds_per_cheap
    scales = DEEP_SCALES if callable(seconds_per_deep) else (1.0,)
    factor = next((f for f in scales if floor * per_deep(f) <= rest), scales[-1])
    deep = per_deep(factor)
    n_deep = min(n_cheap, max(floor, int(rest / deep)))
    return SplitPlan(n_cheap, n_deep, iwae_samples, seconds_per_cheap, deep, seconds_before,
                     REPORT_SECONDS, seconds_per_gradient, factor)  # fmt: skip


def per_point_seconds(cfg: LoglikConfig, latent_dim: int, t_grad: float, t_fwd: float) -> float:
    """Seconds per data point of ``cfg``'s estimators at the measured costs of a gradient and a forward pass."""
    return sum(g * t_grad + f * t_fwd for g, f in evaluation_counts(cfg, 1, latent_dim).values())
