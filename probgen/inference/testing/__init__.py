"""Models whose log p(x) is known exactly, for tests, benchmarks and anyone validating an estimator.

Each builds a :class:`~probgen.inference.mcmc.potential.LatentTarget` (and, where it has one, a Pyro
model with a latent site ``z`` and an observed site ``x``) together with its exact log p(x) per point.
"""

from probgen.inference.testing.bimodal import Bimodal
from probgen.inference.testing.folded import FoldedDecoder
from probgen.inference.testing.ppca import PPCA

__all__ = ["PPCA", "Bimodal", "FoldedDecoder"]
