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
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets import CIFAR10

from probgen.config import DataConfig
from probgen.data import cache, decode, load_dataset
from probgen.data.fixtures import cifar_md5s, write_celeba_annotations, write_cifar, write_idx
from probgen.data.torchvision_sets import celeba_index


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="/tmp/probgen-bench")
    p.add_argument("--folder-images", type=int, default=5000)
    p.add_argument("--celeba-rows", type=int, default=202599)
    p.add_argument("--smoke", action="store_true", help="tiny sizes (1/1000 of the sets, 8 images): checks it runs")
    args = p.parse_args(argv)
    scale = 1000 if args.smoke else 1
    if args.smoke:
        args.folder_images, args.celeba_rows = 8, 200
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    root = work / "data"
    os.environ["PROBGEN_CACHE"] = str(work / "cache")
    rng = np.random.default_rng(0)

    n_mnist, n_cifar = 70000 // scale, 60000 // scale
    for prefix, n in (("train", n_mnist * 6 // 7), ("t10k", n_mnist // 7)):
        write_idx(root / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), np.uint8))
        write_idx(root / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    write_cifar(root, per_batch=n_cifar // 6, n_test=n_cifar // 6)

    for attr, value in cifar_md5s(root).items():  # torchvision checks the official md5s
        setattr(CIFAR10, attr, value)

    folder = root / "faces"
    folder.mkdir(parents=True)
    y, x = np.mgrid[0:218, 0:178]
    for i in range(args.folder_images):
        arr = np.stack([(x + i) % 256, (y * 2 + i) % 256, (x + y) % 256], -1).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i:06d}.jpg", quality=90)

    rows = []
    data, t = timed(lambda: load_dataset(DataConfig(dataset="mnist", data_root=str(root))))
    rows.append((f"mnist {n_mnist}, 28 px", t))
    data, t = timed(lambda: load_dataset(DataConfig(dataset="mnist", data_root=str(root), image_size=32)))
    rows.append((f"mnist {n_mnist}, resized to 32", t))
    data, t = timed(lambda: load_dataset(DataConfig(dataset="cifar10", data_root=str(root))))
    rows.append((f"cifar10 {n_cifar} (md5 check + unpickle)", t))
    partition = np.searchsorted([162770, 182637], np.arange(args.celeba_rows), side="right")  # the official split
    write_celeba_annotations(root / "celeba", partition, rng.integers(0, 2, (args.celeba_rows, 40)))
    (root / "celeba" / "img_align_celeba").mkdir()
    _, t = timed(lambda: celeba_index(root / "celeba"))
    rows.append((f"celeba annotations {args.celeba_rows} rows, parse (torchvision)", t))
    _, t = timed(lambda: celeba_index(root / "celeba"))
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
