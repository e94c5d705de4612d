"""ImageData.display_indices: the seeded, varied batch of the reconstruction figures."""

from __future__ import annotations

import torch

from probgen.config import DataConfig
from probgen.data import ImageData, Split, load_dataset


def _data(labels=None, factor_classes=None, n=60, factor_names=()):
    split = Split(torch.zeros(n, 1, 2, 2, dtype=torch.uint8), labels=labels, factor_classes=factor_classes)
    return ImageData("x", "test", {"test": split}, factor_names=factor_names)


def test_labels_in_factor_order_are_interleaved_and_seeded():
    labels = torch.arange(60) // 6  # sorted by class, as dSprites is by factor
    data = _data(labels)
    idx = data.display_indices("test", 20)
    assert labels[idx].tolist() == list(range(10)) * 2  # every class, one row each
    assert len(set(idx.tolist())) == 20
    assert torch.equal(idx, data.display_indices("test", 20))  # the same draw every time
    assert not torch.equal(idx, data.display_indices("test", 20, seed=1))


def test_small_groups_are_filled_from_the_draw():
    labels = torch.tensor([0] * 57 + [1, 2, 3])
    idx = _data(labels).display_indices("test", 20)
    assert len(set(idx.tolist())) == 20 and {1, 2, 3} <= set(labels[idx].tolist())


def test_without_groups_a_seeded_permutation():
    idx = _data().display_indices("test", 20)
    assert len(set(idx.tolist())) == 20 and idx.tolist() != list(range(20))


def test_dsprites_shows_every_shape_scales_and_positions():
    data = load_dataset(DataConfig(dataset="dsprites", limit=3000))
    fc = data.split("test").factor_classes[data.display_indices("test", 20)]
    shape, scale, pos_x = (data.factor_names.index(k) for k in ("shape", "scale", "posX"))
    assert fc[:, shape].tolist() == [0, 1, 2] * 6 + [0, 1]
    assert len(set(fc[:, scale].tolist())) >= 3 and len(set(fc[:, pos_x].tolist())) >= 5
