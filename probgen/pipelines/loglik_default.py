"""The default `probgen loglik --ckpt X`: the split's mean log p(x) with a 95% interval, sized to --time.

1. **Plan.** Time a few decoder gradients and forward passes on this device, then size the two phases
   to ``--time`` minutes (:func:`~probgen.pipelines.loglik_plan.plan_split`), and print the estimate.
2. **Cheap phase.** IWAE (k from :data:`~probgen.config.loglik.CHEAP_IWAE_SAMPLES`) on n_cheap points
   of the split, a simple random sample (the first n_cheap of a fixed permutation, seed
   :data:`~probgen.config.loglik.POINTS_SEED`; all of the split when the time allows).
3. **Deep phase.** The trusted estimators (:data:`~probgen.config.loglik.DEEP_METHODS`: Appendix D and
   AIS from a Laplace fit, at the ``quick`` budget of the device) on the first n_deep of those points,
   a simple random subsample; cross-checked per point against each other and against IWAE
   (:func:`~probgen.inference.loglik.trust.cross_check`).
4. **Report.** The two-phase difference estimate of the split's mean and its interval
   (:mod:`probgen.pipelines.loglik_split`), flagged deep points entered at their most conservative
   value with the interval widened (:func:`~probgen.pipelines.loglik_split.deep_values`).

Writes ``loglik.json`` (``split_mean`` first), ``loglik.csv`` (the deep points: every estimator's value,
se and flags, the value used and why), ``cheap.csv`` (IWAE and ELBO on every cheap point) and the
Appendix D ``chains.nc`` and trace/rank PNGs. Resume as the explicit run: the plan and every finished
batch are kept in ``<out>/.partial``; the same command continues them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any

import torch

from probgen.config import LoglikConfig, to_dict
from probgen.config.loglik import CHEAP_IWAE_SAMPLES, DEEP_BUDGET, DEEP_METHODS, POINTS_SEED
from probgen.inference.loglik.iwae import ordering_warnings
from probgen.inference.loglik.result import LoglikResult
from probgen.inference.loglik.trust import cross_check
from probgen.inference.mcmc.potential import from_pyro_model
from probgen.pipelines.loglik import PARTIAL, _settings, open_run, run_batches
from probgen.pipelines.loglik_plan import SplitPlan, measure, per_point_seconds, plan_split, scaled_deep
from probgen.pipelines.loglik_results import cat_results, csv_rows, summary_table
from probgen.pipelines.loglik_split import SplitMean, deep_values, two_phase_mean
from probgen.pipelines.loglik_stages import LoglikRun, add_diagnostics, base_report, chain_checks, images, pixel_model
from probgen.utils.distributed import Dist
from probgen.utils.io import environment_info, write_csv, write_json
from probgen.utils.partial import PartialStore

log = logging.getLogger("probgen")

__all__ = ["phase_configs", "split_mean_run", "split_mean_table"]

#: points on which a gradient is timed (the deep phase's batch is about this size)
TIMING_POINTS = 16


def phase_configs(cfg: LoglikConfig, device_type: str) -> tuple[LoglikConfig, LoglikConfig]:
    """The explicit configs of the cheap phase (ELBO and IWAE) and the deep phase (:data:`DEEP_METHODS`
    at the :data:`DEEP_BUDGET` of ``device_type``)."""
    deep = dataclasses.replace(cfg, method=",".join(DEEP_METHODS), budget=DEEP_BUDGET, time=None).resolved(device_type)
    k = CHEAP_IWAE_SAMPLES["cuda" if device_type == "cuda" else "cpu"]
    return dataclasses.replace(deep, method="elbo,iwae", iwae_samples=k), deep


def _plan(run: LoglikRun, cfg: LoglikConfig, cheap: LoglikConfig, deep: LoglikConfig) -> SplitPlan:
    """Time this device on the split's first points, then size the phases to --time."""
    n = len(run.split)
    model = pixel_model(cfg, run.vae)
    small = from_pyro_model(model, images(run, torch.arange(min(TIMING_POINTS, n))))
    t_grad, _ = measure(small, deep.chains, 1)
    wide = from_pyro_model(model, images(run, torch.arange(min(cheap.points_per_batch, n))))
    _, t_fwd = measure(wide, 1, max(1, min(cheap.max_batch // wide.num_data, cheap.iwae_samples)), repeats=2)
    d = run.vae.latent_dim
    return plan_split(
        cfg.minutes * 60, n, per_point_seconds(cheap, d, t_grad, t_fwd),
        lambda f: per_point_seconds(scaled_deep(deep, f), d, t_grad, t_fwd),
        cheap.iwae_samples, time.perf_counter() - run.start, t_grad,
    )  # fmt: skip


def _take(r: LoglikResult, n: int) -> LoglikResult:
    """The first ``n`` points of a result (the deep subsample is the first n_deep cheap points)."""
    se = None if r.se is None else r.se[:n]
    per = {k: v[:n] for k, v in r.per_point.items()}
    return LoglikResult(r.method, r.log_px[:n], r.data_dim, dict(r.info), se, [list(f) for f in r.flags[:n]], per)


def _flag_counts(deep: dict[str, LoglikResult]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for m in DEEP_METHODS:
        counts: dict[str, int] = {}
        for reasons in deep[m].flags:
            for reason in reasons:
                counts[reason] = counts.get(reason, 0) + 1
        out[m] = counts
    return out


def _split_mean_dict(est: SplitMean, data_dim: int, cheap_k: int, flags: dict, untrusted: int) -> dict[str, Any]:
    to_bits = 1.0 / (data_dim * math.log(2.0))
    lo, hi, mean = float(est.lo), float(est.hi), float(est.log_px)
    return {
        "log_px": mean,
        "ci95": [lo, hi],
        "half_width": (hi - lo) / 2,
        "bits_per_dim": -mean * to_bits,
        "ci95_bits_per_dim": [-hi * to_bits, -lo * to_bits],
        "n_cheap": est.n_cheap,
        "n_deep": est.n_deep,
        "population": est.population,
        "cheap_estimator": f"iwae (k={cheap_k})",
        "deep_estimators": list(DEEP_METHODS),
        "flagged_by_reason": flags,
        "n_deep_untrusted": untrusted,
        "flagged_widening": float(est.widening),
        "variance": {"phase1": float(est.phase1), "phase2": float(est.phase2), "monte_carlo": float(est.mc)},
        "df": float(est.df),
        "method": "two-phase difference estimator: mean IWAE over the cheap points + mean (trusted - IWAE) over "
        "the deep points; 95% t interval counting the choice of points and the Monte Carlo error (docs/loglik.md)",
        "flagged_points": "a deep point with no unflagged trusted estimate enters at its highest lower bound "
        "(IWAE or ais-laplace), and the interval's upper end is raised by the mean over the deep points of how far "
        "its highest estimate lies above that (flagged_widening)",
    }


def split_mean_table(sm: dict[str, Any], split: str) -> str:
    """The printed answer: the mean, its interval, N cheap, N deep and the flags by reason."""
    lo, hi = sm["ci95"]
    blo, bhi = sm["ci95_bits_per_dim"]
    flags = "; ".join(f"{m}: " + (", ".join(f"{k} {v}" for k, v in c.items()) or "none")
                      for m, c in sm["flagged_by_reason"].items())  # fmt: skip
    lines = [
        f"{split} split mean log p(x): {sm['log_px']:.2f} nats, 95% interval [{lo:.2f}, {hi:.2f}]  "
        f"({sm['bits_per_dim']:.5f} bits/dim, [{blo:.5f}, {bhi:.5f}])",
        f"  N = {sm['population']} points; N cheap = {sm['n_cheap']} ({sm['cheap_estimator']}), N deep = "
        f"{sm['n_deep']} ({', '.join(sm['deep_estimators'])})",
        f"  flags on the deep points: {flags}",
    ]
    if sm["n_deep_untrusted"]:
        lines.append(
            f"  {sm['n_deep_untrusted']} deep point(s) with no trusted estimate entered at their highest lower "
            f"bound; the upper end is raised by {sm['flagged_widening']:.3f} nats for them"
        )
    return "\n".join(lines)


def split_mean_run(cfg: LoglikConfig, dist: Dist) -> dict[str, Any]:
    """The default run (see the module docstring); returns loglik.json (an empty dict off rank 0)."""
    run = open_run(cfg, dist)
    cheap_cfg, deep_cfg = phase_configs(cfg, run.device.type)
    settings = {**_settings(cfg, run.ckpt_path), "mode": "split-mean"}
    store = dist.from_main(lambda: PartialStore.open(run.out / PARTIAL, settings, overwrite=cfg.overwrite))
    stored = store.get("plan")
    if stored is None:
        plan = dist.from_main(lambda: _plan(run, cfg, cheap_cfg, deep_cfg))
        if dist.is_main:
            store.put("plan", dataclasses.asdict(plan))
    else:  # a half-done run continues with its own plan (its points and settings)
        plan = SplitPlan(**stored)
        log.info("continuing %s with its plan: %d cheap points, %d deep", run.out, plan.n_cheap, plan.n_deep)
    line = plan.line(" + ".join(DEEP_METHODS))
    log.info("%s", line)
    order = torch.randperm(len(run.split), generator=torch.Generator().manual_seed(POINTS_SEED))
    cheap_index, deep_index = order[: plan.n_cheap], order[: plan.n_deep]  # S2: the first n_deep of S1
    cheap_cfg = dataclasses.replace(cheap_cfg, iwae_samples=plan.iwae_samples)
    deep_cfg = scaled_deep(deep_cfg, plan.deep_scale)
    done = run_batches(run, cheap_cfg, cheap_index, store, prefix="cheap", desc="IWAE batches")
    timing = {"seconds_per_gradient": plan.seconds_per_gradient}
    deep_done = run_batches(run, deep_cfg, deep_index, store, prefix="deep", desc="deep batches", estimate=timing)
    if done is None or deep_done is None:
        return {}
    cheap = {m: cat_results(done[0][m]) for m in ("elbo", "iwae")}
    deep = {m: cat_results(deep_done[0][m]) for m in DEEP_METHODS}
    deep = {"iwae": _take(cheap["iwae"], plan.n_deep), **deep}
    idata, checks = chain_checks(run, deep_cfg, deep_done[1], deep_index)
    cross_check(deep)

    values, err, allowance, source = deep_values(
        {m: r.log_px for m, r in deep.items()},
        {m: r.se for m, r in deep.items() if r.se is not None},
        {m: r.trusted for m, r in deep.items()},
    )
    iwae = cheap["iwae"].log_px
    est = two_phase_mean(iwae, iwae[: plan.n_deep], values, err, len(run.split), allowance.mean())
    untrusted = sum(s.startswith("flagged") for s in source)
    sm = _split_mean_dict(est, deep["iwae"].data_dim, plan.iwae_samples, _flag_counts(deep), untrusted)
    seconds = time.perf_counter() - run.start

    report = {"split_mean": sm, **base_report(run, cfg, plan.n_deep)}
    report["points"] = "random: the cheap points are a simple random sample of the split, the deep ones of them"
    report["results"] = {m: r.to_dict() for m, r in deep.items()}
    report["cheap"] = {m: r.to_dict() for m, r in cheap.items()}
    rows = csv_rows(deep, plan.n_deep, labels=deep_index.tolist())
    for row, v, s, a in zip(rows, values.tolist(), source, allowance.tolist()):
        row.update({"log_px_used": v, "used": s, "allowance": a})
    warnings = ordering_warnings({m: deep[m] for m in ("iwae", *DEEP_METHODS)}, run.vae.latent_dim)
    if checks is not None:
        add_diagnostics(report, rows, deep_cfg, run, idata, checks, deep_index, warnings)
    for w in warnings:
        log.warning("%s", w)
    report.update({
        "warnings": warnings, "seconds": seconds, "estimate": {"seconds": plan.seconds, "line": line},
        "plan": dataclasses.asdict(plan), "world_size": dist.world_size, "config": to_dict(cfg),
        "deep_config": to_dict(deep_cfg), "environment": environment_info(run.device),
    })  # fmt: skip
    write_json(run.out / "loglik.json", report)
    write_csv(run.out / "loglik.csv", rows)
    write_csv(run.out / "cheap.csv", csv_rows(cheap, plan.n_cheap, labels=cheap_index.tolist()))
    store.remove()  # finished: a new run into this --out needs --overwrite
    deep_table = summary_table(deep, plan.n_deep).replace("(N = ", "(on the deep points, N = ")
    report["table"] = split_mean_table(sm, cfg.split) + "\n\n" + deep_table
    report["out"] = str(run.out)
    log.info("wrote %s (loglik.json, loglik.csv, cheap.csv%s) in %.0f s", run.out, ", chains.nc" if idata else "",
             seconds)  # fmt: skip
    return report
