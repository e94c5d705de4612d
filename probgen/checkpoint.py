"""Self-describing, atomic, safely loaded checkpoints.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python containers, so it
loads with ``torch.load(weights_only=True)``: a file whose pickle would build arbitrary objects (and
run code) is refused. It carries everything a later command needs: the kind of model, the full
config, every state dict (model, optimisers, schedules), step/epoch, RNG states and the versions.

Writes are atomic: a temporary file in the same folder, flushed and fsynced, then renamed over the
target, so a kill at any moment leaves either the old checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probgen.errors import UserError
from probgen.utils.io import atomic_write
from probgen.version import __version__

FORMAT = "probgen-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus format and version fields) to ``path`` atomically."""
    path = Path(path)
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "probgen_version": __version__, **payload}
    if "kind" not in data:
        raise ValueError("checkpoint payload needs a 'kind'")
    atomic_write(path, lambda f: torch.save(data, f))
    return path


def load_checkpoint(path: str | Path, kind: str | tuple[str, ...] | None = None) -> dict[str, Any]:
    """Load a probgen checkpoint safely; ``kind`` restricts which model kinds are accepted.

    Every problem a user can cause (missing, truncated, foreign or unsafe file, wrong kind) is a
    one-line :class:`UserError`.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"--ckpt: no such file: {path}")
    if path.is_dir():
        cand = path / "checkpoint.pt"
        if not cand.is_file():
            raise UserError(f"--ckpt: {path} is a directory without checkpoint.pt")
        path = cand
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln or "Unpickler" in ln]
        why = lines[0].split(" was not")[0] if lines else "unsafe content"
        raise UserError(f"--ckpt: {path} is refused: it holds more than tensors and plain data ({why[:160]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UserError(f"--ckpt: {path} is not a readable checkpoint (truncated or wrong type: {exc})"[:300]) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"--ckpt: {path} is not a probgen checkpoint")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"--ckpt: {path} was written by a newer probgen ({data.get('probgen_version')})")
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and data.get("kind") not in kinds:
        raise UserError(
            f"--ckpt: {path} holds a {data.get('kind')!r} model, but this command needs {' or '.join(kinds)}"
        )
    return data


# --- RNG state -----------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and python RNG states, as tensors and plain containers."""
    np_state = np.random.get_state()  # noqa: NPY002 - the legacy global RNG users may seed
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2])},
        "python": _py_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    keys = state["numpy"]["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy"]["pos"], 0, 0.0))  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _py_state_to_plain(st: tuple) -> list:
    version, internal, gauss = st
    return [version, list(internal), gauss]
