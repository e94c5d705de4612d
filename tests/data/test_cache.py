"""Large decoded sets are cached once and read back; a changed file invalidates the entry."""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image

from probgen.config import DataConfig
from probgen.data import cache, load_dataset


@pytest.fixture
def small_threshold(monkeypatch):
    monkeypatch.setattr(cache, "MIN_IMAGES", 2)


def _write(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (12, 12), (i * 20, 0, 0)).save(folder / f"{i}.png")


def test_second_load_reads_cache(tmp_path, small_threshold, monkeypatch):
    _write(tmp_path / "imgs", 4)
    cfg = DataConfig(dataset="folder", data_root=str(tmp_path / "imgs"), test_fraction=0.25, image_size=8)
    first = load_dataset(cfg)
    entries = list(cache.cache_dir().glob("folder-*.pt"))
    assert len(entries) == 1 and cache.cache_dir() == tmp_path / "cache" / "data"

    def no_decoding(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr("probgen.data.filesets.decode_files", no_decoding)
    second = load_dataset(cfg)
    for k in first.splits:
        assert torch.equal(first.splits[k].images, second.splits[k].images)


def test_changed_file_or_size_is_a_new_entry(tmp_path, small_threshold):
    _write(tmp_path / "imgs", 3)
    cfg = DataConfig(dataset="folder", data_root=str(tmp_path / "imgs"), test_fraction=0.0, image_size=8)
    load_dataset(cfg)
    load_dataset(DataConfig(dataset="folder", data_root=str(tmp_path / "imgs"), test_fraction=0.0, image_size=16))
    Image.new("RGB", (12, 12), (0, 0, 250)).save(tmp_path / "imgs" / "0.png")
    os.utime(tmp_path / "imgs" / "0.png", ns=(1, 1))
    data = load_dataset(cfg)
    assert len(list(cache.cache_dir().glob("folder-*.pt"))) == 3
    assert data.splits["train"].images[0, 2, 4, 4] == 250


def test_unreadable_cache_is_rebuilt(tmp_path, small_threshold):
    _write(tmp_path / "imgs", 3)
    cfg = DataConfig(dataset="folder", data_root=str(tmp_path / "imgs"), test_fraction=0.0, image_size=8)
    first = load_dataset(cfg)
    (entry,) = cache.cache_dir().glob("folder-*.pt")
    entry.write_bytes(b"garbage")
    again = load_dataset(cfg)
    assert torch.equal(first.splits["train"].images, again.splits["train"].images)


def test_small_sets_are_not_cached(tmp_path):
    _write(tmp_path / "imgs", 3)
    load_dataset(DataConfig(dataset="folder", data_root=str(tmp_path / "imgs")))
    assert not cache.cache_dir().exists()
