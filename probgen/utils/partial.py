"""An atomic per-batch result store: long jobs write each finished batch as they go and continue when re-run.

A :class:`PartialStore` is a folder (e.g. ``<out>/.partial``) holding

- ``settings.json``: the settings that determine the results (a fingerprint). A store opened with
  other settings is refused (the old results belong to another job) unless ``overwrite`` is given;
- one file per finished batch, ``<key>.pt``: a dict of tensors and plain Python values, written with
  :func:`probgen.utils.io.atomic_write` (temp file, fsync, rename) and read back with
  ``torch.load(weights_only=True)``. A kill at any moment leaves each batch whole or absent, never torn.

A job asks :meth:`PartialStore.get` for each batch before computing it, :meth:`PartialStore.put`
after, and :meth:`PartialStore.remove` once its final files are written. If every batch draws from
its own seed, the resumed job's results equal those of an uninterrupted run bitwise.

    store = PartialStore.open(out / ".partial", {"seed": 0, "method": "iwae", ...}, overwrite=False)
    for key in batches:
        res = store.get(key)
        if res is None:
            res = compute(key)
            store.put(key, res)
"""

from __future__ import annotations

import io
import json
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from probgen.errors import UserError
from probgen.utils.io import atomic_write

__all__ = ["PartialStore"]

SETTINGS = "settings.json"
_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


def _canonical(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


class PartialStore:
    """Per-batch results of one job in ``folder``; see the module docstring."""

    def __init__(self, folder: Path, settings: dict[str, Any]):
        self.folder = Path(folder)
        self.settings = settings

    @classmethod
    def open(cls, folder: str | Path, settings: dict[str, Any], overwrite: bool = False) -> PartialStore:
        """Open (or create) the store of the job described by ``settings`` (JSON-serialisable).

        A folder holding another job's results is a :class:`UserError` unless ``overwrite``, which
        empties it. Half-written temp files of a killed job are swept.
        """
        folder = Path(folder)
        store = cls(folder, json.loads(_canonical(settings)))
        settings_file = folder / SETTINGS
        if folder.is_dir() and settings_file.is_file() and not overwrite:
            try:
                stored = json.loads(settings_file.read_text())
            except (OSError, ValueError):
                stored = None
            if stored != store.settings:
                changed = sorted(
                    k
                    for k in set(stored or {}) | set(store.settings)
                    if (stored or {}).get(k, None) != store.settings.get(k, None)
                )
                raise UserError(
                    f"{folder} holds partial results of a job with other settings "
                    f"({', '.join(changed) or 'unreadable settings'}); run it with its own settings to continue it, "
                    "or pass --overwrite to start over"
                )
        elif folder.exists() and (overwrite or not settings_file.is_file()):
            shutil.rmtree(folder) if folder.is_dir() else folder.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".*.tmp"):  # atomic_write's temp names, left by a kill mid-write
            stale.unlink(missing_ok=True)
        if not settings_file.is_file():
            text = _canonical(store.settings) + "\n"
            atomic_write(settings_file, lambda f: f.write(text.encode()))
        return store

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"store keys are letters, digits, '_', '.', '-': got {key!r}")
        return self.folder / f"{key}.pt"

    def put(self, key: str, payload: dict[str, Any]) -> None:
        """Store one finished batch atomically (tensors are moved to the CPU)."""
        buf = io.BytesIO()
        torch.save(_to_cpu(payload), buf)
        atomic_write(self._path(key), lambda f: f.write(buf.getvalue()))

    def get(self, key: str) -> dict[str, Any] | None:
        """A stored batch, or None when it is not there (or unreadable: then it is computed again)."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a foreign or unsafe file: torch's unpicklers raise many types
            path.unlink(missing_ok=True)
            return None

    def keys(self) -> list[str]:
        """The keys of the stored batches, sorted."""
        return sorted(p.stem for p in self.folder.glob("*.pt") if not p.name.startswith("."))

    def __len__(self) -> int:
        return len(self.keys())

    def remove(self) -> None:
        """Delete the store (once the job's final files are written)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
