"""The metrics' disk cache: domain networks and real-image features, keyed by what they depend on.

Entries are plain-tensor files read with ``torch.load(weights_only=True)``; an entry whose stored
key differs from the expected one, or that cannot be read, is recomputed and replaced.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch

from probgen.utils.io import atomic_write

log = logging.getLogger("probgen")


def default_cache_dir() -> Path:
    """``$PROBGEN_CACHE``, else ``~/.cache/probgen``."""
    return Path(os.environ.get("PROBGEN_CACHE") or Path.home() / ".cache" / "probgen").expanduser()


def data_fingerprint(images: torch.Tensor) -> str:
    """Hash of a uint8 image tensor's shape and of a strided subset of about 1000 of its images.

    Cheap even for dSprites' 737k images, and it changes with the content, the split and --limit.
    """
    h = hashlib.sha256(str(tuple(images.shape)).encode())
    stride = max(1, len(images) // 1000)
    h.update(images[::stride].contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def key_hash(key: dict[str, Any]) -> str:
    """A short stable hash of a cache key (a dict of plain values)."""
    return hashlib.sha256(repr(sorted(key.items())).encode()).hexdigest()[:12]


def load_entry(path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The cached dict at ``path`` if it exists, is readable and was stored under ``key``; else None."""
    if not path.is_file():
        return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # damaged or foreign file: recompute rather than fail
        log.warning("cache: ignoring unreadable entry %s (%s)", path, str(exc)[:120])
        return None
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    return entry


def save_entry(path: Path, key: dict[str, Any], **tensors: Any) -> None:
    """Store ``{"key": key, **tensors}`` at ``path`` atomically."""
    atomic_write(path, lambda f: torch.save({"key": key, **tensors}, f))
