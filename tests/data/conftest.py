"""The data tests' fixtures: an isolated cache, and tiny datasets in their real on-disk formats written by
probgen.data.fixtures (MNIST idx files, CIFAR-10 pickled batches, the CelebA folder, the chest-xray tree)."""

from __future__ import annotations

import pytest
from torchvision.datasets import CIFAR10

from probgen.data.fixtures import cifar_md5s, write_celeba, write_chest, write_cifar, write_mnist


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No test reads $PROBGEN_DATA or writes to the user's cache."""
    monkeypatch.delenv("PROBGEN_DATA", raising=False)
    monkeypatch.setenv("PROBGEN_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def mnist_root(tmp_path):
    root = tmp_path / "data"
    arrays = write_mnist(root)
    return root, arrays


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    arrays = write_cifar(root)
    for attr, value in cifar_md5s(root).items():  # the official md5s cannot match a fixture
        monkeypatch.setattr(CIFAR10, attr, value)
    return root, arrays


@pytest.fixture
def celeba_root(tmp_path):
    root = tmp_path / "data"
    return root, write_celeba(root)


@pytest.fixture
def chest_root(tmp_path):
    root = tmp_path / "data"
    return root, write_chest(root)
