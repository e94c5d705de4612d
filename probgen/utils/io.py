"""Run-file I/O: atomic JSON/CSV writes and the environment record stored with every run."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

from probgen.errors import UserError
from probgen.version import __version__


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(fileobj)`` on a temp file next to ``path``, fsync, then rename it over ``path``.

    OS errors (read-only folder, full disk) become a UserError; the old file is left untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _clean(obj: Any) -> Any:
    """JSON-safe: tensors to Python numbers, NaN/Inf to None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _clean(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(_clean(obj), indent=2, sort_keys=False) + "\n"
    atomic_write(Path(path), lambda f: f.write(text.encode()))


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write dict rows (keys of the first row are the header), atomically."""
    buf = io.StringIO()
    if rows:
        fields = list(rows[0])
        for r in rows[1:]:
            fields += [k for k in r if k not in fields]
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(_clean(rows))
    atomic_write(Path(path), lambda f: f.write(buf.getvalue().encode()))


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def environment_info(device: torch.device | str | None = None) -> dict[str, Any]:
    """Versions of probgen, torch, pyro-ppl and Python, and the device a run used."""
    import pyro

    info: dict[str, Any] = {
        "probgen": __version__,
        "torch": str(torch.__version__),  # TorchVersion is not a plain str for weights_only
        "pyro-ppl": str(pyro.__version__),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if device is not None:
        device = torch.device(device)
        info["device"] = str(device)
        if device.type == "cuda":
            info["device_name"] = torch.cuda.get_device_name(device)
    return info
