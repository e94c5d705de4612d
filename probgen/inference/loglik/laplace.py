"""AIS from a Laplace approximation of each posterior (``--method ais-laplace``).

AIS from the prior (:func:`~probgen.inference.loglik.ais.ais`) has to anneal across the whole gap between
p(z) and a posterior that can be a thousand times narrower; at latent dimension 10 its log weights
still vary by about 1 nat after 1000 temperatures (docs/benchmarks.md). Starting the annealing from
a Gaussian that already sits on the posterior shortens the path, and so the variance, by a large
factor for the same work:

1. **Laplace fit** (:func:`laplace_fit`): per point, maximise log p(x, z) from several starts (the
   encoder's mean, draws of the encoder and of the prior) with Adam, refine the best optimum with
   backtracking Newton steps, and take q(z) = N(z*, P^-1) with P the Hessian of -log p(x, z) at z*
   (eigenvalues clipped from below, so that P is positive definite).
2. **Whitening** (:func:`whitened`): in u = L^-1 (z - z*) (Sigma = L L^T) q is N(0, I), and the
   posterior is about N(0, I) too, so a unit mass and step sizes near 1 suit every temperature.
   The wrapped target has base N(0, I) in the place of the prior and log p(x, z*+Lu) + log|L| -
   log N(u) in the place of the likelihood, so that AIS's path q^(1-beta) p(x, z)^beta goes from q
   to the posterior, and its weights, with q normalised and drawn exactly, are unbiased for p(x):
   the estimate is a stochastic lower bound, as plain AIS's.
3. **Everything else is AIS's**: the pilot run and frozen plan, the flags (``ais-variance``), the
   adaptive stop (``--target-se``).

**Several basins.** The starts often end in more than one basin (a posterior with two modes, as
dSprites' symmetric shapes give). Another start's optimum counts as another basin when it lies more
than :data:`MODE_DISTANCE` Laplace standard deviations from z*, its log p(x, z) is within
log(1 / :data:`MODE_MASS`) of z*'s (it may hold a percent of the mass or more), and log p(x, z)
dips by more than :data:`MODE_BARRIER` nats on the segment between the two (a ridge or an
unfinished climb has no dip). Up to :data:`MAX_MODES` basins per point get a Laplace fit each
(Newton-refined like z*'s), and q becomes their mixture, weighted by the fits' Laplace evidences.
Each component k then gets its own AIS run, in its own whitened coordinates, from q_k to the
posterior times r_k(z), the component's responsibility pi_k q_k(z) / q(z): since the r_k sum to one
everywhere, the components' estimates of their shares sum to an unbiased estimate of p(x), whatever
the weights and wherever the components sit (the weights only set how the mass is split). Their
error bars add in quadrature. A point whose starts found more basins than :data:`MAX_MODES` is
flagged ``missed-mode``.

What it cannot see is a basin that none of the starts reaches. Plain ``--method ais`` (from the
prior) and Appendix D cross-check it per point.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch

from probgen.inference.loglik.ais import ais
from probgen.inference.loglik.result import LoglikResult
from probgen.inference.mcmc.potential import LatentTarget

__all__ = [
    "MODE_BARRIER",
    "MODE_DISTANCE",
    "MAX_MODES",
    "MODE_MASS",
    "NEWTON_STEPS",
    "LaplaceFit",
    "Mixture",
    "ais_laplace",
    "laplace_fit",
    "whitened",
]

#: an optimum this many Laplace standard deviations (Mahalanobis, under the best fit) from the best ...
MODE_DISTANCE = 4.0
#: ... whose log p(x, z) is within log(1 / MODE_MASS) nats of the best one's counts as another mode
MODE_MASS = 0.01
#: ... and whose segment to z* dips more than this many nats below both ends (a separate basin)
MODE_BARRIER = 1.0
#: points along that segment where log p(x, z) is evaluated
SEGMENT_POINTS = 8
#: the smallest eigenvalue kept in the Hessian of -log p(x, z) (a flat direction gets this precision)
MIN_PRECISION = 1e-2
#: Newton steps after Adam (laplace_fit's default)
NEWTON_STEPS = 3
#: the fractions of a Newton step tried in turn (a point keeps the first that raises log p(x, z))
NEWTON_FRACTIONS = (1.0, 0.5, 0.25)
#: the most basins per point that ais-laplace anneals to (z*'s and up to MAX_MODES - 1 others); a
#: point whose starts found more is flagged ``missed-mode``
MAX_MODES = 4


class LaplaceFit(NamedTuple):
    """Per point: the optimum z* (N, D), a factor L (N, D, D) of the covariance P^-1 = L L^T, log|det L|
    (N,), log p(x, z*) (N,), the number of starts that ended in another basin that may hold mass (N,),
    and the norm of the gradient at z* in Laplace units (N,) (about 0 once converged). ``basins``
    (N, K, D) holds up to K = :data:`MAX_MODES` - 1 of those other basins' end points, one per basin
    (``basin_found`` (N, K) says which slots hold one), and ``basins_left_out`` (N,) how many more
    basins the starts found beyond K; both are empty (K = 0) in a fit made by hand."""

    mean: torch.Tensor
    scale: torch.Tensor
    log_det_scale: torch.Tensor
    log_joint: torch.Tensor
    other_optima: torch.Tensor
    grad_norm: torch.Tensor
    basins: torch.Tensor | None = None
    basin_found: torch.Tensor | None = None
    basins_left_out: torch.Tensor | None = None


class Mixture(NamedTuple):
    """For each of M components (one Laplace fit each, points repeated where a posterior has several
    basins): its point's components, padded to K: their means (M, K, D), precisions (M, K, D, D) and
    log(weight) - log|det L| - D/2 log 2 pi (M, K; -inf in padding), and the slot (M,) that is the
    component itself. :func:`whitened` adds log r(z), the component's responsibility, to its target."""

    means: torch.Tensor
    precisions: torch.Tensor
    log_norm: torch.Tensor
    own: torch.Tensor


def _log_joint_grad(
    target: LatentTarget, z: torch.Tensor, create_graph: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    z = z.detach().requires_grad_(True)
    lp, ll = target.log_joint(z.unsqueeze(0))
    f = (lp + ll)[0]
    (g,) = torch.autograd.grad(f.sum(), z, create_graph=create_graph)
    return z, f, g


def _precision(target: LatentTarget, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """log p(x, z) (N,), its gradient (N, D) and the Hessian of -log p(x, z) (N, D, D) at z (N, D):
    D batched double-backward passes, one per latent dimension."""
    zz, f, g = _log_joint_grad(target, z, create_graph=True)
    rows = [torch.autograd.grad(g[:, j].sum(), zz, retain_graph=True)[0] for j in range(z.shape[-1])]
    h = -torch.stack(rows, -2).detach()
    h = (h + h.transpose(-1, -2)) / 2
    eye = torch.eye(z.shape[-1], dtype=h.dtype, device=h.device).expand_as(h)
    h = torch.where(torch.isfinite(h).all(-1, keepdim=True).all(-2, keepdim=True), h, eye)  # not finite: unit precision
    return f.detach(), g.detach(), h


def _factor(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eigenvalue-clipped precision: (L with L L^T = P^-1, log|det L|, the clipped P)."""
    evals, evecs = torch.linalg.eigh(p.double())
    evals = evals.clamp_min(MIN_PRECISION)
    scale = evecs * evals.rsqrt().unsqueeze(-2)
    clipped = (evecs * evals.unsqueeze(-2)) @ evecs.transpose(-1, -2)
    return scale.to(p.dtype), (-0.5 * evals.log().sum(-1)).to(p.dtype), clipped.to(p.dtype)


@torch.no_grad()
def _other_optima(
    target: LatentTarget, optima: torch.Tensor, f_all: torch.Tensor, zs: torch.Tensor, f: torch.Tensor, p: torch.Tensor
) -> torch.Tensor:
    """(R, N) bool: the starts' end points (R, N, D) that are another basin than z* (N, D): more than
    :data:`MODE_DISTANCE` Laplace sds away, log p(x, z) within log(1 / :data:`MODE_MASS`) of z*'s,
    and a dip of more than :data:`MODE_BARRIER` nats below both ends on the segment between them (a
    ridge or a slope the optimiser had not finished climbing has none)."""
    diff = optima - zs.unsqueeze(0)  # (R, N, D)
    dist = torch.einsum("rni,nij,rnj->rn", diff, p, diff).clamp_min(0).sqrt()
    near = (dist > MODE_DISTANCE) & (f_all > f.unsqueeze(0) - math.log(1 / MODE_MASS))
    if not bool(near.any()):
        return near
    lowest = torch.full_like(f_all, math.inf)
    for t in torch.linspace(0, 1, SEGMENT_POINTS + 2).tolist()[1:-1]:  # one R x N call per point on the segments
        lp, ll = target.log_joint(zs + t * diff)
        lowest = torch.minimum(lowest, lp + ll)
    dip = torch.minimum(f_all, f.unsqueeze(0)) - lowest
    return near & (dip > MODE_BARRIER)


def laplace_fit(
    target: LatentTarget,
    starts: torch.Tensor,
    steps: int = 200,
    lr: float = 0.2,
    newton_steps: int = NEWTON_STEPS,
) -> LaplaceFit:
    """Laplace approximation of each point's posterior from starts (R, N, D) (module docstring).

    All R x N starts climb log p(x, z) together by Adam (``steps`` steps, learning rate decaying from
    ``lr`` to 0 along a cosine), the best of each point's R optima is refined by ``newton_steps``
    Newton steps (the full step, or half or a quarter of it, whichever first raises log p(x, z);
    none where none does), and the covariance is the inverse of the clipped Hessian there. A start
    whose log p(x, z) ends non-finite is never chosen.
    """
    if starts.dim() != 3 or starts.shape[1:] != (target.num_data, target.latent_dim):
        raise ValueError(f"starts must be (R, {target.num_data}, {target.latent_dim}), got {tuple(starts.shape)}")
    z = starts.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    for _ in range(steps):
        lp, ll = target.log_joint(z)
        loss = -(lp + ll).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        lp, ll = target.log_joint(z)
        f_all = torch.nan_to_num(lp + ll, nan=-math.inf)  # (R, N); argmax would pick a NaN
        optima = z.detach()
    n = target.num_data
    best = f_all.argmax(0)
    zs = optima[best, torch.arange(n, device=z.device)]
    zs, f, g, p = _newton(target, zs, newton_steps)
    scale, log_det, clipped = _factor(p)
    other = _other_optima(target, optima, f_all, zs, f, clipped)
    grad_norm = torch.einsum("ni,nij,nj->n", g, scale @ scale.transpose(-1, -2), g).clamp_min(0).sqrt()
    basins, found, left_out = _distinct_basins(optima, f_all, other, clipped, MAX_MODES - 1)
    return LaplaceFit(zs, scale, log_det, f, other.sum(0), grad_norm, basins, found, left_out)


def _newton(
    target: LatentTarget, zs: torch.Tensor, newton_steps: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backtracking Newton steps on log p(x, z) from zs (N, D): (z, log p(x, z), gradient, Hessian of
    -log p(x, z)) at the end (laplace_fit's docstring)."""
    f, g, p = _precision(target, zs)
    for _ in range(newton_steps):
        _, _, clipped = _factor(p)
        step = torch.linalg.solve(clipped, g.unsqueeze(-1)).squeeze(-1)
        for frac in NEWTON_FRACTIONS:  # backtracking: the full step, then shorter ones, where it fails
            z_new = zs + frac * step
            f_new, g_new, p_new = _precision(target, z_new)
            better = (f_new > f).unsqueeze(-1)
            zs = torch.where(better, z_new, zs)
            f = torch.where(better[:, 0], f_new, f)
            g = torch.where(better, g_new, g)
            p = torch.where(better.unsqueeze(-1), p_new, p)
            step = torch.where(better, torch.zeros_like(step), step)  # done for those points
            if not bool(step.any()):  # every point took its step: shorter tries would change nothing
                break
    return zs, f, g, p


def _distinct_basins(
    optima: torch.Tensor, f_all: torch.Tensor, other: torch.Tensor, p: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per point, up to ``k`` of the end points (R, N, D) marked ``other`` (R, N), one per basin: the
    highest first, then each next one more than :data:`MODE_DISTANCE` sds (under the precision ``p``
    (N, D, D) at z*) from those kept. Returns (N, k, D) end points, (N, k) bool which slots hold one,
    and (N,) how many more distinct ones there were."""
    r, n, d = optima.shape
    basins = optima.new_zeros(n, k, d)
    found = torch.zeros(n, k, dtype=torch.bool, device=optima.device)
    left_out = torch.zeros(n, dtype=torch.long, device=optima.device)
    pts = torch.nonzero(other.any(0)).flatten()
    if not pts.numel():
        return basins, found, left_out
    # every pair of a point's end points at once, then one copy to the host for the greedy choice
    diff = optima[:, None, pts] - optima[None, :, pts]  # (R, R, P, D)
    far = (torch.einsum("abpi,pij,abpj->pab", diff, p[pts], diff) > MODE_DISTANCE**2).tolist()
    order = torch.where(other[:, pts], f_all[:, pts], -math.inf).argsort(dim=0, descending=True, stable=True).T.tolist()
    marked = other[:, pts].T.tolist()
    rows, slots, starts, extra = [], [], [], [0] * len(order)
    for q, i in enumerate(pts.tolist()):
        kept: list[int] = []
        for j in (j for j in order[q] if marked[q][j]):
            if all(far[q][j][c] for c in kept):
                if len(kept) < k:
                    rows.append(i)
                    slots.append(len(kept))
                    starts.append(j)
                else:
                    extra[q] += 1
                kept.append(j)
    rows_t = torch.tensor(rows, dtype=torch.long, device=optima.device)
    slots_t = torch.tensor(slots, dtype=torch.long, device=optima.device)
    basins[rows_t, slots_t] = optima[torch.tensor(starts, dtype=torch.long, device=optima.device), rows_t]
    found[rows_t, slots_t] = True
    left_out[pts] = torch.tensor(extra, dtype=torch.long, device=optima.device)
    return basins, found, left_out


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
    scale, log_det, clipped = _factor(p)
    linv = torch.linalg.inv(fit.scale.double())
    own_p = (linv.transpose(-1, -2) @ linv).to(p.dtype)  # z*'s clipped precision, (L L^T)^-1
    # squared distances of each refined basin to its z* (under z*'s precision) and to the other
    # refined basins (under theirs), copied to the host once for the greedy choice
    to_star = zs - fit.mean[pts]
    d_star = torch.einsum("ei,eij,ej->e", to_star, own_p[pts], to_star)
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


def _combine(result: LoglikResult, point_of: torch.Tensor, n: int) -> LoglikResult:
    """One point's estimate from its components' (``result`` over M components, ``point_of`` (M,)):
    p(x) is the sum of their shares, var(p-hat) the sum of theirs (independent runs), flags the union;
    per point the largest log-weight variance, the smallest weights ESS and the chains summed."""
    idx = point_of.cpu()
    top = torch.full((n,), -math.inf, dtype=torch.float64).scatter_reduce(0, idx, result.log_px, "amax")
    rel = torch.where(torch.isfinite(top[idx]), (result.log_px - top[idx]).exp(), 0.0)  # each share / the largest
    log_px = top + torch.zeros(n, dtype=torch.float64).index_add(0, idx, rel).log()
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


def ais_laplace(
    target: LatentTarget,
    starts: torch.Tensor,
    num_chains: int = 16,
    num_steps: int = 300,
    leapfrog_steps: int = 5,
    *,
    laplace_steps: int = 200,
    progress: bool = False,
    target_se: float | None = None,
    max_chains: int | None = None,
) -> LoglikResult:
    """AIS from each point's Laplace approximation to its posterior (module docstring).

    ``starts`` (R, N, D) are the optimiser's starts (e.g. the encoder's mean and draws of the encoder
    and the prior). The annealing is :func:`~probgen.inference.loglik.ais.ais` on :func:`whitened` (same
    schedule, pilot, flags and adaptive stop), once per basin found (``num_chains`` chains each: a
    point with two basins costs twice); the result is named ``ais-laplace``, with per-point
    ``num_modes`` (the basins annealed to), ``other_optima`` (starts that ended in another basin
    than z*'s) and ``laplace_gap``, the estimate minus log p(x, z*) (how much mass the posterior
    spreads around its peak). Flags are the union of the components'.
    """
    fit = laplace_fit(target, starts, steps=laplace_steps)
    n = target.num_data
    parts = _components(target, fit)
    if parts is None:
        point_of, annealed = torch.arange(n), whitened(target, fit)
    else:
        point_of, comp, mixture = parts
        annealed = whitened(target.subset(point_of), comp, mixture)
    result = ais(
        annealed, num_chains, num_steps, leapfrog_steps, progress=progress, target_se=target_se, max_chains=max_chains
    )
    assert isinstance(result, LoglikResult)
    if parts is not None:
        result = _combine(result, point_of, n)
    result.method = "ais-laplace"
    modes = torch.bincount(point_of.cpu(), minlength=n).double()
    left_out = fit.basins_left_out.detach().cpu()
    result.per_point["num_modes"] = modes
    result.per_point["other_optima"] = fit.other_optima.detach().double().cpu()
    result.per_point["laplace_gap"] = (result.log_px - fit.log_joint.detach().double().cpu()).cpu()
    for i in torch.nonzero(left_out > 0).flatten().tolist():
        result.add_flag(i, "missed-mode")
    result.info.update({"laplace_steps": laplace_steps, "laplace_starts": int(starts.shape[0]),
                        "max_modes": MAX_MODES, "num_multimodal": int((modes > 1).sum()),
                        "num_missed_mode": int((left_out > 0).sum())})  # fmt: skip
    return result
