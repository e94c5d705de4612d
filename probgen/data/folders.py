"""Image-folder datasets: Kaggle's chest X-rays (pneumonia), Kaggle's Bitmojis, and any folder of images.

A folder holds its images flat, or in class subfolders (labels 0, 1, ... in sorted class order, as
torchvision's ``ImageFolder``), optionally under ``train/``, ``val/`` and ``test/`` folders that then
are the official split. Files are those with torchvision's image extensions
(``torchvision.datasets.folder.IMG_EXTENSIONS``); hidden files and folders (``.*``, ``__MACOSX``)
are ignored. Images of any size and mode are converted and resized to M x M (default 64).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torchvision.datasets.folder import has_file_allowed_extension, make_dataset

from probgen.config import DataConfig, flag
from probgen.data import locate
from probgen.data.base import ImageData, data_root, register, seeded_split
from probgen.data.decode import IMG_EXTENSIONS, Geometry
from probgen.data.filesets import FileSplits, decode_splits
from probgen.data.splits import limit_official
from probgen.errors import UserError

log = logging.getLogger("probgen")

DEFAULT_SIZE = 64
SPLIT_DIRS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
CHEST_CLASSES = {"NORMAL": 0, "PNEUMONIA": 1}
CHEST_LAYOUT = "chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg (Kaggle 'chest-xray-pneumonia', unzipped)"
BITMOJI_LAYOUT = "bitmojis/*.png or *.jpg (Kaggle 'bitmojis', unzipped: one flat folder of images)"
FOLDER_LAYOUT = (
    "images directly in the folder, or in class subfolders <folder>/<class>/..., "
    "optionally under <folder>/{train,val,test}/"
)


def _visible(name: str) -> bool:
    return not name.startswith((".", "__"))


def _is_image(path: str) -> bool:
    name = os.path.basename(path)
    return _visible(name) and has_file_allowed_extension(name, IMG_EXTENSIONS)


def scan(folder: Path, class_to_idx: dict[str, int] | None = None) -> tuple[list[Path], list[int] | None, list[str]]:
    """The image files of ``folder``: (files, labels or None, class names).

    With ``class_to_idx``, or when ``folder`` holds no images itself, its class subfolders are read
    recursively through torchvision's ``make_dataset``; otherwise its own images (flat, no labels).
    """
    if class_to_idx is None:
        entries = sorted(folder.iterdir())
        flat = [p for p in entries if p.is_file() and _is_image(p.name)]
        subdirs = [p.name for p in entries if p.is_dir() and _visible(p.name)]
        if flat:
            if subdirs:
                log.warning(
                    "data: %s holds images itself, so its subfolders are ignored: %s", folder, ", ".join(subdirs)
                )
            return flat, None, []
        if not subdirs:
            return [], None, []
        class_to_idx = {c: i for i, c in enumerate(subdirs)}
    samples = make_dataset(str(folder), class_to_idx, is_valid_file=_is_image, allow_empty=True)
    return [Path(p) for p, _ in samples], [c for _, c in samples], list(class_to_idx)


def _split_dir(folder: Path, split: str) -> Path | None:
    for alias in SPLIT_DIRS[split]:
        if (folder / alias).is_dir():
            return folder / alias
    return None


def _no_images(name: str, folder: Path) -> UserError:
    return UserError(
        f"dataset {name!r}: no images in {folder} (looked for {', '.join(IMG_EXTENSIONS)} files, "
        "flat or in class subfolders)"
    )


def _labels(labels: list[int] | None) -> torch.Tensor | None:
    return None if labels is None else torch.tensor(labels, dtype=torch.long)


def scan_splits(name: str, folder: Path, class_to_idx: dict[str, int] | None = None) -> tuple[FileSplits, bool]:
    """Files of an image folder, by official split when it has a ``train/`` folder (returns True),
    else as one pool ``all`` (False). A folder without images is a UserError."""
    train_dir = _split_dir(folder, "train")
    if train_dir is None:
        files, labels, classes = scan(folder, class_to_idx)
        if not files:
            raise _no_images(name, folder)
        return FileSplits({"all": files}, {"all": _labels(labels)}, tuple(classes)), False
    files, labels, classes = scan(train_dir, class_to_idx)
    if not files:
        raise _no_images(name, train_dir)
    found = FileSplits({"train": files}, {"train": _labels(labels)}, tuple(classes))
    cti = {c: i for i, c in enumerate(classes)} if labels is not None else None
    for split in ("val", "test"):
        d = _split_dir(folder, split)
        if d is not None:
            files, labels, _ = scan(d, cti)
            found.files[split], found.labels[split] = files, _labels(labels)
    return found, True


def _select(found: FileSplits, official: bool, cfg: DataConfig) -> FileSplits:
    """Apply the official split or a seeded one, and ``--limit``."""
    if official:
        idx = limit_official({k: len(v) for k, v in found.files.items()}, cfg.limit, cfg.split_seed)
    else:
        idx = seeded_split(len(found.files["all"]), cfg.test_fraction, cfg.val_fraction, cfg.split_seed, cfg.limit)
        idx = {k: v.sort().values for k, v in idx.items()}
    src = "all" if not official else None
    out = FileSplits({}, {}, found.class_names)
    for k in [k for k in ("train", "val", "test") if k in idx]:
        ind = idx[k]
        files, labels = found.files[src or k], found.labels.get(src or k)
        out.files[k] = [files[i] for i in ind.tolist()]
        out.labels[k] = None if labels is None else labels[ind]
    return out


def load_image_folder(
    name: str,
    folder: Path,
    cfg: DataConfig,
    geometry: Geometry,
    default_channels: int | None,
    class_to_idx: dict[str, int] | None = None,
) -> ImageData:
    """Scan, split, decode (cached when large) and describe one image folder."""
    if cfg.binarize != "none":
        raise UserError(f"{flag('binarize')}: only mnist can be binarised, not {name!r}")
    found, official = scan_splits(name, folder, class_to_idx)
    selected = _select(found, official, cfg)
    decoded = decode_splits(name, selected, geometry, cfg, default_channels)
    n_files = sum(len(v) for v in found.files.values())
    source = f"{folder} ({n_files} image files{', official split' if official else ''})"
    log.info("data: %s from %s; %s", name, source, ", ".join(f"{k} {len(v)}" for k, v in decoded.splits.items()))
    notes: dict[str, object] = {"official_split": official, "skipped": decoded.bad, "crop": geometry.crop}
    return ImageData(name, source, decoded.splits, class_names=found.class_names, notes=notes)


def _chest_probe(folder: Path) -> list[str]:
    if not (folder / "train").is_dir():
        return ["train/"]
    if not any((folder / "train" / c).is_dir() for c in CHEST_CLASSES):
        return ["train/NORMAL/", "train/PNEUMONIA/"]
    return []


@register("chest-xray")
def load_chest_xray(cfg: DataConfig) -> ImageData:
    """Kaggle chest X-rays (Kermany et al. 2018): NORMAL (0) and PNEUMONIA (1) merged, official
    train 5216 / val 16 / test 624; stretched to M x M (default 64), grey (replicated with --channels 3)."""
    root = data_root(cfg)
    candidates = [root / "chest_xray", root / "chest-xray" / "chest_xray", root / "chest-xray", root]
    folder = locate.find("chest-xray", candidates, _chest_probe, CHEST_LAYOUT)
    geometry = Geometry(cfg.image_size or DEFAULT_SIZE, crop="none")
    return load_image_folder("chest-xray", folder, cfg, geometry, default_channels=1, class_to_idx=CHEST_CLASSES)


@register("bitmoji")
def load_bitmoji(cfg: DataConfig) -> ImageData:
    """Kaggle Bitmoji faces: a flat folder of colour images, centre-cropped square and resized to M
    (default 64); seeded split."""
    root = data_root(cfg)
    candidates = [root / "bitmojis", root / "bitmoji" / "bitmojis", root / "bitmoji"]
    folder = locate.find("bitmoji", candidates, lambda _: [], BITMOJI_LAYOUT)
    geometry = Geometry(cfg.image_size or DEFAULT_SIZE, crop="square")
    return load_image_folder("bitmoji", folder, cfg, geometry, default_channels=3)


@register("folder")
def load_folder(cfg: DataConfig) -> ImageData:
    """Any folder of images given by --data-root: flat or in class subfolders, optionally split into
    train/val/test folders; centre-cropped square, resized to M (default 64); grey if every image is."""
    if cfg.data_root is None:
        raise UserError(f"{flag('data_root')}: --dataset folder needs --data-root PATH, the folder of images")
    path = Path(cfg.data_root).expanduser()
    folder = locate.find("folder", [path], lambda _: [], FOLDER_LAYOUT)
    geometry = Geometry(cfg.image_size or DEFAULT_SIZE, crop="square")
    return load_image_folder("folder", folder, cfg, geometry, default_channels=None)
