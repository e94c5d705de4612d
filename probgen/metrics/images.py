"""Images as the metrics take them: uint8 (N, C, H, W), RGB for the ImageNet networks, and the resize
modes that bring them to a network's input size.

Generators emit floats; :func:`to_uint8` rounds and clamps them. torchmetrics' ``normalize=True``
does ``(x * 255).byte()`` instead, which truncates (0.999 -> 254) and wraps out-of-range values
(1.2 -> 306 -> 50), so probgen never uses it.

Resize modes (Parmar et al. 2022, "On Aliased Resizing and Surprising Subtleties in GAN Evaluation",
clean-fid): the resize changes FID by more than many published gaps, so every number names its mode.

- ``legacy-tf``: torch-fidelity's port of TF1's ``tf.image.resize_bilinear`` (no antialiasing), the
  resize behind published FIDs (clean-fid's ``legacy_tensorflow``);
- ``clean``: PIL's bicubic filter with antialiasing, on float pixels channel by channel, not quantised
  after (clean-fid's ``clean``); computed here by torch's antialiased bicubic, which implements PIL's
  filter (a = -0.5, support widened by the scale when shrinking) and matches PIL to < 0.01 of a grey
  level (tests/metrics/test_images.py);
- ``pil-bicubic``: the same filter on uint8 images, rounded (and clipped) to uint8 after each of its two
  passes, as PIL does (what torchvision's ``Resize(BICUBIC)`` does to a PIL image: dgm-eval's default
  preprocessing for DINOv2); PIL's fixed-point weights move < 1% of pixels by 1-2 grey levels;
- ``legacy-pytorch``: ``F.interpolate(bilinear, align_corners=False)`` without antialiasing
  (pytorch-fid's, clean-fid's ``legacy_pytorch``);
- ``bilinear-antialias``: ``F.interpolate(bilinear, antialias=True)``, torchmetrics 1.9's default (the
  old ``--antialias``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from probgen.errors import UserError

#: Resize mode -> what it is, as each result states it.
RESIZE_MODES = {
    "legacy-tf": "bilinear, no antialiasing (torch-fidelity's TF1-compatible resize, clean-fid legacy_tensorflow)",
    "clean": "PIL bicubic with antialiasing on float pixels (clean-fid clean)",
    "pil-bicubic": "PIL bicubic with antialiasing, rounded to uint8 (torchvision Resize on PIL images; dgm-eval)",
    "legacy-pytorch": "bilinear, no antialiasing (F.interpolate, align_corners=False; clean-fid legacy_pytorch)",
    "bilinear-antialias": "bilinear with antialiasing (F.interpolate antialias=True; torchmetrics 1.9's default)",
}


def describe_resize(mode: str, size: int) -> str:
    """The resize as every result states it: ``"legacy-tf 299: bilinear, no antialiasing (...)"``."""
    return f"{mode} {size}: {RESIZE_MODES[mode]}"


def resize_images(images: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> float32 pixels in [0, 255], (N, C, size, size), by ``mode``.

    An image already ``size`` x ``size`` passes unchanged in every mode (as floats).
    """
    if images.dtype != torch.uint8:
        raise ValueError(f"resize takes uint8 images, got {images.dtype}")
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")
    x = images.float()
    if tuple(x.shape[-2:]) == (size, size):
        return x
    if mode == "legacy-tf":
        from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

        return interpolate_bilinear_2d_like_tensorflow1x(x, size=(size, size), align_corners=False)
    if mode == "clean":
        # PIL clips the float result to the pixel range (clean-fid clips it to [0, 255] as well)
        return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp_(0, 255)
    if mode == "pil-bicubic":
        # PIL's uint8 path is separable with a uint8 image in between: rows first, then columns
        h = x.shape[-2]
        x = F.interpolate(x, size=(h, size), mode="bicubic", align_corners=False, antialias=True)
        x = x.round_().clamp_(0, 255)
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        return x.round_().clamp_(0, 255)
    antialias = mode == "bilinear-antialias"
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)


def to_uint8(images: torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Float images in ``value_range`` -> uint8 in [0, 255] by round-and-clamp; uint8 passes through.

    Args:
        images: (N, C, H, W) floats; values outside ``value_range`` are clamped, not wrapped.
        value_range: the float values that map to 0 and 255, e.g. (0, 1) for VAEs, (-1, 1) for tanh GANs.

    Raises:
        UserError: some pixels are NaN or infinite (the model has diverged).
    """
    if images.dtype == torch.uint8:
        return images
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"value_range must be increasing, got {value_range}")
    x = (images.float() - lo) * (255.0 / (hi - lo))  # (N, C, H, W) in pixel units
    bad = ~torch.isfinite(x)
    if bad.any():
        raise UserError(f"the model produced {int(bad.sum())} non-finite pixel values; it has diverged")
    return x.round_().clamp_(0.0, 255.0).to(torch.uint8)


def to_rgb(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) -> (N, 3, H, W) by repeating the channel; 3-channel images pass through."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W), got {tuple(images.shape)}")
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
