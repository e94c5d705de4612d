"""The exact models by name, at any latent size: what validation runs loop over (tests, experiments).

Each name gives a model with the :class:`ExactModel` interface: a Pyro ``model(x)`` (latent site ``z``,
observed site ``x``, as :func:`~probgen.inference.mcmc.potential.from_pyro_model` wants), an encoder
``guide(x)`` that knows one basin, ``simulate(n, seed)`` and the exact ``log_evidence(x)``.
"""

from __future__ import annotations

from typing import Protocol

import torch

from probgen.inference.testing.curved import CurvedDecoder
from probgen.inference.testing.mixture import MixturePrior

__all__ = ["EXACT_MODELS", "ExactModel", "exact_model"]

#: the models :func:`exact_model` builds:
#: ``mixture``: three Gaussian basins (two at latent 2) of random widths and weights (:meth:`MixturePrior.random`);
#: ``broad-narrow``: a narrow basin with the highest peak next to a broad one with most of the mass
#: (:meth:`MixturePrior.broad_narrow`); ``curved``: two curved basins (one nonlinear latent,
#: :class:`CurvedDecoder`); ``curved-2d``: up to four (two nonlinear latents)
EXACT_MODELS = ("mixture", "broad-narrow", "curved", "curved-2d")


class ExactModel(Protocol):
    """What every exact model offers (module docstring); x is (N, P), z (N, D), log p(x) in nats."""

    @property
    def latent_dim(self) -> int:
        """D."""

    @property
    def obs_dim(self) -> int:
        """P."""

    def model(self, x: torch.Tensor) -> None:
        """The Pyro model: ``z`` (event dim 1) and observed ``x`` in plate ``data`` at dim -1."""

    def guide(self, x: torch.Tensor, inflate: float = 1.2) -> None:
        """A one-basin diagonal-Gaussian encoder at site ``z``."""

    def simulate(self, n: int, seed: int = 1) -> torch.Tensor:
        """n points drawn from the model, (n, P)."""

    def log_evidence(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x), (N,)."""


def exact_model(name: str, latent_dim: int, seed: int = 0) -> ExactModel:
    """The model ``name`` (one of :data:`EXACT_MODELS`) at ``latent_dim`` latents, parameters drawn with ``seed``."""
    if name == "mixture":
        return MixturePrior.random(latent_dim, num_components=min(3, latent_dim), seed=seed)
    if name == "broad-narrow":
        return MixturePrior.broad_narrow(latent_dim, seed=seed)
    if name == "curved":
        return CurvedDecoder.random(latent_dim, nonlinear_dim=1, seed=seed)
    if name == "curved-2d":
        return CurvedDecoder.random(latent_dim, nonlinear_dim=2, seed=seed)
    raise ValueError(f"unknown exact model {name!r}; choose from {', '.join(EXACT_MODELS)}")
