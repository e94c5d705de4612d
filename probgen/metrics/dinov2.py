"""DINOv2 ViT features for FD_DINOv2 (Stein et al. 2023, "Exposing flaws of generative model evaluation
metrics and their unfair treatment of diffusion models", the dgm-eval library).

The network is timm's ``vit_large_patch14_dinov2`` (the field's implementation of the architecture),
built at 224 px and filled from the OFFICIAL checkpoint ``dinov2_vitl14_pretrain.pth``
(facebookresearch/dinov2 key names), read from a local file only: ``--dinov2-weights``,
``$PROBGEN_DINOV2_WEIGHTS``, or the torch hub cache where ``torch.hub.load('facebookresearch/dinov2',
'dinov2_vitl14')`` would have stored it. Nothing is downloaded.

The official names equal timm's for the plain ViT-S/B/L checkpoints except ``mask_token`` (masked
pre-training only; dropped, as timm's ``_convert_dinov2`` does). The checkpoint's position embedding is
for 518 px (37 x 37 patches); it is resized to 224 px (16 x 16) once at load, exactly as the official
``interpolate_pos_encoding`` does at every forward (bicubic, no antialiasing, scale factor
(16 + 0.1) / 37), so the features equal the official model's on 224 px inputs.

Preprocessing as dgm-eval's ``DINOv2Encoder``: RGB, resize to 224 x 224 (default ``pil-bicubic``:
torchvision's ``Resize((224, 224), BICUBIC)`` on a PIL image, dgm-eval's default; ``--resize clean`` is
its ``clean_resize``), scale to [0, 1], ImageNet mean and std. The feature is the CLS token after the
final LayerNorm (``x_norm_clstoken``, what the hub model returns), 1024-d for ViT-L/14.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from probgen.errors import UserError
from probgen.metrics.features import FeatureNet, find_weights
from probgen.metrics.images import RESIZE_MODES, describe_resize, resize_images, to_rgb

ENV_DINOV2 = "PROBGEN_DINOV2_WEIGHTS"
DINOV2_NAME = "dinov2-vitl14"
#: arch -> (timm model name, official checkpoint file, feature width). ViT-L/14 is what FD_DINOv2 means;
#: ViT-S/14 shares every code path (tests, quick checks) but its numbers are not FD_DINOv2.
ARCHS = {
    "vitl14": ("vit_large_patch14_dinov2", "dinov2_vitl14_pretrain.pth", 1024),
    "vits14": ("vit_small_patch14_dinov2", "dinov2_vits14_pretrain.pth", 384),
}
INPUT_SIZE = 224
PATCH = 14
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_INTERPOLATE_OFFSET = 0.1  # the official model's "historical kludge" (dinov2/models/vision_transformer.py)


def find_dinov2_weights(path: str | os.PathLike[str] | None = None, arch: str = "vitl14") -> Path:
    """The official DINOv2 checkpoint: ``path``, else ``$PROBGEN_DINOV2_WEIGHTS``, else the hub cache.

    Raises:
        UserError: the named file does not exist, or none was found (the message says where to put it).
    """
    filename = ARCHS[arch][1]
    url = f"https://dl.fbaipublicfiles.com/dinov2/dinov2_{arch}/{filename}"
    return find_weights(path, "--dinov2-weights", ENV_DINOV2, filename, url, f"DINOv2 {arch} weights")


def official_pos_embed(pos_embed: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """The official checkpoint's position embedding (1, 1 + M*M, D) resized for ``size`` px inputs.

    The same operation as ``DinoVisionTransformer.interpolate_pos_encoding`` (bicubic, no
    antialiasing, ``scale_factor = (size // 14 + 0.1) / M``), done once instead of at every forward.
    """
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:].float()
    m = math.isqrt(patch_pos.shape[1])
    if m * m != patch_pos.shape[1]:
        raise ValueError(f"position embedding of {patch_pos.shape[1]} patches is not a square grid")
    w0 = size // PATCH
    if w0 == m:
        return pos_embed
    scale = (w0 + _INTERPOLATE_OFFSET) / m
    grid = patch_pos.reshape(1, m, m, -1).permute(0, 3, 1, 2)  # (1, D, M, M)
    grid = F.interpolate(grid, mode="bicubic", antialias=False, scale_factor=(scale, scale))
    if tuple(grid.shape[-2:]) != (w0, w0):
        raise ValueError(f"resized position grid is {tuple(grid.shape[-2:])}, expected ({w0}, {w0})")
    patch_pos = grid.permute(0, 2, 3, 1).reshape(1, w0 * w0, -1).to(pos_embed.dtype)
    return torch.cat([cls_pos, patch_pos], dim=1)


def official_to_timm(state: dict[str, torch.Tensor], size: int = INPUT_SIZE) -> dict[str, torch.Tensor]:
    """An official DINOv2 state dict (facebookresearch/dinov2 names) -> timm's ViT built at ``size`` px.

    Drops ``mask_token`` and resizes ``pos_embed`` (:func:`official_pos_embed`); every other name is
    shared (``blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}``,
    ``patch_embed.proj``, ``cls_token``, ``norm``). Checkpoints saved with ``block_chunks > 0``
    (``blocks.C.N.``) are flattened; SwiGLU (ViT-g) and register checkpoints are refused.
    """
    out = {}
    for k, v in state.items():
        if k == "mask_token":
            continue
        if k == "register_tokens" or ".mlp.w12." in k:
            raise UserError("--dinov2-weights: only plain ViT-S/B/L checkpoints are supported (no ViT-g, no registers)")
        parts = k.split(".")
        if parts[0] == "blocks" and len(parts) > 2 and parts[2].isdigit():  # blocks.<chunk>.<i>.…
            k = ".".join(["blocks", *parts[2:]])
        out[k] = v
    if "pos_embed" in out:
        out["pos_embed"] = official_pos_embed(out["pos_embed"], size)
    return out


def timm_dinov2(arch: str = "vitl14", size: int = INPUT_SIZE) -> torch.nn.Module:
    """timm's DINOv2 ViT (random weights), built for ``size`` px inputs, CLS-token output."""
    try:
        import timm
    except ImportError:
        raise UserError("--features dinov2 needs timm: pip install 'probgen[dinov2]' (or pip install timm)") from None
    return timm.create_model(ARCHS[arch][0], pretrained=False, img_size=size, num_classes=0, global_pool="token")


def _read_official(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unsafe pickle, truncated or foreign file: all the user's to fix
        raise UserError(f"--dinov2-weights: cannot read {path} as plain weights: {str(exc)[:160]}") from None
    if not isinstance(state, dict) or "cls_token" not in state or "patch_embed.proj.weight" not in state:
        raise UserError(f"--dinov2-weights: {path} is not an official DINOv2 state dict (dinov2_vitl14_pretrain.pth)")
    return state


class DINOv2Features(FeatureNet):
    """DINOv2 CLS-token features (N, 1024 for ViT-L/14) of uint8 images; no logits.

    Args:
        weights: the official checkpoint file, or None for random weights (``random_weights=True``:
            benchmarks and tests only).
        resize: how images reach 224 x 224 (:data:`probgen.metrics.images.RESIZE_MODES`).
        arch: ``vitl14`` (FD_DINOv2) or ``vits14`` (the same code on a small network).
    """

    def __init__(
        self, weights: Path | None, resize: str = "pil-bicubic", arch: str = "vitl14", random_weights: bool = False
    ):
        super().__init__()
        if weights is None and not random_weights:
            raise ValueError("pass a weights file, or random_weights=True")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
        state = None if weights is None else official_to_timm(_read_official(weights))  # a bad file fails first
        self.net = timm_dinov2(arch).eval()
        if state is not None:
            missing, unexpected = self.net.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise UserError(
                    f"--dinov2-weights: {weights} does not fit DINOv2 {arch}: missing {missing[:3]}, "
                    f"unexpected {unexpected[:3]}"
                )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255, persistent=False)
        self.name = DINOV2_NAME if arch == "vitl14" else f"dinov2-{arch}"
        self.num_features = ARCHS[arch][2]
        self.resize_mode = resize
        self.resize = describe_resize(resize, INPUT_SIZE)
        self.fingerprint = f"{weights.name}:{weights.stat().st_size}" if weights is not None else f"random-{arch}"
        self.info: dict[str, Any] = {
            "weights": str(weights) if weights is not None else "random (architecture only)",
            "architecture": f"timm {ARCHS[arch][0]} (official DINOv2 keys, position embedding resized to 224 px)",
            "features": "CLS token after the final LayerNorm",
            "preprocessing": f"RGB; resize to {INPUT_SIZE} ({resize}); /255; ImageNet mean {IMAGENET_MEAN} "
            f"and std {IMAGENET_STD} (dgm-eval's DINOv2Encoder)",
        }

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = resize_images(to_rgb(images), INPUT_SIZE, self.resize_mode)  # (N, 3, 224, 224) in [0, 255]
        return self.net((x - self.mean) / self.std), None  # (N, D)


def load_dinov2(
    weights: str | os.PathLike[str] | None = None,
    resize: str = "pil-bicubic",
    arch: str = "vitl14",
    random_weights: bool = False,
) -> DINOv2Features:
    """DINOv2 from a local official checkpoint (see :func:`find_dinov2_weights`), or random weights if asked."""
    path = None if random_weights and not weights else find_dinov2_weights(weights, arch)
    return DINOv2Features(path, resize=resize, arch=arch, random_weights=random_weights)
