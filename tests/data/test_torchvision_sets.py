"""MNIST, CIFAR-10 and CelebA fixtures in their official formats, read through the real loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probgen.config import DataConfig
from probgen.data import load_dataset
from probgen.data.fixtures import write_cifar, write_idx, write_mnist
from probgen.errors import UserError


def cfg(root, **kw) -> DataConfig:
    return DataConfig(data_root=str(root), **kw)


# --- MNIST ------------------------------------------------------------------------------------------


def test_mnist_reads_idx_files_exactly(mnist_root):
    root, arrays = mnist_root
    data = load_dataset(cfg(root, dataset="mnist"))
    assert list(data.splits) == ["train", "test"]
    for split in ("train", "test"):
        images, labels = arrays[split]
        s = data.splits[split]
        assert s.images.shape == (len(images), 1, 28, 28) and s.images.dtype == torch.uint8
        assert torch.equal(s.images[:, 0], torch.from_numpy(images))
        assert torch.equal(s.labels, torch.from_numpy(labels).long())
    assert data.image_shape == (1, 28, 28)
    assert not data.binary
    assert data.class_names == tuple("0123456789")
    assert "MNIST" in data.source


def test_mnist_under_dataset_subfolder(tmp_path):
    write_mnist(tmp_path / "data" / "mnist")
    data = load_dataset(cfg(tmp_path / "data", dataset="mnist"))
    assert len(data.splits["train"]) == 30


def test_mnist_limit_shares_official_split_and_val_carved_from_train(mnist_root):
    root, _ = mnist_root
    data = load_dataset(cfg(root, dataset="mnist", limit=20, val_fraction=0.2))
    # 20 of 40 images: train 30 -> 15, test 10 -> 5; val = round(0.2 * 15) = 3 from train
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 12, "val": 3, "test": 5}
    again = load_dataset(cfg(root, dataset="mnist", limit=20, val_fraction=0.2))
    assert torch.equal(data.splits["val"].images, again.splits["val"].images)
    other = load_dataset(cfg(root, dataset="mnist", limit=20, val_fraction=0.2, split_seed=1))
    assert not torch.equal(data.splits["train"].images, other.splits["train"].images)


def test_mnist_resize_and_channels(mnist_root):
    root, _ = mnist_root
    data = load_dataset(cfg(root, dataset="mnist", image_size=32, channels=3))
    x = data.splits["train"].images
    assert x.shape == (30, 3, 32, 32)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])


def test_mnist_static_binarisation_thresholds_at_half(mnist_root):
    root, arrays = mnist_root
    data = load_dataset(cfg(root, dataset="mnist", binarize="static"))
    expect = torch.from_numpy((arrays["train"][0] >= 128).astype(np.uint8) * 255)
    assert torch.equal(data.splits["train"].images[:, 0], expect)
    assert data.binary


def test_mnist_dynamic_binarisation_keeps_train_grey_and_fixes_test(mnist_root):
    root, arrays = mnist_root
    data = load_dataset(cfg(root, dataset="mnist", binarize="dynamic"))
    assert data.binary and data.notes["binarize"] == "dynamic"
    assert torch.equal(data.splits["train"].images[:, 0], torch.from_numpy(arrays["train"][0]))
    test = data.splits["test"].images
    assert set(test.unique().tolist()) <= {0, 255}
    again = load_dataset(cfg(root, dataset="mnist", binarize="dynamic"))
    assert torch.equal(test, again.splits["test"].images)  # one seeded draw
    # the draw follows the intensities: pixels at 0 stay off, pixels at 255 stay on
    grey = torch.from_numpy(arrays["test"][0])
    assert (test[:, 0][grey == 0] == 0).all() and (test[:, 0][grey == 255] == 255).all()


def test_mnist_missing_names_paths_and_layout(tmp_path):
    with pytest.raises(UserError) as exc:
        load_dataset(cfg(tmp_path / "nowhere", dataset="mnist"))
    msg = str(exc.value)
    assert "'mnist' not found" in msg and str(tmp_path / "nowhere") in msg and "train-images-idx3-ubyte" in msg
    assert "\n" not in msg


def test_mnist_partial_files_listed(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match="missing MNIST/raw/t10k-labels-idx1-ubyte"):
        load_dataset(cfg(tmp_path, dataset="mnist"))


def test_mnist_corrupt_idx_names_the_file(mnist_root):
    root, _ = mnist_root
    bad = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 7)  # header cut short
    with pytest.raises(UserError, match="train-images-idx3-ubyte"):
        load_dataset(cfg(root, dataset="mnist"))


def test_mnist_label_count_mismatch(mnist_root):
    root, _ = mnist_root
    write_idx(root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.zeros(9, dtype=np.uint8))
    with pytest.raises(UserError, match="10 images but 9 labels"):
        load_dataset(cfg(root, dataset="mnist"))


def test_binarize_only_for_mnist(cifar_root):
    root, _ = cifar_root
    with pytest.raises(UserError, match="--binarize: only mnist"):
        load_dataset(cfg(root, dataset="cifar10", binarize="static"))


# --- CIFAR-10 -----------------------------------------------------------------------------------------


def test_cifar10_reads_pickled_batches_exactly(cifar_root):
    root, arrays = cifar_root
    data = load_dataset(cfg(root, dataset="cifar10"))
    for split in ("train", "test"):
        raw, labels = arrays[split]
        s = data.splits[split]
        assert s.images.shape == (len(raw), 3, 32, 32)
        assert torch.equal(s.images.reshape(len(raw), -1), torch.from_numpy(raw))  # R, G, B planes
        assert s.labels.tolist() == labels
    assert len(data.splits["train"]) == 20 and len(data.splits["test"]) == 6
    assert data.class_names[0] == "airplane" and len(data.class_names) == 10


def test_cifar10_grey_and_resized(cifar_root):
    root, _ = cifar_root
    data = load_dataset(cfg(root, dataset="cifar10", channels=1, image_size=16))
    assert data.image_shape == (1, 16, 16)


def test_cifar10_md5_mismatch_is_refused(tmp_path):
    write_cifar(tmp_path)  # torchvision's official md5s cannot match a fixture
    with pytest.raises(UserError, match=r"data_batch_1.*md5 differs from the official release"):
        load_dataset(cfg(tmp_path, dataset="cifar10"))


def test_cifar10_truncated_batch_is_refused(cifar_root):
    root, _ = cifar_root
    path = root / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match=r"data_batch_3: md5 differs"):
        load_dataset(cfg(root, dataset="cifar10"))


def test_cifar10_missing(tmp_path):
    with pytest.raises(UserError, match=r"'cifar10' not found: tried .*cifar-10-batches-py"):
        load_dataset(cfg(tmp_path, dataset="cifar10"))


# --- CelebA -------------------------------------------------------------------------------------------


def test_celeba_official_partition_crop_and_attributes(celeba_root, caplog):
    root, attrs = celeba_root
    data = load_dataset(cfg(root, dataset="celeba"))
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 6, "val": 2, "test": 3}
    assert data.image_shape == (3, 64, 64)
    assert len(data.factor_names) == 40 and data.factor_names[0] == "Attr_0"
    assert torch.equal(data.splits["train"].factor_classes, torch.from_numpy(attrs[:6]))
    assert torch.equal(data.splits["test"].factor_classes, torch.from_numpy(attrs[8:]))
    # the centred 148 x 148 crop is one flat colour (the black border is cut away)
    img = data.splits["train"].images[2].float()
    expect = torch.tensor([80.0, 180.0, 128.0])[:, None, None]
    assert (img - expect).abs().max() <= 4
    assert "unverified" in data.source  # fixture annotation files are not the official ones


def test_celeba_limit_and_size(celeba_root):
    root, _ = celeba_root
    data = load_dataset(cfg(root, dataset="celeba", limit=5, image_size=32))
    assert sum(len(v) for v in data.splits.values()) == 5
    assert all(len(v) >= 1 for v in data.splits.values())
    assert data.image_shape == (3, 32, 32)


def test_celeba_folder_given_directly(celeba_root):
    root, _ = celeba_root
    data = load_dataset(cfg(root / "celeba", dataset="celeba"))
    assert len(data.splits["val"]) == 2


def test_celeba_missing_annotation_named(celeba_root):
    root, _ = celeba_root
    (root / "celeba" / "identity_CelebA.txt").unlink()
    with pytest.raises(UserError, match=r"'celeba' not found: tried .*missing identity_CelebA.txt"):
        load_dataset(cfg(root, dataset="celeba"))


def test_celeba_missing_image_named_or_skipped(celeba_root):
    root, attrs = celeba_root
    (root / "celeba" / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(UserError, match="000002.jpg"):
        load_dataset(cfg(root, dataset="celeba"))
    data = load_dataset(cfg(root, dataset="celeba", skip_bad=True))
    assert len(data.splits["train"]) == 5 and len(data.notes["skipped"]) == 1
    keep = [0, 2, 3, 4, 5]
    assert torch.equal(data.splits["train"].factor_classes, torch.from_numpy(attrs[keep]))


def test_celeba_annotation_index_is_cached(celeba_root, monkeypatch):
    import probgen.data.torchvision_sets as tvs

    root, _ = celeba_root
    first = load_dataset(cfg(root, dataset="celeba"))

    def no_parse(*a, **k):
        raise AssertionError("annotation files parsed again")

    monkeypatch.setattr(tvs, "_CelebAFolder", no_parse)
    again = load_dataset(cfg(root, dataset="celeba"))
    assert torch.equal(first.splits["test"].factor_classes, again.splits["test"].factor_classes)
    path = root / "celeba" / "list_eval_partition.txt"
    path.write_text(path.read_text().replace(" 2\n", " 1\n"))  # a changed file is parsed again
    with pytest.raises(AssertionError, match="parsed again"):
        load_dataset(cfg(root, dataset="celeba"))


def test_celeba_bad_partition_file(celeba_root):
    root, _ = celeba_root
    path = root / "celeba" / "list_eval_partition.txt"
    path.write_text(path.read_text().replace(" 2\n", " 7\n"))
    with pytest.raises(UserError, match=r"list_eval_partition.txt: expected lines"):
        load_dataset(cfg(root, dataset="celeba"))
