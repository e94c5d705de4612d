"""Probabilistic PCA as a Pyro model: a linear-Gaussian decoder with exact posterior and evidence.

x = W z + b + s * eps, z ~ N(0, I_d): log p(x) = log N(x; b, W W^T + s^2 I) and
p(z | x) = N(S W^T (x - b) / s^2, S) with S = (I + W^T W / s^2)^-1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch

from probgen.inference.mcmc.potential import LatentTarget


@dataclass
class PPCA:
    W: torch.Tensor  # (P, d)
    b: torch.Tensor  # (P,)
    s: float

    @staticmethod
    def random(obs_dim: int, latent_dim: int, s: float = 0.5, seed: int = 0, dtype=torch.float64) -> PPCA:
        g = torch.Generator().manual_seed(seed)
        W = torch.randn(obs_dim, latent_dim, generator=g, dtype=dtype)
        b = torch.randn(obs_dim, generator=g, dtype=dtype)
        return PPCA(W, b, s)

    @property
    def latent_dim(self) -> int:
        return self.W.shape[1]

    def simulate(self, n: int, seed: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.latent_dim, generator=g, dtype=self.W.dtype)
        return z @ self.W.T + self.b + self.s * torch.randn(n, self.W.shape[0], generator=g, dtype=self.W.dtype)

    def model(self, x: torch.Tensor) -> None:
        d = self.latent_dim
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(x.new_zeros(d), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.s).to_event(1), obs=x)

    def guide(self, x: torch.Tensor, inflate: float = 1.3) -> None:
        """A mean-field encoder: exact posterior means, marginal sds inflated (an imperfect q)."""
        mean, cov = self.posterior(x)
        sd = cov.diagonal().sqrt() * inflate
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(mean, sd.expand_as(mean)).to_event(1))

    def log_evidence(self, x: torch.Tensor) -> torch.Tensor:
        cov = self.W @ self.W.T + self.s**2 * torch.eye(self.W.shape[0], dtype=self.W.dtype)
        return dist.MultivariateNormal(self.b, covariance_matrix=cov).log_prob(x)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact posterior means (N, d) and the shared covariance (d, d)."""
        prec = torch.eye(self.latent_dim, dtype=self.W.dtype) + self.W.T @ self.W / self.s**2
        cov = torch.linalg.inv(prec)
        mean = (x - self.b) @ self.W @ cov / self.s**2
        return mean, cov

    def target(self, x: torch.Tensor) -> LatentTarget:
        """A hand-written batched target (no Pyro tracing): fast, for the statistical tests."""
        n, d = x.shape[0], self.latent_dim
        half_log_2pi = 0.5 * math.log(2 * math.pi)

        def log_joint(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            lp = -0.5 * z.square().sum(-1) - d * half_log_2pi
            r = (x - z @ self.W.T - self.b) / self.s
            ll = -0.5 * r.square().sum(-1) - x.shape[-1] * (half_log_2pi + math.log(self.s))
            return lp, ll

        def sample_prior(c: int) -> torch.Tensor:
            return torch.randn(c, n, d, dtype=x.dtype)

        return LatentTarget(log_joint, sample_prior, n, d, x.shape[-1])
