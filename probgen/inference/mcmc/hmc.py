"""Batched Hamiltonian Monte Carlo over (chain, data point): one Pyro kernel, many independent posteriors.

Pyro's :class:`~pyro.infer.HMC` runs one chain over whatever the model samples; a batch of data
points under a plate becomes one chain over N x D dimensions with one step size and one accept test,
whose joint acceptance is the product of the per-point ones. :class:`BatchedHMC` instead treats
latents shaped (C, N, D) as C x N independent chains that share the decoder's batched evaluations:

- leapfrog by :func:`pyro.ops.integrator.velocity_verlet`, on the sum of the per-point potentials
  (their gradients are the per-point gradients, since the terms are independent);
- a Metropolis test per (chain, data point);
- a step size per data point, adapted by :class:`pyro.ops.dual_averaging.DualAveraging` (which is
  elementwise, so it runs on an (N,) tensor) towards a target acceptance, then frozen; an optional
  diagonal mass per data point from :class:`pyro.ops.welford.WelfordCovariance` over Stan's windows
  (the schedule of :class:`pyro.infer.mcmc.adaptation.WarmupAdapter`);
- no ``.item()`` or other host sync inside a transition: every per-point decision is a ``torch.where``.

Use it through ``pyro.infer.MCMC(BatchedHMC(model, num_chains=C), ...)`` or, without MCMC's per-draw
flattening, through :func:`run_hmc`, which returns samples shaped (chain, draw, data point, latent).

References: Neal (2011), "MCMC using Hamiltonian dynamics"; Hoffman & Gelman (2014), JMLR 15, for
dual averaging and the reasonable-step-size heuristic; Stan's windowed adaptation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pyro.infer.mcmc.adaptation import WarmupAdapter
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel
from pyro.ops.dual_averaging import DualAveraging
from pyro.ops.welford import WelfordCovariance

from probgen.inference.mcmc.transition import (
    HMCState,
    PotentialFn,
    find_reasonable_step_size,
    hmc_transition,
    init_state,
)
from probgen.utils.progress import progress as progress_bar

__all__ = ["BatchedHMC", "HMCResult", "HMCState", "PotentialFn", "hmc_transition", "init_state", "run_hmc"]


class BatchedHMC(MCMCKernel):
    """HMC for C chains x N data points at once, with per-(chain, point) accept/reject.

    :param model: a Pyro model with latent site ``latent`` (event dim 1) and observed site ``observed``
        in a data plate at dim=-1; :meth:`setup` traces it with the model arguments (see
        :func:`probgen.inference.mcmc.potential.from_pyro_model`). Give this or ``potential_fn``.
    :param potential_fn: ``z (C, N, D) -> U (C, N)`` (or ``(U, aux)``); then ``initial_params``
        ``{"z": (C, N, D)}`` must be set (directly or by ``MCMC(initial_params=...)``).
    :param num_chains: chains per data point when started from ``model``'s prior.
    :param step_size: initial step size; None starts the reasonable-step-size search at 0.1.
    :param num_steps: leapfrog steps per transition (the same for all points; the trajectory length
        of a point is its step size times this). Ignored when ``trajectory_length`` is given.
    :param trajectory_length: if given, the number of leapfrog steps is set to this divided by the
        median step size over points (at most ``max_num_steps``), re-computed every 25 warm-up
        transitions and frozen with the step sizes. With an adapted mass the unit is the posterior's
        scale: a trajectory of ~pi/2 to pi decorrelates a Gaussian; a fixed ``num_steps`` with a small
        adapted step size makes a random walk instead.
    :param max_num_steps: cap on the number of leapfrog steps chosen from ``trajectory_length``.
    :param per_point_steps: with ``trajectory_length``, give every data point its own number of
        leapfrog steps, ``trajectory_length / its step size`` (capped): the batched loop runs the
        largest of them and points that have made theirs are frozen (steps of size 0, an exact
        identity), so each point's kernel stays reversible. Without it all points share the count
        from the median step size, and a point whose step size is far below the median random-walks.
    :param adapt_step_size: dual averaging per data point during warm-up, frozen afterwards.
    :param adapt_mass_matrix: diagonal inverse mass per data point from the warm-up windows.
    :param target_accept_prob: target of the step-size adaptation.
    :param jitter: relative half-width of the uniform jitter of the step size.
    :param max_energy_error: energy error above which a transition counts as divergent.
    """

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: PotentialFn | None = None,
        *,
        num_chains: int = 4,
        step_size: float | None = None,
        num_steps: int = 10,
        trajectory_length: float | None = None,
        max_num_steps: int = 256,
        per_point_steps: bool = True,
        adapt_step_size: bool = True,
        adapt_mass_matrix: bool = True,
        target_accept_prob: float = 0.8,
        jitter: float = 0.2,
        max_energy_error: float = 1000.0,
        latent: str = "z",
        observed: str = "x",
    ) -> None:
        if (model is None) == (potential_fn is None):
            raise ValueError("give exactly one of model and potential_fn")
        if num_chains < 1:
            raise ValueError(f"num_chains must be >= 1, got {num_chains}")
        if step_size is not None and not step_size > 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if trajectory_length is not None and not trajectory_length > 0:
            raise ValueError(f"trajectory_length must be positive, got {trajectory_length}")
        if max_num_steps < 1:
            raise ValueError(f"max_num_steps must be >= 1, got {max_num_steps}")
        if not 0 < target_accept_prob < 1:
            raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.model = model
        self.potential_fn = potential_fn
        self.num_chains = num_chains
        self.init_step_size = step_size
        self.num_steps = num_steps
        self.trajectory_length = trajectory_length
        self.max_num_steps = max_num_steps
        self.per_point_steps = per_point_steps
        self.steps_per_point: torch.Tensor | None = None  # (N,) long, with per_point_steps
        self.adapt_step_size = adapt_step_size
        self.adapt_mass_matrix = adapt_mass_matrix
        self.target_accept_prob = target_accept_prob
        self.jitter = jitter
        self.max_energy_error = max_energy_error
        self.latent, self.observed = latent, observed
        self.transforms: dict = {}  # latents are unconstrained; MCMC reads this
        self._initial_params: dict[str, torch.Tensor] | None = None
        self._reset()

    # --- state -------------------------------------------------------------------------------------

    def _reset(self) -> None:
        self._t = 0
        self._warmup_steps = 0
        self._state: HMCState | None = None
        self._calls = 0
        self.step_size: torch.Tensor | None = None  # (N,)
        self.inverse_mass: torch.Tensor | None = None  # (N, D)
        self._dual: DualAveraging | None = None
        self._welford = WelfordCovariance(diagonal=True)
        self._schedule: list = []
        self._window = 0
        self._accept_trace: list[torch.Tensor] = []
        self._diverging_trace: list[torch.Tensor] = []
        self._log: dict[str, str] = {}
        self._log_t = 0
        self._last_accept: torch.Tensor | None = None

    @property
    def initial_params(self) -> dict[str, torch.Tensor] | None:
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params: dict[str, torch.Tensor]) -> None:
        self._initial_params = params

    @property
    def state(self) -> HMCState | None:
        """The current state of all chains (read-only by convention)."""
        return self._state

    @property
    def num_grad_evals(self) -> int:
        """Gradient evaluations of the potential so far, counted per (chain, data point)."""
        if self._state is None:
            return 0
        c, n = self._state.z.shape[:2]
        return self._calls * c * n

    @property
    def accept_trace(self) -> torch.Tensor:
        """Acceptance probability of each post-warm-up transition, (draw, C, N)."""
        return torch.stack(self._accept_trace) if self._accept_trace else torch.empty(0)

    @property
    def diverging_trace(self) -> torch.Tensor:
        """Whether each post-warm-up transition diverged, (draw, C, N)."""
        return torch.stack(self._diverging_trace) if self._diverging_trace else torch.empty(0, dtype=torch.bool)

    # --- MCMCKernel interface ------------------------------------------------------------------------

    def setup(self, warmup_steps: int, *args: Any, **kwargs: Any) -> None:
        initial = self._initial_params
        self._reset()
        self._initial_params = initial
        self._warmup_steps = warmup_steps
        if self.model is not None:
            from probgen.inference.mcmc.potential import from_pyro_model

            target = from_pyro_model(self.model, *args, latent=self.latent, observed=self.observed, **kwargs)
            self.potential_fn = target.potential()
            if self._initial_params is None:
                self._initial_params = {"z": target.sample_prior(self.num_chains)}
        if self._initial_params is None or "z" not in self._initial_params:
            raise ValueError("BatchedHMC with potential_fn needs initial_params {'z': (C, N, D)}")
        z = self._initial_params["z"]
        if z.dim() != 3:
            raise ValueError(f"initial z must be (C, N, D), got {tuple(z.shape)}")
        self._state = self._init(z)
        n, d = z.shape[1:]
        init = 0.1 if self.init_step_size is None else self.init_step_size
        self.step_size = z.new_full((n,), init)
        self.inverse_mass = z.new_ones((n, d)) if self.adapt_mass_matrix else None
        adapter = WarmupAdapter(adapt_mass_matrix=True)  # only for Stan's window schedule
        adapter.configure(max(warmup_steps, 1), initial_step_size=1.0, mass_matrix_shape={("z",): (d,)})
        self._schedule = adapter.adaptation_schedule if warmup_steps > 0 else []
        if warmup_steps > 0 and self.adapt_step_size:
            self._restart_step_size()
        self._update_num_steps()

    def _update_num_steps(self) -> None:
        """num_steps from trajectory_length / step size, per point or at the median (one host sync;
        outside transitions). With per-point steps, ``num_steps`` is their maximum (the loop length)."""
        if self.trajectory_length is None:
            return
        if self.per_point_steps:
            per = torch.ceil(self.trajectory_length / self.step_size).clamp(1, self.max_num_steps).long()
            self.steps_per_point = per
            self.num_steps = int(per.max())
        else:
            eps = float(self.step_size.median())
            self.num_steps = max(1, min(self.max_num_steps, math.ceil(self.trajectory_length / eps)))

    def _init(self, z: torch.Tensor) -> HMCState:
        self._calls += 1
        return init_state(self.potential_fn, z)

    def _restart_step_size(self) -> None:
        start = self.step_size
        if self.init_step_size is None or self._window > 0:
            start = find_reasonable_step_size(self._state, self.potential_fn, self.step_size, self.inverse_mass)
            self._calls += 16
        self.step_size = start
        self._dual = DualAveraging(prox_center=torch.log(10.0 * start))

    def sample(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        z = params["z"]
        if self._state is None or self._state.z is not z:
            self._state = self._init(z)
        state, accept_prob, diverging = hmc_transition(
            self._state,
            self.potential_fn,
            self.step_size,
            self.num_steps if self.steps_per_point is None else self.steps_per_point,
            self.inverse_mass,
            self.jitter,
            self.max_energy_error,
            max_steps=self.num_steps,
        )
        self._state = state
        self._calls += self.num_steps
        if self._t < self._warmup_steps:
            self._adapt(self._t, accept_prob)
            if self._t % 25 == 24:
                self._update_num_steps()
        else:
            self._accept_trace.append(accept_prob)
            self._diverging_trace.append(diverging)
        self._last_accept = accept_prob
        self._t += 1
        return {"z": state.z}

    def _adapt(self, t: int, accept_prob: torch.Tensor) -> None:
        if not self._schedule:
            return
        last = len(self._schedule) - 1
        mass_phase = self.adapt_mass_matrix and 0 < self._window < last
        if self.adapt_step_size:
            self._dual.step(self.target_accept_prob - accept_prob.mean(0))
            self.step_size = torch.exp(self._dual.get_state()[0])
        if mass_phase:
            # per chain (Welford is elementwise over the (C, N, D) state), averaged over chains when the
            # window ends: Stan's within-chain estimate. Pooling chains instead would take the spread
            # BETWEEN modes of a multimodal posterior for its scale and shrink the step size to match.
            self._welford.update(self._state.z)
        if t != self._schedule[self._window].end:
            return
        if self._window == last:
            self.end_warmup()
        else:
            if mass_phase:
                self.inverse_mass = self._welford.get_covariance(regularize=True).mean(0)
                self._welford.reset()
            self._window += 1
            if mass_phase and self.adapt_step_size:
                self._restart_step_size()

    def end_warmup(self) -> None:
        """Freeze the step sizes at their dual-averaging averages."""
        if self.adapt_step_size and self._dual is not None and self._window < len(self._schedule):
            self.step_size = torch.exp(self._dual.get_state()[1])
        self._window = len(self._schedule)
        self._update_num_steps()

    def logging(self) -> dict[str, str]:
        # MCMC asks every iteration; formatting syncs with the device, so refresh every 50 only
        if self._last_accept is not None and (not self._log or self._t - self._log_t >= 50):
            self._log = {"step size": f"{self.step_size.mean():.2e}", "acc. prob": f"{self._last_accept.mean():.3f}"}
            self._log_t = self._t
        return self._log

    def diagnostics(self) -> dict[str, Any]:
        div = self.diverging_trace
        acc = self.accept_trace
        return {
            "divergences": [tuple(i) for i in div.nonzero().tolist()] if div.numel() else [],
            "acceptance rate": float(acc.mean()) if acc.numel() else float("nan"),
            "acceptance rate per point": acc.mean((0, 1)) if acc.numel() else None,
            "step size": self.step_size,
            "num steps": self.num_steps,
            "num steps per point": self.steps_per_point,
        }

    def cleanup(self) -> None:
        pass  # keep the adapted step sizes and traces readable after MCMC.run


@dataclass
class HMCResult:
    """Output of :func:`run_hmc` (all tensors on the device the chains ran on).

    samples (C, S, N, D); potential U(z) = -log p(z, x) of each draw (C, S, N) in nats; accept_prob and
    diverging (C, S, N) per post-warm-up transition; the frozen step_size (N,) and inverse_mass (N, D) or
    None; num_grad_evals per (chain, point), warm-up included (batched decoder calls: a frozen point
    of a per-point trajectory is evaluated too); num_steps, the frozen leapfrog steps (with per-point
    steps their maximum) and steps_per_point (N,) or None.
    """

    samples: torch.Tensor
    potential: torch.Tensor
    accept_prob: torch.Tensor
    diverging: torch.Tensor
    step_size: torch.Tensor
    inverse_mass: torch.Tensor | None
    num_grad_evals: int
    num_steps: int = 0
    steps_per_point: torch.Tensor | None = None

    @property
    def accept_rate(self) -> torch.Tensor:
        """Mean acceptance probability per data point, (N,)."""
        return self.accept_prob.mean((0, 1))

    @property
    def num_divergent(self) -> torch.Tensor:
        """Divergent transitions per data point, (N,)."""
        return self.diverging.sum((0, 1))


def run_hmc(
    potential_fn: PotentialFn,
    z0: torch.Tensor,
    num_warmup: int,
    num_samples: int,
    *,
    progress: bool = False,
    desc: str = "HMC",
    on_warmup: Callable[[BatchedHMC], None] | None = None,
    **kernel_options: Any,
) -> HMCResult:
    """Run :class:`BatchedHMC` from z0 (C, N, D) for ``num_warmup`` adaptation and ``num_samples``
    kept transitions; returns samples shaped (chain, draw, data point, latent).

    ``on_warmup(kernel)``, when given, is called once between warm-up and sampling (when the step
    sizes and leapfrog counts are fixed), e.g. to report how long the sampling will take.
    ``kernel_options`` are :class:`BatchedHMC`'s keyword arguments.
    """
    if num_samples < 1 or num_warmup < 0:
        raise ValueError(f"need num_samples >= 1 and num_warmup >= 0, got {num_samples} and {num_warmup}")
    kernel = BatchedHMC(potential_fn=potential_fn, num_chains=z0.shape[0], **kernel_options)
    kernel.initial_params = {"z": z0}
    kernel.setup(num_warmup)
    params = kernel.initial_params
    draws = z0.new_empty((num_samples,) + tuple(z0.shape))
    potential = z0.new_empty((num_samples,) + tuple(z0.shape[:2]))
    with progress_bar(total=num_warmup + num_samples, desc=desc, enabled=progress) as bar:
        for _ in range(num_warmup):
            params = kernel.sample(params)
            bar.update()
        if on_warmup is not None:
            on_warmup(kernel)
        for s in range(num_samples):
            params = kernel.sample(params)
            draws[s] = params["z"]
            potential[s] = kernel.state.potential
            bar.update()
    return HMCResult(
        samples=draws.transpose(0, 1),  # (C, S, N, D)
        potential=potential.transpose(0, 1),
        accept_prob=kernel.accept_trace.transpose(0, 1),
        diverging=kernel.diverging_trace.transpose(0, 1),
        step_size=kernel.step_size,
        inverse_mass=kernel.inverse_mass,
        num_grad_evals=kernel.num_grad_evals,
        num_steps=kernel.num_steps,
        steps_per_point=kernel.steps_per_point,
    )
