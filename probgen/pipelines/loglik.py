"""`probgen loglik`: marginal log-likelihood of a VAE checkpoint on a dataset split.

Output directory (default ``<checkpoint's folder>/loglik``):

- ``loglik.json``: settings, per-method mean and standard error (nats and bits/dim), chain
  diagnostics (how many points failed), warnings, environment;
- ``loglik.csv``: one row per data point: log p(x) and bits/dim per method, R-hat, ESS, divergences;
- ``chains.nc``: the Appendix D HMC chains as ArviZ InferenceData (when appendix-d ran);
- ``trace_dp<i>.png``, ``rank_dp<i>.png``: trace and rank plots of chosen data points.

Under ``torchrun --nproc-per-node N -m probgen loglik ...`` the batches of ``--points-per-batch``
data points are shared out among the N ranks (contiguous runs of batches), and rank 0 gathers the
per-point results and writes everything. Each batch draws from its own seed (``--seed`` and the
index of its first point), so the per-point numbers do not depend on how many processes ran them.
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
from probgen.data import load_dataset, to_unit
from probgen.errors import UserError
from probgen.inference import diagnostics as diag
from probgen.inference.hmc import HMCResult, run_hmc
from probgen.inference.loglik import (
    LoglikResult,
    ais,
    appendix_d_from_samples,
    elbo_iwae,
    ordering_warnings,
)
from probgen.inference.potential import encoder_proposal, from_pyro_model
from probgen.inference.reference import run_nuts
from probgen.pipelines.fit_vae import load_vae
from probgen.training.distributed import Dist, distributed_session, shard_range, to_host
from probgen.utils.device import resolve_device
from probgen.utils.io import environment_info, write_csv, write_json
from probgen.utils.progress import progress

log = logging.getLogger("probgen")

NUTS_POINTS_WARN = 8


def _prepare_out(cfg: LoglikConfig, ckpt_path: Path) -> Path:
    base = ckpt_path if ckpt_path.is_dir() else ckpt_path.parent
    out = Path(cfg.out) if cfg.out else base / "loglik"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not cfg.overwrite:
            raise UserError(f"--out: {out} already holds results; pass --overwrite to replace them or choose --out")
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out: cannot create {out}: {exc.strerror or exc}") from None
    return out


def _cat_results(parts: list[LoglikResult]) -> LoglikResult:
    first = parts[0]
    info = dict(first.info)
    if "accept_rate_mean" in info:  # AIS: weight batches by their size
        sizes = [p.log_px.numel() for p in parts]
        info["accept_rate_mean"] = sum(p.info["accept_rate_mean"] * s for p, s in zip(parts, sizes)) / sum(sizes)
    if "weights_ess_mean" in info:
        sizes = [p.log_px.numel() for p in parts]
        info["weights_ess_mean"] = sum(p.info["weights_ess_mean"] * s for p, s in zip(parts, sizes)) / sum(sizes)
    return LoglikResult(first.method, torch.cat([p.log_px for p in parts]), first.data_dim, info)


def _cat_runs(runs: list[HMCResult]) -> HMCResult:
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


def _posterior_chains(cfg: LoglikConfig, vae: Any, x: torch.Tensor, z0: torch.Tensor) -> HMCResult:
    n_draws = 2 * cfg.samples
    if cfg.sampler == "nuts":
        fns = [from_pyro_model(vae.model, x[i : i + 1]).potential() for i in range(x.shape[0])]
        return run_nuts(fns, z0, cfg.warmup, n_draws, target_accept_prob=cfg.target_accept, progress=cfg.progress)
    target = from_pyro_model(vae.model, x)
    return run_hmc(
        target.potential(),
        z0,
        cfg.warmup,
        n_draws,
        num_steps=cfg.leapfrog_steps,
        trajectory_length=cfg.trajectory_length or None,
        target_accept_prob=cfg.target_accept,
        adapt_mass_matrix=cfg.adapt_mass,
        progress=cfg.progress,
    )


def _run_batch(cfg: LoglikConfig, vae: Any, x: torch.Tensor) -> tuple[dict[str, LoglikResult], HMCResult | None]:
    methods = cfg.methods
    target = from_pyro_model(vae.model, x)
    proposal = encoder_proposal(vae.guide, x)
    out: dict[str, LoglikResult] = {}
    run = None
    if "elbo" in methods or "iwae" in methods:
        elbo, iwae = elbo_iwae(target, proposal, cfg.iwae_samples, cfg.max_batch, progress=cfg.progress)
        out.update({m: r for m, r in (("elbo", elbo), ("iwae", iwae)) if m in methods})
    if "appendix-d" in methods:
        z0 = proposal.sample((cfg.chains,))  # (C, N, D): start near the posterior, dispersed by q
        run = _posterior_chains(cfg, vae, x, z0)
        steps = run.num_steps or None  # NUTS chooses its own
        out["appendix-d"] = appendix_d_from_samples(
            target, run, cfg.samples, cfg.shrink, sampler=cfg.sampler, leapfrog_steps=steps
        )
    if "ais" in methods:
        out["ais"] = ais(target, cfg.chains, cfg.ais_steps, cfg.leapfrog_steps, progress=cfg.progress)
    return out, run


def _table(results: dict[str, LoglikResult], n: int) -> str:
    lines = [f"{'method':<12}{'log p(x) [nats]':>24}{'bits/dim':>22}   (N = {n}, mean +- standard error)"]
    for m, r in results.items():
        d = r.to_dict()
        lines.append(
            f"{m:<12}{d['log_px_mean']:>14.3f} +- {d['log_px_stderr']:<7.3f}"
            f"{d['bits_per_dim_mean']:>12.5f} +- {d['bits_per_dim_stderr']:<8.5f}"
        )
    return "\n".join(lines)


def batch_seed(seed: int, first_point: int) -> int:
    """The RNG seed of the batch that starts at data point ``first_point``."""
    return seed * 1_000_003 + first_point


def loglik(cfg: LoglikConfig) -> dict[str, Any]:
    """Run the configured estimators on a VAE checkpoint; writes the output directory, returns loglik.json.

    On ranks other than 0 of a torchrun job it returns an empty dict (rank 0 reports).
    """
    if not cfg.ckpt:
        raise UserError("--ckpt: a VAE checkpoint is required")
    with distributed_session(resolve_device(cfg.device)) as dist:  # a no-op outside torchrun
        return _loglik(cfg, dist)


def _loglik(cfg: LoglikConfig, dist: Dist) -> dict[str, Any]:
    ckpt_path = Path(cfg.ckpt)
    ckpt = dist.from_main(lambda: load_checkpoint(ckpt_path, kind="vae"))
    out = dist.from_main(lambda: _prepare_out(cfg, ckpt_path))
    device = dist.device(resolve_device(cfg.device))
    pyro.set_rng_seed(cfg.seed)
    vae, fit_cfg = load_vae(ckpt, device)
    vae.requires_grad_(False)  # gradients w.r.t. z only
    data_cfg = fit_cfg.data if cfg.data_root is None else dataclasses.replace(fit_cfg.data, data_root=cfg.data_root)
    data = load_dataset(data_cfg)
    split = data.split(cfg.split)
    n = min(cfg.num_data, len(split))
    if n == 0:
        raise UserError(f"--split: the {cfg.split!r} split of {data.name!r} is empty")
    if n < cfg.num_data:
        log.warning("the %s split has only %d images; evaluating all of them", cfg.split, n)
    if vae.cfg.likelihood == "bernoulli" and not data.binary:
        log.warning("Bernoulli likelihood on non-binary pixels: log p(x) is not a proper density of these images")
    if cfg.sampler == "nuts" and "appendix-d" in cfg.methods and n > NUTS_POINTS_WARN:
        log.warning("--sampler nuts runs one data point at a time: %d points will be slow", n)
    log.info("loglik of %s on %d %s images of %s (%s) on %s", ckpt_path, n, cfg.split, data.name, data.source, device)

    start = time.perf_counter()
    parts: dict[str, list[LoglikResult]] = {}
    runs: list[HMCResult] = []
    batches = range(0, n, cfg.points_per_batch)
    mine = shard_range(len(batches), dist.rank, dist.world_size)
    batches = batches[mine.start : mine.stop]  # this rank's batches (all of them in a single process)
    with progress(total=len(batches), desc="data batches", enabled=cfg.progress and dist.is_main) as bar:
        for lo in batches:
            pyro.set_rng_seed(batch_seed(cfg.seed, lo))  # the same numbers with any number of ranks
            x = to_unit(split.images[lo : min(lo + cfg.points_per_batch, n)]).to(device)
            res, run = _run_batch(cfg, vae, x)
            for m, r in res.items():
                parts.setdefault(m, []).append(r)
            if run is not None:
                runs.append(run)
            bar.update()
    if dist.enabled:  # rank 0 collects every rank's per-point results, in the order of the points
        gathered = dist.gather_to_main(to_host((parts, runs)))
        if gathered is None:
            return {}
        parts, runs = {}, []
        for rank_parts, rank_runs in gathered:
            for m, rs in rank_parts.items():
                parts.setdefault(m, []).extend(rs)
            runs.extend(rank_runs)
    results = {m: _cat_results(parts[m]) for m in ("elbo", "iwae", "appendix-d", "ais") if m in parts}
    seconds = time.perf_counter() - start

    report: dict[str, Any] = {
        "checkpoint": str(ckpt_path),
        "dataset": data.name,
        "data_source": data.source,
        "split": cfg.split,
        "num_data": n,
        "data_dim": vae.image_shape[0] * vae.image_shape[1] * vae.image_shape[2],
        "latent_dim": vae.latent_dim,
        "likelihood": vae.cfg.likelihood,
        "units": "log p(x) in nats per image; bits/dim = -log p(x) / (pixels x channels x ln 2)",
        "results": {m: r.to_dict() for m, r in results.items()},
    }
    rows: list[dict[str, Any]] = [{"datapoint": i} for i in range(n)]
    for m, r in results.items():
        for row, lp, bpd in zip(rows, r.log_px.tolist(), r.bits_per_dim.tolist()):
            row[f"log_px_{m}"], row[f"bits_per_dim_{m}"] = lp, bpd
    warnings = ordering_warnings(results, vae.latent_dim)
    if runs:
        run = _cat_runs(runs)
        idata = diag.to_inference_data(run, attrs={"sampler": cfg.sampler, "checkpoint": str(ckpt_path)})
        diag.save_chains(idata, out / "chains.nc")
        checks = diag.diagnose(idata, cfg.checks.rhat_max, cfg.checks.min_ess_per_chain)
        report["diagnostics"] = checks.summary()
        for row, d in zip(rows, checks.rows()):
            row.update({k: v for k, v in d.items() if k != "datapoint"})
        points = [p for p in cfg.plot_points if p < n] or diag.worst_points(checks)
        report["plots"] = [p.name for p in diag.plot_chains(idata, points, out)]
        if checks.num_failed:
            warnings.append(
                f"{checks.num_failed} of {n} data points failed the chain diagnostics (R-hat > {cfg.checks.rhat_max} "
                f"or ESS < {checks.min_ess:g}); their appendix-d values are flagged in loglik.csv: run longer "
                "(--warmup, --samples) or see `probgen diagnose`"
            )
    for w in warnings:
        log.warning("%s", w)
    report.update(
        {
            "warnings": warnings,
            "seconds": seconds,
            "world_size": dist.world_size,
            "config": to_dict(cfg),
            "environment": environment_info(device),
        }
    )
    write_json(out / "loglik.json", report)
    write_csv(out / "loglik.csv", rows)
    report["table"] = _table(results, n)
    report["out"] = str(out)
    log.info("wrote %s (loglik.json, loglik.csv%s)", out, ", chains.nc" if runs else "")
    return report
