"""Images as the metrics take them: uint8 (N, C, H, W), RGB for Inception.

Generators emit floats; :func:`to_uint8` rounds and clamps them. torchmetrics' ``normalize=True``
does ``(x * 255).byte()`` instead, which truncates (0.999 -> 254) and wraps out-of-range values
(1.2 -> 306 -> 50), so probgen never uses it.
"""

from __future__ import annotations

import torch

from probgen.errors import UserError

#: How Inception's input is resized to 299 x 299, by the ``antialias`` option.
RESIZE_MODES = {
    False: "bilinear-tf1 299 (antialias=False, torch-fidelity's TF-compatible resize)",
    True: "bilinear-antialias 299 (antialias=True)",
}


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
