"""`probgen sample`: a grid of samples from any checkpoint kind.

Each model kind's sampler (``(n, generator) -> images in [0, 1] (n, C, H, W)``) comes from the model
registry (:mod:`probgen.models.registry`); the evaluation harness uses the same samplers. Nothing
here imports a training pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from probgen.errors import UserError
from probgen.models.registry import Sampler, load_model
from probgen.plots import save_grid
from probgen.utils.device import resolve_device


def load_sampler(ckpt_path: str | Path, device: torch.device) -> tuple[Sampler, dict[str, Any]]:
    """The sampler of the model in a checkpoint of any registered kind, and the checkpoint itself."""
    m = load_model(ckpt_path, device)
    return m.sampler(), m.checkpoint


@torch.no_grad()
def sample_images(sampler: Sampler, n: int, seed: int, device: torch.device, batch_size: int = 500) -> torch.Tensor:
    """n samples in [0, 1] on the CPU, drawn in batches from one seeded generator."""
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.cat([sampler(min(batch_size, n - i), gen).cpu() for i in range(0, n, batch_size)])


def sample_grid(ckpt: str | Path, n: int, out: str | Path, nrow: int = 10, seed: int = 0, device: str = "auto") -> Path:
    """Write ``n`` samples of the checkpoint's model as a PNG grid of ``nrow`` per row; returns the path."""
    dev = resolve_device(device)
    sampler, _ = load_sampler(ckpt, dev)
    images = sample_images(sampler, n, seed, dev)
    if images.dim() != 4:
        raise UserError(f"--ckpt: the sampler returned shape {tuple(images.shape)}")
    return save_grid(images, out, nrow=nrow)
