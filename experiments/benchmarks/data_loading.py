"""Time dataset loading at full size on synthetic files in the real formats (nothing is downloaded).

    PYTHONPATH=. python experiments/benchmarks/data_loading.py [--workdir /tmp/probgen-bench] [--folder-images 5000]

Writes MNIST-sized idx files (60k + 10k), CIFAR-10-sized pickled batches (50k + 10k), CelebA-sized
annotation files (202,599 rows) and a folder of CelebA-sized JPEGs (178 x 218), then times: MNIST and
CIFAR-10 loads; parsing the CelebA annotations (first load) and reading them back from the cache; the
first folder load (decode, resize to 64, write the cache) in one process and in a process pool; the
cached load. Prints a table. The CIFAR-10 batches here are Python 3 protocol-2 pickles, which unpickle
more slowly than the official Python 2 ones.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from probgen.config import DataConfig
from probgen.data import cache, decode, load_dataset
from probgen.data.torchvision_sets import _celeba_index
from tests.data.conftest import trust_cifar_fixture, write_cifar, write_idx


def write_celeba_annotations(folder: Path, n: int) -> None:
    """The five annotation files of CelebA with n rows (contents synthetic, format official)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    split = np.searchsorted([162770, 182637], np.arange(n), side="right")
    attrs = np.random.default_rng(0).integers(0, 2, (n, 40)) * 2 - 1
    (folder / "list_eval_partition.txt").write_text("".join(f"{a} {b}\n" for a, b in zip(names, split)))
    (folder / "list_attr_celeba.txt").write_text(
        f"{n}\n"
        + " ".join(f"A{i}" for i in range(40))
        + "\n"
        + "".join(nm + " " + " ".join(f"{a:2d}" for a in row) + "\n" for nm, row in zip(names, attrs))
    )
    (folder / "identity_CelebA.txt").write_text("".join(f"{nm} {i % 10177 + 1}\n" for i, nm in enumerate(names)))
    (folder / "list_bbox_celeba.txt").write_text(
        f"{n}\nimage_id x_1 y_1 width height\n" + "".join(f"{nm} 95 71 226 313\n" for nm in names)
    )
    (folder / "list_landmarks_align_celeba.txt").write_text(
        f"{n}\n"
        + " ".join(f"p{i}" for i in range(10))
        + "\n"
        + "".join(f"{nm} 69 109 106 113 77 142 73 152 108 154\n" for nm in names)
    )


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="/tmp/probgen-bench")
    p.add_argument("--folder-images", type=int, default=5000)
    p.add_argument("--celeba-rows", type=int, default=202599)
    args = p.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    root = work / "data"
    os.environ["PROBGEN_CACHE"] = str(work / "cache")
    rng = np.random.default_rng(0)

    for prefix, n in (("train", 60000), ("t10k", 10000)):
        write_idx(root / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), np.uint8))
        write_idx(root / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    write_cifar(root, per_batch=10000, n_test=10000)

    class _MP:  # trust_cifar_fixture expects pytest's monkeypatch; setattr is all it uses
        setattr = staticmethod(setattr)

    trust_cifar_fixture(_MP, root)

    folder = root / "faces"
    folder.mkdir(parents=True)
    y, x = np.mgrid[0:218, 0:178]
    for i in range(args.folder_images):
        arr = np.stack([(x + i) % 256, (y * 2 + i) % 256, (x + y) % 256], -1).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i:06d}.jpg", quality=90)

    rows = []
    data, t = timed(lambda: load_dataset(DataConfig(dataset="mnist", data_root=str(root))))
    rows.append(("mnist 70k, 28 px", t))
    data, t = timed(lambda: load_dataset(DataConfig(dataset="mnist", data_root=str(root), image_size=32)))
    rows.append(("mnist 70k, resized to 32", t))
    data, t = timed(lambda: load_dataset(DataConfig(dataset="cifar10", data_root=str(root))))
    rows.append(("cifar10 60k (md5 check + unpickle)", t))
    write_celeba_annotations(root / "celeba", args.celeba_rows)
    (root / "celeba" / "img_align_celeba").mkdir()
    _, t = timed(lambda: _celeba_index(root / "celeba"))
    rows.append((f"celeba annotations {args.celeba_rows} rows, parse (torchvision)", t))
    _, t = timed(lambda: _celeba_index(root / "celeba"))
    rows.append((f"celeba annotations {args.celeba_rows} rows, from cache", t))

    n = args.folder_images
    cfg = DataConfig(dataset="folder", data_root=str(folder), image_size=64)
    workers = decode._workers
    decode._workers = lambda: 1  # type: ignore[assignment]
    cache.MIN_IMAGES = n + 1  # no cache for the 1-thread timing
    _, t = timed(lambda: load_dataset(cfg))
    rows.append((f"folder {n} JPEG 178x218 -> 64, decode, 1 process", t))
    decode._workers = workers  # type: ignore[assignment]
    cache.MIN_IMAGES = 1
    _, t = timed(lambda: load_dataset(cfg))
    rows.append((f"folder {n} JPEG 178x218 -> 64, decode + cache write, {workers()} processes", t))
    _, t = timed(lambda: load_dataset(cfg))
    rows.append((f"folder {n} JPEG 178x218 -> 64, from cache", t))
    print(f"load average (1, 5, 15 min): {os.getloadavg()}; cores: {len(os.sched_getaffinity(0))}")
    for name, sec in rows:
        print(f"{name:<72} {sec:7.2f} s")


if __name__ == "__main__":
    main()
