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

from probgen.config.estimators import AISSettings
from probgen.config.estimators import pilot_chains as default_pilot
from probgen.inference.loglik.ais import (
    _result_with_flags,
    anneal,
    pilot_plan,
    run_info,
    tempered_inverse_mass,
)
from probgen.inference.loglik.laplace import LaplaceFit, LaplaceTargets, ais_laplace, laplace_targets
from probgen.inference.loglik.result import LoglikResult, _logmeanexp
from probgen.inference.mcmc.potential import LatentTarget

__all__ = ["BDMCResult", "bdmc", "bdmc_gap_table", "bdmc_laplace", "simulate"]


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
    num_chains: int = AISSettings.chains,
    num_steps: int = AISSettings.steps,
    leapfrog_steps: int = AISSettings.leapfrog_steps,
    target_accept_prob: float = AISSettings.target_accept,
    *,
    schedule: str | torch.Tensor = "adaptive",
    pilot_chains: int | None = None,
    posterior_variance: torch.Tensor | None = None,
    progress: bool = False,
) -> BDMCResult:
    """Forward and reverse AIS on the points of ``target``, whose data were simulated from ``z_star`` (N, D).

    One pilot run (:func:`~probgen.inference.loglik.ais.pilot_plan`, ``pilot_chains`` default
    :func:`~probgen.config.estimators.pilot_chains`) freezes the temperatures and step sizes;
    ``num_chains`` forward chains from the prior and ``num_chains`` reverse chains from z* then run that
    plan in opposite directions. The reverse chains of a point all start at its one exact posterior draw z*; they
    differ from the first transition on, but share that start, so the reverse se (over chains,
    given z*) leaves out the variation over z*. Cost: 2 + pilot_chains / num_chains AIS runs.
    """
    if z_star.shape != (target.num_data, target.latent_dim):
        raise ValueError(f"z_star must be ({target.num_data}, {target.latent_dim}), got {tuple(z_star.shape)}")
    if num_chains < 1 or num_steps < 1:
        raise ValueError(f"need num_chains, num_steps >= 1, got {num_chains}, {num_steps}")
    pilot = default_pilot(num_chains) if pilot_chains is None else pilot_chains
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


def bdmc_laplace(
    target: LatentTarget,
    z_star: torch.Tensor,
    starts: torch.Tensor,
    num_chains: int = 16,
    num_steps: int = 300,
    leapfrog_steps: int = 5,
    *,
    laplace_steps: int = 200,
    pilot_chains: int | None = None,
    progress: bool = False,
) -> BDMCResult:
    """BDMC for ``--method ais-laplace``: its forward estimate (a stochastic lower bound) and reverse
    AIS from the exact posterior draws ``z_star`` (N, D) back to the Laplace mixture (an upper bound).

    The forward run is :func:`~probgen.inference.loglik.laplace.ais_laplace` on ``starts`` (R, N, D).
    The reverse run anneals along q(z)^(1-beta) p(x, z)^beta, q the point's whole Laplace mixture
    (normalised, its components weighted by their Laplace evidences; one Gaussian where the fit found
    one basin), from z* at beta = 1 back to q, in the whitened coordinates of the z* fit, on a frozen
    pilot plan: its weights are unbiased for 1 / p(x), and ``bdmc-upper`` is minus the log of their
    mean. (Reversing each component's own run instead needs an exact draw of that component's share
    of the posterior; z* is one only for a component picked by its responsibility r_k(z*), and that
    pick alone moves the estimate by log(K S_k / p(x)), up to a nat on two-basin points.) As in
    :func:`bdmc`, a point's reverse chains share one z*, so their se leaves out the variation over z*.
    """
    if z_star.shape != (target.num_data, target.latent_dim):
        raise ValueError(f"z_star must be ({target.num_data}, {target.latent_dim}), got {tuple(z_star.shape)}")
    lt = laplace_targets(target, starts, laplace_steps)
    lower = ais_laplace(target, starts, num_chains, num_steps, leapfrog_steps, progress=progress, targets=lt)
    lower.method = "bdmc-lower"
    path = _mixture_path(target, lt)
    u_star = torch.linalg.solve(lt.fit.scale, (z_star.to(lt.fit.mean) - lt.fit.mean).unsqueeze(-1)).squeeze(-1)
    pilot = default_pilot(num_chains) if pilot_chains is None else pilot_chains
    plan = pilot_plan(path, num_steps, pilot, leapfrog_steps=leapfrog_steps, progress=progress)
    u0 = u_star.unsqueeze(0).expand(num_chains, -1, -1).clone()
    rev = anneal(path, u0, plan.betas.flip(0), plan.step_sizes.flip(0), leapfrog_steps, progress=progress,
                 desc="reverse AIS")  # fmt: skip
    info = run_info(num_chains, pilot, num_steps, leapfrog_steps, "adaptive", None, rev)
    upper = _result_with_flags("bdmc-upper", target, -_logmeanexp(rev.log_w, 0), rev.log_w, start="laplace", **info)
    return BDMCResult(lower, upper)


def _mixture_path(target: LatentTarget, lt: LaplaceTargets) -> LatentTarget:
    """The posterior in u = L*^-1 (z - z*) (z*'s fit) with base the point's Laplace mixture q (in u):
    log base = log q(z) + log|L*|, log rest = log p(x, z) - log q(z), so that base x rest integrates
    to p(x). Supports :meth:`LatentTarget.subset`."""
    n = target.num_data
    comp, point_of = lt.components, lt.point_of.to(lt.fit.mean.device)
    members = [[] for _ in range(n)]  # each point's components, in the mixture's slot order
    for v, i in enumerate(point_of.tolist()):
        members[i].append(v)
    k = max(len(m) for m in members)
    idx = torch.tensor([m + [m[0]] * (k - len(m)) for m in members], device=point_of.device)  # (N, K)
    valid = torch.arange(k, device=idx.device) < torch.tensor([len(m) for m in members], device=idx.device)[:, None]
    log_ev = torch.where(valid, comp.log_joint[idx] + comp.log_det_scale[idx], -math.inf)
    log_w = log_ev - torch.logsumexp(log_ev, -1, keepdim=True)  # (N, K) the evidence weights
    linv = torch.linalg.inv(comp.scale.double()).to(comp.scale.dtype)
    return _path(target, lt.fit, comp.mean[idx], comp.scale[idx], linv[idx], comp.log_det_scale[idx], log_w)


def _path(
    target: LatentTarget,
    fit: LaplaceFit,
    means: torch.Tensor,
    scales: torch.Tensor,
    linvs: torch.Tensor,
    log_dets: torch.Tensor,
    log_w: torch.Tensor,
) -> LatentTarget:
    d = target.latent_dim
    mean, scale, log_det = fit.mean, fit.scale, fit.log_det_scale
    precisions = linvs.transpose(-1, -2) @ linvs  # (N, K, D, D)
    log_norm = log_w - log_dets - 0.5 * d * math.log(2 * math.pi)

    def log_q(z: torch.Tensor) -> torch.Tensor:
        diff = z.unsqueeze(-2) - means  # (C, N, K, D)
        return torch.logsumexp(log_norm - 0.5 * torch.einsum("cnki,nkij,cnkj->cnk", diff, precisions, diff), -1)

    def log_joint(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = mean + torch.einsum("nij,cnj->cni", scale, u)
        lp, ll = target.log_joint(z)
        q = log_q(z)
        return q + log_det, lp + ll - q

    def sample_base(c: int) -> torch.Tensor:
        slot = torch.distributions.Categorical(logits=log_w).sample((c,))  # (C, N)
        pick = slot[..., None, None].expand(-1, -1, 1, d)
        m = means.unsqueeze(0).expand(c, -1, -1, -1).gather(2, pick).squeeze(2)  # (C, N, D)
        sc = scales.unsqueeze(0).expand(c, -1, -1, -1, -1).gather(2, pick.unsqueeze(-1).expand(-1, -1, 1, d, d))
        z = m + torch.einsum("cnij,cnj->cni", sc.squeeze(2), torch.randn_like(m))
        return torch.linalg.solve(scale, (z - mean).unsqueeze(-1)).squeeze(-1)

    def select(index: torch.Tensor) -> LatentTarget:
        i = index.to(mean.device)
        sub = LaplaceFit(*(None if t is None else t[i] for t in fit))
        return _path(target.subset(index), sub, means[i], scales[i], linvs[i], log_dets[i], log_w[i])

    return LatentTarget(log_joint, sample_base, target.num_data, d, target.data_dim, select)


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
