"""`probgen loglik`: marginal log-likelihood of a VAE checkpoint on a dataset split.

Output directory (default ``<checkpoint's folder>/loglik``):

- ``loglik.json``: settings, per-method mean and standard error (nats and bits/dim), chain
  diagnostics (how many points failed), warnings, environment;
- ``loglik.csv``: one row per data point: log p(x), bits/dim, Monte Carlo standard error (``se_<method>``)
  and flags (``flag_<method>``, reasons joined by '+', empty = trusted) per method; R-hat, ESS, divergences;
- ``chains.nc``: the Appendix D HMC chains as ArviZ InferenceData (when appendix-d ran);
- ``trace_dp<i>.png``, ``rank_dp<i>.png``: trace and rank plots of chosen data points.

Under ``torchrun --nproc-per-node N -m probgen loglik ...`` the batches of ``--points-per-batch``
data points are shared out among the N ranks (contiguous runs of batches), and rank 0 gathers the
per-point results and writes everything. Each batch draws from its own seed (``--seed`` and the
index of its first point), so the per-point numbers do not depend on how many processes ran them.

Resume: each finished batch is stored atomically in ``<out>/.partial`` (:class:`~probgen.utils.partial.PartialStore`)
together with the settings. The same command run again after a kill or Ctrl-C computes only the
missing batches; since every batch has its own seed, the final files equal an uninterrupted run's.
``--overwrite`` starts over; other settings on a half-done ``--out`` are refused.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import pyro
import torch

from probgen.checkpoint import load_checkpoint
from probgen.config import LoglikConfig, to_dict
from probgen.config.loglik import BDMC_METHODS, LOGLIK_METHODS, POINTS_SEED
from probgen.data import load_dataset
from probgen.errors import UserError
from probgen.inference.loglik.bdmc import BDMCResult
from probgen.inference.loglik.estimators import Inputs, estimators_for
from probgen.inference.loglik.iwae import ordering_warnings
from probgen.inference.loglik.result import LoglikResult
from probgen.inference.loglik.trust import cross_check
from probgen.inference.mcmc.hmc import HMCResult
from probgen.inference.mcmc.potential import encoder_proposal, from_pyro_model
from probgen.models.registry import kinds_where
from probgen.models.vae import load_vae
from probgen.pipelines.loglik_plan import estimate as estimate_time
from probgen.pipelines.loglik_plan import sampling_report
from probgen.pipelines.loglik_results import (
    batch_from_dict,
    batch_to_dict,
    cat_results,
    csv_rows,
    summary_table,
)
from probgen.pipelines.loglik_stages import (
    LoglikRun,
    add_diagnostics,
    base_report,
    chain_checks,
    estimator_settings,
    images,
    pixel_model,
)
from probgen.utils.device import resolve_device
from probgen.utils.distributed import Dist, distributed_session, shard_range, to_host
from probgen.utils.io import environment_info, write_csv, write_json
from probgen.utils.partial import PartialStore
from probgen.utils.progress import progress

log = logging.getLogger("probgen")

NUTS_POINTS_WARN = 8


PARTIAL = ".partial"
#: LoglikConfig fields that do not change the numbers (left out of a resumed run's settings check)
_NOT_RESULTS = ("out", "overwrite", "progress", "json", "plot_points")


class Interrupted(UserError):
    """Ctrl-C / SIGTERM during `probgen loglik`: the finished batches are kept (exit code 130)."""

    exit_code = 130


def _prepare_out(cfg: LoglikConfig, ckpt_path: Path) -> Path:
    base = ckpt_path if ckpt_path.is_dir() else ckpt_path.parent
    out = Path(cfg.out) if cfg.out else base / "loglik"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} exists and is not a directory")
    # a half-done run (its .partial store is there) continues; finished or foreign results are kept
    unfinished = (out / PARTIAL).is_dir()
    if out.is_dir() and any(out.iterdir()) and not unfinished:
        if not cfg.overwrite:
            raise UserError(f"--out: {out} already holds results; pass --overwrite to replace them or choose --out")
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out: cannot create {out}: {exc.strerror or exc}") from None
    return out


def _settings(cfg: LoglikConfig, ckpt_path: Path) -> dict[str, Any]:
    """What decides the numbers of a run: its config and the checkpoint file (path, size, mtime)."""
    path = ckpt_path / "checkpoint.pt" if ckpt_path.is_dir() else ckpt_path
    stat = path.stat()
    settings = {k: v for k, v in to_dict(cfg).items() if k not in _NOT_RESULTS}
    settings["checkpoint"] = {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return settings


def _run_batch(
    cfg: LoglikConfig, vae: Any, x: torch.Tensor, seconds_per_grad: float | None = None
) -> tuple[dict[str, LoglikResult], HMCResult | None]:
    """All the configured estimators on one batch of a VAE's points (:func:`estimate_points`)."""
    return estimate_points(cfg, pixel_model(cfg, vae), vae.guide, x, seconds_per_grad)


def estimate_points(
    cfg: LoglikConfig, model: Any, guide: Any, x: torch.Tensor, seconds_per_grad: float | None = None
) -> tuple[dict[str, LoglikResult], HMCResult | None]:
    """Every estimator of ``cfg.methods`` on the points x (N, ...) of a Pyro ``model`` (latent site ``z``,
    observed ``x``, as :func:`~probgen.inference.mcmc.potential.from_pyro_model` wants) with encoder
    ``guide``, exactly as `probgen loglik` runs them on a batch (``cfg`` resolved: no setting left None).

    Returns the results by method (before :func:`~probgen.inference.loglik.trust.cross_check`, which
    `probgen loglik` applies to all points at the end) and Appendix D's HMC run (None without it).
    With ``seconds_per_grad`` the Appendix D chains log how long their draws will take once warm-up has
    chosen the leapfrog counts. Validation on exact models (experiments/loglik_exact_validation.py)
    calls this, so that what is validated is the command's own code path.
    """
    methods = cfg.methods
    report = None if seconds_per_grad is None else sampling_report(cfg, seconds_per_grad)
    inputs = Inputs(from_pyro_model(model, x), encoder_proposal(guide, x), model, x, report)
    settings = estimator_settings(cfg)
    out: dict[str, LoglikResult] = {}
    run = None
    for estimator in estimators_for(methods):
        results, chains = estimator.run(inputs, settings)
        out.update({m: r for m, r in results.items() if m in methods or m not in estimator.methods})
        run = chains if chains is not None else run
    return out, run


def chosen_points(split_size: int, num_data: int, points: str = "random") -> torch.Tensor:
    """Indices into the split of the ``num_data`` points `probgen loglik` evaluates (``--points``):
    ``first``, or ``random``: a fixed random subset (seed :data:`POINTS_SEED`, independent of
    ``--seed``), sorted. All of the split when it has no more than ``num_data`` points."""
    n = min(num_data, split_size)
    if points == "first" or n == split_size:
        return torch.arange(n)
    perm = torch.randperm(split_size, generator=torch.Generator().manual_seed(POINTS_SEED))
    return perm[:n].sort().values


def _batch_key(first_point: int, prefix: str = "batch") -> str:
    return f"{prefix}-{first_point:09d}"


def batch_seed(seed: int, first_point: int) -> int:
    """The RNG seed of the batch that starts at data point ``first_point``."""
    return seed * 1_000_003 + first_point


def loglik(cfg: LoglikConfig) -> dict[str, Any]:
    """Run the configured estimators on a VAE checkpoint; writes the output directory, returns loglik.json.

    With no --method, --num-data, --budget or budget flag (:attr:`LoglikConfig.split_mean`), the
    default run: the split's mean log p(x) with a 95% interval, sized to ``--time``
    (:mod:`probgen.pipelines.loglik_default`). On ranks other than 0 of a torchrun job it returns an
    empty dict (rank 0 reports).
    """
    if not cfg.ckpt:
        raise UserError("--ckpt: a VAE checkpoint is required")
    with distributed_session(resolve_device(cfg.device)) as dist:  # a no-op outside torchrun
        if cfg.split_mean:
            from probgen.pipelines.loglik_default import split_mean_run  # it builds on this module's stages

            return split_mean_run(cfg, dist)
        return _loglik(cfg, dist)


def open_run(cfg: LoglikConfig, dist: Dist) -> LoglikRun:
    """Load the checkpoint and the split, prepare ``--out`` (refusing to overwrite results silently)."""
    start = time.perf_counter()
    ckpt_path = Path(cfg.ckpt)
    ckpt = dist.from_main(lambda: load_checkpoint(ckpt_path, kind=kinds_where(lambda k: k.loglik)))
    out = dist.from_main(lambda: _prepare_out(cfg, ckpt_path))
    device = dist.device(resolve_device(cfg.device))
    pyro.set_rng_seed(cfg.seed)
    vae, fit_cfg = load_vae(ckpt, device)
    vae.requires_grad_(False)  # gradients w.r.t. z only
    data_cfg = fit_cfg.data if cfg.data_root is None else dataclasses.replace(fit_cfg.data, data_root=cfg.data_root)
    data = load_dataset(data_cfg)
    split = data.split(cfg.split)
    if len(split) == 0:
        raise UserError(f"--split: the {cfg.split!r} split of {data.name!r} is empty")
    if vae.cfg.likelihood == "bernoulli" and not data.binary:
        log.warning("Bernoulli likelihood on non-binary pixels: log p(x) is not a proper density of these images")
    return LoglikRun(ckpt_path, out, device, vae, data, split, dist, start)


def run_batches(
    run: LoglikRun,
    cfg: LoglikConfig,
    index: torch.Tensor,
    store: PartialStore,
    prefix: str = "batch",
    desc: str = "data batches",
    estimate: dict[str, Any] | None = None,
) -> tuple[dict[str, list[LoglikResult]], list[HMCResult]] | None:
    """Stage 1: the estimators of ``cfg`` on the points ``index``, in batches of --points-per-batch.

    Each batch has its own seed and is stored in ``store`` under ``<prefix>-<first point>`` as it
    finishes; stored batches are read back, not recomputed. Under torchrun the batches are shared out
    and rank 0 gathers them (other ranks get None). Ctrl-C keeps the finished batches (:class:`Interrupted`).
    """
    dist, n = run.dist, index.numel()
    batches = range(0, n, cfg.points_per_batch)
    mine = shard_range(len(batches), dist.rank, dist.world_size)
    batches = batches[mine.start : mine.stop]  # this rank's batches (all of them in a single process)
    kept = set(store.keys())
    todo = [lo for lo in batches if _batch_key(lo, prefix) not in kept]
    parts: dict[str, list[LoglikResult]] = {}
    runs: list[HMCResult] = []
    finished = 0
    try:
        with progress(total=len(batches), desc=desc, enabled=cfg.progress and dist.is_main) as bar:
            for lo in batches:
                stored = store.get(_batch_key(lo, prefix))
                if stored is not None:
                    res, hmc = batch_from_dict(stored)
                else:
                    pyro.set_rng_seed(batch_seed(cfg.seed, lo))  # the same numbers with any number of ranks
                    x = images(run, index[lo : lo + cfg.points_per_batch])
                    first = estimate is not None and lo == todo[0] and cfg.sampler == "hmc"
                    timing = {"seconds_per_grad": estimate["seconds_per_gradient"]} if first else {}
                    res, hmc = _run_batch(cfg, run.vae, x, **timing)
                    if dist.is_main:  # only rank 0 writes under --out (other nodes may not share it)
                        store.put(_batch_key(lo, prefix), batch_to_dict(res, hmc))
                for m, r in res.items():
                    parts.setdefault(m, []).append(r)
                if hmc is not None:
                    runs.append(hmc)
                finished += 1
                bar.update()
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted after {finished} of {len(batches)} batches; they are kept in {run.out / PARTIAL}: "
            "run the same command again to continue"
        ) from None
    if dist.enabled:  # rank 0 collects every rank's per-point results, in the order of the points
        gathered = dist.gather_to_main(to_host((parts, runs)))
        if gathered is None:
            return None
        parts, runs = {}, []
        for rank_parts, rank_runs in gathered:
            for m, rs in rank_parts.items():
                parts.setdefault(m, []).extend(rs)
            runs.extend(rank_runs)
    return parts, runs


def _loglik(cfg: LoglikConfig, dist: Dist) -> dict[str, Any]:
    """The explicit run, stage by stage: points -> batches through the estimators -> chain checks and
    cross-checks -> report and files."""
    run = open_run(cfg, dist)
    cfg = cfg.resolved(run.device.type)  # --budget fills in the sampling settings not given
    index = _points(run, cfg)
    start = time.perf_counter()
    settings = _settings(cfg, run.ckpt_path)
    store = dist.from_main(lambda: PartialStore.open(run.out / PARTIAL, settings, overwrite=cfg.overwrite))
    estimate = _time_estimate(run, cfg, index, store)
    done = run_batches(run, cfg, index, store, estimate=estimate)
    if done is None:
        return {}
    parts, runs = done
    seconds = time.perf_counter() - start
    idata, checks = chain_checks(run, cfg, runs, index)
    results, simulated = _cross_checked(parts)
    report, rows = _report(run, cfg, index, results, simulated, idata, checks)
    report.update({"seconds": seconds, "estimate": estimate, "world_size": dist.world_size,
                   "config": to_dict(cfg), "environment": environment_info(run.device)})  # fmt: skip
    _write(run, index, report, rows, results, simulated, runs)
    store.remove()  # finished: a new run into this --out needs --overwrite
    return report


def _points(run: LoglikRun, cfg: LoglikConfig) -> torch.Tensor:
    """The indices into the split of the points to score (``--num-data``, ``--points``), in split order."""
    index = chosen_points(len(run.split), cfg.num_data, cfg.points)
    n = index.numel()
    if n < cfg.num_data:
        log.warning("the %s split has only %d images; evaluating all of them", cfg.split, n)
    if cfg.sampler == "nuts" and "appendix-d" in cfg.methods and n > NUTS_POINTS_WARN:
        log.warning("--sampler nuts runs one data point at a time: %d points will be slow", n)
    log.info("loglik of %s on %d %s images of %s (%s) on %s", run.ckpt_path, n, cfg.split, run.data.name,
             run.data.source, run.device)  # fmt: skip
    return index


def _time_estimate(run: LoglikRun, cfg: LoglikConfig, index: torch.Tensor, store: PartialStore) -> dict | None:
    """Time a few decoder gradients on the first batch still to do and extrapolate to the batches left
    (rank 0 only; None when every batch is stored)."""
    dist, n = run.dist, index.numel()
    batches = range(0, n, cfg.points_per_batch)
    mine = shard_range(len(batches), dist.rank, dist.world_size)
    batches = batches[mine.start : mine.stop]
    kept = set(store.keys())
    todo = [lo for lo in batches if _batch_key(lo) not in kept]
    if len(todo) < len(batches):
        log.info("continuing %s: %d of %d batches were already done", run.out, len(batches) - len(todo), len(batches))
    if not (todo and dist.is_main):
        return None
    x = images(run, index[todo[0] : todo[0] + cfg.points_per_batch])
    points = sum(min(cfg.points_per_batch, n - lo) for lo in todo)
    seconds, line, per_grad = estimate_time(cfg, from_pyro_model(pixel_model(cfg, run.vae), x), points)
    log.info("%s", line)
    return {"seconds": seconds, "points": points, "line": line, "seconds_per_gradient": per_grad}


def _cross_checked(parts: dict[str, list[LoglikResult]]) -> tuple[dict[str, LoglikResult], dict[str, LoglikResult]]:
    """The batches' results joined per method, the split's and BDMC's simulated points' apart, each set
    cross-checked per point (a lower bound above an upper one beyond noise: a missed mode)."""
    results = {m: cat_results(parts[m]) for m in LOGLIK_METHODS if m in parts}
    simulated = {m: cat_results(parts[m]) for m in BDMC_METHODS if m in parts}
    cross_check(results)
    cross_check(simulated)  # BDMC's bounds, on their own (simulated) points
    return results, simulated


def _report(
    run: LoglikRun,
    cfg: LoglikConfig,
    index: torch.Tensor,
    results: dict[str, LoglikResult],
    simulated: dict[str, LoglikResult],
    idata: Any,
    checks: Any,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """loglik.json's content and loglik.csv's rows: the results, BDMC's bounds, the chain diagnostics
    and the estimators' ordering warnings (logged)."""
    n = index.numel()
    report = base_report(run, cfg, n)
    report["results"] = {m: r.to_dict() for m, r in results.items()}
    if simulated:
        report["bdmc"] = {
            "data": f"{n} points simulated from the model (z* ~ p(z), x ~ p(x | z*)), not the {cfg.split} split; "
            "per point in bdmc.csv",
            **BDMCResult(simulated["bdmc-lower"], simulated["bdmc-upper"]).to_dict(),
        }
    rows = csv_rows(results, n, labels=index.tolist())
    warnings = ordering_warnings(results, run.vae.latent_dim)
    if checks is not None:
        add_diagnostics(report, rows, cfg, run, idata, checks, index, warnings)
    for w in warnings:
        log.warning("%s", w)
    report["warnings"] = warnings
    return report, rows


def _write(
    run: LoglikRun,
    index: torch.Tensor,
    report: dict[str, Any],
    rows: list[dict[str, Any]],
    results: dict[str, LoglikResult],
    simulated: dict[str, LoglikResult],
    runs: list[HMCResult],
) -> None:
    """loglik.json, loglik.csv and bdmc.csv in ``--out``; the summary table and the folder into ``report``."""
    out, n = run.out, index.numel()
    write_json(out / "loglik.json", report)
    written = ["loglik.json"]
    if results:
        write_csv(out / "loglik.csv", rows)
        written.append("loglik.csv")
    if simulated:
        sim_rows = csv_rows(simulated, n, index="simulated_point")
        for row, gap in zip(sim_rows, (simulated["bdmc-upper"].log_px - simulated["bdmc-lower"].log_px).tolist()):
            row["gap"] = gap
        write_csv(out / "bdmc.csv", sim_rows)
        written.append("bdmc.csv")
    report["table"] = summary_table({**results, **simulated}, n)
    report["out"] = str(out)
    log.info("wrote %s (%s%s)", out, ", ".join(written), ", chains.nc" if runs else "")
