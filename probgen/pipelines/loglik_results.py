"""`probgen loglik`'s per-batch results: stored for resume, joined in point order, written and tabled.

Wiring only: the estimators are in :mod:`probgen.inference`, the command in :mod:`probgen.pipelines.loglik`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from probgen.inference.loglik.result import LoglikResult
from probgen.inference.mcmc.hmc import HMCResult

__all__ = [
    "batch_from_dict",
    "batch_to_dict",
    "cat_results",
    "cat_runs",
    "csv_rows",
    "result_from_dict",
    "result_to_dict",
    "summary_table",
]


def result_to_dict(r: LoglikResult) -> dict[str, Any]:
    return {"method": r.method, "log_px": r.log_px, "data_dim": r.data_dim, "info": r.info, "se": r.se,
            "flags": r.flags, "per_point": r.per_point}  # fmt: skip


def result_from_dict(d: dict[str, Any]) -> LoglikResult:
    return LoglikResult(d["method"], d["log_px"], d["data_dim"], d["info"], d["se"], d["flags"], d["per_point"])


def batch_to_dict(res: dict[str, LoglikResult], run: HMCResult | None) -> dict[str, Any]:
    return {
        "results": {m: result_to_dict(r) for m, r in res.items()},
        "run": None if run is None else dataclasses.asdict(run),
    }


def batch_from_dict(d: dict[str, Any]) -> tuple[dict[str, LoglikResult], HMCResult | None]:
    run = None if d["run"] is None else HMCResult(**d["run"])
    return {m: result_from_dict(r) for m, r in d["results"].items()}, run


#: per-point counts in a result's ``info``, added up over batches
SUMMED = ("num_ais_variance", "num_se_above_target", "chains_total", "num_missed_mode")


def cat_results(parts: list[LoglikResult]) -> LoglikResult:
    """One result from per-batch ones: log p(x), se and flags concatenated in point order; numeric
    ``*_mean`` entries of ``info`` (e.g. AIS acceptance, IWAE weight ESS) averaged weighted by batch
    size, and the counts of :data:`SUMMED` added up."""
    first = parts[0]
    sizes = [p.log_px.numel() for p in parts]
    info = dict(first.info)
    for key, value in first.info.items():
        if not isinstance(value, (int, float)) or not all(key in p.info for p in parts):
            continue
        if key.endswith("_mean"):
            info[key] = sum(float(p.info[key]) * s for p, s in zip(parts, sizes)) / sum(sizes)
        elif key in SUMMED:
            info[key] = sum(int(p.info[key]) for p in parts)
    se = None
    if any(p.se is not None for p in parts):
        nan = torch.tensor(math.nan, dtype=torch.float64)
        se = torch.cat([p.se if p.se is not None else nan.expand(s) for p, s in zip(parts, sizes)])
    flags = [list(f) for p in parts for f in p.flags]
    per_point = {
        k: torch.cat([p.per_point[k] for p in parts]) for k in first.per_point if all(k in p.per_point for p in parts)
    }
    log_px = torch.cat([p.log_px for p in parts])
    return LoglikResult(first.method, log_px, first.data_dim, info, se, flags, per_point)


def cat_runs(runs: list[HMCResult]) -> HMCResult:
    def cat(name: str, dim: int) -> torch.Tensor | None:
        values = [getattr(r, name) for r in runs]
        return None if any(v is None for v in values) else torch.cat(values, dim)

    return HMCResult(
        samples=cat("samples", 2),
        potential=cat("potential", 2),
        accept_prob=cat("accept_prob", 2),
        diverging=cat("diverging", 2),
        step_size=cat("step_size", 0),
        inverse_mass=cat("inverse_mass", 0),
        num_grad_evals=sum(r.num_grad_evals for r in runs),
    )


def csv_rows(
    results: dict[str, LoglikResult], n: int, index: str = "datapoint", labels: list[int] | None = None
) -> list[dict[str, Any]]:
    """CSV rows, one per point: per method log p(x), bits/dim, se, flags and its per-point diagnostics;
    column ``index`` holds ``labels`` (e.g. indices into the split; default 0 .. n - 1)."""
    rows: list[dict[str, Any]] = [{index: i} for i in (range(n) if labels is None else labels)]
    for m, r in results.items():
        se = r.se.tolist() if r.se is not None else [math.nan] * n
        cols = {f"log_px_{m}": r.log_px.tolist(), f"bits_per_dim_{m}": r.bits_per_dim.tolist(), f"se_{m}": se}
        cols[f"flag_{m}"] = r.flag_strings()
        cols.update({f"{k}_{m}": v.tolist() for k, v in r.per_point.items()})
        for i, row in enumerate(rows):
            row.update({k: v[i] for k, v in cols.items()})
    return rows


def summary_table(results: dict[str, LoglikResult], n: int) -> str:
    """The printed summary: per method, mean +- standard error over points, the trusted mean, flag counts
    (BDMC's bounds are on simulated points)."""
    lines = [
        f"{'method':<12}{'log p(x) [nats]':>24}{'bits/dim':>22}{'trusted mean':>15}  flagged"
        f"   (N = {n}, mean +- standard error over points)"
    ]
    for m, r in results.items():
        d = r.to_dict()
        trusted = "-" if d["log_px_mean_trusted"] is None else f"{d['log_px_mean_trusted']:.3f}"
        reasons = ", ".join(f"{k} {v}" for k, v in d["flag_counts"].items())
        lines.append(
            f"{m:<12}{d['log_px_mean']:>14.3f} +- {d['log_px_stderr']:<7.3f}"
            f"{d['bits_per_dim_mean']:>12.5f} +- {d['bits_per_dim_stderr']:<8.5f}{trusted:>14}"
            f"  {d['num_flagged']}/{n}{f' ({reasons})' if reasons else ''}"
        )
    if "bdmc-lower" in results and "bdmc-upper" in results:
        gap = results["bdmc-upper"].log_px - results["bdmc-lower"].log_px
        lines.append(
            f"bdmc-*: on {n} points simulated from the model (not the data); upper - lower gap: "
            f"mean {float(gap.mean()):.3f}, max {float(gap.max()):.3f} nats"
        )
    return "\n".join(lines)
