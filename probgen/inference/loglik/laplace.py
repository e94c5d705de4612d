"""AIS from a Laplace approximation of each posterior (``--method ais-laplace``).

AIS from the prior (:func:`~probgen.inference.loglik.ais.ais`) has to anneal across the whole gap between
p(z) and a posterior that can be a thousand times narrower; at latent dimension 10 its log weights
still vary by about 1 nat after 1000 temperatures (docs/benchmarks.md). Starting the annealing from
a Gaussian that already sits on the posterior shortens the path, and so the variance, by a large
factor for the same work:

1. **Laplace fit** (:func:`~probgen.inference.loglik.laplace_fit.laplace_fit`): per point, maximise
   log p(x, z) from several starts (the encoder's mean, draws of the encoder and of the prior), take
   z* as the end point of highest Laplace evidence log p(x, z) + 1/2 log det Sigma (a basin's mass,
   not its peak), refine it by backtracking Newton steps, and take q(z) = N(z*, P^-1) with P the
   Hessian of -log p(x, z) at z* (eigenvalues clipped from below, so that P is positive definite).
2. **Whitening** (:func:`whitened`): in u = L^-1 (z - z*) (Sigma = L L^T) q is N(0, I), and the
   posterior is about N(0, I) too, so a unit mass and step sizes near 1 suit every temperature.
   The wrapped target has base N(0, I) in the place of the prior and log p(x, z*+Lu) + log|L| -
   log N(u) in the place of the likelihood, so that AIS's path q^(1-beta) p(x, z)^beta goes from q
   to the posterior, and its weights, with q normalised and drawn exactly, are unbiased for p(x):
   the estimate is a stochastic lower bound, as plain AIS's.
3. **Everything else is AIS's**: the pilot run and frozen plan, the flags (``ais-variance``), the
   adaptive stop (``--target-se``).

**Several basins.** The starts often end in more than one basin (a posterior with two modes, as
dSprites' symmetric shapes give). The fit admits another basin by its Laplace evidence
(:mod:`~probgen.inference.loglik.laplace_fit`: within log 1000 of z*'s, far from z*, with a dip of
log p(x, z) between them). Up to ``MAX_MODES`` = 4 basins per point get a Laplace fit each
(Newton-refined like z*'s), and q becomes their mixture, weighted by the fits' Laplace evidences.
Each component k then gets its own AIS run, in its own whitened coordinates, from q_k to the
posterior times r_k(z), the component's responsibility pi_k q_k(z) / q(z): since the r_k sum to one
everywhere, the components' estimates of their shares sum to an unbiased estimate of p(x), whatever
the weights and wherever the components sit (the weights only set how the mass is split). Their
error bars add in quadrature. A point whose starts found more basins than ``MAX_MODES`` is
flagged ``missed-mode``.

**What it cannot see** (docs/loglik.md): a basin that none of the starts reaches (more starts,
:func:`~probgen.inference.loglik.laplace_fit.laplace_starts`, make it rarer; AIS from the prior and
Appendix D with overdispersed chains cross-check it per point, ``missed-mode`` when either is above
ais-laplace beyond noise); and within a basin, mass that the annealing from the Gaussian does not
reach in its steps (a curved basin's far arms): then every chain's weight is low together, the log
weights agree and the se is small. That failure is a too-low estimate; BDMC's reverse run from
the exact z* of simulated data (``--method bdmc``) bounds it from above, and the cross-check
against Appendix D flags it on real data.

**A base narrower than the posterior.** A narrow spike of log p(x, z) on a broad basin makes one
maximum, the spike's: the Laplace base is the spike's Gaussian and holds only a small part of p(x).
Per point ``laplace_excess`` = estimate - log of the Laplace mixture's evidence says how much mass
the annealing found beyond the base: about 0 for a Gaussian posterior, 0 to 0.6 nats on curved and
mixture posteriors at latent 10, 1 to 3.8 nats where the base was the spike's (broad-narrow). It
is not a flag (measured in docs/loglik.md: at 200 temperatures those estimates were mostly within
0.35 nats, and a flag at 1 nat would flag 6 and 9 of 16 points), and it cannot see mass the
annealing never reached (a spike holding 10% at the centre of a broad basin: the chains stay in the
spike, the estimate is log 0.1 low, excess 0; a strict xfail in tests/inference/loglik/test_laplace.py).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch

from probgen.config.estimators import LAPLACE_AIS, LaplaceSettings
from probgen.inference.loglik.ais import ais
from probgen.inference.loglik.laplace_fit import (
    MAX_MODES,
    MODE_DISTANCE,
    NEWTON_STEPS,
    LaplaceFit,
    _factor,
    _newton,
    laplace_fit,
)
from probgen.inference.loglik.result import LoglikResult
from probgen.inference.mcmc.potential import LatentTarget

__all__ = ["LaplaceFit", "LaplaceTargets", "Mixture", "ais_laplace", "laplace_fit", "laplace_targets", "whitened"]


class Mixture(NamedTuple):
    """For each of M components (one Laplace fit each, points repeated where a posterior has several
    basins): its point's components, padded to K: their means (M, K, D), precisions (M, K, D, D) and
    log(weight) - log|det L| - D/2 log 2 pi (M, K; -inf in padding), and the slot (M,) that is the
    component itself. :func:`whitened` adds log r(z), the component's responsibility, to its target."""

    means: torch.Tensor
    precisions: torch.Tensor
    log_norm: torch.Tensor
    own: torch.Tensor


def whitened(target: LatentTarget, fit: LaplaceFit, mixture: Mixture | None = None) -> LatentTarget:
    """The posterior in u = L^-1 (z - z*): base N(0, I) in the prior's place, log p(x, z*+Lu) + log|L|
    - log N(u; 0, I) in the likelihood's, so that base x likelihood = p(x, z) |L| and its integral
    over u is p(x) (module docstring). With ``mixture``, each point is one component of a mixture of
    Laplace fits and log r(z) is added, its responsibility for z: the integral is then that
    component's share of p(x), and the shares of a point's components sum to p(x).
    Supports :meth:`LatentTarget.subset` (points of both)."""
    d = target.latent_dim
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    mean, scale, log_det = fit.mean, fit.scale, fit.log_det_scale

    def log_joint(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = mean + torch.einsum("nij,cnj->cni", scale, u)
        lp, ll = target.log_joint(z)
        base = -0.5 * u.square().sum(-1) - d * half_log_2pi
        rest = lp + ll + log_det - base
        if mixture is not None:
            diff = z.unsqueeze(-2) - mixture.means  # (C, M, K, D)
            log_q = mixture.log_norm - 0.5 * torch.einsum("cmki,mkij,cmkj->cmk", diff, mixture.precisions, diff)
            own = log_q.gather(-1, mixture.own.view(1, -1, 1).expand(log_q.shape[0], -1, 1)).squeeze(-1)
            rest = rest + own - torch.logsumexp(log_q, -1)
        return base, rest

    def sample_base(c: int) -> torch.Tensor:
        return torch.randn(c, *mean.shape, dtype=mean.dtype, device=mean.device)

    def select(index: torch.Tensor) -> LatentTarget:
        i = index.to(mean.device)
        sub = LaplaceFit(*(None if t is None else t[i] for t in fit))
        mix = None if mixture is None else Mixture(*(t[i] for t in mixture))
        return whitened(target.subset(index), sub, mix)

    return LatentTarget(log_joint, sample_base, target.num_data, d, target.data_dim, select)


def _components(target: LatentTarget, fit: LaplaceFit) -> tuple[torch.Tensor, LaplaceFit, Mixture] | None:
    """The mixture's components: every point's z* fit, then a Laplace fit (Newton-refined, as z*'s) at
    each other basin in ``fit.basins``. Returns the point of each component (M,), their fits and the
    :class:`Mixture`; None where no point has another basin. A refined basin that ended within
    :data:`MODE_DISTANCE` sds of a component already kept is dropped (it climbed back to it).
    Weights are the fits' Laplace evidences p(x, z_k) |L_k| (any weights keep the estimate unbiased;
    these make each component's share about its basin's mass)."""
    if fit.basin_found is None or not bool(fit.basin_found.any()):
        return None
    n, d = target.num_data, target.latent_dim
    pts, slots = torch.nonzero(fit.basin_found, as_tuple=True)
    sub = target.subset(pts)
    zs, f, _, p = _newton(sub, fit.basins[pts, slots], NEWTON_STEPS)
    scale, log_det, clipped, _ = _factor(p)
    linv = torch.linalg.inv(fit.scale.double())
    own_p = (linv.transpose(-1, -2) @ linv).to(p.dtype)  # z*'s clipped precision, (L L^T)^-1
    # squared distances of each refined basin to its z* (under z*'s precision) and to the other
    # refined basins (under theirs), copied to the host once for the greedy choice
    to_star = zs - fit.mean[pts]
    d_star = torch.maximum(  # under z*'s precision and under the basin's own
        torch.einsum("ei,eij,ej->e", to_star, own_p[pts], to_star),
        torch.einsum("ei,eij,ej->e", to_star, clipped, to_star),
    )
    between = zs[:, None] - zs[None]  # (E, E, D): row e against column c's basin
    d_between = torch.einsum("eci,cij,ecj->ec", between, clipped, between)
    ok_star = (torch.isfinite(f) & (d_star > MODE_DISTANCE**2)).tolist()
    far = (d_between > MODE_DISTANCE**2).tolist()
    pts_list = pts.tolist()
    keep: list[int] = []
    for e, i in enumerate(pts_list):
        if ok_star[e] and all(far[e][c] for c in keep if pts_list[c] == i):
            keep.append(e)
    if not keep:
        return None
    kept = torch.tensor(keep, dtype=torch.long, device=pts.device)
    point_of = torch.cat([torch.arange(n, device=pts.device), pts[kept]])
    comp = LaplaceFit(
        torch.cat([fit.mean, zs[kept]]),
        torch.cat([fit.scale, scale[kept]]),
        torch.cat([fit.log_det_scale, log_det[kept]]),
        torch.cat([fit.log_joint, f[kept]]),
        fit.other_optima[point_of],
        fit.grad_norm[point_of],
    )
    all_p = torch.cat([own_p, clipped[kept]])
    members: list[list[int]] = [[] for _ in range(n)]  # each point's components, in order
    for v, i in enumerate(point_of.tolist()):
        members[i].append(v)
    k = max(len(x) for x in members)
    rows = [members[i] + [0] * (k - len(members[i])) for i in point_of.tolist()]
    idx = torch.tensor(rows, dtype=torch.long, device=pts.device)
    valid = torch.arange(k, device=pts.device) < torch.bincount(point_of, minlength=n)[point_of, None]
    own = torch.tensor([members[i].index(v) for v, i in enumerate(point_of.tolist())], device=pts.device)
    log_evidence = comp.log_joint + comp.log_det_scale
    ev = torch.where(valid, log_evidence[idx], -math.inf)
    log_w = ev - torch.logsumexp(ev, -1, keepdim=True)
    log_norm = torch.where(valid, log_w - comp.log_det_scale[idx] - 0.5 * d * math.log(2 * math.pi), -math.inf)
    return point_of, comp, Mixture(comp.mean[idx], all_p[idx], log_norm, own)


def _logsumexp_by_point(values: torch.Tensor, point_of: torch.Tensor, n: int) -> torch.Tensor:
    """Per point (N,), log sum exp(``values``) (M,) over its components (``point_of`` (M,), on the host)."""
    values = values.detach().double().cpu()
    top = torch.full((n,), -math.inf, dtype=torch.float64).scatter_reduce(0, point_of, values, "amax")
    rel = torch.where(torch.isfinite(top[point_of]), (values - top[point_of]).exp(), 0.0)  # each / the largest
    return top + torch.zeros(n, dtype=torch.float64).index_add(0, point_of, rel).log()


def _combine(result: LoglikResult, point_of: torch.Tensor, n: int) -> LoglikResult:
    """One point's estimate from its components' (``result`` over M components, ``point_of`` (M,)):
    p(x) is the sum of their shares, var(p-hat) the sum of theirs (independent runs), flags the union;
    per point the largest log-weight variance, the smallest weights ESS and the chains summed."""
    idx = point_of.cpu()
    log_px = _logsumexp_by_point(result.log_px, idx, n)
    out = dataclasses.replace(result, log_px=log_px, flags=[[] for _ in range(n)], per_point={})
    if result.se is not None:  # the delta method: var(p-hat) / p-hat^2 = sum over shares of (share se)^2 / p-hat^2
        share = torch.where(torch.isfinite(log_px[idx]), (result.log_px - log_px[idx]).exp(), 0.0)
        out.se = torch.zeros(n, dtype=torch.float64).index_add(0, idx, (share * result.se).square()).sqrt()
    fill = {"log_weight_var": ("amax", -math.inf), "weights_ess": ("amin", math.inf)}
    for name, values in result.per_point.items():
        mode, first = fill.get(name, ("sum", 0.0))
        start = torch.full((n,), first, dtype=torch.float64)
        out.per_point[name] = start.scatter_reduce(0, idx, values.double(), mode)
    for v, i in enumerate(idx.tolist()):
        for reason in result.flags[v]:
            out.add_flag(i, reason)
    counts = out.flag_counts()
    for key, reason in (("num_ais_variance", "ais-variance"), ("num_se_above_target", "se-above-target")):
        if key in out.info:
            out.info[key] = counts.get(reason, 0)
    return out


class LaplaceTargets(NamedTuple):
    """What ais-laplace anneals (:func:`laplace_targets`): z*'s fit with the basins (N points), the
    point of each of the M components (M,), the components' fits (M; the first N are the z* fits) and
    their whitened targets (M points), and the :class:`Mixture` (None where no point has two basins)."""

    fit: LaplaceFit
    point_of: torch.Tensor
    components: LaplaceFit
    annealed: LatentTarget
    mixture: Mixture | None


def laplace_targets(target: LatentTarget, starts: torch.Tensor, laplace_steps: int = 200) -> LaplaceTargets:
    """Fit each point's posterior from ``starts`` (R, N, D) and build the whitened target of each
    component of its mixture (module docstring): the forward runs of :func:`ais_laplace` and the
    reverse runs of :func:`~probgen.inference.loglik.bdmc.bdmc_laplace` share them."""
    fit = laplace_fit(target, starts, steps=laplace_steps)
    parts = _components(target, fit)
    if parts is None:
        return LaplaceTargets(fit, torch.arange(target.num_data), fit, whitened(target, fit), None)
    point_of, comp, mixture = parts
    return LaplaceTargets(fit, point_of, comp, whitened(target.subset(point_of), comp, mixture), mixture)


def _laplace_evidence(lt: LaplaceTargets, n: int) -> torch.Tensor:
    """Per point (N,), the log of the Laplace approximation's own estimate of p(x): the sum over its
    components of p(x, z_k) |L_k| (2 pi)^(D/2), the mass that the Gaussian base holds."""
    comp, d = lt.components, lt.annealed.latent_dim
    log_evidence = comp.log_joint + comp.log_det_scale + 0.5 * d * math.log(2 * math.pi)
    return _logsumexp_by_point(log_evidence, lt.point_of.cpu(), n)


def ais_laplace(
    target: LatentTarget,
    starts: torch.Tensor,
    num_chains: int = LAPLACE_AIS.chains,
    num_steps: int = LAPLACE_AIS.steps,
    leapfrog_steps: int = LAPLACE_AIS.leapfrog_steps,
    *,
    laplace_steps: int = LaplaceSettings.fit_steps,
    progress: bool = False,
    target_se: float | None = None,
    max_chains: int | None = None,
    targets: LaplaceTargets | None = None,
) -> LoglikResult:
    """AIS from each point's Laplace approximation to its posterior (module docstring).

    ``starts`` (R, N, D) are the optimiser's starts (e.g. the encoder's mean and draws of the encoder
    and the prior). The annealing is :func:`~probgen.inference.loglik.ais.ais` on :func:`whitened` (same
    schedule, pilot, flags and adaptive stop), once per basin found (``num_chains`` chains each: a
    point with two basins costs twice); the result is named ``ais-laplace``, with per-point
    ``num_modes`` (the basins annealed to), ``other_optima`` (starts that ended in another basin
    than z*'s), ``laplace_gap``, the estimate minus log p(x, z*) (how much mass the posterior
    spreads around its peak), and ``laplace_excess``, the estimate minus the Laplace mixture's own
    log evidence (module docstring: above ~1 nat the base was much narrower than the posterior).
    Flags are the union of the components'. ``targets``, when given, is :func:`laplace_targets` of
    the same target and starts, already computed (BDMC reuses it).
    """
    lt = laplace_targets(target, starts, laplace_steps) if targets is None else targets
    fit, point_of, n = lt.fit, lt.point_of, target.num_data
    result = ais(
        lt.annealed, num_chains, num_steps, leapfrog_steps, progress=progress, target_se=target_se,
        max_chains=max_chains,
    )  # fmt: skip
    assert isinstance(result, LoglikResult)
    if lt.mixture is not None:
        result = _combine(result, point_of, n)
    result.method = "ais-laplace"
    modes = torch.bincount(point_of.cpu(), minlength=n).double()
    left_out = fit.basins_left_out.detach().cpu()
    result.per_point["num_modes"] = modes
    result.per_point["other_optima"] = fit.other_optima.detach().double().cpu()
    result.per_point["laplace_gap"] = (result.log_px - fit.log_joint.detach().double().cpu()).cpu()
    result.per_point["laplace_excess"] = result.log_px - _laplace_evidence(lt, n)
    for i in torch.nonzero(left_out > 0).flatten().tolist():
        result.add_flag(i, "missed-mode")
    result.info.update({"laplace_steps": laplace_steps, "laplace_starts": int(starts.shape[0]),
                        "max_modes": MAX_MODES, "num_multimodal": int((modes > 1).sum()),
                        "num_missed_mode": int((left_out > 0).sum())})  # fmt: skip
    return result
