"""Batched log densities of a Pyro model's latent posterior p(z | x), for many data points at once.

A model with a latent site ``"z"`` (event dim 1) and an observed site ``"x"`` inside its own data plate
at ``dim=-1`` is traced with ``z`` conditioned to a tensor shaped (C, N, D) under an outer
``pyro.plate("chains", C, dim=-2)``. Both sites then have batch shape (C, N), so one trace gives
log p(z) and log p(x | z) for every (chain, data point) pair; their sum is the unnormalised log
posterior the samplers target. The encoder's q(z | x) comes from tracing the guide once.

Log densities are the model's own, unscaled by any ``poutine.scale`` (e.g. a beta-VAE's KL weight):
a marginal likelihood is a property of the generative model, not of the training objective.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

__all__ = ["LatentTarget", "encoder_proposal", "from_pyro_model"]


@dataclass(frozen=True)
class LatentTarget:
    """The posterior p(z | x) of N data points, as batched callables.

    ``log_joint(z)`` maps z (C, N, D) to ``(log p(z), log p(x | z))``, each (C, N) in nats.
    ``sample_prior(C)`` draws z (C, N, D) from p(z). ``data_dim`` is the number of observed scalars per
    data point (pixels x channels), the D of bits/dim. ``select(index)``, when given, builds the target
    of the points ``index`` (M,) alone (:meth:`subset`), so that extra work can go to a few points.
    """

    log_joint: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    sample_prior: Callable[[int], torch.Tensor]
    num_data: int
    latent_dim: int
    data_dim: int
    select: Callable[[torch.Tensor], LatentTarget] | None = None

    def subset(self, index: torch.Tensor) -> LatentTarget:
        """The target of the data points ``index`` (M,) only, in that order.

        Uses ``select`` when the target has one (:func:`from_pyro_model` gives it); otherwise a view
        that evaluates every point and keeps the chosen ones (correct, but it pays for all N points,
        once per repeat of the most repeated index).
        """
        index = index.long().flatten()
        if self.select is not None:
            return self.select(index)
        n, m = self.num_data, index.numel()
        # a point chosen several times is evaluated in several rounds, each with one copy of it
        repeat = torch.zeros(m, dtype=torch.long)
        seen: dict[int, int] = {}
        for j, i in enumerate(index.tolist()):
            repeat[j] = seen.get(i, 0)
            seen[i] = repeat[j].item() + 1
        rounds = [torch.nonzero(repeat == r).flatten() for r in range(int(repeat.max()) + 1 if m else 0)]

        def log_joint(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            lp = z.new_empty(z.shape[:2])
            ll = z.new_empty(z.shape[:2])
            for pos in rounds:
                pos_d, idx = pos.to(z.device), index[pos].to(z.device)
                full = self.sample_prior(z.shape[0]).to(z.dtype).index_copy(1, idx, z[:, pos_d])
                lp_full, ll_full = self.log_joint(full)
                lp[:, pos_d], ll[:, pos_d] = lp_full[:, idx], ll_full[:, idx]
            return lp, ll

        def sample_prior(c: int) -> torch.Tensor:
            return self.sample_prior(c)[:, index]

        if m and int(index.max()) >= n:
            raise IndexError(f"subset index {int(index.max())} out of range for {n} points")
        return LatentTarget(log_joint, sample_prior, m, self.latent_dim, self.data_dim)

    def potential(self, beta: float | torch.Tensor = 1.0) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
        """Potential energy of the tempered posterior p(z) p(x | z)^beta.

        Returns ``z (C, N, D) -> (U, log p(x | z))``, both (C, N): U = -(log p(z) + beta log p(x | z)),
        with log p(x | z) carried along so that annealing needs no extra decoder pass.
        """

        def fn(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            log_prior, log_lik = self.log_joint(z)
            return -(log_prior + beta * log_lik), log_lik

        return fn


def _site_log_prob(site: dict[str, Any]) -> torch.Tensor:
    """log_prob of a trace site with its mask applied but no scale (see the module docstring)."""
    log_p = site["fn"].log_prob(site["value"])
    mask = site.get("mask")
    if mask is not None and mask is not True:
        log_p = torch.where(mask, log_p, torch.zeros_like(log_p))
    return log_p


def _trace(model: Callable, args: tuple, kwargs: dict, num_chains: int, z: torch.Tensor | None, latent: str):
    conditioned = poutine.condition(model, {latent: z}) if z is not None else model
    with poutine.trace() as tracer, pyro.plate("chains", num_chains, dim=-2):
        conditioned(*args, **kwargs)
    return tracer.trace


def from_pyro_model(
    model: Callable,
    *args: Any,
    latent: str = "z",
    observed: str = "x",
    **kwargs: Any,
) -> LatentTarget:
    """Wrap ``model(*args, **kwargs)`` as a batched :class:`LatentTarget`.

    The model must sample ``latent`` with event dim 1 inside a data plate at ``dim=-1`` and observe
    ``observed`` in the same plate; its networks must broadcast over a leading chain dimension.
    ``model`` is called under ``pyro.plate("chains", C, dim=-2)`` and ``poutine.condition``.
    """
    probe = _trace(model, args, kwargs, 1, None, latent)
    for name in (latent, observed):
        if name not in probe.nodes or probe.nodes[name]["type"] != "sample":
            raise ValueError(f"model has no sample site {name!r}")
    if not probe.nodes[observed]["is_observed"]:
        raise ValueError(f"site {observed!r} of the model is not observed")
    z_site, x_site = probe.nodes[latent], probe.nodes[observed]
    if z_site["fn"].event_dim != 1 or z_site["value"].dim() != 3:
        raise ValueError(
            f"site {latent!r} must have event dim 1 inside a data plate at dim=-1, got value shape "
            f"{tuple(z_site['value'].shape)} under a chains plate of size 1"
        )
    num_data, latent_dim = z_site["value"].shape[-2:]
    x_event = x_site["fn"].event_shape
    data_dim = int(torch.Size(x_event).numel())

    def log_joint(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if z.dim() != 3 or z.shape[-2:] != (num_data, latent_dim):
            raise ValueError(f"z must be (C, {num_data}, {latent_dim}), got {tuple(z.shape)}")
        tr = _trace(model, args, kwargs, z.shape[0], z, latent)
        log_prior = _site_log_prob(tr.nodes[latent])
        log_lik = _site_log_prob(tr.nodes[observed])
        shape = z.shape[:2]
        return log_prior.expand(shape), log_lik.expand(shape)

    def sample_prior(num_chains: int) -> torch.Tensor:
        with torch.no_grad():
            return _trace(model, args, kwargs, num_chains, None, latent).nodes[latent]["value"].detach()

    def select(index: torch.Tensor) -> LatentTarget:
        # the data are the tensor arguments whose first dimension is the number of points
        picked = [
            a[index.to(a.device)] if torch.is_tensor(a) and a.dim() > 0 and a.shape[0] == num_data else a for a in args
        ]
        return from_pyro_model(model, *picked, latent=latent, observed=observed, **kwargs)

    return LatentTarget(log_joint, sample_prior, int(num_data), int(latent_dim), data_dim, select)


def encoder_proposal(guide: Callable, *args: Any, latent: str = "z", **kwargs: Any) -> dist.Distribution:
    """The guide's distribution q(z | x) at site ``latent``: batch shape (N,), event shape (D,).

    Evaluated once, without gradients; sampling it with ``sample((K,))`` gives z shaped (K, N, D).
    """
    # built without argument validation: IWAE scores thousands of its own draws, and each validated
    # log_prob call would read a flag back from the device (a GPU sync per chunk)
    with torch.no_grad(), pyro.validation_enabled(False):
        tr = poutine.trace(guide).get_trace(*args, **kwargs)
    if latent not in tr.nodes:
        raise ValueError(f"guide has no sample site {latent!r}")
    return tr.nodes[latent]["fn"]
