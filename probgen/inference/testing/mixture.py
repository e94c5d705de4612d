"""A Gaussian-mixture prior with a linear-Gaussian decoder: several posterior basins, exact log p(x) at any latent size.

z ~ sum_k pi_k N(mu_k, Sigma_k), x | z ~ N(W z + b, s^2 I). Then
p(x) = sum_k pi_k N(x; W mu_k + b, W Sigma_k W^T + s^2 I) (closed form), and p(z | x) is the mixture
of the components' Gaussian posteriors, component k with weight proportional to
pi_k N(x; W mu_k + b, W Sigma_k W^T + s^2 I) (Bishop 2006, section 2.3.3).

The random models (:meth:`MixturePrior.random`, :meth:`MixturePrior.broad_narrow`) are built so that a
posterior has several basins of real mass, like a VAE's with a few latents the decoder uses weakly and
some it ignores. In a random orthonormal basis of the latent space:

- the K - 1 directions that separate the components' means are seen only weakly by the decoder (their
  columns of W scaled by ``weak``): the data do not say which component made them, so every component
  keeps a share of the posterior that varies from point to point;
- ``active_dim`` directions are seen fully (columns of W of norm about sqrt(obs_dim / latent_dim));
- the rest are not seen at all (inactive latents): there the posterior is the prior component itself,
  and components of different widths there have posteriors of different widths. A basin's share of
  p(x) goes as its peak plus half the log-determinant of its covariance, so a narrow basin can have
  the highest peak of log p(x, z) while a broad one holds most of the mass (:meth:`broad_narrow`).

Each basin is a Gaussian (up to the tails of its neighbours), so a Laplace fit per basin is nearly
exact here: what this model tests is finding the basins and weighing them by mass. For basins that no
Gaussian fits, see :class:`~probgen.inference.testing.curved.CurvedDecoder`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch

__all__ = ["MixturePrior"]


def _orthonormal(dim: int, g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=dtype))
    return q * torch.sign(torch.diagonal(r))  # (dim, dim): a Haar-random rotation


@dataclass
class MixturePrior:
    """z ~ sum_k weights_k N(means_k, scale_trils_k scale_trils_k^T), x | z ~ N(W z + b, s^2 I) (module docstring).

    ``weights`` (K,) sum to one, ``means`` (K, D), ``scale_trils`` (K, D, D) lower-triangular, ``W`` (P, D),
    ``b`` (P,), ``s`` the observation sd. Tensors share one dtype (float64 for exact values).
    """

    weights: torch.Tensor
    means: torch.Tensor
    scale_trils: torch.Tensor
    W: torch.Tensor
    b: torch.Tensor
    s: float

    @staticmethod
    def random(
        latent_dim: int,
        num_components: int = 3,
        obs_dim: int | None = None,
        active_dim: int | None = None,
        separation: float = 4.0,
        weak: float = 0.2,
        s: float = 0.5,
        inactive_sd: tuple[float, float] = (0.6, 1.2),
        weights: tuple[float, ...] | None = None,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> MixturePrior:
        """A random model of ``num_components`` basins (module docstring).

        The components' means sit on a regular simplex with edge ``separation`` in the K - 1 weakly
        seen directions (unit sd there); ``active_dim`` (default: half the rest) directions are seen
        fully (unit prior sd); in the remaining, unseen directions component k has sd
        ``inactive_sd[k]`` when ``inactive_sd`` has K entries, else a draw uniform in the interval
        ``inactive_sd``. ``weights``: the mixing weights (default: random, softmax of N(0, 0.5^2)).
        ``obs_dim`` defaults to 2 x ``latent_dim``.
        """
        k, d = num_components, latent_dim
        if not 2 <= k <= d:
            raise ValueError(f"num_components must be in [2, latent_dim={d}], got {k}")
        rest = d - (k - 1)
        active = rest // 2 if active_dim is None else active_dim
        if not 0 <= active <= rest:
            raise ValueError(f"active_dim must be in [0, {rest}], got {active}")
        p = 2 * d if obs_dim is None else obs_dim
        g = torch.Generator().manual_seed(seed)
        basis = _orthonormal(d, g, dtype)  # columns: K-1 mean directions, active ones, unseen ones
        simplex = torch.eye(k, dtype=dtype) - 1.0 / k  # rows: a regular simplex of edge sqrt(2) in R^k
        coords = simplex @ torch.linalg.svd(simplex).Vh[: k - 1].T  # (K, K-1), same edge
        means = separation / math.sqrt(2) * coords @ basis[:, : k - 1].T  # (K, D)
        if len(inactive_sd) == k:
            unseen_sd = torch.tensor(inactive_sd, dtype=dtype)
        else:
            lo, hi = inactive_sd
            unseen_sd = lo + (hi - lo) * torch.rand(k, generator=g, dtype=dtype)
        sd = torch.ones(k, d, dtype=dtype)
        sd[:, k - 1 + active :] = unseen_sd[:, None]
        cov = (basis * sd[:, None, :].square()) @ basis.T  # (K, D, D): basis diag(sd^2) basis^T
        seen = torch.zeros(d, dtype=dtype)
        seen[: k - 1], seen[k - 1 : k - 1 + active] = weak, 1.0
        A = torch.randn(p, d, generator=g, dtype=dtype) / math.sqrt(d)
        W = (A * seen) @ basis.T  # (P, D): column j of A sees basis direction j, scaled by seen[j]
        b = torch.randn(p, generator=g, dtype=dtype)
        if weights is None:
            w = torch.softmax(0.5 * torch.randn(k, generator=g, dtype=dtype), 0)
        else:
            w = torch.tensor(weights, dtype=dtype)
            if w.numel() != k or (w <= 0).any():
                raise ValueError(f"weights must be {k} positive numbers, got {weights}")
            w = w / w.sum()
        return MixturePrior(w, means, torch.linalg.cholesky(cov), W, b, s)

    @staticmethod
    def broad_narrow(
        latent_dim: int, narrow_sd: float = 0.3, narrow_weight: float = 0.2, seed: int = 0, **kwargs: object
    ) -> MixturePrior:
        """Two basins: a narrow one (sd ``narrow_sd`` in the unseen directions, prior weight
        ``narrow_weight``) next to a broad one (sd 1). The narrow basin usually has the higher peak of
        log p(x, z) and the broad one most of the mass (the failure of choosing basins by peak height,
        issue 21): on 10 to 16 of 16 simulated points at latent 10, 20 and 50 (seeds 0-2). Other
        arguments as :meth:`random`."""
        return MixturePrior.random(
            latent_dim,
            num_components=2,
            inactive_sd=(narrow_sd, 1.0),
            weights=(narrow_weight, 1.0 - narrow_weight),
            seed=seed,
            **kwargs,  # type: ignore[arg-type]
        )

    @property
    def latent_dim(self) -> int:
        """D, the number of latents."""
        return self.means.shape[1]

    @property
    def obs_dim(self) -> int:
        """P, the number of observed scalars per point."""
        return self.W.shape[0]

    def prior(self) -> dist.Distribution:
        """The mixture prior p(z): batch shape (), event shape (D,)."""
        mix = dist.Categorical(probs=self.weights)
        return dist.MixtureSameFamily(mix, dist.MultivariateNormal(self.means, scale_tril=self.scale_trils))

    def model(self, x: torch.Tensor) -> None:
        """The Pyro model of x (N, P): latent site ``z`` (N, D), observed site ``x``, in plate ``data`` at dim -1."""
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", self.prior())
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.s).to_event(1), obs=x)

    def simulate(self, n: int, seed: int = 1) -> torch.Tensor:
        """n points x (n, P) drawn from the model (a z per point from the prior, then x | z)."""
        g = torch.Generator().manual_seed(seed)
        comp = torch.multinomial(self.weights, n, replacement=True, generator=g)
        eps = torch.randn(n, self.latent_dim, 1, generator=g, dtype=self.W.dtype)
        z = self.means[comp] + (self.scale_trils[comp] @ eps)[..., 0]
        return z @ self.W.T + self.b + self.s * torch.randn(n, self.obs_dim, generator=g, dtype=self.W.dtype)

    def _marginals(self) -> dist.MultivariateNormal:
        """p(x | component k) for every k: batch shape (K,), event shape (P,)."""
        cov = self.scale_trils @ self.scale_trils.transpose(-1, -2)
        eye = torch.eye(self.obs_dim, dtype=self.W.dtype)
        return dist.MultivariateNormal(self.means @ self.W.T + self.b, self.W @ cov @ self.W.T + self.s**2 * eye)

    def log_evidence(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) (N,) in nats of x (N, P)."""
        return torch.logsumexp(self.weights.log() + self._marginals().log_prob(x[:, None, :]), -1)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The exact posterior p(z | x), a mixture of K Gaussians per point: its log weights (N, K),
        means (N, K, D) and covariances (K, D, D) (the same for every point)."""
        log_w = self.weights.log() + self._marginals().log_prob(x[:, None, :])  # (N, K)
        log_w = log_w - torch.logsumexp(log_w, -1, keepdim=True)
        prior_prec = torch.cholesky_inverse(self.scale_trils)  # (K, D, D)
        cov = torch.linalg.inv(prior_prec + self.W.T @ self.W / self.s**2)
        rhs = (prior_prec @ self.means[..., None])[..., 0] + ((x - self.b) @ self.W / self.s**2)[:, None, :]
        means = (cov @ rhs[..., None])[..., 0]  # (N, K, D)
        return log_w, means, cov

    def guide(self, x: torch.Tensor, inflate: float = 1.2) -> None:
        """An encoder that knows one basin, as an ELBO-trained diagonal Gaussian would: site ``z`` ~ a
        Normal at the mean of each point's heaviest posterior component, its marginal sds x ``inflate``."""
        log_w, means, cov = self.posterior(x)
        k = log_w.argmax(-1)
        loc = means[torch.arange(x.shape[0]), k]
        sd = cov.diagonal(dim1=-2, dim2=-1).sqrt()[k] * inflate
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(loc, sd).to_event(1))
