"""dSprites (Matthey et al. 2017): the official ``.npz`` and a procedural renderer of the same factors.

Factors, in the official column order: color (1), shape (square, ellipse, heart), scale (6 values in
[0.5, 1]), orientation (40 values in [0, 2 pi)), posX and posY (32 values each in [0, 1]); 737,280
binary 64x64 images, indexed in row-major order of the factor classes as in the official file.

When the official file is absent, :func:`render` draws the same grid of factors analytically. Its
shapes are not pixel-identical to DeepMind's sprites, so logs and run files name the source.
"""

from __future__ import annotations

import functools
import logging
import math
import zipfile
from pathlib import Path

import numpy as np
import torch

from probgen.config import DataConfig
from probgen.data.base import ImageData, Split, data_root, register, seeded_split
from probgen.errors import UserError

log = logging.getLogger("probgen")

FILENAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
FACTOR_NAMES = ("color", "shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (1, 3, 6, 40, 32, 32)
SHAPES = ("square", "ellipse", "heart")
NUM_IMAGES = math.prod(FACTOR_SIZES)  # 737,280
IMAGE_SIZE = 64

# Geometry of the renderer, in pixels: a shape at scale 1 has half-width 7.68 px (0.12 of the image),
# and its centre moves in 1-px steps over 17..48 in x and y, so every sprite stays inside the frame.
_HALF_WIDTH_PX = 0.12 * IMAGE_SIZE
_CANVAS = IMAGE_SIZE + 32  # each (shape, scale, orientation) is drawn once, centred, then cropped


def factor_values() -> list[torch.Tensor]:
    """The value of each class of each factor, as in the official ``latents_values``."""
    return [
        torch.ones(1),
        torch.arange(1.0, 4.0),
        torch.linspace(0.5, 1.0, 6),
        torch.arange(40) * (2 * math.pi / 40),
        torch.linspace(0.0, 1.0, 32),
        torch.linspace(0.0, 1.0, 32),
    ]


def index_to_classes(index: torch.Tensor) -> torch.Tensor:
    """Flat indices (N,) -> factor classes (N, 6), the official file's ordering."""
    classes = []
    rem = index.long()
    for size in reversed(FACTOR_SIZES):
        classes.append(rem % size)
        rem = rem // size
    return torch.stack(classes[::-1], dim=1)


def classes_to_values(classes: torch.Tensor) -> torch.Tensor:
    """Factor classes (N, 6) -> factor values (N, 6)."""
    vals = factor_values()
    return torch.stack([vals[j][classes[:, j]] for j in range(len(FACTOR_SIZES))], dim=1)


@functools.lru_cache(maxsize=1)
def _centred_sprites() -> torch.Tensor:
    """uint8 (3, 6, 40, 96, 96): every shape x scale x orientation, centred on the canvas."""
    _, shapes, scales, thetas, _, _ = factor_values()
    coord = torch.arange(_CANVAS, dtype=torch.float64) + 0.5 - _CANVAS / 2  # pixel centres
    dy, dx = torch.meshgrid(coord, coord, indexing="ij")  # y points down
    half = (_HALF_WIDTH_PX * scales.double())[None, :, None, None, None]  # (1, 6, 1, 1, 1)
    cos = torch.cos(thetas.double())[None, None, :, None, None]
    sin = torch.sin(thetas.double())[None, None, :, None, None]
    u = (cos * dx + sin * dy) / half  # the pixel in the shape's own frame, (1, 6, 40, 96, 96)
    w = (-sin * dx + cos * dy) / half
    square = torch.maximum(u.abs(), w.abs()) <= 1.0
    ellipse = u**2 + (w / 0.5) ** 2 <= 1.0
    hx, hy = 1.15 * u, -1.15 * w + 0.15  # heart curve (x^2 + y^2 - 1)^3 <= x^2 y^3, pointing down
    heart = (hx**2 + hy**2 - 1) ** 3 - hx**2 * hy**3 <= 0.0
    del shapes
    return torch.cat([square, ellipse, heart], dim=0).to(torch.uint8) * 255


def render(classes: torch.Tensor) -> torch.Tensor:
    """Draw sprites for factor classes (N, 6); returns uint8 (N, 1, 64, 64) with values 0 or 255.

    Deterministic: each pixel is inside or outside the shape, tested at the pixel centre; a
    position is a crop of the centred sprite, so posX/posY move the shape in 1-px steps.
    """
    base = _centred_sprites()
    n = len(classes)
    ar = torch.arange(IMAGE_SIZE)
    out = torch.empty(n, 1, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    for start in range(0, n, 16384):
        c = classes[start : start + 16384]
        rows = (31 - c[:, 5])[:, None] + ar  # (B, 64): posY moves the shape down
        cols = (31 - c[:, 4])[:, None] + ar  # (B, 64): posX moves it right
        sprite = base[c[:, 1], c[:, 2], c[:, 3]]  # (B, 96, 96)
        b = torch.arange(len(c))[:, None, None]
        out[start : start + 16384, 0] = sprite[b, rows[:, :, None], cols[:, None, :]]
    return out


def find_official(cfg: DataConfig) -> Path | None:
    root = data_root(cfg)
    for cand in (root / "dsprites" / FILENAME, root / FILENAME):
        if cand.is_file():
            return cand
    return None


def _load_official(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """imgs (N, 64, 64) in {0, 1}, latents_values (N, 6), latents_classes (N, 6) from the npz."""
    try:
        with np.load(path, allow_pickle=False) as npz:  # 'metadata' is a pickle; never touched
            imgs = npz["imgs"]
            values = npz["latents_values"]
            classes = npz["latents_classes"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"cannot read dSprites file {path}: {type(exc).__name__}: {exc}") from None
    n = imgs.shape[0] if imgs.ndim == 3 else -1
    if (
        imgs.shape[1:] != (64, 64)
        or values.shape != (n, 6)
        or classes.shape != (n, 6)
        or not np.issubdtype(classes.dtype, np.integer)
    ):
        raise UserError(f"{path}: not a dSprites file (imgs {imgs.shape}, latents {values.shape}, {classes.shape})")
    return torch.from_numpy(imgs), torch.from_numpy(values).float(), torch.from_numpy(classes).long()


@register("dsprites")
def load(cfg: DataConfig) -> ImageData:
    """dSprites (Matthey et al. 2017): 64x64 binary shapes with 6 known factors; the official .npz when
    present under the data root, else the procedural renderer; seeded split."""
    path = find_official(cfg)
    if path is not None:
        imgs, values, classes = _load_official(path)
        n = len(imgs)
        source = str(path)
    else:
        n = NUM_IMAGES
        source = f"procedural renderer (official {FILENAME} not found under {data_root(cfg)})"
    idx = seeded_split(n, cfg.test_fraction, cfg.val_fraction, cfg.split_seed, cfg.limit)
    splits: dict[str, Split] = {}
    for name, ind in idx.items():
        ind, _ = ind.sort()  # memory-friendly, deterministic order; training shuffles per epoch
        if path is not None:
            images = (imgs[ind] * 255).unsqueeze(1).to(torch.uint8)
            split = Split(images, factors=values[ind], factor_classes=classes[ind])
        else:
            cls = index_to_classes(ind)
            split = Split(render(cls), factors=classes_to_values(cls), factor_classes=cls)
        splits[name] = split
    log.info("data: dsprites from %s; %s", source, ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    size = cfg.image_size
    if size is not None and size != IMAGE_SIZE:
        from probgen.data.transforms import resize_uint8

        for split in splits.values():
            split.images = (resize_uint8(split.images, size) >= 128).to(torch.uint8) * 255
    if cfg.channels == 3:
        for split in splits.values():
            split.images = split.images.expand(-1, 3, -1, -1).contiguous()
    return ImageData("dsprites", source, splits, binary=True, factor_names=FACTOR_NAMES)
