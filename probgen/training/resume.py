"""Exact resume: the data order is a function of (seed, epoch); a resumed run may change only some fields."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import torch

from probgen.errors import UserError

T = TypeVar("T")


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The data order of epoch ``epoch``: a function of (seed, epoch) only, so resume can rebuild it."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def resume_config(stored: T, given: T, allowed: dict[str, tuple[str, ...]]) -> T:
    """The stored run's config, with only the ``allowed`` fields taken from ``given``.

    ``given`` comes from the resuming command; a field it sets away from its default that is not
    allowed to change (say --latent-dim) is a UserError, since the checkpoint could not hold it.
    """
    updates: dict[str, Any] = {}
    for section in dataclasses.fields(stored):  # type: ignore[arg-type]
        old, new = getattr(stored, section.name), getattr(given, section.name)
        default = type(new)()
        changes = {}
        for f in dataclasses.fields(new):
            value = getattr(new, f.name)
            if f.name in allowed.get(section.name, ()):
                if value != getattr(default, f.name) or section.name == "run":
                    changes[f.name] = value
            elif value != getattr(default, f.name) and value != getattr(old, f.name):
                raise UserError(
                    f"--{f.name.replace('_', '-')}: cannot change on --resume (the run has "
                    f"{getattr(old, f.name)!r}); start a new run instead"
                )
        updates[section.name] = dataclasses.replace(old, **changes) if changes else old
    return dataclasses.replace(stored, **updates)
