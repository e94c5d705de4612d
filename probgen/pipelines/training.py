"""Pieces every training pipeline shares: data order, interruption, numerical guards, resume, logs."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch

from probgen.errors import NumericalError, UserError

log = logging.getLogger("probgen")
T = TypeVar("T")


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The data order of epoch ``epoch``: a function of (seed, epoch) only, so resume can rebuild it."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


class NonFiniteGuard:
    """Watches the loss for NaN/Inf without a host sync per step on the GPU.

    On the CPU the check is immediate (it costs nothing). On a GPU the first bad step is recorded
    on the device and checked at checkpoint and epoch boundaries, before anything is saved, so the
    last checkpoint on disk is always a good one.
    """

    def __init__(self, device: torch.device):
        self.eager = device.type == "cpu"
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def check(self, loss: torch.Tensor, step: int) -> None:
        if self.eager:
            if not torch.isfinite(loss):
                self._raise(step)
            return
        bad = ~torch.isfinite(loss.detach()) & (self.first_bad < 0)
        self.first_bad = torch.where(bad, torch.full_like(self.first_bad, step), self.first_bad)

    def raise_if_bad(self) -> None:
        if not self.eager:
            step = int(self.first_bad)
            if step >= 0:
                self._raise(step)

    @staticmethod
    def _raise(step: int) -> None:
        raise NumericalError(
            f"the loss became NaN or Inf at step {step + 1}; the last good checkpoint is kept: "
            "continue with --resume and a lower --lr"
        )


class GracefulStop:
    """Turns SIGINT/SIGTERM into a request that the training loop honours at the next step boundary."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> GracefulStop:
        with contextlib.suppress(ValueError):  # not in the main thread: leave signals alone
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def exit(self, out: Path) -> None:
        raise Interrupted(f"interrupted; checkpoint saved. Continue with: probgen fit ... --out {out} --resume")


class Interrupted(UserError):
    """Training stopped on a signal after saving its checkpoint (exit code 130)."""

    exit_code = 130


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


@contextlib.contextmanager
def log_to_file(path: Path) -> Iterator[None]:
    """Also send probgen's log lines to ``path`` (appending, so a resumed run keeps its history)."""
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()
        sys.stderr.flush()
