"""Laplace fits of each posterior and its basins, chosen by mass (the first half of ``--method ais-laplace``).

Per point, :func:`laplace_fit` maximises log p(x, z) from several starts (the encoder's mean, draws of
the encoder and of the prior; :func:`laplace_starts` says how many) with Adam, and takes the Hessian
of -log p(x, z) at every end point. A basin's share of p(x) goes as its **Laplace evidence**
log p(x, z_k) + 1/2 log det Sigma_k, not as its peak: a broad basin 5 nats lower at its peak than a
narrow one can hold most of the mass. So z* is the end point of highest evidence (among those where
the Hessian is positive definite, i.e. maxima; a saddle or an unfinished climb, whose clipped
Hessian would fake a wide basin, is never z* unless no start reached a maximum), refined by
backtracking Newton steps, and q(z) = N(z*, P^-1) with P that Hessian (eigenvalues clipped from
below). Another end point counts as another basin when it is a maximum more than
:data:`MODE_DISTANCE` Laplace standard deviations from z* (under either fit), its evidence is within
log(1 / :data:`MODE_MASS`) of z*'s, and log p(x, z) dips by more than :data:`MODE_BARRIER` nats on
the segment between them (a ridge has no dip). Of those, up to :data:`MAX_MODES` - 1 distinct ones,
the most evidence first, are kept for the estimator (:mod:`probgen.inference.loglik.laplace`); the
number of further ones is counted, and the estimator flags such points ``missed-mode``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from probgen.config.estimators import LaplaceSettings
from probgen.inference.mcmc.potential import LatentTarget

__all__ = [
    "MAX_MODES",
    "MODE_BARRIER",
    "MODE_DISTANCE",
    "MODE_MASS",
    "NEWTON_FRACTIONS",
    "NEWTON_STEPS",
    "LaplaceFit",
    "laplace_fit",
    "laplace_starts",
]

#: an optimum this many Laplace standard deviations (Mahalanobis, under either fit) from z* ...
MODE_DISTANCE = 4.0
#: ... whose Laplace evidence is within log(1 / MODE_MASS) nats of z*'s counts as another basin (a
#: Laplace evidence can be off by a few nats for a curved basin: the margin keeps such a basin in)
MODE_MASS = 1e-3
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


def laplace_starts(latent_dim: int) -> tuple[int, int]:
    """Optimiser starts besides the encoder's mean: (encoder draws, prior draws). 3 and 12 up to latent
    12 (16 starts in all), then one prior draw per latent dimension: a basin's chance to be reached
    from a prior draw falls as the latent space grows, and the Adam fit stays a small part of the
    work (R x 200 gradients per point against ~8 x 300 x 5 per AIS component at the quick budget)."""
    return 3, max(12, latent_dim)


class LaplaceFit(NamedTuple):
    """Per point: the optimum z* (N, D), a factor L (N, D, D) of the covariance P^-1 = L L^T, log|det L|
    (N,), log p(x, z*) (N,), the number of starts that ended in another basin that may hold mass (N,),
    and the norm of the gradient at z* in Laplace units (N,) (about 0 once converged). ``basins``
    (N, K, D) holds up to K = :data:`MAX_MODES` - 1 of those other basins' end points, one per basin,
    the most evidence first (``basin_found`` (N, K) says which slots hold one), and ``basins_left_out``
    (N,) how many more basins the starts found beyond K; both are empty (K = 0) in a fit made by hand."""

    mean: torch.Tensor
    scale: torch.Tensor
    log_det_scale: torch.Tensor
    log_joint: torch.Tensor
    other_optima: torch.Tensor
    grad_norm: torch.Tensor
    basins: torch.Tensor | None = None
    basin_found: torch.Tensor | None = None
    basins_left_out: torch.Tensor | None = None


def _precision(target: LatentTarget, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """log p(x, z) (..., N), its gradient (..., N, D) and the Hessian of -log p(x, z) (..., N, D, D) at
    z (N, D) or (R, N, D): D batched double-backward passes, one per latent dimension."""
    zz = z.detach().requires_grad_(True)
    lp, ll = target.log_joint(zz if z.dim() == 3 else zz.unsqueeze(0))
    f = lp + ll if z.dim() == 3 else (lp + ll)[0]
    (g,) = torch.autograd.grad(f.sum(), zz, create_graph=True)
    rows = [torch.autograd.grad(g[..., j].sum(), zz, retain_graph=True)[0] for j in range(z.shape[-1])]
    h = -torch.stack(rows, -2).detach()
    h = (h + h.transpose(-1, -2)) / 2
    eye = torch.eye(z.shape[-1], dtype=h.dtype, device=h.device).expand_as(h)
    h = torch.where(torch.isfinite(h).all(-1, keepdim=True).all(-2, keepdim=True), h, eye)  # not finite: unit precision
    return f.detach(), g.detach(), h


def _factor(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eigenvalue-clipped precision: (L with L L^T = P^-1, log|det L|, the clipped P, whether P was
    positive definite with no eigenvalue clipped, i.e. z a maximum)."""
    evals, evecs = torch.linalg.eigh(p.double())
    peak = evals.amin(-1) >= MIN_PRECISION
    evals = evals.clamp_min(MIN_PRECISION)
    scale = evecs * evals.rsqrt().unsqueeze(-2)
    clipped = (evecs * evals.unsqueeze(-2)) @ evecs.transpose(-1, -2)
    return scale.to(p.dtype), (-0.5 * evals.log().sum(-1)).to(p.dtype), clipped.to(p.dtype), peak


@torch.no_grad()
def _other_optima(
    target: LatentTarget,
    optima: torch.Tensor,
    f_all: torch.Tensor,
    ev_all: torch.Tensor,
    p_all: torch.Tensor,
    zs: torch.Tensor,
    f: torch.Tensor,
    ev: torch.Tensor,
    p: torch.Tensor,
) -> torch.Tensor:
    """(R, N) bool: the starts' end points (R, N, D; log p(x, z) ``f_all``, evidence ``ev_all``, -inf
    where not a maximum, clipped precisions ``p_all``) that are another basin than z* (N, D; ``f``,
    ``ev``, precision ``p``): more than :data:`MODE_DISTANCE` sds away under either fit, evidence
    within log(1 / :data:`MODE_MASS`) of z*'s, and a dip of more than :data:`MODE_BARRIER` nats below
    both ends on the segment between them (a ridge or an unfinished climb has none)."""
    diff = optima - zs.unsqueeze(0)  # (R, N, D)
    dist2 = torch.maximum(
        torch.einsum("rni,nij,rnj->rn", diff, p, diff), torch.einsum("rni,rnij,rnj->rn", diff, p_all, diff)
    )
    near = (dist2 > MODE_DISTANCE**2) & (ev_all > ev.unsqueeze(0) - math.log(1 / MODE_MASS))
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
    steps: int = LaplaceSettings.fit_steps,
    lr: float = LaplaceSettings.lr,
    newton_steps: int = NEWTON_STEPS,
) -> LaplaceFit:
    """Laplace approximation of each point's posterior from starts (R, N, D) (module docstring).

    All R x N starts climb log p(x, z) together by Adam (``steps`` steps, learning rate decaying from
    ``lr`` to 0 along a cosine); the Hessian at every end point gives its Laplace evidence; the end
    point of highest evidence among the maxima (of highest log p(x, z) where a point has none) is
    refined by ``newton_steps`` Newton steps (the full step, or half or a quarter of it, whichever
    first raises log p(x, z); none where none does), and the covariance is the inverse of the clipped
    Hessian there. A start whose log p(x, z) ends non-finite is never chosen.
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
    optima = z.detach()
    f_all, _, h_all = _precision(target, optima)
    f_all = torch.nan_to_num(f_all, nan=-math.inf)  # (R, N); argmax would pick a NaN
    _, log_det_all, p_all, peak_all = _factor(h_all)
    ev_all = torch.where(peak_all & torch.isfinite(f_all), f_all + log_det_all, -math.inf)
    n = target.num_data
    rank = torch.where(peak_all.any(0), ev_all, f_all)  # no maximum reached: the highest end point
    zs = optima[rank.argmax(0), torch.arange(n, device=z.device)]
    zs, f, g, p = _newton(target, zs, newton_steps)
    scale, log_det, clipped, _ = _factor(p)
    other = _other_optima(target, optima, f_all, ev_all, p_all, zs, f, f + log_det, clipped)
    grad_norm = torch.einsum("ni,nij,nj->n", g, scale @ scale.transpose(-1, -2), g).clamp_min(0).sqrt()
    basins, found, left_out = _distinct_basins(optima, ev_all, other, p_all, MAX_MODES - 1)
    return LaplaceFit(zs, scale, log_det, f, other.sum(0), grad_norm, basins, found, left_out)


def _newton(
    target: LatentTarget, zs: torch.Tensor, newton_steps: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backtracking Newton steps on log p(x, z) from zs (N, D): (z, log p(x, z), gradient, Hessian of
    -log p(x, z)) at the end (laplace_fit's docstring)."""
    f, g, p = _precision(target, zs)
    for _ in range(newton_steps):
        _, _, clipped, _ = _factor(p)
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
    optima: torch.Tensor, ev_all: torch.Tensor, other: torch.Tensor, p: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per point, up to ``k`` of the end points (R, N, D) marked ``other`` (R, N), one per basin: the
    most evidence ``ev_all`` (R, N) first, then each next one more than :data:`MODE_DISTANCE` sds
    (under either end point's precision, ``p`` (R, N, D, D) or one (N, D, D) for all) from those kept.
    Returns (N, k, D) end points, (N, k) bool which slots hold one, and (N,) how many more distinct
    ones there were."""
    r, n, d = optima.shape
    basins = optima.new_zeros(n, k, d)
    found = torch.zeros(n, k, dtype=torch.bool, device=optima.device)
    left_out = torch.zeros(n, dtype=torch.long, device=optima.device)
    pts = torch.nonzero(other.any(0)).flatten()
    if not pts.numel():
        return basins, found, left_out
    p = p.expand(r, n, d, d)[:, pts]  # (R, P, D, D)
    # every pair of a point's end points at once, then one copy to the host for the greedy choice
    diff = optima[:, None, pts] - optima[None, :, pts]  # (R, R, P, D)
    dist2 = torch.maximum(  # under row a's precision and under column b's
        torch.einsum("abpi,apij,abpj->pab", diff, p, diff), torch.einsum("abpi,bpij,abpj->pab", diff, p, diff)
    )
    far = (dist2 > MODE_DISTANCE**2).tolist()
    order = (
        torch.where(other[:, pts], ev_all[:, pts], -math.inf).argsort(dim=0, descending=True, stable=True).T.tolist()
    )
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
