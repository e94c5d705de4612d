"""`probgen fit <kind>`: train any registered model kind from its config.

The kind follows from the config's class and names its trainer (``ModelKind.trainer`` in
probgen/models/registry.py), so a new kind needs no entry here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probgen.models.registry import kind_of_config
from probgen.training.loop import fit as train


def fit(cfg: Any) -> Path:
    """Train the model that ``cfg`` (a ``Fit*Config``) describes; returns the run directory.

    The kind follows from the config's class: ``fit(FitVAEConfig(...))`` trains a VAE.
    """
    return train(kind_of_config(cfg).trainer_class(), cfg)
