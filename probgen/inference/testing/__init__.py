"""Models whose log p(x) is known exactly, for tests, benchmarks and anyone validating an estimator.

Each builds a Pyro model with a latent site ``z`` and an observed site ``x`` (or a
:class:`~probgen.inference.mcmc.potential.LatentTarget`) together with its exact log p(x) per point:

- latent 2 or any size, one Gaussian posterior: :class:`PPCA` (closed form);
- latent 2, two basins: :class:`Bimodal`, :class:`FoldedDecoder` (2-D quadrature);
- any latent size, several basins: :class:`MixturePrior` (Gaussian basins of different widths and
  masses, closed form) and :class:`CurvedDecoder` (curved basins that no Gaussian fits, a 1-D or 2-D
  quadrature of Gaussians); :func:`exact_model` builds them by name (:data:`EXACT_MODELS`).
"""

from probgen.inference.testing.bimodal import Bimodal
from probgen.inference.testing.curved import CurvedDecoder
from probgen.inference.testing.exact import EXACT_MODELS, ExactModel, exact_model
from probgen.inference.testing.folded import FoldedDecoder
from probgen.inference.testing.mixture import MixturePrior
from probgen.inference.testing.ppca import PPCA

__all__ = [
    "EXACT_MODELS",
    "PPCA",
    "Bimodal",
    "CurvedDecoder",
    "ExactModel",
    "FoldedDecoder",
    "MixturePrior",
    "exact_model",
]
