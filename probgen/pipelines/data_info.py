"""`probgen data list` and `probgen data info`: what each dataset is, where it was read from, what it holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from probgen.config import DataConfig
from probgen.data import ImageData, dataset_description, dataset_names, load_dataset, to_unit
from probgen.errors import UserError
from probgen.plots import save_grid

RANGES = "models see [0, 1] (VAEs, to_unit) or [-1, 1] (GANs, to_symmetric)"


def dataset_list() -> list[tuple[str, str]]:
    """(name, one-line description) of every registered dataset, from its loader's docstring."""
    return [(name, dataset_description(name)) for name in dataset_names()]


def summarize(data: ImageData) -> dict[str, Any]:
    """Counts, shape, observed pixel range, labels and skipped files of a loaded dataset (JSON-ready)."""
    c, h, w = data.image_shape
    lo = min(int(s.images.min()) for s in data.splits.values() if len(s))
    hi = max(int(s.images.max()) for s in data.splits.values() if len(s))
    info: dict[str, Any] = {
        "dataset": data.name,
        "source": data.source,
        "splits": {k: len(v) for k, v in data.splits.items()},
        "official_split": bool(data.notes.get("official_split", False)),
        "shape": [c, h, w],
        "dtype": "uint8",
        "stored_range": [lo, hi],
        "binary": data.binary,
        "skipped": len(data.notes.get("skipped", ())),  # type: ignore[arg-type]
    }
    if data.notes.get("binarize") == "dynamic":
        info["binarize"] = "dynamic: train is stored grey and resampled per batch; val/test hold one seeded draw"
    if data.class_names:
        info["classes"] = list(data.class_names)
        counts = {}
        for k, s in data.splits.items():
            if s.labels is not None and s.labels.dim() == 1:
                counts[k] = torch.bincount(s.labels, minlength=len(data.class_names)).tolist()
        info["class_counts"] = counts
    if data.factor_names:
        info["factors"] = list(data.factor_names)
    return info


def format_summary(info: dict[str, Any], grid: Path | None) -> str:
    lines = [
        f"dataset:  {info['dataset']}",
        f"source:   {info['source']}",
        "splits:   "
        + ", ".join(f"{k} {n}" for k, n in info["splits"].items())
        + (" (official)" if info["official_split"] else " (seeded)"),
        f"images:   uint8 {tuple(info['shape'])}, stored values {info['stored_range'][0]}..{info['stored_range'][1]}"
        f"{' (binary: 0 or 255)' if info['binary'] and 'binarize' not in info else ''}; {RANGES}",
    ]
    if "binarize" in info:
        lines.append(f"binarize: {info['binarize']}")
    if "classes" in info:
        names = info["classes"]
        shown = ", ".join(f"{i}={n}" for i, n in enumerate(names[:12])) + (" ..." if len(names) > 12 else "")
        lines.append(f"labels:   {shown}")
        for k, counts in info.get("class_counts", {}).items():
            lines.append(f"          {k}: " + " / ".join(str(c) for c in counts[:12]))
    if "factors" in info:
        lines.append(
            f"factors:  {len(info['factors'])} ({', '.join(info['factors'][:6])}{' ...' * (len(info['factors']) > 6)})"
        )
    lines.append(f"skipped:  {info['skipped']} unreadable file(s)")
    if grid is not None:
        lines.append(f"grid:     {grid}")
    return "\n".join(lines)


def check_out(out: Path, overwrite: bool) -> None:
    """``--out`` must be a .png, and an existing file is replaced only with ``overwrite``."""
    if out.suffix.lower() != ".png":
        raise UserError(f"--out: must be a .png file, got {out}")
    if out.exists() and not overwrite:
        raise UserError(f"--out: {out} exists; pass --overwrite to replace it or choose another --out")


def data_info(cfg: DataConfig, out: Path | None = None, overwrite: bool = False, num: int = 64) -> str:
    """Load a dataset and return the summary text; with ``out``, also write a grid of ``num`` training images.

    Read-only unless ``out`` is given: inspecting a dataset writes nothing, so it can be run any number
    of times. The dataset is loaded before ``out`` is checked, so a data problem is the error reported.
    """
    data = load_dataset(cfg)
    info = summarize(data)
    if out is None:
        return format_summary(info, None)
    check_out(out, overwrite)
    train = data.split("train").images
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:num]
    out.parent.mkdir(parents=True, exist_ok=True)
    save_grid(to_unit(train[pick.sort().values]), out, nrow=8)
    return format_summary(info, out)
