"""The result of a marginal log-likelihood estimator: log p(x) per data point, its error bar and flags.

Shared by every estimator (:mod:`probgen.inference.loglik.iwae`, :mod:`probgen.inference.loglik.ais`,
:mod:`probgen.inference.loglik.bdmc`) and by the per-point cross-checks of :mod:`probgen.inference.loglik.trust`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from probgen.inference.mcmc.potential import LatentTarget

__all__ = ["FLAG_REASONS", "LoglikResult"]


#: The reasons a per-point estimate can be flagged (``flag_<method>`` in loglik.csv).
FLAG_REASONS = (
    "rhat",
    "ess",
    "divergences",
    "missed-mode",
    "heavy-tailed-weights",
    "ais-variance",
    "se-above-target",
    "loose-bound",
)


@dataclass
class LoglikResult:
    """log p(x) per data point (N,) in nats (float64, CPU), with the settings that produced it.

    ``se`` (N,) is each point's Monte Carlo standard error in nats (None: not known), and ``flags``
    holds, per point, the reasons (from :data:`FLAG_REASONS`) its estimate is not trusted; an empty
    list means trusted. ``per_point`` holds further per-point diagnostics, each (N,) (for AIS:
    ``log_weight_var`` and ``weights_ess``; for IWAE ``khat`` and ``weights_ess``; for Appendix D
    ``num_modes``, ``rhat``, ``ess_per_chain``, ``ess_lp``, ``khat``), for loglik.csv columns ``<name>_<method>``.
    """

    method: str
    log_px: torch.Tensor
    data_dim: int
    info: dict[str, Any] = field(default_factory=dict)
    se: torch.Tensor | None = None
    flags: list[list[str]] | None = None
    per_point: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.log_px.numel()
        for name, values in self.per_point.items():
            if values.numel() != n:
                raise ValueError(f"per_point[{name!r}] has {values.numel()} entries for {n} points")
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
