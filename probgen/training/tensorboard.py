"""Optional TensorBoard logging (``--tensorboard``): scalars and image grids in ``<run>/tensorboard``.

The run's own files (losses.csv, metrics.json, PNGs) stay the record; TensorBoard gets a copy of
numbers that are already on the host, so logging adds no device sync. ``torch.utils.tensorboard``
is imported only when the flag is on, so the package stays optional.

Resume: a resumed run opens its writer with ``purge_step`` = the checkpoint's step, TensorBoard's
mechanism for hiding what an interrupted run logged after its last checkpoint (events at steps
>= purge_step); the trainers then log again what belongs to that step.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from probgen.errors import UserError
from probgen.plots import grid_tensor

SUBDIR = "tensorboard"
_EVENT_FILE = re.compile(r"events\.out\.tfevents\.(\d+)\.")
INSTALL_HINT = "--tensorboard needs the tensorboard package: pip install 'probgen[tensorboard]'"


def _summary_writer_class() -> type:
    try:
        import tensorboard  # noqa: F401  (the package itself: torch's wrapper module may already be imported)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return SummaryWriter


def wait_for_a_later_second(log_dir: Path) -> None:
    """Sleep (under 1 s) until the clock's second is past that of every event file in ``log_dir``.

    TensorBoard reads a run's event files in the order of their names,
    ``events.out.tfevents.<seconds>.<host>.<pid>.<counter>``. Two writers opened in the same second
    by one process differ only in the counter, compared as text ("10" < "9"), so a resumed run's file
    could be read before the file it purges. A later second makes the name order the time order.
    """
    stamps = [int(m.group(1)) for p in log_dir.glob("events.out.tfevents.*") if (m := _EVENT_FILE.match(p.name))]
    if not stamps:
        return
    newest = max(stamps)
    while int(time.time()) <= newest and time.time() > newest - 2:  # a clock set back: do not wait
        time.sleep(0.05)


def require_tensorboard(enabled: bool) -> None:
    """With ``--tensorboard``, fail with a one-line UserError now (before training) if the package is missing."""
    if enabled:
        _summary_writer_class()


def to_uint8(grid: torch.Tensor) -> torch.Tensor:
    """A float grid in [0, 1] -> uint8 with torchvision ``save_image``'s rounding, so it equals the PNG's pixels."""
    return grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)


class TensorBoard:
    """Writes to ``log_dir`` when given; without it (the default, and on DDP ranks > 0) every method is a no-op.

    Each image tag is logged at most once per step: the end-of-run grid of a run that stops at an
    epoch's end is the one already logged there.
    """

    def __init__(self, log_dir: str | Path | None = None, purge_step: int | None = None):
        self._writer: Any = None
        self._image_steps: dict[str, int] = {}
        if log_dir is not None:
            writer_cls = _summary_writer_class()
            wait_for_a_later_second(Path(log_dir))
            self._writer = writer_cls(log_dir=str(log_dir), purge_step=purge_step)

    @classmethod
    def for_run(cls, run_dir: Path, enabled: bool, purge_step: int | None = None) -> TensorBoard:
        """The run's writer (``<run_dir>/tensorboard``), or a disabled one."""
        return cls(run_dir / SUBDIR if enabled else None, purge_step)

    @property
    def enabled(self) -> bool:
        return self._writer is not None

    def scalars(self, prefix: str, values: Mapping[str, Any], step: int) -> None:
        """One scalar per numeric entry of ``values`` (host numbers), tagged ``prefix/name``, at ``step``."""
        if self._writer is None:
            return
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(f"{prefix}/{name}", value, step)

    def rows(self, rows: list[dict[str, Any]]) -> None:
        """Rows of losses.csv (``epoch``, ``step``, ``split`` and the terms): tags ``<split>/<term>``."""
        for row in rows:
            terms = {k: v for k, v in row.items() if k not in ("epoch", "step", "split")}
            self.scalars(row["split"], terms, row["step"])

    def images(self, tag: str, images: torch.Tensor, step: int, nrow: int = 10) -> None:
        """Images in [0, 1], (N, C, H, W), as one grid laid out like the run's PNGs (``save_grid``)."""
        if self._writer is None or self._image_steps.get(tag) == step:
            return
        self._writer.add_image(tag, to_uint8(grid_tensor(images, nrow)), step, dataformats="CHW")
        self._image_steps[tag] = step

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TensorBoard:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
