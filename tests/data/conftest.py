"""Tiny datasets written in their real on-disk formats: MNIST idx files, CIFAR-10 pickled batches,
the CelebA folder with its annotation files, the Kaggle chest-xray tree and plain image folders."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import calculate_md5


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No test reads $PROBGEN_DATA or writes to the user's cache."""
    monkeypatch.delenv("PROBGEN_DATA", raising=False)
    monkeypatch.setenv("PROBGEN_CACHE", str(tmp_path / "cache"))


# --- MNIST: idx files (LeCun's format: big-endian magic, dims, then raw uint8) ----------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the idx format (magic 0x0000 08 <ndim>)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def mnist_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def write_mnist(root: Path, n_train: int = 30, n_test: int = 10) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    raw = root / "MNIST" / "raw"
    out = {}
    for split, prefix, n, seed in (("train", "train", n_train, 0), ("test", "t10k", n_test, 1)):
        images, labels = mnist_arrays(n, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        out[split] = (images, labels)
    return out


@pytest.fixture
def mnist_root(tmp_path):
    root = tmp_path / "data"
    arrays = write_mnist(root)
    return root, arrays


# --- CIFAR-10: python pickles, one dict per batch, data (N, 3072) in R, G, B planes ------------------


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar(root: Path, per_batch: int = 4, n_test: int = 6) -> dict[str, tuple[np.ndarray, list[int]]]:
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


def trust_cifar_fixture(monkeypatch, root: Path) -> None:
    """Make torchvision's expected md5s those of the fixture (the official ones cannot match it)."""
    folder = root / "cifar-10-batches-py"
    monkeypatch.setattr(CIFAR10, "train_list", [[f, calculate_md5(folder / f)] for f, _ in CIFAR10.train_list])
    monkeypatch.setattr(CIFAR10, "test_list", [[f, calculate_md5(folder / f)] for f, _ in CIFAR10.test_list])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": calculate_md5(folder / "batches.meta")})


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    arrays = write_cifar(root)
    trust_cifar_fixture(monkeypatch, root)
    return root, arrays


# --- CelebA: img_align_celeba/*.jpg (178 x 218) and five annotation files ---------------------------


CELEBA_ATTRS = [f"Attr_{i}" for i in range(40)]


def celeba_image(i: int) -> Image.Image:
    """A 178 x 218 image: a flat colour in a centred 156 x 156 square (the 148 x 148 face crop and a
    4-pixel margin against JPEG and resampling blur), black outside it."""
    arr = np.zeros((218, 178, 3), dtype=np.uint8)
    top, left = (218 - 156) // 2, (178 - 156) // 2
    arr[top : top + 156, left : left + 156] = (40 + 20 * i, 200 - 10 * i, 128)
    return Image.fromarray(arr)


def write_celeba(root: Path, partition: tuple[int, ...] = (0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2)) -> np.ndarray:
    """Writes root/celeba/...; returns the attributes (N, 40) in {0, 1}."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    n = len(partition)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for i, name in enumerate(names):
        celeba_image(i).save(folder / "img_align_celeba" / name, quality=95)
    rng = np.random.default_rng(3)
    attrs = rng.integers(0, 2, (n, 40))
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
    return attrs


@pytest.fixture
def celeba_root(tmp_path):
    root = tmp_path / "data"
    return root, write_celeba(root)


# --- chest-xray: chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg, mixed sizes and modes -------


CHEST_COUNTS = {"train": (3, 4), "val": (1, 1), "test": (2, 1)}  # (NORMAL, PNEUMONIA)


def write_chest(root: Path) -> dict[str, list[int]]:
    """Grey and RGB JPEGs of varying sizes; returns the labels per split in file order."""
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


@pytest.fixture
def chest_root(tmp_path):
    root = tmp_path / "data"
    return root, write_chest(root)


# --- image folders -----------------------------------------------------------------------------------


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


@pytest.fixture
def fmt():
    """The fixture writers, for tests that build variations of the datasets above."""
    import types

    return types.SimpleNamespace(
        write_idx=write_idx,
        write_mnist=write_mnist,
        write_cifar=write_cifar,
        trust_cifar_fixture=trust_cifar_fixture,
        write_celeba=write_celeba,
        write_chest=write_chest,
        write_mixed_folder=write_mixed_folder,
    )
