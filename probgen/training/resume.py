"""Exact resume: the data order is a function of (seed, epoch); a resumed run may change only some fields."""

from __future__ import annotations

import torch

from probgen.config import resume_config  # the field walker's; re-exported for the trainers

__all__ = ["epoch_permutation", "resume_config"]


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The data order of epoch ``epoch``: a function of (seed, epoch) only, so resume can rebuild it."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
