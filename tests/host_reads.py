"""Counting host reads: a CPU-only check that a hot loop would not synchronise with a GPU."""

from __future__ import annotations

import collections
import contextlib
import functools
from collections.abc import Iterator

import torch

# Tensor methods that copy a value to the host: on a GPU each one waits for the device to finish.
HOST_READS = ("item", "__bool__", "tolist", "__float__", "__int__", "__index__", "numpy", "cpu")


@contextlib.contextmanager
def count_host_reads(ignore: set[int]) -> Iterator[collections.Counter]:
    """Count host reads of tensors whose id is not in ``ignore``, by method name."""
    counts: collections.Counter = collections.Counter()
    originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def make(name: str):  # noqa: ANN202
        orig = originals[name]

        @functools.wraps(orig)
        def counted(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if id(self) not in ignore:
                counts[name] += 1
            return orig(self, *args, **kwargs)

        return counted

    try:
        for name in HOST_READS:
            setattr(torch.Tensor, name, make(name))
        yield counts
    finally:
        for name, orig in originals.items():
            setattr(torch.Tensor, name, orig)
