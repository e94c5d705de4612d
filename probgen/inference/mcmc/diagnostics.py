"""The ArviZ bridge: HMC chains -> InferenceData -> NetCDF, R-hat/ESS per data point, trace and rank PNGs.

Chains shaped (chain, draw, datapoint, latent) go through ``az.from_dict`` (ArviZ 0.2x; 1.x dropped
``InferenceData``), so ``z`` has dims (chain, draw, datapoint, latent) and the per-transition
statistics (``diverging``, ``acceptance_rate``, ``lp``) have dims (chain, draw, datapoint). A data
point fails when its worst latent has rank-normalised split R-hat above ``rhat_max`` or bulk/tail ESS
below ``min_ess_per_chain`` x chains (Vehtari et al. 2021 recommend R-hat < 1.01 and 100 per chain).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np

from probgen.errors import UserError
from probgen.inference.mcmc.hmc import HMCResult

__all__ = [
    "ChainDiagnostics",
    "diagnose",
    "load_chains",
    "plot_chains",
    "save_chains",
    "to_inference_data",
    "worst_points",
]


def to_inference_data(
    run: HMCResult, point_index: Sequence[int] | None = None, attrs: dict[str, Any] | None = None
) -> az.InferenceData:
    """InferenceData of an HMC run; ``point_index`` labels the datapoint axis (e.g. indices into the split)."""
    c, s, n, d = run.samples.shape
    coords = {"datapoint": list(range(n)) if point_index is None else [int(i) for i in point_index]}
    coords["latent"] = list(range(d))
    constant = {"step_size": run.step_size.detach().cpu().numpy()}
    if run.inverse_mass is not None:
        constant["inverse_mass"] = run.inverse_mass.detach().cpu().numpy()
    return az.from_dict(
        posterior={"z": run.samples.detach().cpu().numpy()},
        sample_stats={
            "diverging": run.diverging.detach().cpu().numpy(),
            "acceptance_rate": run.accept_prob.detach().cpu().numpy(),
            "lp": -run.potential.detach().cpu().numpy(),  # log p(z, x) in nats
        },
        constant_data=constant,
        coords=coords,
        dims={
            "z": ["datapoint", "latent"],
            "diverging": ["datapoint"],
            "acceptance_rate": ["datapoint"],
            "lp": ["datapoint"],
            "step_size": ["datapoint"],
            "inverse_mass": ["datapoint", "latent"],
        },
        attrs={"num_grad_evals": run.num_grad_evals, **(attrs or {})},
    )


def save_chains(idata: az.InferenceData, path: str | Path) -> Path:
    """Write ``chains.nc`` (NetCDF4 through h5netcdf, no system library needed)."""
    path = Path(path)
    idata.to_netcdf(str(path), engine="h5netcdf")
    return path


def load_chains(path: str | Path) -> az.InferenceData:
    """Read a ``chains.nc``; a missing or foreign file is a UserError."""
    path = Path(path)
    if path.is_dir():
        path = path / "chains.nc"
    if not path.is_file():
        raise UserError(f"no such chains file: {path}")
    try:
        idata = az.from_netcdf(str(path), engine="h5netcdf")
    except Exception as exc:  # h5py/xarray raise many types for a foreign file
        raise UserError(f"{path} is not a readable NetCDF chains file ({type(exc).__name__})") from None
    post = getattr(idata, "posterior", None)
    if post is None or "z" not in post or tuple(post["z"].dims) != ("chain", "draw", "datapoint", "latent"):
        raise UserError(f"{path} holds no posterior 'z' with dims (chain, draw, datapoint, latent)")
    return idata


@dataclass
class ChainDiagnostics:
    """Per data point (N,) numpy arrays: worst-latent R-hat and ESS, divergences, acceptance, failure."""

    datapoint: np.ndarray
    rhat: np.ndarray
    ess_bulk: np.ndarray
    ess_tail: np.ndarray
    divergences: np.ndarray
    accept_rate: np.ndarray
    failed: np.ndarray
    rhat_max: float
    min_ess: float
    ess_lp: np.ndarray | None = None  # bulk ESS of lp = log p(x, z), per point

    @property
    def num_failed(self) -> int:
        return int(self.failed.sum())

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "datapoint": int(self.datapoint[i]),
                "rhat": float(self.rhat[i]),
                "ess_bulk": float(self.ess_bulk[i]),
                "ess_tail": float(self.ess_tail[i]),
                **({} if self.ess_lp is None else {"ess_lp": float(self.ess_lp[i])}),
                "divergences": int(self.divergences[i]),
                "accept_rate": float(self.accept_rate[i]),
                "failed": bool(self.failed[i]),
            }
            for i in range(len(self.datapoint))
        ]

    def summary(self) -> dict[str, Any]:
        def worst(a: np.ndarray, fn: Any) -> float | None:
            return float(fn(a)) if a.size and np.isfinite(a).any() else None

        return {
            "num_points": int(len(self.datapoint)),
            "num_failed": self.num_failed,
            "failed_datapoints": [int(i) for i in self.datapoint[self.failed]],
            "rhat_threshold": self.rhat_max,
            "min_ess_threshold": self.min_ess,
            "rhat_max": worst(self.rhat, np.nanmax),
            "ess_bulk_min": worst(self.ess_bulk, np.nanmin),
            "ess_tail_min": worst(self.ess_tail, np.nanmin),
            "divergences_total": int(self.divergences.sum()),
            "points_with_divergences": int((self.divergences > 0).sum()),
            "accept_rate_mean": float(self.accept_rate.mean()) if self.accept_rate.size else None,
        }


def diagnose(idata: az.InferenceData, rhat_max: float = 1.01, min_ess_per_chain: float = 100.0) -> ChainDiagnostics:
    """R-hat (rank-normalised, split), bulk and tail ESS of ``z``, worst over latents, per data point;
    bulk ESS of ``lp`` (the log density log p(x, z)), which tracks how well the chains explore the
    posterior's typical set as a whole.

    These are computed across all chains: for a multimodal posterior whose chains sit in different
    modes R-hat is large, correctly for the chains but not for the estimate; Appendix D's own flags
    (:func:`probgen.inference.loglik.appendix_d.chain_checks`) are computed within modes.

    NaN R-hat/ESS (e.g. a chain stuck at one value) count as failures.
    """
    post = idata.posterior
    num_chains = int(post.sizes["chain"])
    min_ess = min_ess_per_chain * num_chains
    rhat = az.rhat(idata, var_names=["z"])["z"].max("latent", skipna=False).values
    ess_bulk = az.ess(idata, var_names=["z"], method="bulk")["z"].min("latent", skipna=False).values
    ess_tail = az.ess(idata, var_names=["z"], method="tail")["z"].min("latent", skipna=False).values
    stats = idata.sample_stats
    ess_lp = az.ess(stats, var_names=["lp"], method="bulk")["lp"].values if "lp" in stats else None
    divergences = stats["diverging"].sum(("chain", "draw")).values.astype(int)
    accept = stats["acceptance_rate"].mean(("chain", "draw")).values
    with np.errstate(invalid="ignore"):
        failed = ~(rhat <= rhat_max) | ~(ess_bulk >= min_ess) | ~(ess_tail >= min_ess)
    return ChainDiagnostics(
        post["datapoint"].values, rhat, ess_bulk, ess_tail, divergences, accept, failed, rhat_max, min_ess, ess_lp
    )


def plot_chains(idata: az.InferenceData, points: Sequence[int], out_dir: str | Path) -> list[Path]:
    """``trace_dp<i>.png`` and ``rank_dp<i>.png`` for each datapoint label ``i`` in ``points``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    written = []
    for i in points:
        coords = {"datapoint": [int(i)]}
        for kind, fn in (("trace", az.plot_trace), ("rank", az.plot_rank)):
            with warnings.catch_warnings():  # ArviZ 0.23 uses a matplotlib API deprecated in 3.11
                warnings.simplefilter("ignore", DeprecationWarning)
                axes = fn(idata, var_names=["z"], coords=coords, show=False)
            fig = np.asarray(axes).ravel()[0].figure
            fig.suptitle(f"z of data point {i}: {kind} plot")
            fig.tight_layout()
            path = out_dir / f"{kind}_dp{i}.png"
            fig.savefig(path, dpi=80)
            plt.close(fig)
            written.append(path)
    return written


def worst_points(diag: ChainDiagnostics, count: int = 2) -> list[int]:
    """Labels of the ``count`` data points with the largest R-hat (NaN first)."""
    key = np.where(np.isnan(diag.rhat), math.inf, diag.rhat)
    order = np.argsort(-key, kind="stable")[:count]
    return [int(diag.datapoint[j]) for j in order]
