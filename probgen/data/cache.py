"""A disk cache of decoded, resized image tensors, so that a large image folder is decoded only once.

Entries live in ``$PROBGEN_CACHE/data`` (default ``~/.cache/probgen/data``), one file per dataset and
key. The key hashes the processing parameters and the (path, size, mtime) of every source file, so
that a changed file, size or channel count never reads a stale entry. Files are written atomically and
read with ``torch.load(weights_only=True)``: tensors, lists, strings and numbers only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("probgen")

CACHE_VERSION = 1
# Decoding fewer files than this takes about a second; caching them would only fill the disk.
MIN_IMAGES = 2000


def cache_dir() -> Path:
    """``$PROBGEN_CACHE/data``, else ``~/.cache/probgen/data``."""
    return Path(os.environ.get("PROBGEN_CACHE") or "~/.cache/probgen").expanduser() / "data"


def file_key(params: dict[str, Any], files: Iterable[Path]) -> str:
    """A hex digest of the processing parameters and each file's path, size and mtime."""
    h = hashlib.sha256(json.dumps({"version": CACHE_VERSION, **params}, sort_keys=True, default=str).encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{os.fspath(f)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _path(name: str, key: str) -> Path:
    return cache_dir() / f"{name}-{key}.pt"


def load(name: str, key: str) -> dict[str, Any] | None:
    """The cached payload, or None when absent or unreadable (an unreadable entry is rebuilt)."""
    path = _path(name, key)
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  any failure means: decode again
        log.warning("data: ignoring unreadable cache file %s (%s)", path, exc)
        return None
    if not isinstance(payload, dict) or payload.get("version") != CACHE_VERSION:
        return None
    log.info("data: %s read from cache %s", name, path)
    return payload


def save(name: str, key: str, payload: dict[str, Any]) -> Path | None:
    """Write the payload atomically; a cache that cannot be written only costs a warning."""
    path = _path(name, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save({"version": CACHE_VERSION, **payload}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        log.warning("data: could not write cache file %s (%s)", path, exc)
        return None
    log.info("data: %s cached in %s", name, path)
    return path
