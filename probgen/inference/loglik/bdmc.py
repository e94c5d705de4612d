"""Bidirectional Monte Carlo (Grosse, Ghahramani & Adams 2015; Wu et al. 2017 for decoders).

On data simulated from the model, z* ~ p(z) and x ~ p(x | z*), the pair (z*, x) is also an exact draw
of p(z | x) given x. Forward AIS (prior -> posterior) gives weights unbiased for p(x): a stochastic
lower bound of log p(x). Reverse AIS, started at z* and annealed from beta = 1 back to 0 through the
same temperatures, gives weights unbiased for 1 / p(x): a stochastic upper bound. The gap between
the two bounds bounds the error of either, per point, without knowing p(x); it shrinks to 0 as the
number of AIS steps grows, and a gap that stays large says that AIS of that length cannot be trusted
on this model. (The guarantee holds for simulated data only; real data may be far from the model.)

This module takes callables and tensors only (no model imports): :func:`simulate` draws (z*, x) from
any Pyro model by running it with its observed site sampled instead of conditioned.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pyro import poutine

from probgen.inference.loglik.ais import (
    _result_with_flags,
    anneal,
    pilot_plan,
    run_info,
    tempered_inverse_mass,
)
from probgen.inference.loglik.result import LoglikResult, _logmeanexp
from probgen.inference.mcmc.potential import LatentTarget

__all__ = ["BDMCResult", "bdmc", "bdmc_gap_table", "simulate"]


@torch.no_grad()
def simulate(
    model: Callable, *args: Any, latent: str = "z", observed: str = "x", **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw (z*, x) from ``model(*args, **kwargs)`` with its observed site sampled, not conditioned.

    ``args`` are the model's usual arguments; an observed ``x`` among them only sets the number and
    shape of the simulated points (e.g. ``simulate(vae.model, torch.zeros(16, 1, 28, 28))``). Returns
    z* (N, D) and x shaped like the observed site.
    """
    tr = poutine.trace(poutine.uncondition(model)).get_trace(*args, **kwargs)
    for name in (latent, observed):
        if name not in tr.nodes:
            raise ValueError(f"model has no sample site {name!r}")
    return tr.nodes[latent]["value"].detach(), tr.nodes[observed]["value"].detach()


@dataclass
class BDMCResult:
    """Per point: ``lower`` (forward AIS, method ``bdmc-lower``) and ``upper`` (reverse AIS, method
    ``bdmc-upper``), both stochastic bounds of log p(x) with their own se and flags."""

    lower: LoglikResult
    upper: LoglikResult

    @property
    def gap(self) -> torch.Tensor:
        """(N,) upper - lower in nats; >= 0 in expectation, and it bounds either bound's error."""
        return self.upper.log_px - self.lower.log_px

    def results(self) -> dict[str, LoglikResult]:
        """Both bounds by method name, as :func:`probgen.inference.loglik.trust.cross_check` takes them."""
        return {"bdmc-lower": self.lower, "bdmc-upper": self.upper}

    def to_dict(self) -> dict[str, Any]:
        gap = self.gap
        return {
            "lower": self.lower.to_dict(),
            "upper": self.upper.to_dict(),
            "gap_mean": float(gap.mean()),
            "gap_max": float(gap.max()),
            "gap_median": float(gap.median()),
        }


def bdmc(
    target: LatentTarget,
    z_star: torch.Tensor,
    num_chains: int = 16,
    num_steps: int = 1000,
    leapfrog_steps: int = 10,
    target_accept_prob: float = 0.65,
    *,
    schedule: str | torch.Tensor = "adaptive",
    pilot_chains: int | None = None,
    posterior_variance: torch.Tensor | None = None,
    progress: bool = False,
) -> BDMCResult:
    """Forward and reverse AIS on the points of ``target``, whose data were simulated from ``z_star`` (N, D).

    One pilot run (:func:`~probgen.inference.loglik.ais.pilot_plan`, ``pilot_chains`` default
    max(2, num_chains // 4)) freezes the temperatures and step sizes; ``num_chains`` forward chains
    from the prior and ``num_chains`` reverse chains from z* then run that plan in opposite
    directions. The reverse chains of a point all start at its one exact posterior draw z*; they
    differ from the first transition on, but share that start, so the reverse se (over chains,
    given z*) leaves out the variation over z*. Cost: 2 + pilot_chains / num_chains AIS runs.
    """
    if z_star.shape != (target.num_data, target.latent_dim):
        raise ValueError(f"z_star must be ({target.num_data}, {target.latent_dim}), got {tuple(z_star.shape)}")
    if num_chains < 1 or num_steps < 1:
        raise ValueError(f"need num_chains, num_steps >= 1, got {num_chains}, {num_steps}")
    pilot = max(2, num_chains // 4) if pilot_chains is None else pilot_chains
    mass = None if posterior_variance is None else tempered_inverse_mass(posterior_variance)
    common = {"leapfrog_steps": leapfrog_steps, "inverse_mass": mass, "target_accept_prob": target_accept_prob}
    plan = pilot_plan(target, num_steps, pilot, schedule, progress=progress, **common)
    fwd = anneal(target, target.sample_prior(num_chains), plan.betas, plan.step_sizes, progress=progress, **common)
    z0 = z_star.to(fwd.z).unsqueeze(0).expand(num_chains, -1, -1).clone()
    rev = anneal(
        target, z0, plan.betas.flip(0), plan.step_sizes.flip(0), progress=progress, desc="reverse AIS", **common
    )
    settings = (num_chains, pilot, num_steps, leapfrog_steps, schedule, posterior_variance)
    lower = _result_with_flags("bdmc-lower", target, _logmeanexp(fwd.log_w, 0), fwd.log_w, **run_info(*settings, fwd))
    # reverse weights estimate 1 / p(x): log p(x) = -log mean(w_rev); the delta-method se is the same
    upper = _result_with_flags("bdmc-upper", target, -_logmeanexp(rev.log_w, 0), rev.log_w, **run_info(*settings, rev))
    return BDMCResult(lower, upper)


def bdmc_gap_table(
    make_problem: Callable[[int], tuple[LatentTarget, torch.Tensor, torch.Tensor | None]],
    steps: list[int],
    seeds: list[int],
    **bdmc_options: Any,
) -> list[dict[str, float]]:
    """BDMC bounds and gap as the number of AIS steps grows, averaged over points and seeds.

    ``make_problem(seed)`` returns (target, z*, exact log p(x) or None) for simulated points. One row
    per entry of ``steps``: mean lower and upper bounds, mean and max gap (nats), and, where the exact
    value is known, the mean errors of both bounds and the fraction of points whose [lower - 3 se_lower,
    upper + 3 se_upper] interval contains it.
    """
    rows = []
    for t in steps:
        lows, ups, exacts, se_lo, se_up = [], [], [], [], []
        for seed in seeds:
            target, z_star, exact = make_problem(seed)
            r = bdmc(target, z_star, num_steps=t, **bdmc_options)
            lows.append(r.lower.log_px)
            ups.append(r.upper.log_px)
            se_lo.append(r.lower.se)
            se_up.append(r.upper.se)
            if exact is not None:
                exacts.append(exact.double().cpu())
        lo, up = torch.cat(lows), torch.cat(ups)
        gap = up - lo
        row = {
            "ais_steps": t,
            "points": lo.numel(),
            "lower_mean": float(lo.mean()),
            "upper_mean": float(up.mean()),
            "gap_mean": float(gap.mean()),
            "gap_se": float(gap.std() / math.sqrt(gap.numel())) if gap.numel() > 1 else 0.0,
            "gap_max": float(gap.max()),
        }
        if exacts:
            ex = torch.cat(exacts)
            inside = (torch.cat(se_lo).nan_to_num(0) * -3 + lo <= ex) & (ex <= up + 3 * torch.cat(se_up).nan_to_num(0))
            row.update(
                {
                    "lower_error_mean": float((lo - ex).mean()),
                    "upper_error_mean": float((up - ex).mean()),
                    "contains_exact": float(inside.double().mean()),
                }
            )
        rows.append(row)
    return rows
