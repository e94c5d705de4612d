"""Guards of a training run: NaN/Inf losses stop before the update; signals stop at a step boundary."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Any

import torch

from probgen.errors import NumericalError, UserError


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
