"""Stock Pyro NUTS, one data point and one chain at a time: the slow reference for :class:`BatchedHMC`.

``--sampler nuts`` runs this on a few data points to check the fast path against Pyro's own sampler.
Its output has the same layout as :func:`~probgen.inference.mcmc.hmc.run_hmc`'s (an :class:`HMCResult`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pyro.infer import MCMC, NUTS

from probgen.inference.mcmc.hmc import HMCResult
from probgen.inference.mcmc.transition import PotentialFn
from probgen.utils.progress import progress as progress_bar

__all__ = ["run_nuts"]


def _scalar_potential(fn: PotentialFn, latent_dim: int, counter: list[int]) -> Any:
    def potential(params: dict[str, torch.Tensor]) -> torch.Tensor:
        counter[0] += 1
        out = fn(params["z"].reshape(1, 1, latent_dim))
        return (out[0] if isinstance(out, tuple) else out).sum()

    return potential


def run_nuts(
    potential_fns: Sequence[PotentialFn],
    z0: torch.Tensor,
    num_warmup: int,
    num_samples: int,
    *,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    progress: bool = False,
) -> HMCResult:
    """Run ``pyro.infer.NUTS`` (adapted step size and diagonal mass) for each data point and chain.

    ``potential_fns[n]`` maps z (1, 1, D) to the potential (1, 1) of data point n alone; z0 is
    (C, N, D). ``accept_prob`` holds each chain's mean acceptance statistic for every draw (NUTS has
    no single per-draw accept test); ``step_size`` is the mean adapted step size over chains.
    """
    c, n, d = z0.shape
    if len(potential_fns) != n:
        raise ValueError(f"need one potential per data point: {len(potential_fns)} for {n} points")
    samples = z0.new_empty((c, num_samples, n, d))
    potential = z0.new_empty((c, num_samples, n))
    accept = z0.new_empty((c, num_samples, n))
    diverging = torch.zeros((c, num_samples, n), dtype=torch.bool, device=z0.device)
    step = z0.new_zeros(n)
    counter = [0]
    with progress_bar(total=c * n, desc="NUTS", enabled=progress) as bar:
        for j, fn in enumerate(potential_fns):
            for i in range(c):
                kernel = NUTS(
                    potential_fn=_scalar_potential(fn, d, counter),
                    adapt_step_size=True,
                    adapt_mass_matrix=True,
                    target_accept_prob=target_accept_prob,
                    max_tree_depth=max_tree_depth,
                )
                mcmc = MCMC(
                    kernel, num_samples, warmup_steps=num_warmup, initial_params={"z": z0[i, j]}, disable_progbar=True
                )
                mcmc.run()
                draws = mcmc.get_samples()["z"].reshape(num_samples, d)
                samples[i, :, j] = draws
                with torch.no_grad():
                    out = fn(draws.reshape(num_samples, 1, d))
                potential[i, :, j] = (out[0] if isinstance(out, tuple) else out).reshape(num_samples)
                diag = mcmc.diagnostics()
                accept[i, :, j] = float(diag["acceptance rate"]["chain 0"])
                for s in diag["divergences"]["chain 0"]:
                    diverging[i, s, j] = True
                step[j] += kernel.step_size / c
                bar.update()
    return HMCResult(samples, potential, accept, diverging, step, None, counter[0])
