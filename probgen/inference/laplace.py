"""AIS from a Laplace approximation of each posterior (``--method ais-laplace``).

AIS from the prior (:func:`~probgen.inference.ais.ais`) has to anneal across the whole gap between
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

What it cannot do alone is see a mode the Laplace fit does not sit on: the path starts in one basin.
A point is therefore flagged ``missed-mode`` when another start converged to a distinct optimum
(more than :data:`MODE_DISTANCE` Laplace standard deviations away, with log p(x, z) dipping by more
than :data:`MODE_BARRIER` nats on the segment between the two) whose log p(x, z) is within
log(1 / :data:`MODE_MASS`) of the best one's: a basin that may hold a percent or more of the mass.
Plain ``--method ais`` (from the prior) and Appendix D cross-check it per point.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from probgen.inference.ais import ais
from probgen.inference.potential import LatentTarget
from probgen.inference.result import LoglikResult

__all__ = [
    "MODE_BARRIER",
    "MODE_DISTANCE",
    "MODE_MASS",
    "NEWTON_STEPS",
    "LaplaceFit",
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


class LaplaceFit(NamedTuple):
    """Per point: the optimum z* (N, D), a factor L (N, D, D) of the covariance P^-1 = L L^T, log|det L|
    (N,), log p(x, z*) (N,), the number of distinct optima among the starts that may hold mass (N,),
    and the norm of the gradient at z* in Laplace units (N,) (about 0 once converged)."""

    mean: torch.Tensor
    scale: torch.Tensor
    log_det_scale: torch.Tensor
    log_joint: torch.Tensor
    other_optima: torch.Tensor
    grad_norm: torch.Tensor


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
    scale, log_det, clipped = _factor(p)
    other = _other_optima(target, optima, f_all, zs, f, clipped)
    grad_norm = torch.einsum("ni,nij,nj->n", g, scale @ scale.transpose(-1, -2), g).clamp_min(0).sqrt()
    return LaplaceFit(zs, scale, log_det, f, other.sum(0), grad_norm)


def whitened(target: LatentTarget, fit: LaplaceFit) -> LatentTarget:
    """The posterior in u = L^-1 (z - z*): base N(0, I) in the prior's place, log p(x, z*+Lu) + log|L|
    - log N(u; 0, I) in the likelihood's, so that base x likelihood = p(x, z) |L| and its integral
    over u is p(x) (module docstring). Supports :meth:`LatentTarget.subset` (points of both)."""
    d = target.latent_dim
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    mean, scale, log_det = fit.mean, fit.scale, fit.log_det_scale

    def log_joint(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = mean + torch.einsum("nij,cnj->cni", scale, u)
        lp, ll = target.log_joint(z)
        base = -0.5 * u.square().sum(-1) - d * half_log_2pi
        return base, lp + ll + log_det - base

    def sample_base(c: int) -> torch.Tensor:
        return torch.randn(c, *mean.shape, dtype=mean.dtype, device=mean.device)

    def select(index: torch.Tensor) -> LatentTarget:
        i = index.to(mean.device)
        sub = LaplaceFit(*(t[i] for t in fit))
        return whitened(target.subset(index), sub)

    return LatentTarget(log_joint, sample_base, target.num_data, d, target.data_dim, select)


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
    and the prior). The annealing is :func:`~probgen.inference.ais.ais` on :func:`whitened` (same
    schedule, pilot, flags and adaptive stop); the result is named ``ais-laplace``, with per-point
    ``other_optima`` (starts that ended at another optimum that may hold mass; > 0 is flagged
    ``missed-mode``) and
    ``laplace_gap``, the estimate minus log p(x, z*) (how much mass the posterior spreads around
    its peak).
    """
    fit = laplace_fit(target, starts, steps=laplace_steps)
    result = ais(
        whitened(target, fit),
        num_chains,
        num_steps,
        leapfrog_steps,
        progress=progress,
        target_se=target_se,
        max_chains=max_chains,
    )
    assert isinstance(result, LoglikResult)
    result.method = "ais-laplace"
    result.per_point["other_optima"] = fit.other_optima.detach().double().cpu()
    result.per_point["laplace_gap"] = (result.log_px - fit.log_joint.detach().double().cpu()).cpu()
    for i in torch.nonzero(fit.other_optima > 0).flatten().tolist():
        result.add_flag(i, "missed-mode")
    result.info.update({"laplace_steps": laplace_steps, "laplace_starts": int(starts.shape[0]),
                        "num_missed_mode": int((fit.other_optima > 0).sum())})  # fmt: skip
    return result
