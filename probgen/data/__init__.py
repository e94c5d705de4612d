"""Datasets: a registry of loaders, each decoding its real on-disk format into uint8 tensors."""

from probgen.data.base import (
    ImageData,
    Split,
    data_root,
    dataset_description,
    dataset_names,
    load_dataset,
    register,
    seeded_split,
    to_symmetric,
    to_unit,
)

# Importing a source module registers its loader.
from probgen.data import dsprites, folders, torchvision_sets  # noqa: E402,F401  isort: skip

__all__ = [
    "ImageData",
    "Split",
    "data_root",
    "dataset_description",
    "dataset_names",
    "load_dataset",
    "register",
    "seeded_split",
    "to_symmetric",
    "to_unit",
]
