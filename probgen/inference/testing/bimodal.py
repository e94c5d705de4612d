"""A latent-2 decoder whose posteriors are bimodal by construction, with log p(x) by 2-D grid quadrature.

x = W h(z) + b + s eps with h(z) = (z1^2 - 1, z2, tilt z1): the decoder sees z1 almost only through
z1^2, so a point made from z1* has posterior modes near +z1* and -z1*; the small ``tilt`` term makes
their masses unequal (so that chains split between modes in the wrong proportions give a wrong answer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from probgen.inference.mcmc.potential import LatentTarget


@dataclass
class Bimodal:
    W: torch.Tensor  # (P, 3)
    b: torch.Tensor  # (P,)
    s: float
    tilt: float

    @staticmethod
    def random(obs_dim: int = 12, s: float = 0.5, tilt: float = 0.15, seed: int = 0) -> Bimodal:
        g = torch.Generator().manual_seed(seed)
        W = torch.randn(obs_dim, 3, generator=g, dtype=torch.float64) / math.sqrt(3)
        b = torch.randn(obs_dim, generator=g, dtype=torch.float64)
        return Bimodal(W, b, s, tilt)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.stack([z[..., 0].square() - 1, z[..., 1], self.tilt * z[..., 0]], -1)
        return h @ self.W.T + self.b

    def simulate(self, z: torch.Tensor, seed: int = 1) -> torch.Tensor:
        """x for the given latents z (N, 2)."""
        g = torch.Generator().manual_seed(seed)
        return self.mean(z) + self.s * torch.randn(z.shape[0], self.W.shape[0], generator=g, dtype=z.dtype)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half_log_2pi = 0.5 * math.log(2 * math.pi)
        lp = -0.5 * z.square().sum(-1) - 2 * half_log_2pi
        r = (x - self.mean(z)) / self.s
        ll = -0.5 * r.square().sum(-1) - x.shape[-1] * (half_log_2pi + math.log(self.s))
        return lp, ll

    def target(self, x: torch.Tensor) -> LatentTarget:
        n = x.shape[0]
        return LatentTarget(
            lambda z: self.log_joint(x, z), lambda c: torch.randn(c, n, 2, dtype=x.dtype), n, 2, x.shape[-1]
        )

    def quadrature(self, x: torch.Tensor, lim: float = 5.0, num: int = 801) -> dict[str, torch.Tensor]:
        """log p(x) (N,) by the trapezoid-free midpoint rule on a num x num grid over [-lim, lim]^2,
        plus each point's posterior mass with z1 > 0 and the mean and sd of z on that side."""
        g = torch.linspace(-lim, lim, num, dtype=torch.float64)
        dz = (g[1] - g[0]).item()
        z = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 1, 2)  # (G, 1, 2)
        out = []
        for i in range(x.shape[0]):
            lp, ll = self.log_joint(x[i : i + 1], z)
            out.append((lp + ll)[:, 0])
        lj = torch.stack(out, 1)  # (G, N)
        log_px = torch.logsumexp(lj, 0) + 2 * math.log(dz)
        post = torch.softmax(lj, 0)
        right = (z[:, 0, 0] > 0).double()[:, None]
        mass = (post * right).sum(0)
        w = post * right / mass
        mean = torch.einsum("gn,gd->nd", w, z[:, 0])
        var = torch.einsum("gn,gnd->nd", w, (z[:, 0][:, None] - mean).square())
        return {"log_px": log_px, "mass_right": mass, "mean_right": mean, "sd_right": var.sqrt()}

    def encoder(self, x: torch.Tensor, inflate: float = 1.2) -> torch.distributions.Distribution:
        """An encoder that knows only the z1 > 0 mode: Normal at its mean, sd inflated, (N,) x (2,)."""
        q = self.quadrature(x)
        return torch.distributions.Independent(torch.distributions.Normal(q["mean_right"], inflate * q["sd_right"]), 1)
