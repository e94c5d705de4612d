"""Image-tensor transforms shared by the loaders (torchvision does the work)."""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as TF


def resize_uint8(images: torch.Tensor, size: int, antialias: bool = True) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) images to (N, C, size, size) with bilinear interpolation."""
    if images.shape[-2:] == (size, size):
        return images
    return TF.resize(images, [size, size], antialias=antialias)


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) with C in {1, 3} -> (N, channels, H, W): grey is replicated, colour becomes
    ITU-R 601-2 luma (torchvision's ``rgb_to_grayscale``)."""
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        return TF.rgb_to_grayscale(images)
    raise ValueError(f"cannot convert {c} channels to {channels}")


def binarize_static(images: torch.Tensor) -> torch.Tensor:
    """uint8 grey levels -> {0, 255}: a pixel is on when its intensity is >= 0.5 (>= 128)."""
    return (images >= 128).to(torch.uint8) * 255


def binarize_dynamic(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One Bernoulli draw per pixel with p = intensity / 255, as uint8 {0, 255} (Salakhutdinov & Murray 2008).

    Dynamic binarisation calls this afresh each time an image is served for training, so that every
    epoch sees a new binary sample; validation and test keep one fixed seeded draw.
    """
    p = images.float().div_(255.0)
    return torch.bernoulli(p, generator=generator).to(torch.uint8) * 255


def bernoulli_resample(x01: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Float batch in [0, 1] -> a fresh binary sample in {0., 1.}, same device: the training-loop hook of
    ``--binarize dynamic`` (apply it to each training batch after :func:`probgen.data.to_unit`)."""
    return torch.bernoulli(x01, generator=generator)
