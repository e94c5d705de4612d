"""VAE-GAN (Larsen et al. 2016): the Pyro VAE plus a discriminator on reconstructions and prior samples.

The VAE keeps its ELBO (Pyro model/guide, ``Trace_ELBO``). A discriminator D (logits) learns to tell
data x from reconstructions x~ = E[x | z], z ~ q(z | x), and from prior samples x_p = E[x | z],
z ~ p(z). The decoder gets the non-saturating adversarial loss on top of -ELBO:

    decoder/encoder:  -ELBO(x) + w * sum_n [ -log D(x~_n) - log D(x_p,n) ]
    discriminator:    sum_n [ -log D(x_n) - log(1 - D(x~_n)) - log(1 - D(x_p,n)) ]

with w = ``--gan-weight``. As in Larsen et al., the adversarial term does not train the encoder:
x~ is decoded from a detached z. Both losses are sums over the batch in nats, like the ELBO.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from probgen.config import VAEConfig
from probgen.models.nets import conv_geometry
from probgen.models.vae import VAE


class Discriminator(nn.Module):
    """x (B, C, H, W) in [0, 1] -> logits (B,) of "x is data": stride-2 convs with LeakyReLU(0.2), then linear."""

    def __init__(self, channels: tuple[int, ...], kernel_size: int, image_shape: tuple[int, int, int]):
        super().__init__()
        c = image_shape[0]
        s = conv_geometry(VAEConfig(conv_channels=channels), image_shape)  # same divisibility rule as the VAE
        k = kernel_size
        layers: list[nn.Module] = []
        prev = c
        for ch in channels:
            layers += [nn.Conv2d(prev, ch, k, stride=2, padding=(k - 1) // 2), nn.LeakyReLU(0.2)]
            prev = ch
        layers += [nn.Flatten(), nn.Linear(prev * s * s, 1)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x * 2 - 1).squeeze(-1)  # inputs centred at 0


def generator_images(vae: VAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstructions x~ (from a detached posterior sample) and as many prior samples x_p, both (B, C, H, W)."""
    with torch.no_grad():
        loc, scale = vae.encode(x)
        z = loc + scale * torch.randn_like(loc)
    z_p = torch.randn_like(z)
    return vae.mean_image(z), vae.mean_image(z_p)


def adversarial_losses(
    disc: Discriminator, x: torch.Tensor, recon: torch.Tensor, prior: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(generator loss, discriminator loss), batch sums in nats.

    The generator loss reaches the decoder through ``recon`` and ``prior``; the discriminator
    loss sees them detached.
    """
    g = F.softplus(-disc(recon)).sum() + F.softplus(-disc(prior)).sum()  # -log D
    d = (
        F.softplus(-disc(x)).sum()
        + F.softplus(disc(recon.detach())).sum()  # -log(1 - D)
        + F.softplus(disc(prior.detach())).sum()
    )
    return g, d
