"""Tiny datasets written in their real on-disk formats, for tests, smoke runs and loading benchmarks:
MNIST idx files, CIFAR-10 pickled batches, the CelebA folder with its five annotation files, the Kaggle
chest-xray tree, a flat folder of Bitmoji-like faces and an image folder of mixed modes.

Contents are synthetic (random pixels, flat colours); the formats are the official ones, so that the
real loaders in probgen.data read them. Nothing here is used by probgen itself.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "CELEBA_ATTRS",
    "CHEST_COUNTS",
    "CIFAR_CLASSES",
    "celeba_image",
    "cifar_md5s",
    "mnist_arrays",
    "write_bitmoji",
    "write_celeba",
    "write_celeba_annotations",
    "write_chest",
    "write_cifar",
    "write_idx",
    "write_mixed_folder",
    "write_mnist",
]

# --- MNIST: idx files (LeCun's format: big-endian magic, dims, then raw uint8) ----------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the idx format (magic 0x0000 08 <ndim>)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def mnist_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random 28 x 28 uint8 digits and the labels 0, 1, ..., 9, 0, ... (uint8)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def write_mnist(root: Path, n_train: int = 30, n_test: int = 10) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte; returns (images, labels) per split."""
    raw = root / "MNIST" / "raw"
    out = {}
    for split, prefix, n, seed in (("train", "train", n_train, 0), ("test", "t10k", n_test, 1)):
        images, labels = mnist_arrays(n, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        out[split] = (images, labels)
    return out


# --- CIFAR-10: python pickles, one dict per batch, data (N, 3072) in R, G, B planes ------------------


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar(root: Path, per_batch: int = 4, n_test: int = 6) -> dict[str, tuple[np.ndarray, list[int]]]:
    """root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}; returns (data, labels) per split.

    torchvision checks the official md5s, which a fixture cannot match: see :func:`cifar_md5s`.
    """
    from torchvision.datasets import CIFAR10

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    train_data, train_labels = [], []
    names = [f for f, _ in CIFAR10.train_list] + [f for f, _ in CIFAR10.test_list]
    for i, name in enumerate(names):
        n = n_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(x) for x in (np.arange(n) + i) % 10]
        batch = {
            "batch_label": f"{name} of 6",
            "labels": labels,
            "data": data,
            "filenames": [f"{j}.png" for j in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        if name == "test_batch":
            test = (data, labels)
        else:
            train_data.append(data)
            train_labels += labels
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"num_cases_per_batch": per_batch, "label_names": CIFAR_CLASSES, "num_vis": 3072}, f, protocol=2)
    return {"train": (np.concatenate(train_data), train_labels), "test": test}


def cifar_md5s(root: Path) -> dict[str, Any]:
    """The values of torchvision's ``CIFAR10.train_list``, ``test_list`` and ``meta`` that make the
    fixture under ``root`` pass its md5 check (set them with ``monkeypatch.setattr`` or ``setattr``)."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import calculate_md5

    folder = root / "cifar-10-batches-py"
    return {
        "train_list": [[f, calculate_md5(folder / f)] for f, _ in CIFAR10.train_list],
        "test_list": [[f, calculate_md5(folder / f)] for f, _ in CIFAR10.test_list],
        "meta": {**CIFAR10.meta, "md5": calculate_md5(folder / "batches.meta")},
    }


# --- CelebA: img_align_celeba/*.jpg (178 x 218) and five annotation files ---------------------------


CELEBA_ATTRS = [f"Attr_{i}" for i in range(40)]


def celeba_image(i: int) -> Image.Image:
    """A 178 x 218 image: a flat colour in a centred 156 x 156 square (the 148 x 148 face crop and a
    4-pixel margin against JPEG and resampling blur), black outside it."""
    arr = np.zeros((218, 178, 3), dtype=np.uint8)
    top, left = (218 - 156) // 2, (178 - 156) // 2
    arr[top : top + 156, left : left + 156] = (40 + 20 * i, 200 - 10 * i, 128)
    return Image.fromarray(arr)


def write_celeba_annotations(folder: Path, partition: Sequence[int], attrs: np.ndarray) -> list[str]:
    """CelebA's five annotation files in ``folder`` for images 000001.jpg, ... (one per ``partition``
    entry: 0 train, 1 val, 2 test); ``attrs`` (N, 40) in {0, 1}. Returns the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(partition)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    (folder / "list_eval_partition.txt").write_text("".join(f"{nm} {p}\n" for nm, p in zip(names, partition)))
    (folder / "list_attr_celeba.txt").write_text(
        f"{n}\n"
        + " ".join(CELEBA_ATTRS)
        + " \n"
        + "".join(nm + " " + " ".join(f"{2 * a - 1:2d}" for a in row) + "\n" for nm, row in zip(names, attrs))
    )
    (folder / "identity_CelebA.txt").write_text("".join(f"{nm} {i % 3 + 1}\n" for i, nm in enumerate(names)))
    (folder / "list_bbox_celeba.txt").write_text(
        f"{n}\nimage_id x_1 y_1 width height\n" + "".join(f"{nm} 95 71 226 313\n" for nm in names)
    )
    (folder / "list_landmarks_align_celeba.txt").write_text(
        f"{n}\n"
        + "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y\n"
        + "".join(f"{nm} 69 109 106 113 77 142 73 152 108 154\n" for nm in names)
    )
    return names


def write_celeba(root: Path, partition: tuple[int, ...] = (0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2)) -> np.ndarray:
    """Writes root/celeba/... (one image per ``partition`` entry, at most 11: their colours must differ);
    returns the attributes (N, 40) in {0, 1}."""
    folder = root / "celeba"
    attrs = np.random.default_rng(3).integers(0, 2, (len(partition), 40))
    names = write_celeba_annotations(folder, partition, attrs)
    (folder / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        celeba_image(i).save(folder / "img_align_celeba" / name, quality=95)
    return attrs


# --- chest-xray: chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg, mixed sizes and modes -------


CHEST_COUNTS = {"train": (3, 4), "val": (1, 1), "test": (2, 1)}  # (NORMAL, PNEUMONIA)


def write_chest(root: Path) -> dict[str, list[int]]:
    """Grey and RGB JPEGs of varying sizes under root/chest_xray; returns the labels per split in file order."""
    rng = np.random.default_rng(4)
    labels = {}
    for split, counts in CHEST_COUNTS.items():
        labels[split] = []
        for label, (cls, n) in enumerate(zip(("NORMAL", "PNEUMONIA"), counts)):
            d = root / "chest_xray" / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for j in range(n):
                h, w = int(rng.integers(40, 120)), int(rng.integers(40, 160))
                arr = rng.integers(0, 256, (h, w), dtype=np.uint8)
                img = Image.fromarray(arr, "L")
                if j % 2:  # some X-rays in the Kaggle set are stored as RGB
                    img = img.convert("RGB")
                img.save(d / f"person{j}_{cls.lower()}.jpeg", "JPEG")
                labels[split].append(label)
    (root / "chest_xray" / "train" / "NORMAL" / ".DS_Store").write_bytes(b"\0junk")
    return labels


# --- image folders -----------------------------------------------------------------------------------


def write_bitmoji(folder: Path, n: int) -> None:
    """A flat folder of ``n`` 48 x 48 PNG 'faces' (the Kaggle bitmojis layout): a coloured disc on a
    light background."""
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:48, :48]
    for i in range(n):
        img = np.full((48, 48, 3), 230, dtype=np.uint8)
        r = 12 + i % 8
        img[(yy - 24) ** 2 + (xx - 24) ** 2 < r * r] = (30 + 7 * i % 200, 120, 255 - 5 * i % 200)
        Image.fromarray(img).save(folder / f"{i:04d}.png")


def write_mixed_folder(folder: Path) -> None:
    """Six images in six modes and odd sizes, plus a file that is not an image."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (37, 53), (200, 30, 10)).save(folder / "a_rgb.jpg", quality=100)
    rgba = Image.new("RGBA", (20, 20), (0, 0, 255, 0))  # fully transparent blue -> white
    rgba.save(folder / "b_rgba.png")
    Image.new("RGB", (16, 16), (10, 250, 60)).convert("P", palette=Image.Palette.ADAPTIVE).save(
        folder / "c_palette.png"
    )
    Image.new("L", (64, 30), 77).save(folder / "d_grey.png")
    Image.fromarray(np.full((12, 12), 32896, dtype=np.uint16)).save(folder / "e_grey16.png")
    Image.new("RGB", (70, 70), (5, 6, 7)).save(folder / "f_bitmap.bmp")
    (folder / "notes.txt").write_text("not an image")
