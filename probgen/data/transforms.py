"""Image-tensor transforms shared by the loaders (torchvision does the work)."""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as TF


def resize_uint8(images: torch.Tensor, size: int, antialias: bool = True) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) images to (N, C, size, size) with bilinear interpolation."""
    if images.shape[-2:] == (size, size):
        return images
    return TF.resize(images, [size, size], antialias=antialias)
