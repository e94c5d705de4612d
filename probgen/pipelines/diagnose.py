"""`probgen diagnose`: the ArviZ summary of a chains.nc and the data points whose chains did not mix."""

from __future__ import annotations

import json

import arviz as az
import pandas as pd

from probgen.config import DiagnoseConfig
from probgen.inference.mcmc import diagnostics as diag
from probgen.utils.io import _clean


def diagnose_chains(cfg: DiagnoseConfig) -> str:
    """The text `probgen diagnose` prints: ArviZ summary of z, then per-point verdicts (or JSON)."""
    idata = diag.load_chains(cfg.chains_file)
    checks = diag.diagnose(idata, cfg.checks.rhat_max, cfg.checks.min_ess_per_chain)
    if cfg.json:
        return json.dumps(_clean({"summary": checks.summary(), "datapoints": checks.rows()}), indent=2)
    post = idata.posterior
    summary = az.summary(idata, var_names=["z"], round_to=3)
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 160):
        lines = [
            f"{cfg.chains_file}: z with {post.sizes['chain']} chains x {post.sizes['draw']} draws, "
            f"{post.sizes['datapoint']} data points x {post.sizes['latent']} latents",
            summary.to_string(),
            "",
        ]
    s = checks.summary()
    lines.append(
        f"R-hat max {s['rhat_max']}, bulk ESS min {s['ess_bulk_min']}, tail ESS min {s['ess_tail_min']}, "
        f"divergences {s['divergences_total']}, mean acceptance {s['accept_rate_mean']}"
    )
    if checks.num_failed:
        lines.append(
            f"FAILED: {checks.num_failed} of {s['num_points']} data points have R-hat > {checks.rhat_max} "
            f"or ESS < {checks.min_ess:g}:"
        )
        for row in checks.rows():
            if row["failed"]:
                lines.append(
                    f"  datapoint {row['datapoint']}: R-hat {row['rhat']:.4f}, bulk ESS {row['ess_bulk']:.0f}, "
                    f"tail ESS {row['ess_tail']:.0f}, divergences {row['divergences']}"
                )
    else:
        lines.append(f"all {s['num_points']} data points pass (R-hat <= {checks.rhat_max}, ESS >= {checks.min_ess:g})")
    return "\n".join(lines)
