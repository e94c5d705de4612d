"""The shared stages of `probgen loglik`'s runs (explicit and default): what is scored, the
Appendix D chains' checks, and the report's common keys.

Wiring only: the estimators are in :mod:`probgen.inference.loglik`, the commands in
:mod:`probgen.pipelines.loglik` and :mod:`probgen.pipelines.loglik_default`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from probgen.config import LoglikConfig
from probgen.config.estimators import AISSettings, EstimatorSettings, HMCSettings, IWAESettings
from probgen.data import to_unit
from probgen.inference.mcmc import diagnostics as diag
from probgen.inference.mcmc.hmc import HMCResult
from probgen.models.discretised import discretised_model
from probgen.pipelines.loglik_results import cat_runs
from probgen.utils.distributed import Dist

__all__ = [
    "LoglikRun", "add_diagnostics", "base_report", "chain_checks", "discretises", "estimator_settings", "images",
    "pixel_model", "pixel_model_note",
]  # fmt: skip


def estimator_settings(cfg: LoglikConfig) -> EstimatorSettings:
    """The estimators' settings from a resolved `probgen loglik` config (``--chains`` sets both the HMC and
    the AIS chains; ``--leapfrog-steps`` both the AIS transitions and HMC's when --trajectory-length is 0)."""
    hmc = HMCSettings(
        chains=cfg.chains, warmup=cfg.warmup, samples=cfg.samples, trajectory_length=cfg.trajectory_length,
        leapfrog_steps=cfg.leapfrog_steps, target_accept=cfg.target_accept, adapt_mass=cfg.adapt_mass,
        sampler=cfg.sampler, shrink=cfg.shrink, rhat_max=cfg.checks.rhat_max,
        min_ess_per_chain=cfg.checks.min_ess_per_chain,
    )  # fmt: skip
    ais = AISSettings(
        chains=cfg.chains, steps=cfg.ais_steps, leapfrog_steps=cfg.leapfrog_steps, mass=cfg.ais_mass,
        target_se=cfg.target_se or None, max_chains=cfg.max_chains or None,
    )  # fmt: skip
    iwae = IWAESettings(samples=cfg.iwae_samples, max_batch=cfg.max_batch)
    return EstimatorSettings(hmc=hmc, ais=ais, iwae=iwae, progress=cfg.progress)


def discretises(cfg: LoglikConfig, vae: Any) -> bool:
    """Whether the estimators score the 8-bit images under the discretised Gaussian of the VAE's
    Gaussian likelihood (a probability: bits/dim comparable with the literature, never negative)."""
    return cfg.discretise and vae.cfg.likelihood != "bernoulli"


def pixel_model(cfg: LoglikConfig, vae: Any) -> Any:
    """The Pyro model whose p(x) is estimated: the VAE's own, or its discretised-Gaussian version."""
    return discretised_model(vae) if discretises(cfg, vae) else vae.model


def pixel_model_note(cfg: LoglikConfig, vae: Any) -> str:
    """What log p(x) is, in words, for loglik.json."""
    if vae.cfg.likelihood == "bernoulli":
        return "bernoulli: log p(x) is the probability of the binary image (never positive)"
    if discretises(cfg, vae):
        return (
            "discretised-gaussian-256: P(x) of the 8-bit image, each pixel the Gaussian's mass over its bin "
            "[(k - 1/2)/255, (k + 1/2)/255] (outer bins open); never positive, so bits/dim >= 0, comparable "
            "with published bits/dim"
        )
    return (
        "gaussian-density: log of the continuous density on [0, 1]^D (--no-discretise); not a probability: "
        "it can be positive (bits/dim < 0) and is not comparable with published bits/dim"
    )


@dataclass
class LoglikRun:
    """What every stage of a `probgen loglik` run shares: the checkpoint, model, data split and output folder."""

    ckpt_path: Path
    out: Path
    device: torch.device
    vae: Any
    data: Any
    split: Any
    dist: Dist
    start: float


def images(run: LoglikRun, index: torch.Tensor) -> torch.Tensor:
    """The split's images at ``index``, in [0, 1], on the run's device."""
    return to_unit(run.split.images[index]).to(run.device)


def chain_checks(run: LoglikRun, cfg: LoglikConfig, runs: list[HMCResult], index: torch.Tensor) -> tuple[Any, Any]:
    """Stage 2: the Appendix D chains to chains.nc and their diagnostics (None, None without chains)."""
    if not runs:
        return None, None
    attrs = {"sampler": cfg.sampler, "checkpoint": str(run.ckpt_path)}
    idata = diag.to_inference_data(cat_runs(runs), point_index=index.tolist(), attrs=attrs)
    diag.save_chains(idata, run.out / "chains.nc")
    return idata, diag.diagnose(idata, cfg.checks.rhat_max, cfg.checks.min_ess_per_chain)


def base_report(run: LoglikRun, cfg: LoglikConfig, n: int) -> dict[str, Any]:
    """The first keys of loglik.json: what was scored, and what log p(x) means."""
    vae = run.vae
    return {
        "checkpoint": str(run.ckpt_path),
        "dataset": run.data.name,
        "data_source": run.data.source,
        "split": cfg.split,
        "num_data": n,
        "points": cfg.points,
        "data_dim": vae.image_shape[0] * vae.image_shape[1] * vae.image_shape[2],
        "latent_dim": vae.latent_dim,
        "likelihood": vae.cfg.likelihood,
        "pixel_model": pixel_model_note(cfg, vae),
        "units": "log p(x) in nats per image; bits/dim = -log p(x) / (pixels x channels x ln 2)",
    }


def add_diagnostics(
    report: dict[str, Any], rows: list[dict[str, Any]], cfg: LoglikConfig, run: LoglikRun, idata: Any, checks: Any,
    index: torch.Tensor, warnings: list[str],
) -> None:  # fmt: skip
    """Stage 3: the chain diagnostics into loglik.json and the CSV rows, trace/rank PNGs, warnings."""
    n = index.numel()
    report["diagnostics"] = checks.summary()
    for row, d in zip(rows, checks.rows()):
        row.update({k: v for k, v in d.items() if k != "datapoint"})
    asked = set(index.tolist())
    points = [p for p in cfg.plot_points if p in asked] or diag.worst_points(checks)
    report["plots"] = [p.name for p in diag.plot_chains(idata, points, run.out)]
    if checks.num_failed:
        warnings.append(
            f"{checks.num_failed} of {n} data points failed the chain diagnostics (R-hat > {cfg.checks.rhat_max} "
            f"or ESS < {checks.min_ess:g}); their appendix-d values are flagged in loglik.csv: run longer "
            "(--warmup, --samples) or see `probgen diagnose`"
        )
