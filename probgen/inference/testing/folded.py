"""A latent-2 decoder with a bimodal posterior by construction, and its exact evidence by 2-D quadrature.

The decoder sees z only through (h(z1), z2), h(z1) = z1 for z1 >= 0 and -k z1 for z1 < 0: every x that
z = (a, b) explains is explained as well by (-a / k, b). With k = 1 (h = |z1|) both modes carry the
same mass; with k > 1 the mode at -a / k has the larger prior density and is k times narrower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from probgen.inference.mcmc.potential import LatentTarget


@dataclass
class FoldedDecoder:
    A: torch.Tensor  # (H, 2)
    c: torch.Tensor  # (H,)
    B: torch.Tensor  # (P, H)
    s: float
    k: float = 1.0

    @staticmethod
    def random(obs_dim: int = 8, hidden: int = 16, s: float = 0.2, k: float = 1.0, seed: int = 0) -> FoldedDecoder:
        g = torch.Generator().manual_seed(seed)
        A = torch.randn(hidden, 2, generator=g, dtype=torch.float64)
        c = 0.5 * torch.randn(hidden, generator=g, dtype=torch.float64)
        B = torch.randn(obs_dim, hidden, generator=g, dtype=torch.float64) / math.sqrt(hidden)
        return FoldedDecoder(A, c, B, s, k)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean (..., P) of z (..., 2)."""
        z1 = z[..., 0]
        u = torch.stack([torch.where(z1 >= 0, z1, -self.k * z1), z[..., 1]], -1)
        return torch.tanh(u @ self.A.T + self.c) @ self.B.T

    def simulate(self, z: torch.Tensor, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        m = self.mean(z)
        return m + self.s * torch.randn(m.shape, generator=g, dtype=m.dtype)

    def log_lik(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) for x (N, P) and z (..., N, 2): (..., N)."""
        r = (x - self.mean(z)) / self.s
        return -0.5 * r.square().sum(-1) - x.shape[-1] * (0.5 * math.log(2 * math.pi) + math.log(self.s))

    def target(self, x: torch.Tensor) -> LatentTarget:
        n = x.shape[0]

        def log_joint(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            lp = -0.5 * z.square().sum(-1) - math.log(2 * math.pi)
            return lp, self.log_lik(x, z)

        def sample_prior(c: int) -> torch.Tensor:
            return torch.randn(c, n, 2, dtype=x.dtype)

        return LatentTarget(log_joint, sample_prior, n, 2, x.shape[-1])

    def log_evidence(
        self, x: torch.Tensor, limit: float = 5.5, num: int = 301, chunk: int = 20_000, side: int = 0
    ) -> torch.Tensor:
        """log p(x) (N,) by the midpoint rule on a num x num grid over [-limit, limit]^2; with
        ``side`` = +1 or -1, log p(x, z1 > 0) or log p(x, z1 < 0) (one mode's share).

        At s = 0.2 the defaults agree with a 1201 x 1201 grid over [-7, 7]^2 to 4e-7 nats (the modes
        span several cells, and the prior mass outside the box is ~1e-7).
        """
        h = 2 * limit / num
        axis = -limit + h * (torch.arange(num, dtype=torch.float64) + 0.5)
        grid = torch.cartesian_prod(axis, axis)  # (G, 2)
        if side:
            grid = grid[grid[:, 0] * side > 0]
        parts = []
        for start in range(0, grid.shape[0], chunk):
            z = grid[start : start + chunk, None, :].expand(-1, x.shape[0], -1)  # (g, N, 2)
            lp = -0.5 * z.square().sum(-1) - math.log(2 * math.pi)
            parts.append(torch.logsumexp(lp + self.log_lik(x, z), 0))
        return torch.logsumexp(torch.stack(parts), 0) + 2 * math.log(h)
