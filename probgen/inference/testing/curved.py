"""A decoder nonlinear in one or two latents and linear in the rest: curved basins, exact log p(x) at any latent size.

z = (u, v) ~ N(0, I_D), u the first ``nonlinear_dim`` = m latents (1 or 2), v the other D - m, and

    x = B h(u) + W v + b + s eps,   h(u) = (u_1^2 - 1, tilt u_1, ..., u_m^2 - 1, tilt u_m[, u_1 u_2]).

The decoder sees each u_j mostly through u_j^2, so a point made from u_j has posterior basins near
+u_j and -u_j, of unequal mass (``tilt``; for m = 2 also the cross term u_1 u_2): up to 2^m basins,
one per sign pattern (orthant) of u. Given u the model is linear-Gaussian in v, so v integrates out:

    p(x | u) = N(x; B h(u) + b, W W^T + s^2 I),   p(x) = integral N(u; 0, I) p(x | u) du,

an m-dimensional integral of Gaussians, done by the midpoint rule on a fine grid (:meth:`CurvedDecoder.log_evidence`,
accurate to ~1e-9 nats at the defaults; the same integral at half the resolution gives its error).
And p(v | u, x) = N(S W^T (x - b - B h(u)) / s^2, S), S = (I + W^T W / s^2)^-1: the mean of v moves
with h(u), so each basin is curved (a banana in (u, v)), and u's own posterior is skewed. No Gaussian,
and so no Laplace fit, is exact for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch

__all__ = ["CurvedDecoder"]

#: the grid of u: [-LIMIT, LIMIT]^m (prior mass outside it < 1e-11 per latent)
LIMIT = 7.0


@dataclass
class CurvedDecoder:
    """x = B h(u) + W v + b + s eps with z = (u, v) ~ N(0, I) (module docstring).

    ``B`` (P, H) with H = 2m (+1 for the cross term when m = 2), ``W`` (P, D - m), ``b`` (P,), ``s`` the
    observation sd, ``tilt`` the weight of the odd features tilt u_j, ``nonlinear_dim`` m in {1, 2}.
    """

    B: torch.Tensor
    W: torch.Tensor
    b: torch.Tensor
    s: float
    tilt: float
    nonlinear_dim: int = 1

    @staticmethod
    def random(
        latent_dim: int,
        nonlinear_dim: int = 1,
        obs_dim: int | None = None,
        s: float = 0.5,
        strength: float = 1.0,
        tilt: float = 0.3,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> CurvedDecoder:
        """A random model: W with entries N(0, 1 / D), B with entries N(0, strength^2 / P) (each
        feature's column has norm about ``strength``), b ~ N(0, I); ``obs_dim`` defaults to 2 x ``latent_dim``."""
        m, d = nonlinear_dim, latent_dim
        if m not in (1, 2):
            raise ValueError(f"nonlinear_dim must be 1 or 2, got {m}")
        if d < m:
            raise ValueError(f"latent_dim must be at least nonlinear_dim={m}, got {d}")
        p = 2 * d if obs_dim is None else obs_dim
        h = 2 * m + (m == 2)
        g = torch.Generator().manual_seed(seed)
        W = torch.randn(p, d - m, generator=g, dtype=dtype) / math.sqrt(d)
        B = strength * torch.randn(p, h, generator=g, dtype=dtype) / math.sqrt(p)
        b = torch.randn(p, generator=g, dtype=dtype)
        return CurvedDecoder(B, W, b, s, tilt, m)

    @property
    def latent_dim(self) -> int:
        """D = m + the number of linear latents."""
        return self.nonlinear_dim + self.W.shape[1]

    @property
    def obs_dim(self) -> int:
        """P, the number of observed scalars per point."""
        return self.B.shape[0]

    def features(self, u: torch.Tensor) -> torch.Tensor:
        """h(u) (..., H) of u (..., m)."""
        parts = []
        for j in range(self.nonlinear_dim):
            parts += [u[..., j].square() - 1, self.tilt * u[..., j]]
        if self.nonlinear_dim == 2:
            parts.append(u[..., 0] * u[..., 1])
        return torch.stack(parts, -1)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's mean (..., P) of z (..., D)."""
        m = self.nonlinear_dim
        return self.features(z[..., :m]) @ self.B.T + z[..., m:] @ self.W.T + self.b

    def model(self, x: torch.Tensor) -> None:
        """The Pyro model of x (N, P): latent site ``z`` (N, D), observed site ``x``, in plate ``data`` at dim -1."""
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.mean(z), self.s).to_event(1), obs=x)

    def simulate(self, n: int, seed: int = 1) -> torch.Tensor:
        """n points x (n, P) drawn from the model."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.latent_dim, generator=g, dtype=self.W.dtype)
        return self.mean(z) + self.s * torch.randn(n, self.obs_dim, generator=g, dtype=self.W.dtype)

    def _whitened(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """With C = W W^T + s^2 I = L L^T: L^-1 (x - b) (N, P), L^-1 B (P, H) and the constant of log N (scalar)."""
        p = self.obs_dim
        cov = self.W @ self.W.T + self.s**2 * torch.eye(p, dtype=self.W.dtype)
        chol = torch.linalg.cholesky(cov)
        xt = torch.linalg.solve_triangular(chol, (x - self.b).T, upper=False).T
        bt = torch.linalg.solve_triangular(chol, self.B, upper=False)
        const = -0.5 * p * math.log(2 * math.pi) - chol.diagonal().log().sum()
        return xt, bt, const

    def log_lik_u(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """log p(x | u) (G, N), v integrated out, for x (N, P) and u (G, m) (the same u for every point)."""
        xt, bt, const = self._whitened(x)
        h = self.features(u)  # (G, H)
        bh = h @ bt.T  # (G, P)
        quad = xt.square().sum(-1) - 2 * bh @ xt.T + bh.square().sum(-1, keepdim=True)  # (G, N)
        return const - 0.5 * quad

    def _grid(self, num: int) -> tuple[torch.Tensor, float]:
        """Midpoints u (num^m, m) of a grid over [-LIMIT, LIMIT]^m and the log volume of a cell."""
        h = 2 * LIMIT / num
        axis = -LIMIT + h * (torch.arange(num, dtype=self.W.dtype) + 0.5)
        u = axis[:, None] if self.nonlinear_dim == 1 else torch.cartesian_prod(axis, axis)
        return u, self.nonlinear_dim * math.log(h)

    def _log_post_grid(self, x: torch.Tensor, num: int, chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
        """Grid nodes u (G, m) and log p(u, x) + log cell volume (G, N) on them."""
        u, log_cell = self._grid(num)
        log_prior = -0.5 * u.square().sum(-1) - 0.5 * self.nonlinear_dim * math.log(2 * math.pi)  # (G,)
        parts = [self.log_lik_u(x, u[i : i + chunk]) for i in range(0, u.shape[0], chunk)]
        return u, torch.cat(parts) + log_prior[:, None] + log_cell

    def default_num(self) -> int:
        """Grid nodes per nonlinear latent: 2001 for m = 1, 401 for m = 2 (cells 0.007 and 0.035 wide)."""
        return 2001 if self.nonlinear_dim == 1 else 401

    def log_evidence(self, x: torch.Tensor, num: int | None = None) -> torch.Tensor:
        """Exact log p(x) (N,) in nats of x (N, P), by the midpoint rule with ``num`` nodes per nonlinear
        latent (:meth:`default_num`); see :meth:`quadrature_error`."""
        _, lj = self._log_post_grid(x, num or self.default_num())
        return torch.logsumexp(lj, 0)

    def quadrature_error(self, x: torch.Tensor, num: int | None = None) -> torch.Tensor:
        """|log p(x) on the grid of ``num`` nodes - on half as many| (N,): a generous bound on the error."""
        n = num or self.default_num()
        return (self.log_evidence(x, n) - self.log_evidence(x, n // 2)).abs()

    def basins(self, x: torch.Tensor, num: int | None = None) -> dict[str, torch.Tensor]:
        """Per point and orthant of u (sign pattern; index sum_j [u_j > 0] 2^j, 2^m of them): the
        posterior's log mass ``log_mass`` (N, 2^m), and the mean ``mean`` (N, 2^m, D) and sd ``sd``
        (N, 2^m, D) of z in that orthant (u by quadrature, v through E[v | u, x] = S W^T (x - b - B h(u)) / s^2)."""
        m = self.nonlinear_dim
        u, lj = self._log_post_grid(x, num or self.default_num())
        orthant = ((u > 0).long() * (2 ** torch.arange(m))).sum(-1)  # (G,)
        s2 = self.s**2
        cov_v = torch.linalg.inv(torch.eye(self.W.shape[1], dtype=self.W.dtype) + self.W.T @ self.W / s2)
        base = (x - self.b) @ self.W @ cov_v / s2  # (N, D - m): E[v | u, x] = base - h(u) @ gain^T
        gain = cov_v @ self.W.T @ self.B / s2  # (D - m, H)
        h = self.features(u)  # (G, H)
        log_mass, means, sds = [], [], []
        log_px = torch.logsumexp(lj, 0)
        for o in range(2**m):
            sel = orthant == o
            lo = lj[sel]  # (g, N)
            lm = torch.logsumexp(lo, 0)
            w = torch.softmax(lo, 0)  # (g, N)
            mu_u = w.T @ u[sel]  # (N, m)
            var_u = w.T @ u[sel].square() - mu_u.square()
            eh = w.T @ h[sel]  # (N, H)
            cov_h = torch.einsum("gn,gi,gj->nij", w, h[sel], h[sel]) - eh[:, :, None] * eh[:, None, :]
            mu_v = base - eh @ gain.T
            var_v = cov_v.diagonal() + torch.einsum("ai,nij,aj->na", gain, cov_h, gain)
            log_mass.append(lm - log_px)
            means.append(torch.cat([mu_u, mu_v], -1))
            sds.append(torch.cat([var_u, var_v], -1).clamp_min(0).sqrt())
        return {"log_mass": torch.stack(log_mass, -1), "mean": torch.stack(means, 1), "sd": torch.stack(sds, 1)}

    def guide(self, x: torch.Tensor, inflate: float = 1.2) -> None:
        """An encoder that knows one basin, as an ELBO-trained diagonal Gaussian would: site ``z`` ~ a
        Normal with the mean and sds (x ``inflate``) of z in each point's heaviest orthant of u."""
        bas = self.basins(x)
        k = bas["log_mass"].argmax(-1)
        i = torch.arange(x.shape[0])
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(bas["mean"][i, k], inflate * bas["sd"][i, k]).to_event(1))
