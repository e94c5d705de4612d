"""Splits of datasets that come with an official train/val/test split.

Where a dataset has no official split, :func:`probgen.data.base.seeded_split` makes one from
``--test-fraction`` / ``--val-fraction``. Where it has one, the official split is kept; ``--limit N``
then takes a seeded random subset of each split, sized in proportion to the official ones, and
``--val-fraction`` carves a validation split out of train only when there is no official one.
"""

from __future__ import annotations

import math

import torch


def limit_official(sizes: dict[str, int], limit: int | None, seed: int) -> dict[str, torch.Tensor]:
    """Sorted indices into each official split: all of them, or ``limit`` in total.

    The total is shared in proportion to the split sizes (largest remainder), with at least one
    image in every non-empty split when ``limit`` allows it, so that a tiny validation split
    (chest-xray has 16 images) does not vanish. Each split draws its own seeded subset.
    """
    total = sum(sizes.values())
    if limit is None or limit >= total:
        return {name: torch.arange(n) for name, n in sizes.items()}
    nonempty = [k for k, n in sizes.items() if n > 0]
    quota = dict.fromkeys(sizes, 0)
    rest = list(nonempty)
    if limit >= len(nonempty):  # a split whose share rounds below one image still gets one
        forced = [k for k in nonempty if limit * sizes[k] < total]
        for k in forced:
            quota[k] = 1
        rest = [k for k in nonempty if k not in forced]
    budget = limit - sum(quota.values())
    pool = sum(sizes[k] for k in rest)
    ideal = {k: budget * sizes[k] / pool for k in rest} if pool else {}
    for k in rest:
        quota[k] = min(math.floor(ideal[k]), sizes[k])
    while sum(quota.values()) < limit:  # largest remainder first, only where images are left
        k = max((k for k in nonempty if quota[k] < sizes[k]), key=lambda k: ideal.get(k, 1.0) - quota[k])
        quota[k] += 1
    out = {}
    for i, (name, n) in enumerate(sizes.items()):
        g = torch.Generator().manual_seed(seed * 1000 + i)
        out[name] = torch.randperm(n, generator=g)[: quota[name]].sort().values
    return out


def carve_val(train: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split a seeded ``val_fraction`` of the train indices off as validation; (train, val or None)."""
    if val_fraction <= 0:
        return train, None
    n_val = int(round(len(train) * val_fraction))
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    return train[perm[n_val:].sort().values], train[perm[:n_val].sort().values]
