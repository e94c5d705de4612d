"""The training objective of a VAE run: its ELBO object, extra terms, modules and optimizers, and its step.

:func:`make_objective` turns the ``objective`` config section and ``--elbo`` / ``--particles`` into an
:class:`Objective`; the VAE trainer adds its modules and optimizers to the checkpoint (FactorVAE's
discriminator and its Adam) and calls :meth:`Objective.step` for each batch. State that changes with
training is either in those modules or a function of the step (the capacity C), so resume is exact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from probgen.config import ObjectiveConfig, flag
from probgen.errors import UserError
from probgen.inference.svi.elbo import make_elbo
from probgen.inference.svi.objectives import (
    DIPVAE2,
    IWAE,
    BetaTCVAE,
    CapacityVAE,
    FactorVAE,
    capacity_at,
    discriminator_loss,
)
from probgen.inference.svi.step import svi_step
from probgen.models.latent_discriminator import LatentDiscriminator

BASE_TERMS = ("loss", "recon", "kl")


@dataclasses.dataclass
class Objective:
    """What a VAE run optimises. ``term_names``: the batch sums :meth:`step` returns, in order."""

    cfg: ObjectiveConfig
    elbo: Any
    term_names: tuple[str, ...] = BASE_TERMS
    modules: dict[str, nn.Module] = dataclasses.field(default_factory=dict)
    optimizers: dict[str, torch.optim.Optimizer] = dataclasses.field(default_factory=dict)
    learning_rates: dict[str, float] = dataclasses.field(default_factory=dict)
    plain: bool = True  # the (beta-)ELBO with its stock step (CUDA graphs and DDP allowed)

    @property
    def name(self) -> str:
        return self.cfg.objective

    def prepare(self, step: int) -> None:
        """Set what depends on the optimiser step (Burgess et al.'s capacity) before a step or an evaluation."""
        if self.name == "capacity":
            self.elbo.capacity = capacity_at(step, self.cfg.capacity_max, self.cfg.capacity_steps)

    def state(self, step: int) -> dict[str, Any]:
        """The objective's settings for the checkpoint and metrics.json."""
        out: dict[str, Any] = {"name": self.name}
        if self.name == "capacity":
            out["capacity"] = capacity_at(step, self.cfg.capacity_max, self.cfg.capacity_steps)
        return out

    def step(
        self,
        loss_fn: Callable[..., torch.Tensor],
        optim: torch.optim.Optimizer,
        x: torch.Tensor,
        beta: float,
        check: Callable[[torch.Tensor], None],
    ) -> torch.Tensor:
        """One update on batch ``x``; returns detached batch sums of ``term_names``."""
        if self.name != "factor-vae":
            return svi_step(loss_fn, self.elbo, optim, x, beta, check, terms=self.term_names)
        disc, d_optim = self.modules["factor_discriminator"], self.optimizers["factor_optimizer"]
        loss = loss_fn(x, beta)  # VAE loss with gamma * TC from the current discriminator
        d_loss = discriminator_loss(disc, self.elbo.last_latent)  # same codes, permuted per dimension
        optim.zero_grad(set_to_none=True)
        loss.backward()
        d_optim.zero_grad(set_to_none=True)  # drop what the VAE loss left on the discriminator
        d_loss.backward()
        check(loss.detach() + d_loss.detach())  # before either update
        optim.step()
        d_optim.step()
        t = self.elbo.last_terms
        return torch.stack([*(t[k] for k in self.term_names[:-1]), d_loss.detach() * x.shape[0]])


def make_objective(cfg: ObjectiveConfig, elbo: str, particles: int, latent_dim: int, device: torch.device) -> Objective:
    """The :class:`Objective` of a run; ``elbo``, ``particles``: the train section's --elbo and --particles."""
    if elbo == "iwae":
        if cfg.objective != "elbo":
            raise UserError(f"{flag('objective')} {cfg.objective}: not with --elbo iwae (use --objective elbo)")
        return Objective(cfg, IWAE(num_particles=particles))
    kw = {"elbo": elbo, "num_particles": particles, "vectorize_particles": False}
    if cfg.objective == "elbo":
        return Objective(cfg, make_elbo(elbo, particles))
    if cfg.objective == "beta-tcvae":
        return Objective(cfg, BetaTCVAE(cfg.tc_beta, **kw), BASE_TERMS + ("mi", "tc", "dim_kl"), plain=False)
    if cfg.objective == "dip-vae-ii":
        return Objective(cfg, DIPVAE2(cfg.dip_lambda_od, cfg.dip_lambda_d, **kw), BASE_TERMS + ("dip",), plain=False)
    if cfg.objective == "capacity":
        return Objective(cfg, CapacityVAE(cfg.capacity_gamma, **kw), BASE_TERMS + ("capacity",), plain=False)
    disc = LatentDiscriminator(latent_dim, tuple(cfg.factor_disc_hidden)).to(device)
    d_optim = torch.optim.Adam(disc.parameters(), lr=cfg.factor_disc_lr, betas=(0.5, 0.9))
    return Objective(
        cfg,
        FactorVAE(cfg.factor_gamma, disc, **kw),
        BASE_TERMS + ("tc", "d_loss"),
        modules={"factor_discriminator": disc},
        optimizers={"factor_optimizer": d_optim},
        learning_rates={"factor_optimizer": cfg.factor_disc_lr},
        plain=False,
    )
