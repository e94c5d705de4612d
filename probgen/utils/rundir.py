"""Run directories: created fresh, resumed explicitly, or overwritten only when asked."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from probgen.config import RunConfig
from probgen.errors import UserError

CHECKPOINT = "checkpoint.pt"
log = logging.getLogger("probgen")


def default_run_dir(kind: str, dataset: str) -> Path:
    """``runs/<kind>-<dataset>-<YYYYmmdd-HHMMSS>``, made unique if that exists."""
    base = Path("runs") / f"{kind}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def prepare_run_dir(run: RunConfig, kind: str, dataset: str) -> tuple[Path, bool]:
    """Resolve ``--out`` and decide whether this run resumes.

    Returns (directory, resuming). An existing non-empty directory is a UserError unless
    ``--resume`` (it must hold a checkpoint) or ``--overwrite`` (its contents are deleted) is given.
    """
    out = Path(run.out) if run.out else default_run_dir(kind, dataset)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} exists and is not a directory")
    occupied = out.is_dir() and any(out.iterdir())
    if run.resume:
        for stale in out.glob(".*.tmp"):  # half-written files of a killed run (atomic_write's temp names)
            stale.unlink()
        if (out / CHECKPOINT).is_file():
            return out, True
        if not (out / "config.json").is_file():
            raise UserError(f"--resume: no {CHECKPOINT} in {out} to resume from")
        # killed before its first checkpoint: nothing was trained yet, so start it again in place
        log.warning("--resume: %s has no checkpoint yet; starting the run from the beginning", out)
        return out, False
    if occupied:
        if not run.overwrite:
            raise UserError(
                f"--out: {out} already holds a run; pass --resume to continue it or --overwrite to replace it"
            )
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".probgen-write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UserError(f"--out: cannot write to {out}: {exc.strerror or exc}") from None
    return out, False
