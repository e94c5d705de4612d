"""The dataset registry and the in-memory form every loader returns.

Every loader decodes its source once into uint8 tensors shaped (N, C, H, W). Models choose the
pixel range: :func:`to_unit` gives [0, 1] (VAEs), :func:`to_symmetric` gives [-1, 1] (GANs).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from probgen.config import DataConfig
from probgen.errors import UserError

Loader = Callable[[DataConfig], "ImageData"]
_REGISTRY: dict[str, Loader] = {}


@dataclass
class Split:
    """One split: uint8 images (N, C, H, W), optional integer labels (N,), and for datasets with known
    generative factors their values (N, F) float and classes (N, F) int64."""

    images: torch.Tensor
    labels: torch.Tensor | None = None
    factors: torch.Tensor | None = None
    factor_classes: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")


@dataclass
class ImageData:
    """A decoded dataset: its splits, where it came from, and what its pixels mean."""

    name: str
    source: str  # the files read, or "procedural ..."; logged so that users know what they trained on
    splits: dict[str, Split]
    binary: bool = False  # pixels are exactly 0 or 255 (a Bernoulli likelihood fits)
    factor_names: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = next(iter(self.splits.values())).images.shape[1:]
        return int(c), int(h), int(w)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise UserError(f"dataset {self.name!r} has no split {name!r} (has: {', '.join(self.splits)})")
        return self.splits[name]

    def display_indices(self, split: str, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` indices into ``split`` for a figure that should show the data's variety (reconstructions).

        A seeded random draw (the same for every run of the same data, whatever the training seed),
        interleaved by group so that every group appears: by label when the split has labels, else by
        the ``shape`` factor (dSprites), else no grouping. Datasets stored in factor order (dSprites puts
        every small square first) would otherwise show one kind of image.
        """
        s = self.split(split)
        perm = torch.randperm(len(s), generator=torch.Generator().manual_seed(seed))
        groups = None
        if s.labels is not None and s.labels.dim() == 1:
            groups = s.labels
        elif s.factor_classes is not None and "shape" in self.factor_names:
            groups = s.factor_classes[:, self.factor_names.index("shape")]
        if groups is None:
            return perm[:n]
        per_group: dict[int, list[int]] = {}
        num_groups = len(torch.unique(groups))
        want = -(-n // num_groups)  # members per group for round-robin rows
        for i, g in zip(perm.tolist(), groups[perm].tolist()):
            members = per_group.setdefault(g, [])
            if len(members) < want:
                members.append(i)
                if len(per_group) == num_groups and all(len(m) == want for m in per_group.values()):
                    break
        order = sorted(per_group)
        picked = [per_group[g][r] for r in range(want) for g in order if r < len(per_group[g])]
        if len(picked) < n:  # small groups ran out: fill with the next images of the draw
            taken = set(picked)
            picked += [i for i in perm.tolist() if i not in taken][: n - len(picked)]
        return torch.tensor(picked[:n], dtype=torch.long)


def register(name: str) -> Callable[[Loader], Loader]:
    """Decorator: make a loader available as ``--dataset name``."""

    def deco(fn: Loader) -> Loader:
        _REGISTRY[name] = fn
        return fn

    return deco


def dataset_names() -> list[str]:
    return sorted(_REGISTRY)


def dataset_description(name: str) -> str:
    """The first paragraph of a registered loader's docstring, on one line (for `probgen data list`)."""
    doc = inspect.getdoc(_REGISTRY[name]) or ""
    return " ".join(doc.split("\n\n")[0].split())


def load_dataset(cfg: DataConfig) -> ImageData:
    """Load ``cfg.dataset`` through its registered loader."""
    if cfg.dataset not in _REGISTRY:
        raise UserError(f"--dataset: unknown dataset {cfg.dataset!r} (choose from {', '.join(dataset_names())})")
    data = _REGISTRY[cfg.dataset](cfg)
    for split_name, split in data.splits.items():
        if len(split) == 0 and split_name == "train":
            raise UserError(f"dataset {cfg.dataset!r}: the train split is empty (source: {data.source})")
    return data


def data_root(cfg: DataConfig) -> Path:
    """``--data-root``, else ``$PROBGEN_DATA``, else ``./data``."""
    return Path(cfg.data_root or os.environ.get("PROBGEN_DATA") or "data").expanduser()


def seeded_split(
    n: int, test_fraction: float, val_fraction: float, seed: int, limit: int | None = None
) -> dict[str, torch.Tensor]:
    """Indices of a seeded random split of ``range(n)``, after keeping ``limit`` of them."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if limit is not None:
        perm = perm[:limit]
    m = len(perm)
    n_test = int(round(m * test_fraction))
    n_val = int(round(m * val_fraction))
    out = {"train": perm[n_test + n_val :], "test": perm[:n_test]}
    if val_fraction > 0:
        out["val"] = perm[n_test : n_test + n_val]
    return out


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [0, 1] (VAE range)."""
    return images.float().div_(255.0)


def to_symmetric(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [-1, 1] (GAN range)."""
    return images.float().div_(127.5).sub_(1.0)
