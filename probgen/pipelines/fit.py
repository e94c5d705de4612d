"""`probgen fit <kind>`: train any registered model kind from its config.

Each kind's trainer lives in ``probgen/training/trainers/<kind>.py``, with ``fit_<kind>(cfg) -> run dir``;
this module finds it by that name, so a new kind needs no entry here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from probgen.models.registry import kind_of_config, model_kind


def fit_function(kind: str) -> Callable[[Any], Path]:
    """``fit_<kind>`` of ``probgen.training.trainers.<kind>`` for a registered ``kind``."""
    name = model_kind(kind).name
    return getattr(importlib.import_module(f"probgen.training.trainers.{name}"), f"fit_{name}")


def fit(cfg: Any) -> Path:
    """Train the model that ``cfg`` (a ``Fit*Config``) describes; returns the run directory.

    The kind follows from the config's class: ``fit(FitVAEConfig(...))`` trains a VAE.
    """
    return fit_function(kind_of_config(cfg).name)(cfg)
