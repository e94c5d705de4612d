"""Exact log p(x) of latent-2 models by 2-D grid quadrature of p(z) p(x | z): the reference the
estimators are validated against (tests, experiments/loglik_validation.py).

p(x) = integral p(z) p(x | z) dz is computed per data point by the midpoint rule on a grid. A trained
decoder's posterior can be much narrower than the prior, so :func:`grid_log_px` works in two passes:

1. a coarse grid over [-lim, lim]^2 (``coarse`` nodes per side) finds the region where
   log p(z, x) is within ``window`` nats of its maximum, per point;
2. a fine grid of ``fine`` nodes per side over that region's bounding box (padded by two coarse
   cells) gives log p(x); the same integral on a grid of half as many nodes per side gives the
   quadrature error estimate ``error`` (the midpoint rule on smooth integrands converges fast, so the
   difference between the two grids bounds the finer one's error by a wide margin).

Mass outside the box is below e^-window of the peak per coarse cell, i.e. negligible. Cost per point:
coarse^2 + fine^2 + (fine / 2)^2 evaluations of log p(z, x).
"""

from __future__ import annotations

import math

import torch

from probgen.inference.mcmc.potential import LatentTarget

__all__ = ["grid_log_px"]

#: a point whose log p(z, x) on the edge of the coarse grid is within this many nats of its peak
#: has posterior mass outside the box (a 3-epoch VAE's posteriors can sit at |z| ~ 7)
EDGE_WINDOW = 10.0


@torch.no_grad()
def _log_joint_grid(target: LatentTarget, z: torch.Tensor, chunk: int) -> torch.Tensor:
    """log p(z, x) for grid nodes z (G, N, 2) (each point its own nodes) -> (G, N)."""
    out = []
    for start in range(0, z.shape[0], chunk):
        lp, ll = target.log_joint(z[start : start + chunk])
        out.append((lp + ll).double())
    return torch.cat(out)


def _box_grid(lo: torch.Tensor, hi: torch.Tensor, num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Midpoints of a num x num grid per point over boxes [lo, hi] (N, 2): nodes (num^2, N, 2), log cell area (N,)."""
    t = (torch.arange(num, dtype=torch.float64) + 0.5) / num  # (num,)
    width = hi - lo  # (N, 2)
    axis0 = lo[:, 0] + t[:, None] * width[:, 0]  # (num, N)
    axis1 = lo[:, 1] + t[:, None] * width[:, 1]
    z = torch.stack(
        [axis0[:, None, :].expand(num, num, -1), axis1[None, :, :].expand(num, num, -1)], -1
    )  # (num, num, N, 2)
    log_area = torch.log(width[:, 0] / num) + torch.log(width[:, 1] / num)
    return z.reshape(num * num, -1, 2), log_area


def grid_log_px(
    target: LatentTarget,
    lim: float = 6.0,
    coarse: int = 241,
    fine: int = 401,
    window: float = 30.0,
    chunk: int = 4096,
) -> dict[str, torch.Tensor]:
    """log p(x) (N,) of a latent-2 ``target`` by two-pass grid quadrature (module docstring).

    Returns ``log_px`` (N,), ``error`` (N,) = |fine-grid - half-resolution-grid| in nats (inf where
    ``at_edge`` (N,): log p(z, x) on the outermost coarse nodes is within :data:`EDGE_WINDOW` nats of
    its maximum, so mass lies outside the box: widen ``lim``), and the boxes ``lo``, ``hi`` (N, 2) of
    the fine grids. ``chunk`` bounds the nodes per batched call
    (``chunk`` x N decoder evaluations).
    """
    if target.latent_dim != 2:
        raise ValueError(f"grid quadrature needs latent dimension 2, got {target.latent_dim}")
    n = target.num_data
    probe = target.sample_prior(1)  # the model's device and dtype
    device, dtype = probe.device, probe.dtype
    full = torch.tensor([[-lim, -lim]], dtype=torch.float64).expand(n, 2)
    z, log_area = _box_grid(full, -full, coarse)
    lj = _log_joint_grid(target, z.to(device, dtype), chunk).cpu()  # (G, N)
    keep = lj >= lj.max(0).values - window  # (G, N)
    cell = 2 * lim / coarse
    big = torch.tensor(math.inf, dtype=torch.float64)
    lo = torch.where(keep[..., None], z, big).amin(0) - 2 * cell
    hi = torch.where(keep[..., None], z, -big).amax(0) + 2 * cell
    lo, hi = lo.clamp(min=-lim), hi.clamp(max=lim)

    def integrate(num: int) -> torch.Tensor:
        zz, area = _box_grid(lo, hi, num)
        return torch.logsumexp(_log_joint_grid(target, zz.to(device, dtype), chunk).cpu(), 0) + area

    log_px = integrate(fine)
    error = (log_px - integrate(max(2, fine // 2))).abs()
    # a posterior that reaches the edge of [-lim, lim]^2 has mass outside it: no error bound then
    border = (z.abs().amax(-1) > lim - cell)[:, :1]  # (G, 1): the outermost ring of coarse nodes
    at_edge = ((lj >= lj.max(0).values - EDGE_WINDOW) & border).any(0)
    error = torch.where(at_edge, big, error)
    return {"log_px": log_px, "error": error, "lo": lo, "hi": hi, "at_edge": at_edge}
