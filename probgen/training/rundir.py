"""Run directories: created fresh, resumed explicitly, or overwritten only when asked."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from probgen.checkpoint import load_checkpoint
from probgen.config import RunConfig, to_dict
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
    ``--resume`` (it must hold a checkpoint) or ``--overwrite`` (its contents are deleted) is given;
    one that holds only the log.txt of a run that failed before it started is reused.
    """
    out = Path(run.out) if run.out else default_run_dir(kind, dataset)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} exists and is not a directory")
    # A folder that holds only log.txt is a run that failed before it wrote config.json (a bad
    # setting found while building the model): nothing was trained, and the log is appended to.
    occupied = out.is_dir() and any(p.name != "log.txt" for p in out.iterdir())
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


RunState = Literal["new", "started", "finished"]


def run_state(out: str | Path, cfg: Any) -> RunState:
    """What a fit configured by ``cfg`` (a sectioned fit config) would find in ``out``; decides for
    `probgen sweep` and the experiments whether to start, resume or skip a run.

    - ``"new"``: no checkpoint and no ``config.json``: start it;
    - ``"finished"``: the fit ended there (``metrics.json``, which a fit writes last, after its final
      checkpoint, reports the checkpoint's step; a resumed run stopped later has moved the checkpoint
      on) and ``cfg`` asks for nothing that run did not have: every setting outside the run section
      is at its default (which ``--resume`` reads as "the run's own") or equal to the run's. Early
      stopping counts as the end;
    - ``"started"``: anything else begun there (interrupted, or asked to go further, e.g. more
      ``--epochs``): continue with ``--resume``, which refuses changed model or data settings.
    """
    out = Path(out)
    if not (out / CHECKPOINT).is_file():
        return "started" if (out / "config.json").is_file() else "new"
    try:
        steps = json.loads((out / "metrics.json").read_text()).get("steps")
    except (OSError, ValueError, AttributeError):
        return "started"
    ckpt = load_checkpoint(out / CHECKPOINT)
    if steps != ckpt["step"]:
        return "started"
    for section in dataclasses.fields(cfg):
        if section.name == "run":
            continue
        asked = getattr(cfg, section.name)
        default, stored = to_dict(type(asked)()), ckpt["config"].get(section.name, {})
        if any(v != default[k] and v != stored.get(k) for k, v in to_dict(asked).items()):
            return "started"
    return "finished"
