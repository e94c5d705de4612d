"""MNIST, CIFAR-10 and CelebA through torchvision's dataset classes, with ``download=False``.

Each is looked for with the data root (``--data-root``, ``$PROBGEN_DATA``, ``./data``) as the
torchvision root, then under ``<root>/<name>``; see docs/datasets.md for the exact layouts.

Integrity: torchvision checks no checksum for MNIST's raw files; probgen checks that images and
labels agree. CIFAR-10's batches are Python pickles, so they are read only when their md5 matches
the official release (torchvision's own check); a mismatch is an error naming the file. CelebA's
annotation files are plain text: a file whose md5 differs from the official one is read anyway,
with a warning and ``unverified`` in the source, so that re-exported annotations still load.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torchvision.datasets import CIFAR10, MNIST, CelebA
from torchvision.datasets import mnist as tv_mnist
from torchvision.datasets.utils import calculate_md5

from probgen.config import DataConfig, flag
from probgen.data import cache, locate
from probgen.data.base import ImageData, Split, data_root, register
from probgen.data.decode import Geometry
from probgen.data.filesets import FileSplits, decode_splits
from probgen.data.splits import carve_val, limit_official
from probgen.data.transforms import binarize_dynamic, binarize_static, resize_uint8, to_channels
from probgen.errors import UserError

log = logging.getLogger("probgen")

MNIST_LAYOUT = (
    "MNIST/raw/ holding train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
    "t10k-labels-idx1-ubyte (the four official files, gunzipped)"
)
CIFAR10_LAYOUT = "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} (cifar-10-python.tar.gz, extracted)"
CELEBA_LAYOUT = (
    "celeba/img_align_celeba/*.jpg with celeba/list_eval_partition.txt, list_attr_celeba.txt, "
    "identity_CelebA.txt, list_bbox_celeba.txt, list_landmarks_align_celeba.txt"
)
CELEBA_CROP = 148  # centred face crop of the aligned 178x218 images before resizing (Larsen et al. 2016)
CELEBA_SIZE = 64


def _roots(cfg: DataConfig, name: str) -> list[Path]:
    root = data_root(cfg)
    return [root, root / name]


def _no_binarize(cfg: DataConfig, name: str) -> None:
    if cfg.binarize != "none":
        raise UserError(f"{flag('binarize')}: only mnist can be binarised, not {name!r}")


def _finish(
    splits: dict[str, Split], cfg: DataConfig, native_size: int, native_channels: int
) -> tuple[dict[str, Split], int]:
    """Resize and convert channels of in-memory splits; returns them and the channel count."""
    size = cfg.image_size or native_size
    channels = cfg.channels or native_channels
    for s in splits.values():
        s.images = to_channels(resize_uint8(s.images, size), channels)
    return splits, channels


def _take(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``t[idx]`` for sorted distinct indices, without a copy when they select everything."""
    return t if len(idx) == len(t) else t[idx]


def _official_splits(
    images: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], cfg: DataConfig
) -> dict[str, Split]:
    """Train/test as published, ``--limit`` shared between them, val carved from train if asked."""
    idx = limit_official({k: len(v) for k, v in images.items()}, cfg.limit, cfg.split_seed)
    train, val = carve_val(idx["train"], cfg.val_fraction, cfg.split_seed)
    out = {"train": Split(_take(images["train"], train), labels=_take(labels["train"], train))}
    if val is not None:
        out["val"] = Split(images["train"][val], labels=labels["train"][val])
    out["test"] = Split(_take(images["test"], idx["test"]), labels=_take(labels["test"], idx["test"]))
    return out


# --- MNIST -----------------------------------------------------------------------------------------


def _mnist_raw_names() -> list[str]:
    return [os.path.splitext(os.path.basename(url))[0] for url, _ in MNIST.resources]


def _mnist_probe(root: Path) -> list[str]:
    if locate.missing_files(root / "MNIST" / "processed", ["training.pt", "test.pt"]) == []:
        return []  # torchvision's legacy processed files
    return [f"MNIST/raw/{n}" for n in locate.missing_files(root / "MNIST" / "raw", _mnist_raw_names())]


def _read_mnist(root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        ds = MNIST(str(root), train=train, download=False)
    except (RuntimeError, AssertionError, ValueError, OSError) as exc:
        raw = Path(root) / "MNIST" / "raw"
        prefix = "train" if train else "t10k"
        for fname, reader in (
            (f"{prefix}-images-idx3-ubyte", tv_mnist.read_image_file),
            (f"{prefix}-labels-idx1-ubyte", tv_mnist.read_label_file),
        ):
            try:
                reader(str(raw / fname))
            except Exception as file_exc:  # noqa: BLE001  name the file that fails
                raise UserError(
                    f"cannot read MNIST file {raw / fname}: not an idx file ({file_exc or type(file_exc).__name__})"
                ) from None
        raise UserError(f"cannot read MNIST from {root}: {exc}") from None
    images, targets = ds.data, ds.targets
    if len(images) != len(targets):
        prefix = "train" if train else "t10k"
        raise UserError(f"MNIST under {root}: {len(images)} images but {len(targets)} labels ({prefix} files disagree)")
    return images.unsqueeze(1).contiguous(), targets.long()


@register("mnist")
def load_mnist(cfg: DataConfig) -> ImageData:
    """MNIST digits (LeCun et al. 1998): 28x28 grey, labels 0-9, official train 60k / test 10k."""
    root = locate.find("mnist", _roots(cfg, "mnist"), _mnist_probe, MNIST_LAYOUT)
    images, labels = {}, {}
    for split, train in (("train", True), ("test", False)):
        images[split], labels[split] = _read_mnist(root, train)
    splits, channels = _finish(_official_splits(images, labels, cfg), cfg, 28, 1)
    notes: dict[str, object] = {"official_split": True}
    binary = cfg.binarize != "none"
    if cfg.binarize == "static":
        for s in splits.values():
            s.images = binarize_static(s.images)
    elif cfg.binarize == "dynamic":
        # Training resamples every batch (see probgen.data.transforms.bernoulli_resample); evaluation
        # splits keep one fixed, seeded draw so that their numbers are reproducible.
        g = torch.Generator().manual_seed(cfg.split_seed)
        for name, s in splits.items():
            if name != "train":
                s.images = binarize_dynamic(s.images, generator=g)
        notes["binarize"] = "dynamic"
        notes["dynamic_splits"] = ("train",)
    source = f"{root / 'MNIST'} (torchvision MNIST, idx files)"
    log.info("data: mnist from %s; %s", source, ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    return ImageData("mnist", source, splits, binary=binary, class_names=tuple(str(i) for i in range(10)), notes=notes)


# --- CIFAR-10 --------------------------------------------------------------------------------------


def _cifar_names() -> list[str]:
    return [f for f, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]


def _cifar_md5s() -> dict[str, str]:
    out = {f: md5 for f, md5 in CIFAR10.train_list + CIFAR10.test_list}
    out[CIFAR10.meta["filename"]] = CIFAR10.meta["md5"]
    return out


def _cifar_probe(root: Path) -> list[str]:
    return [f"{CIFAR10.base_folder}/{n}" for n in locate.missing_files(root / CIFAR10.base_folder, _cifar_names())]


def _read_cifar(root: Path, train: bool) -> CIFAR10:
    try:
        return CIFAR10(str(root), train=train, download=False)
    except RuntimeError:
        folder = root / CIFAR10.base_folder
        bad = [f for f, md5 in _cifar_md5s().items() if calculate_md5(folder / f) != md5]
        if not bad:
            raise
        raise UserError(
            f"CIFAR-10 file(s) {', '.join(str(folder / f) for f in bad)}: md5 differs from the official release "
            "(corrupt, truncated or not from cifar-10-python.tar.gz); the batches are Python pickles, so probgen "
            "reads only verified files: extract the official archive again"
        ) from None


@register("cifar10")
def load_cifar10(cfg: DataConfig) -> ImageData:
    """CIFAR-10 (Krizhevsky 2009): 32x32 colour, 10 classes, official train 50k / test 10k."""
    _no_binarize(cfg, "cifar10")
    root = locate.find("cifar10", _roots(cfg, "cifar10"), _cifar_probe, CIFAR10_LAYOUT)
    images, labels = {}, {}
    classes: list[str] = []
    for split, train in (("train", True), ("test", False)):
        ds = _read_cifar(root, train)
        images[split] = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
        labels[split] = torch.tensor(ds.targets, dtype=torch.long)
        classes = list(ds.classes)
    splits, _ = _finish(_official_splits(images, labels, cfg), cfg, 32, 3)
    source = f"{root / CIFAR10.base_folder} (torchvision CIFAR10, md5-verified batches)"
    log.info("data: cifar10 from %s; %s", source, ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    return ImageData("cifar10", source, splits, class_names=tuple(classes), notes={"official_split": True})


# --- CelebA ----------------------------------------------------------------------------------------


class _CelebAFolder(CelebA):
    """torchvision's CelebA reading the ``celeba`` folder itself, its md5 checks left to :func:`_verify_celeba`
    (which warns instead of refusing: the annotation files are plain text, safe to parse)."""

    base_folder = ""
    file_list = [(file_id, None, name) for file_id, _, name in CelebA.file_list]  # type: ignore[misc]


def _celeba_text_files() -> list[tuple[str, str]]:
    return [(name, md5) for _, md5, name in CelebA.file_list if not name.endswith((".zip", ".7z"))]


def _celeba_probe(folder: Path) -> list[str]:
    return locate.missing_files(folder, ["img_align_celeba/"] + [n for n, _ in _celeba_text_files()])


def _verify_celeba(folder: Path) -> list[str]:
    """Names of annotation files whose md5 differs from the official release."""
    return [name for name, md5 in _celeba_text_files() if calculate_md5(folder / name) != md5]


def _read_partition(path: Path, filenames: list[str]) -> torch.Tensor:
    """The split column (0 train, 1 val, 2 test) of list_eval_partition.txt, checked against torchvision's
    file order. (torchvision's CelebA keeps no split column for split="all", and building it once per
    split costs ~10 s each on the full set: it indexes a Python list with tensors.)"""
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if [r[0] for r in rows] != filenames or any(len(r) != 2 or r[1] not in ("0", "1", "2") for r in rows):
        raise UserError(f"{path}: expected lines '<image> <0|1|2>' for every image of the annotation files")
    return torch.tensor([int(r[1]) for r in rows], dtype=torch.uint8)


def celeba_index(folder: Path) -> dict[str, Any]:
    """File names, split column, attributes (N, 40) in {0, 1}, attribute names and unverified files.

    Parsing the five annotation files (~200k lines each) takes tens of seconds, so the result is
    cached, keyed by the files' sizes and modification times.
    """
    text = [folder / n for n, _ in _celeba_text_files()]
    key = cache.file_key({"dataset": "celeba-index"}, text)
    index = cache.load("celeba-index", key)
    if index is not None:
        index["filenames"] = bytes(index["filenames"].numpy()).decode().split("\n")
        return index
    try:
        ds = _CelebAFolder(str(folder), split="all", target_type="attr", download=False)
    except (ValueError, IndexError, OSError, RuntimeError) as exc:
        raise UserError(f"cannot read the CelebA annotation files in {folder}: {exc}") from None
    index = {
        "filenames": list(ds.filename),
        "partition": _read_partition(folder / "list_eval_partition.txt", list(ds.filename)),
        "attrs": ds.attr.to(torch.uint8),
        "attr_names": [a for a in ds.attr_names if a],
        "unverified": _verify_celeba(folder),
    }
    # 200k names as one uint8 tensor: weights_only loading of a list of strings is ~1 s slower
    packed = torch.frombuffer(bytearray("\n".join(index["filenames"]).encode()), dtype=torch.uint8)
    cache.save("celeba-index", key, {**index, "filenames": packed})
    return index


@register("celeba")
def load_celeba(cfg: DataConfig) -> ImageData:
    """CelebA aligned faces (Liu et al. 2015): centre 148x148 crop resized to 64 by default; the
    official train 162,770 / val 19,867 / test 19,962 split; the 40 binary attributes as factors."""
    _no_binarize(cfg, "celeba")
    root = data_root(cfg)
    folder = locate.find("celeba", [root / "celeba", root], _celeba_probe, CELEBA_LAYOUT)
    index = celeba_index(folder)
    rows = {k: torch.nonzero(index["partition"] == i).flatten() for i, k in enumerate(("train", "val", "test"))}
    idx = limit_official({k: len(v) for k, v in rows.items()}, cfg.limit, cfg.split_seed)
    names, attrs = index["filenames"], index["attrs"]
    found = FileSplits(files={}, labels={})
    for k, r in rows.items():
        sel = r[idx[k]]
        found.files[k] = [folder / "img_align_celeba" / names[i] for i in sel.tolist()]
        found.labels[k] = attrs[sel].long()  # (N, 40) in {0, 1}; filtered with the images that are read
    geometry = Geometry(cfg.image_size or CELEBA_SIZE, crop=CELEBA_CROP)
    decoded = decode_splits("celeba", found, geometry, cfg, default_channels=3)
    for s in decoded.splits.values():
        s.factor_classes, s.labels = s.labels, None
        s.factors = s.factor_classes.float()
    source = f"{folder} (torchvision CelebA layout, img_align_celeba/*.jpg)"
    if index["unverified"]:
        log.warning("data: celeba: %s differ from the official files (md5)", ", ".join(index["unverified"]))
        source += f" unverified: {', '.join(index['unverified'])} differ from the official files"
    log.info("data: celeba from %s; %s", source, ", ".join(f"{k} {len(v)}" for k, v in decoded.splits.items()))
    notes: dict[str, object] = {"official_split": True, "skipped": decoded.bad, "crop": CELEBA_CROP}
    return ImageData("celeba", source, decoded.splits, factor_names=tuple(index["attr_names"]), notes=notes)
