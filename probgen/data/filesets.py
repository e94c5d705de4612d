"""Lists of image files -> uint8 splits: decoded once (and cached when large), bad files reported.

Shared by every loader whose source is a folder of image files (CelebA, chest X-rays, Bitmoji,
any image folder). The loader decides which files form which split; this module decodes them with
:mod:`probgen.data.decode`, converts the channel count, and keeps labels aligned with the images
that could be read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from probgen.config import DataConfig
from probgen.data import cache
from probgen.data.base import Split
from probgen.data.decode import Geometry, check_memory, decode_files
from probgen.data.transforms import to_channels

log = logging.getLogger("probgen")


@dataclass
class FileSplits:
    """What a folder loader found: image files per split, their labels (N, ...) aligned with the files
    (or None), and class names."""

    files: dict[str, list[Path]]
    labels: dict[str, torch.Tensor | None] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()


@dataclass
class Decoded:
    """Splits of decoded images, plus the files that could not be read and whether the cache served them."""

    splits: dict[str, Split]
    bad: list[tuple[str, str]]
    cached: bool


def decode_splits(
    name: str,
    found: FileSplits,
    geometry: Geometry,
    cfg: DataConfig,
    default_channels: int | None,
    progress: bool = True,
) -> Decoded:
    """Decode every file of every split to uint8 (N, C, M, M).

    ``C`` is ``cfg.channels``, else ``default_channels``, else 1 when every image is grey-level and
    3 otherwise. Labels follow the images that were read (with ``--skip-bad``, the others are dropped).
    """
    order = list(found.files)
    all_files = [f for s in order for f in found.files[s]]
    n = len(all_files)
    m = geometry.size
    check_memory(name, n, (cfg.channels or default_channels or 3, m, m))
    params = {
        "dataset": name,
        "size": m,
        "crop": geometry.crop,
        "channels": cfg.channels,
        "default_channels": default_channels,
        "skip_bad": cfg.skip_bad,
    }
    key = cache.file_key(params, all_files) if n >= cache.MIN_IMAGES else None
    payload = cache.load(name, key) if key else None
    if payload is not None:
        images, kept, bad = payload["images"], payload["kept"], [tuple(b) for b in payload["bad"]]
    else:
        images, kept, bad = _decode_all(name, all_files, geometry, cfg, default_channels, progress)
        if key:
            cache.save(name, key, {"images": images, "kept": kept, "bad": [list(b) for b in bad]})
    if bad:
        log.warning("data: %s: skipped %d unreadable file(s), e.g. %s (%s)", name, len(bad), bad[0][0], bad[0][1])
    splits: dict[str, Split] = {}
    start = 0  # position in all_files
    pos = 0  # position in images (kept files only)
    for s in order:
        k = len(found.files[s])
        keep = kept[start : start + k]
        n_kept = int(keep.sum())
        labels = found.labels.get(s)
        splits[s] = Split(images[pos : pos + n_kept], labels=None if labels is None else labels[keep])
        start += k
        pos += n_kept
    return Decoded(splits, bad, cached=payload is not None)


def _decode_all(
    name: str,
    files: list[Path],
    geometry: Geometry,
    cfg: DataConfig,
    default_channels: int | None,
    progress: bool,
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    decoded, bad_paths = decode_files(files, geometry, skip_bad=cfg.skip_bad, progress=progress, desc=name)
    kept = torch.tensor([img is not None for img in decoded], dtype=torch.bool)
    grey = all(img.shape[0] == 1 for img in decoded if img is not None)
    channels = cfg.channels or default_channels or (1 if grey else 3)
    m = geometry.size
    images = torch.empty(int(kept.sum()), channels, m, m, dtype=torch.uint8)
    j = 0
    for i, img in enumerate(decoded):
        if img is not None:
            images[j] = to_channels(img[None], channels)[0]
            decoded[i] = None  # free as we go: peak memory stays ~1x the dataset
            j += 1
    return images, kept, [(str(p), reason) for p, reason in bad_paths]
