"""The run's logs: probgen's log lines also go to ``log.txt``; per-step loss rows go to ``losses.csv``."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from probgen.utils.io import read_csv, write_csv

log = logging.getLogger("probgen")


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


class StepLog:
    """losses.csv with one row per step (``step``, ``epoch``, then the terms): a kind's ``step_rows``.

    A step's values stay on the device until the next flush (no host sync per step); a flush, at
    every checkpoint and epoch end, reads them back in one go, sums them over the ranks (each rank
    holds the sums of its slice of the global batch), divides by the global batch size, rewrites
    losses.csv atomically (rank 0) and logs each row to TensorBoard as ``train/<term>``. On resume
    the rows after the checkpoint's step are dropped, so the file never runs ahead of the checkpoint.
    """

    def __init__(self, path: Path, names: tuple[str, ...], batch_size: int, dist: Any):
        self.path, self.names, self.batch_size, self.dist = path, names, batch_size, dist
        self.columns: dict[str, list[float]] = {k: [] for k in ("step", "epoch", *names)}
        self._text: list[dict[str, Any]] = []  # the rows as written (6 significant digits)
        self._pending: list[torch.Tensor] = []
        self._meta: list[tuple[int, int]] = []

    def record(self, step: int, epoch: int, sums: torch.Tensor) -> None:
        self._pending.append(sums.detach())
        self._meta.append((step, epoch))

    def flush(self, tb: Any) -> None:
        """A collective under torchrun: every rank calls it at the same steps."""
        if not self._pending:
            return
        total = self.dist.all_reduce_sum(torch.stack(self._pending).double())
        values = (total / self.batch_size).cpu().tolist()  # one host read per flush
        for (step, epoch), row in zip(self._meta, values):
            for k, v in zip(self.columns, (step, epoch, *row)):
                self.columns[k].append(v)
            self._text.append({"step": step, "epoch": epoch, **{k: f"{v:.6g}" for k, v in zip(self.names, row)}})
            tb.scalars("train", dict(zip(self.names, row)), step)
        self._pending, self._meta = [], []
        if self.dist.is_main:
            write_csv(self.path, self._text)

    def truncate(self, step: int) -> None:
        """Keep the rows of losses.csv up to ``step`` (a resumed run rewrites what followed its checkpoint)."""
        rows = [r for r in read_csv(self.path) if int(r["step"]) <= step] if self.path.exists() else []
        self._text = rows
        self.columns = {k: [float(r[k]) for r in rows] for k in self.columns}
        if self.dist.is_main:
            write_csv(self.path, rows)

    def relog(self, tb: Any, step: int) -> None:
        """TensorBoard: the row of ``step`` again (a resumed run's writer purged it)."""
        c = self.columns
        if c["step"] and int(c["step"][-1]) == step:
            tb.scalars("train", {k: c[k][-1] for k in self.names}, step)

    def means(self, last: int) -> tuple[int, dict[str, float]]:
        """The number of rows averaged and the mean of each term over the last ``last`` rows."""
        n = min(len(self.columns["step"]), last)
        return n, {k: sum(self.columns[k][-n:]) / max(n, 1) for k in self.names}

    def plot(self, panels: dict[str, dict[str, str]], path: Path, title: str) -> None:
        """loss_curves.png against the step: title -> {label: column}."""
        c = self.columns
        if not c["step"]:
            return
        from probgen.plots import plot_curves  # matplotlib: imported when a figure is first drawn

        series = {t: {label: c[col] for label, col in lines.items()} for t, lines in panels.items()}
        xs = {label: c["step"] for lines in panels.values() for label in lines}
        plot_curves(series, xs, path, xlabel="step", title=title)
