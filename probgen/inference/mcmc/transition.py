"""One HMC transition for C chains x N data points, each with its own Metropolis test.

The building block of :class:`~probgen.inference.mcmc.hmc.BatchedHMC` and of AIS: leapfrog by
:func:`pyro.ops.integrator.velocity_verlet` on the sum of the per-point potentials (their gradients
are the per-point gradients, since the terms are independent), then a ``torch.where`` per
(chain, point). Nothing here synchronises with the device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import pyro
import torch
from pyro.ops.integrator import potential_grad, velocity_verlet

__all__ = ["HMCState", "PotentialFn", "find_reasonable_step_size", "hmc_transition", "init_state"]

#: ``z (C, N, D) -> U (C, N)`` or ``-> (U, aux)``, where ``aux`` (C, N) rides along with the state.
PotentialFn = Callable[[torch.Tensor], "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"]


class HMCState(NamedTuple):
    """Where C x N chains are: z (C, N, D), potential U(z) (C, N), dU/dz (C, N, D), aux (C, N) or None."""

    z: torch.Tensor
    potential: torch.Tensor
    grad: torch.Tensor
    aux: torch.Tensor | None


class _Summed:
    """``velocity_verlet`` wants a scalar potential; give it the sum and keep the per-point values."""

    def __init__(self, fn: PotentialFn) -> None:
        self.fn = fn
        self.potential: torch.Tensor | None = None
        self.aux: torch.Tensor | None = None
        self.calls = 0

    def __call__(self, z: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.fn(z["z"])
        u, aux = out if isinstance(out, tuple) else (out, None)
        self.potential = u.detach()
        self.aux = None if aux is None else aux.detach()
        self.calls += 1
        return u.sum()


def init_state(potential_fn: PotentialFn, z: torch.Tensor) -> HMCState:
    """Evaluate the potential and its gradient at z (C, N, D)."""
    summed = _Summed(potential_fn)
    with pyro.validation_enabled(False):
        grads, _ = potential_grad(summed, {"z": z.detach().clone()})
    return HMCState(z.detach(), summed.potential, grads["z"], summed.aux)


def _kinetic(r: torch.Tensor, inverse_mass: torch.Tensor | None) -> torch.Tensor:
    return 0.5 * (r.square() if inverse_mass is None else r.square() * inverse_mass).sum(-1)


def hmc_transition(
    state: HMCState,
    potential_fn: PotentialFn,
    step_size: torch.Tensor,
    num_steps: int | torch.Tensor,
    inverse_mass: torch.Tensor | None = None,
    jitter: float = 0.0,
    max_energy_error: float = 1000.0,
    max_steps: int | None = None,
) -> tuple[HMCState, torch.Tensor, torch.Tensor]:
    """One HMC transition of every (chain, data point) pair, each with its own accept test.

    ``num_steps`` is one number of leapfrog steps for all, or a tensor (N,) or (C, N) of per-point
    numbers: then the loop runs ``max_steps`` (default: their maximum, one host read) steps, and a
    point that has made its own number of steps takes steps of size 0 from then on, which leave its
    position and momentum exactly unchanged (frozen). Each point's trajectory is thus exactly
    ``num_steps[n]`` leapfrog steps of its own size, a reversible, volume-preserving map, and its
    Metropolis test keeps its posterior invariant. Pass ``max_steps`` to keep the transition free of
    host syncs.

    ``step_size`` is (N,) or (C, N) and is multiplied by a factor uniform in [1 - jitter, 1 + jitter]
    drawn per (chain, point), which breaks the periodic orbits of a fixed trajectory length.
    ``inverse_mass`` is the diagonal (N, D) or None for the identity. Returns the new state, the
    acceptance probability (C, N) and whether the trajectory diverged (energy error above
    ``max_energy_error`` or NaN) (C, N). Runs with no host synchronisation.
    """
    z = state.z
    eps = step_size.expand(z.shape[:2])
    if jitter > 0:
        eps = eps * (1.0 + jitter * (2.0 * torch.rand_like(eps) - 1.0))
    eps = eps.unsqueeze(-1)  # (C, N, 1)
    r = torch.randn_like(z)
    if inverse_mass is not None:
        r = r * inverse_mass.rsqrt()
    energy0 = state.potential + _kinetic(r, inverse_mass)

    def kinetic_grad(rd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"z": rd["z"] if inverse_mass is None else rd["z"] * inverse_mass}

    summed = _Summed(potential_fn)
    with pyro.validation_enabled(False):  # a diverging point may produce NaN parameters; it is rejected below
        if isinstance(num_steps, torch.Tensor):
            steps = num_steps.expand(z.shape[:2]).unsqueeze(-1)  # (C, N, 1)
            total = int(num_steps.max()) if max_steps is None else max_steps
            z_new, r_new, g_new = {"z": z}, {"z": r}, {"z": state.grad}
            for i in range(total):
                moving = eps * (steps > i)  # frozen points step by 0: an exact identity
                z_new, r_new, g_new, _ = velocity_verlet(z_new, r_new, summed, kinetic_grad, moving, 1, z_grads=g_new)
        else:
            z_new, r_new, g_new, _ = velocity_verlet(
                {"z": z}, {"z": r}, summed, kinetic_grad, eps, num_steps, z_grads={"z": state.grad}
            )
    u_new = summed.potential
    delta = u_new + _kinetic(r_new["z"], inverse_mass) - energy0  # (C, N)
    delta = torch.where(torch.isnan(delta), torch.full_like(delta, math.inf), delta)
    accept_prob = torch.exp(-delta).clamp(max=1.0)
    diverging = delta > max_energy_error
    accept = torch.rand_like(accept_prob) < accept_prob
    acc3 = accept.unsqueeze(-1)
    new = HMCState(
        torch.where(acc3, z_new["z"], z),
        torch.where(accept, u_new, state.potential),
        torch.where(acc3, g_new["z"], state.grad),
        None if state.aux is None else torch.where(accept, summed.aux, state.aux),
    )
    return new, accept_prob, diverging


def find_reasonable_step_size(
    state: HMCState,
    potential_fn: PotentialFn,
    step_size: torch.Tensor,
    inverse_mass: torch.Tensor | None = None,
    num_iters: int = 16,
    threshold: float = 0.8,
) -> torch.Tensor:
    """Per data point, double or halve the step size until one leapfrog step's acceptance (mean over
    chains) crosses ``threshold`` (Hoffman & Gelman 2014, Alg. 4, as in Pyro's HMC).

    Vectorised over points with a fixed number of iterations, so that it needs no host sync; points
    that have crossed stop moving. Returns step sizes (N,).
    """
    eps = step_size.clone()
    direction = torch.zeros_like(eps)
    active = torch.ones_like(eps, dtype=torch.bool)
    for i in range(num_iters):
        _, acc, _ = hmc_transition(state, potential_fn, eps, 1, inverse_mass)
        up = acc.mean(0) > threshold
        if i == 0:
            direction = torch.where(up, 1.0, -1.0).to(eps)
        else:
            active = active & (up == (direction > 0))
        eps = torch.where(active, eps * torch.pow(2.0, direction), eps)
    return eps.clamp(1e-6, 1e3)
