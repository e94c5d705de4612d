import numpy as np
import torch

from probgen.config import DataConfig
from probgen.data import load_dataset
from probgen.data.dsprites import (
    FACTOR_SIZES,
    FILENAME,
    NUM_IMAGES,
    classes_to_values,
    index_to_classes,
    render,
)


def test_index_ordering_matches_official_layout():
    assert NUM_IMAGES == 737_280
    cls = index_to_classes(torch.tensor([0, 1, 32, 32 * 32, NUM_IMAGES - 1]))
    assert cls[0].tolist() == [0, 0, 0, 0, 0, 0]
    assert cls[1].tolist() == [0, 0, 0, 0, 0, 1]  # posY is the fastest factor
    assert cls[2].tolist() == [0, 0, 0, 0, 1, 0]
    assert cls[3].tolist() == [0, 0, 0, 1, 0, 0]
    assert cls[4].tolist() == [s - 1 for s in FACTOR_SIZES]
    vals = classes_to_values(cls)
    assert vals[4, 2] == 1.0 and vals[0, 2] == 0.5  # scale in [0.5, 1]
    assert vals[4, 4] == 1.0 and vals[0, 5] == 0.0  # positions in [0, 1]
    assert 0 <= vals[:, 3].min() and vals[:, 3].max() < 2 * np.pi


def test_render_is_binary_deterministic_and_shaped():
    idx = torch.randint(0, NUM_IMAGES, (200,), generator=torch.Generator().manual_seed(0))
    a, b = render(index_to_classes(idx)), render(index_to_classes(idx))
    assert a.shape == (200, 1, 64, 64) and a.dtype == torch.uint8
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0, 255}
    assert (a.flatten(1) > 0).sum(1).min() > 10  # every sprite is visible
    # nothing touches the border: sprites stay inside the frame
    edge = torch.cat([a[..., 0, :], a[..., -1, :], a[..., :, 0], a[..., :, -1]], dim=-1)
    assert edge.max() == 0


def _vary(factor: int) -> torch.Tensor:
    base = torch.tensor([0, 1, 3, 5, 10, 20])
    cls = base.repeat(FACTOR_SIZES[factor], 1)
    cls[:, factor] = torch.arange(FACTOR_SIZES[factor])
    return render(cls).flatten(1).float()


def test_every_factor_value_changes_the_image():
    # shape, scale, orientation (up to the square's 4-fold symmetry), posX and posY each give
    # pairwise-distinct images across their values
    for factor in (1, 2, 4, 5):
        imgs = _vary(factor)
        assert torch.cdist(imgs, imgs).add(torch.eye(len(imgs)) * 1e9).min() > 0, factor
    hearts = torch.tensor([[0, 2, 5, o, 16, 16] for o in range(40)])
    imgs = render(hearts).flatten(1).float()
    assert torch.cdist(imgs, imgs).add(torch.eye(40) * 1e9).min() > 0  # a heart has no rotational symmetry


def test_position_moves_mass_centre():
    imgs = _vary(4).view(-1, 64, 64)  # posX
    xs = (imgs.sum(1) * torch.arange(64.0)).sum(1) / imgs.sum((1, 2))
    assert torch.all(xs[1:] > xs[:-1])  # the shape moves right as posX grows
    imgs = _vary(5).view(-1, 64, 64)  # posY
    ys = (imgs.sum(2) * torch.arange(64.0)).sum(1) / imgs.sum((1, 2))
    assert torch.all(ys[1:] > ys[:-1])


def test_procedural_split_is_seeded_and_disjoint(tmp_path):
    cfg = DataConfig(limit=1000, data_root=str(tmp_path), test_fraction=0.2)
    d1, d2 = load_dataset(cfg), load_dataset(cfg)
    assert "procedural" in d1.source
    tr, te = d1.splits["train"], d1.splits["test"]
    assert len(tr) == 800 and len(te) == 200
    assert torch.equal(tr.images, d2.splits["train"].images)
    assert tr.factors.shape == (800, 6) and tr.factor_classes.shape == (800, 6)
    assert torch.equal(render(tr.factor_classes), tr.images)  # factors describe the images
    train_keys = {tuple(r) for r in tr.factor_classes.tolist()}
    assert not train_keys & {tuple(r) for r in te.factor_classes.tolist()}
    other = load_dataset(DataConfig(limit=1000, data_root=str(tmp_path), test_fraction=0.2, split_seed=1))
    assert not torch.equal(other.splits["train"].factor_classes, tr.factor_classes)


def test_official_npz_is_preferred_when_present(tmp_path):
    # a small file in the official format: imgs in {0, 1}, latents_values, latents_classes
    idx = torch.arange(0, NUM_IMAGES, NUM_IMAGES // 50)[:50]
    cls = index_to_classes(idx)
    imgs = (render(cls)[:, 0] // 255).numpy().astype(np.uint8)
    (tmp_path / "dsprites").mkdir()
    np.savez_compressed(
        tmp_path / "dsprites" / FILENAME,
        imgs=imgs,
        latents_values=classes_to_values(cls).numpy().astype(np.float64),
        latents_classes=cls.numpy(),
    )
    data = load_dataset(DataConfig(data_root=str(tmp_path), test_fraction=0.2))
    assert data.source.endswith(FILENAME)
    assert len(data.splits["train"]) == 40 and len(data.splits["test"]) == 10
    x = data.splits["train"].images
    assert x.shape[1:] == (1, 64, 64) and set(x.unique().tolist()) <= {0, 255}
    # images still match their factors after loading
    assert torch.equal(render(data.splits["train"].factor_classes), x)
