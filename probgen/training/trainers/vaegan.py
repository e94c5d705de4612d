"""`probgen fit vaegan`: the Pyro VAE with a discriminator on reconstructions and prior samples.

Each step updates the VAE on -ELBO + ``--gan-weight`` x the generator's adversarial loss and the
discriminator on its own loss, both from the same forward pass (see :mod:`probgen.models.vaegan`).
Same loop, checkpoints (VAE, discriminator, both optimizers) and exact resume as `fit vae`; the
checkpoint's ``model`` is a plain VAE, so `probgen sample`, `loglik` and `plot` read it as one.
losses.csv adds ``g_loss`` and ``d_loss`` (nats per image) to the training rows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from probgen.config import FitVAEGANConfig
from probgen.models.vaegan import Discriminator, adversarial_losses, generator_images
from probgen.training.loop import fit
from probgen.training.trainers.vae import VAETrainer


class VAEGANTrainer(VAETrainer):
    config_cls = FitVAEGANConfig
    term_names = ("loss", "recon", "kl", "g_loss", "d_loss")
    supports_ddp = False  # the discriminator's gradients are not all-reduced

    def build(self) -> None:
        super().build()
        g = self.cfg.gan
        channels = g.disc_channels or self.cfg.model.conv_channels
        self.disc = Discriminator(tuple(channels), self.cfg.model.kernel_size, self.data.image_shape).to(self.device)
        self.modules["discriminator"] = self.disc
        self.d_optim = torch.optim.Adam(self.disc.parameters(), lr=g.disc_lr, betas=(0.5, 0.999))
        self.optimizers["d_optimizer"] = self.d_optim

    def learning_rates(self) -> dict[str, float]:
        return {"optimizer": self.cfg.train.lr, "d_optimizer": self.cfg.gan.disc_lr}

    def train_step(self, idx: torch.Tensor, check: Callable[[torch.Tensor], None]) -> torch.Tensor:
        x = self.batch_images(idx)
        elbo_loss = self.loss_fn(x, self._beta())
        recon, prior = generator_images(self.vae, x)
        g, d = adversarial_losses(self.disc, x, recon, prior)
        self.optim.zero_grad(set_to_none=True)
        (elbo_loss + self.cfg.gan.gan_weight * g).backward()
        self.d_optim.zero_grad(set_to_none=True)  # drop what the generator loss left on D
        d.backward()
        check(elbo_loss.detach() + g.detach() + d.detach())  # before either update
        self.optim.step()
        self.d_optim.step()
        t = self.elbo.last_terms
        return torch.stack([t["loss"], t["recon"], t["kl"], g.detach(), d.detach()])

    def train_row(self, sums: torch.Tensor, n: int) -> dict[str, float]:
        g, d = (sums[3:] / max(n, 1)).tolist()
        return {**super().train_row(sums, n), "g_loss": g, "d_loss": d}

    def describe(self, row: dict[str, Any]) -> str:
        adv = f", G {row['g_loss']:.3f}, D {row['d_loss']:.3f}" if "g_loss" in row else ""
        return super().describe(row) + adv

    def curves(self) -> dict[str, tuple[str, float]]:
        return {**super().curves(), "generator loss": ("g_loss", 1.0), "discriminator loss": ("d_loss", 1.0)}

    def metrics_extra(self) -> dict[str, Any]:
        return {**super().metrics_extra(), "gan_weight": self.cfg.gan.gan_weight}


def fit_vaegan(cfg: FitVAEGANConfig) -> Path:
    """Train a VAE-GAN as configured; returns the run directory."""
    return fit(VAEGANTrainer, cfg)
