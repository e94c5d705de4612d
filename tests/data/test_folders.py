"""chest-xray, bitmoji and folder: real image files in the Kaggle layouts, through the real loaders."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from probgen.config import DataConfig
from probgen.data import load_dataset
from probgen.data.fixtures import write_chest, write_mixed_folder
from probgen.errors import UserError


def cfg(root, **kw) -> DataConfig:
    return DataConfig(data_root=str(root), **kw)


# --- chest-xray ---------------------------------------------------------------------------------------


def test_chest_xray_official_split_labels_and_grey(chest_root):
    root, labels = chest_root
    data = load_dataset(cfg(root, dataset="chest-xray"))
    assert list(data.splits) == ["train", "val", "test"]
    for split, expect in labels.items():
        assert data.splits[split].labels.tolist() == expect  # NORMAL = 0, PNEUMONIA = 1
    assert data.image_shape == (1, 64, 64)
    assert data.class_names == ("NORMAL", "PNEUMONIA")
    assert data.notes["official_split"] is True and data.notes["skipped"] == []


def test_chest_xray_three_channels_and_size(chest_root):
    root, _ = chest_root
    data = load_dataset(cfg(root, dataset="chest-xray", channels=3, image_size=32))
    x = data.splits["train"].images
    assert x.shape == (7, 3, 32, 32)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])


def test_chest_xray_stretches_whole_image(tmp_path):
    d = tmp_path / "chest_xray" / "train" / "NORMAL"
    d.mkdir(parents=True)
    img = Image.new("L", (120, 60), 0)
    img.paste(255, (0, 0, 60, 60))  # left half white
    img.save(d / "a.jpeg", quality=100)
    x = load_dataset(cfg(tmp_path, dataset="chest-xray", image_size=16)).splits["train"].images[0, 0]
    assert x[:, :6].min() >= 240 and x[:, 10:].max() <= 15  # no centre crop: both halves survive


def test_chest_xray_kaggle_nested_folder(tmp_path):
    write_chest(tmp_path / "chest-xray")  # data/chest-xray/chest_xray/...
    data = load_dataset(cfg(tmp_path, dataset="chest-xray", limit=4))
    assert sum(len(s) for s in data.splits.values()) == 4
    assert all(len(s) >= 1 for s in data.splits.values())


def test_chest_xray_missing(tmp_path):
    with pytest.raises(UserError) as exc:
        load_dataset(cfg(tmp_path, dataset="chest-xray"))
    msg = str(exc.value)
    assert "'chest-xray' not found" in msg and str(tmp_path / "chest_xray") in msg
    assert "{NORMAL,PNEUMONIA}" in msg


def test_chest_xray_corrupt_image_named_then_skipped(chest_root):
    root, labels = chest_root
    bad = root / "chest_xray" / "train" / "PNEUMONIA" / "person1_pneumonia.jpeg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG
    with pytest.raises(UserError, match="person1_pneumonia.jpeg"):
        load_dataset(cfg(root, dataset="chest-xray"))
    data = load_dataset(cfg(root, dataset="chest-xray", skip_bad=True))
    assert len(data.splits["train"]) == 6
    assert data.splits["train"].labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert [p for p, _ in data.notes["skipped"]] == [str(bad)]


# --- folder -------------------------------------------------------------------------------------------


def test_folder_converts_modes_and_sizes(tmp_path):
    write_mixed_folder(tmp_path / "imgs")
    data = load_dataset(cfg(tmp_path / "imgs", dataset="folder", test_fraction=0.0, image_size=16))
    x = data.splits["train"].images
    assert x.shape == (6, 3, 16, 16) and data.splits["train"].labels is None
    pixel = x[:, :, 8, 8].tolist()  # files in name order: rgb, rgba, palette, grey, grey16, bmp
    assert max(abs(a - b) for a, b in zip(pixel[0], (200, 30, 10))) <= 3  # JPEG
    assert pixel[1] == [255, 255, 255]  # transparent -> white
    assert pixel[2] == [10, 250, 60]  # palette expanded
    assert pixel[3] == [77, 77, 77]  # grey replicated
    assert pixel[4] == [128, 128, 128]  # 16-bit 32896 scaled to 8 bits
    assert pixel[5] == [5, 6, 7]  # BMP (torchvision.io cannot read it)


def test_folder_all_grey_is_one_channel(tmp_path):
    for i in range(3):
        Image.new("L", (10 + i, 20), 10 * i).save(tmp_path / f"{i}.png")
    data = load_dataset(cfg(tmp_path, dataset="folder", test_fraction=0.0))
    assert data.image_shape == (1, 64, 64)
    assert data.splits["train"].images[:, 0, 5, 5].tolist() == [0, 10, 20]


def test_folder_class_subfolders_and_seeded_split(tmp_path):
    for cls, n in (("cat", 6), ("dog", 4)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    data = load_dataset(cfg(tmp_path, dataset="folder", test_fraction=0.2, val_fraction=0.2, image_size=8))
    assert data.class_names == ("cat", "dog")
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 6, "val": 2, "test": 2}
    labels = torch.cat([s.labels for s in data.splits.values()])
    assert sorted(labels.tolist()) == [0] * 6 + [1] * 4
    again = load_dataset(cfg(tmp_path, dataset="folder", test_fraction=0.2, val_fraction=0.2, image_size=8))
    assert torch.equal(data.splits["test"].images, again.splits["test"].images)


def test_folder_with_split_folders_is_official(tmp_path):
    for split, n in (("train", 3), ("valid", 1), ("test", 2)):
        (tmp_path / split / "x").mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8)).save(tmp_path / split / "x" / f"{i}.jpg")
    data = load_dataset(cfg(tmp_path, dataset="folder"))
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 3, "val": 1, "test": 2}
    assert data.notes["official_split"] is True


def test_folder_needs_data_root():
    with pytest.raises(UserError, match="--data-root: --dataset folder needs"):
        load_dataset(DataConfig(dataset="folder"))


def test_folder_without_images_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(UserError, match=r"'folder': no images in .*\.jpg"):
        load_dataset(cfg(tmp_path, dataset="folder"))


def test_folder_missing(tmp_path):
    with pytest.raises(UserError, match=r"'folder' not found: tried .*nope \(no such folder\)"):
        load_dataset(cfg(tmp_path / "nope", dataset="folder"))


def test_folder_garbage_file_named_then_counted(tmp_path):
    write_mixed_folder(tmp_path)
    (tmp_path / "zz_broken.png").write_bytes(b"this is not a png")
    with pytest.raises(UserError, match=r"cannot read image .*zz_broken.png.*--skip-bad"):
        load_dataset(cfg(tmp_path, dataset="folder"))
    data = load_dataset(cfg(tmp_path, dataset="folder", skip_bad=True, test_fraction=0.0))
    assert len(data.splits["train"]) == 6 and len(data.notes["skipped"]) == 1


def test_folder_all_bad_with_skip_is_an_error(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"nope")
    with pytest.raises(UserError, match="train split is empty"):
        load_dataset(cfg(tmp_path, dataset="folder", skip_bad=True, test_fraction=0.0))


# --- bitmoji ------------------------------------------------------------------------------------------


def test_bitmoji_flat_folder_square_crop(tmp_path):
    d = tmp_path / "bitmojis"
    d.mkdir()
    for i in range(5):
        img = Image.new("RGBA", (40, 30), (0, 0, 0, 255))
        img.paste((0, 200, 0, 255), (5, 0, 35, 30))  # the centred 30 x 30 square is green
        img.save(d / f"{i}.png")
    (d / "attributes.csv").write_text("image_id,is_male\n")
    data = load_dataset(cfg(tmp_path, dataset="bitmoji", test_fraction=0.2, image_size=16))
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 4, "test": 1}
    x = data.splits["train"].images
    assert x.shape == (4, 3, 16, 16)
    assert x[:, 1].min() >= 195 and x[:, 0].max() <= 5  # black sides cropped away


def test_bitmoji_missing_and_empty(tmp_path):
    with pytest.raises(UserError, match=r"'bitmoji' not found: tried .*bitmojis .*Kaggle 'bitmojis'"):
        load_dataset(cfg(tmp_path, dataset="bitmoji"))
    (tmp_path / "bitmojis").mkdir()
    with pytest.raises(UserError, match="'bitmoji': no images in"):
        load_dataset(cfg(tmp_path, dataset="bitmoji"))
