"""Posterior modes from chains that may not cross between them: clustering and a Gaussian per mode.

Used by the per-mode Appendix D estimator (:mod:`probgen.inference.loglik.appendix_d`).
"""

from __future__ import annotations

import math

import torch

__all__ = ["Modes", "cluster_chains", "fit_modes"]


def _chain_moments(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per chain and point: mean (N, C, D) and covariance (N, C, D, D) of samples (C, S, N, D)."""
    z = samples.double()
    mean = z.mean(1)  # (C, N, D)
    centred = z - mean[:, None]
    cov = torch.einsum("csnd,csne->cnde", centred, centred) / max(z.shape[1] - 1, 1)
    return mean.transpose(0, 1), cov.transpose(0, 1)


def cluster_chains(samples: torch.Tensor, mode_separation: float = 3.0) -> torch.Tensor:
    """Group each point's chains into modes from their draws (C, S, N, D); returns labels (N, C).

    Chains i and j are neighbours when the Mahalanobis distance between their means, under the
    average of their within-chain covariances, is below ``mode_separation``; modes are the connected
    components (transitive closure by repeated squaring of the adjacency, batched over points). A
    point's modes are numbered 0, 1, ... in the order of their lowest chain index. Chains of one
    well-mixed posterior differ in their means by ~sqrt(2 D / ESS) standard deviations, far below 3;
    chains in separate basins by the basins' separation.
    """
    mean, cov = _chain_moments(samples)
    n, c, d = mean.shape
    eye = torch.eye(d, dtype=mean.dtype, device=mean.device)
    pooled = 0.5 * (cov[:, :, None] + cov[:, None, :])  # (N, C, C, D, D)
    scale = pooled.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-30)
    pooled = pooled + 1e-9 * scale[..., None, None] * eye
    diff = mean[:, :, None] - mean[:, None, :]  # (N, C, C, D)
    dist2 = (diff.unsqueeze(-2) @ torch.linalg.solve(pooled, diff.unsqueeze(-1))).reshape(n, c, c)
    adj = (dist2 < mode_separation**2) | torch.eye(c, dtype=torch.bool, device=mean.device)
    reach = adj.double()
    for _ in range(max(1, math.ceil(math.log2(max(c, 2))))):
        reach = ((reach @ reach) > 0).double()
    root = reach.argmax(-1)  # the first chain each chain reaches = the lowest index of its component
    is_root = root == torch.arange(c, device=root.device)
    return (is_root.long().cumsum(-1) - 1).gather(1, root)  # roots renumbered 0..M-1 per point


class Modes:
    """Per point and mode k (K slots = the most modes of any point): a Gaussian q_k and its chains.

    ``mean`` (N, K, D), ``scale_tril`` (N, K, D, D), ``count`` (N, K) chains per mode (0: empty slot),
    ``labels`` (N, C).
    """

    def __init__(self, mean: torch.Tensor, scale_tril: torch.Tensor, count: torch.Tensor, labels: torch.Tensor):
        self.mean, self.scale_tril, self.count, self.labels = mean, scale_tril, count, labels

    @property
    def present(self) -> torch.Tensor:
        """(N, K) bool: the slots that hold a mode."""
        return self.count > 0

    @property
    def num_modes(self) -> torch.Tensor:
        return self.present.sum(-1)

    def log_q(self, z: torch.Tensor) -> torch.Tensor:
        """log q_k(z) for z (..., N, D): (..., N, K); -inf for empty slots."""
        q = torch.distributions.MultivariateNormal(self.mean, scale_tril=self.scale_tril)
        lq = q.log_prob(z.double().unsqueeze(-2))
        return torch.where(self.present, lq, torch.full_like(lq, -math.inf))

    def region(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the region R_k that holds z (..., N, D): the mode of largest q_k(z)."""
        return self.log_q(z).argmax(-1)

    @torch.no_grad()
    def region_mass(self, num_draws: int = 4096, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """m_k = P_{q_k}(z in R_k) by Monte Carlo from q_k (N, K), and the variance of log m_k."""
        k = self.mean.shape[1]
        if k == 1:  # every point has one mode, whose region is all of z-space
            return torch.ones_like(self.mean[..., 0]), torch.zeros_like(self.mean[..., 0])
        q = torch.distributions.MultivariateNormal(self.mean, scale_tril=self.scale_tril)
        hits = torch.zeros_like(self.mean[..., 0])
        done = 0
        while done < num_draws:
            m = min(chunk, num_draws - done)
            z = q.sample((m,)).transpose(1, 2)  # (m, K, N, D): draw of mode k's q for point n
            own = self.log_q(z).argmax(-1)  # (m, K, N): the region each draw falls in
            hits += (own == torch.arange(k, device=own.device)[:, None]).sum(0).T.to(hits.dtype)
            done += m
        mass = (hits + 0.5) / (num_draws + 1.0)  # never 0: a mode always holds its own centre
        mass = torch.where(self.num_modes[:, None] > 1, mass, torch.ones_like(mass))
        return mass, (1 - mass) / (mass * num_draws)


def fit_modes(samples: torch.Tensor, labels: torch.Tensor, shrink: float) -> Modes:
    """Shrunk full-covariance Gaussian per mode from the draws (C, S, N, D) of the chains labelled so."""
    c, s, n, d = samples.shape
    z = samples.double()
    member = torch.nn.functional.one_hot(labels, int(labels.max()) + 1).double()  # (N, C, K)
    count = member.sum(1)  # (N, K)
    draws = (count * s).clamp_min(1)
    mean = torch.einsum("nck,csnd->nkd", member, z) / draws[..., None]
    centred = z[:, :, :, None] - mean  # (C, S, N, K, D)
    cov = torch.einsum("nck,csnkd,csnke->nkde", member, centred, centred) / (draws - 1).clamp_min(1)[..., None, None]
    eye = torch.eye(d, dtype=z.dtype, device=z.device)
    jitter = 1e-6 * cov.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)
    cov = torch.where((count > 0)[..., None, None], cov + jitter[..., None, None] * eye, eye)
    return Modes(mean, torch.linalg.cholesky(shrink * cov), count, labels)
