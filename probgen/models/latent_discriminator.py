"""FactorVAE's discriminator on latent codes (Kim & Mnih 2018): an MLP z (M, D) -> logit (M,).

The paper uses 6 hidden layers of 1000 units with LeakyReLU(0.2); its logit estimates
log q(z) / prod_d q(z_d) once trained on codes against codes permuted per dimension
(:func:`probgen.inference.svi.objectives.discriminator_loss`).
"""

from __future__ import annotations

import torch
from torch import nn


class LatentDiscriminator(nn.Module):
    def __init__(self, latent_dim: int, hidden: tuple[int, ...] = (1000,) * 6, slope: float = 0.2):
        super().__init__()
        if latent_dim < 1 or not hidden or min(hidden) < 1:
            raise ValueError(f"latent_dim and hidden sizes must be positive, got {latent_dim}, {hidden}")
        widths = [latent_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(slope)]
        layers.append(nn.Linear(widths[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)  # (M,)
