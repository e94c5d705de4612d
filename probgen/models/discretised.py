"""The discretised Gaussian likelihood of 8-bit images: log-likelihoods comparable with the literature.

A VAE with a Gaussian p(x | z) is a density on [0, 1]^D; the images are 8-bit, k / 255 for k = 0..255.
A density's log p(x) has no fixed offset against a probability (a sharp Gaussian gives log p(x) > 0,
so "bits/dim" < 0). The discrete model of the same decoder gives each level the Gaussian's mass over
its bin (Salimans et al. 2017 do the same with a logistic):

    P(k | mu, s) = Phi((e_{k+1} - mu) / s) - Phi((e_k - mu) / s),   e_k = (k - 1/2) / 255,

with the outer bins open (e_0 = -inf, e_256 = +inf), so the 256 probabilities sum to 1 and
log P <= 0: bits/dim = -log2 P(x) / D is never negative. Where s is much wider than a bin,
log P(x) ~= log p(x) - D log 255 (the density times the bin width 1/255 per pixel).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

__all__ = ["DiscretisedNormal", "discretised_model", "log_normal_mass"]

LEVELS = 256
OPEN = 40.0


def log_normal_mass(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """log(Phi(upper) - Phi(lower)) for standardised bin edges lower < upper, accurate in both tails.

    Computed on the side of 0 where the mass is a difference of small numbers: with both edges
    flipped to the negative side, log Phi comes from ``log_ndtr`` and the difference from ``expm1``.
    """
    flip = (lower + upper) > 0
    lo = torch.where(flip, -upper, lower)
    hi = torch.where(flip, -lower, upper)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    return log_hi + torch.log(-torch.expm1(log_lo - log_hi))


class DiscretisedNormal(dist.TorchDistribution):
    """Normal(loc, scale) discretised to the ``levels`` values k / (levels - 1) of [0, 1] (see the module).

    ``log_prob(x)`` takes x in [0, 1] on that grid (it is rounded to the nearest level); samples are levels.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.unit_interval

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor | float, levels: int = LEVELS, validate_args: Any = None):
        self.loc, self.scale = torch.broadcast_tensors(
            torch.as_tensor(loc), torch.as_tensor(scale, dtype=loc.dtype, device=loc.device)
        )
        self.levels = levels
        super().__init__(self.loc.shape, validate_args=False if validate_args is None else validate_args)

    def expand(self, batch_shape: torch.Size, _instance: Any = None) -> DiscretisedNormal:
        shape = torch.Size(batch_shape)
        return DiscretisedNormal(self.loc.expand(shape), self.scale.expand(shape), self.levels)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        step = 1.0 / (self.levels - 1)
        k = torch.round(value / step).clamp(0, self.levels - 1)
        lower = ((k - 0.5) * step - self.loc) / self.scale
        upper = ((k + 0.5) * step - self.loc) / self.scale
        # an open outer edge sits 40 sds beyond the bin's other edge and beyond 0 (the mass past it,
        # < 1e-300 of the bin's, is far below float precision), so that values and gradients stay finite
        lower = torch.where(k > 0, lower, torch.clamp(upper, max=0.0) - OPEN)
        upper = torch.where(k < self.levels - 1, upper, torch.clamp(lower, min=0.0) + OPEN)
        return log_normal_mass(lower, upper)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        sample_shape = torch.Size(sample_shape)
        with torch.no_grad():
            x = torch.normal(
                self.loc.expand(sample_shape + self.loc.shape), self.scale.expand(sample_shape + self.loc.shape)
            )
            step = 1.0 / (self.levels - 1)
            return torch.round(x.clamp(0, 1) / step) * step


def discretised_model(vae: Any, levels: int = LEVELS) -> Callable[[torch.Tensor], None]:
    """A Pyro model of the VAE ``vae`` (sites ``z`` and ``x`` as in ``VAE.model``) whose pixels follow
    the :class:`DiscretisedNormal` of its Gaussian likelihood: the same decoder mean and scale."""

    def model(x: torch.Tensor) -> None:
        pyro.module("decoder", vae.decoder)
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", vae.prior(x.shape[:1], x))
            pixels = DiscretisedNormal(vae.mean_image(z), vae.obs_scale(), levels)
            pyro.sample("x", pixels.to_event(3), obs=x)

    return model
