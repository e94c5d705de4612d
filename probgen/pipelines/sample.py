"""`probgen sample`: a grid of samples from any checkpoint kind.

Each model kind registers a sampler factory: ``checkpoint dict, device -> (n, generator) -> images
in [0, 1] (n, C, H, W)``. The evaluation harness uses the same factories.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from probgen.checkpoint import load_checkpoint
from probgen.errors import UserError
from probgen.plots import save_grid
from probgen.utils.device import resolve_device

Sampler = Callable[[int, torch.Generator], torch.Tensor]
SamplerFactory = Callable[[dict[str, Any], torch.device], Sampler]
SAMPLERS: dict[str, SamplerFactory] = {}


def register_sampler(kind: str) -> Callable[[SamplerFactory], SamplerFactory]:
    def deco(fn: SamplerFactory) -> SamplerFactory:
        SAMPLERS[kind] = fn
        return fn

    return deco


@register_sampler("vae")
def _vae_sampler(ckpt: dict[str, Any], device: torch.device) -> Sampler:
    from probgen.pipelines.fit_vae import load_vae

    vae, _ = load_vae(ckpt, device)
    return lambda n, gen: vae.sample(n, generator=gen)


@register_sampler("gan")
def _gan_sampler(ckpt: dict[str, Any], device: torch.device) -> Sampler:
    from probgen.pipelines.fit_gan import generator_sampler, load_generator

    g, cfg, _ = load_generator(ckpt, device)  # the EMA generator when the run kept one
    return generator_sampler(g, cfg.model)


@register_sampler("vaegan")
def _vaegan_sampler(ckpt: dict[str, Any], device: torch.device) -> Sampler:
    return _vae_sampler(ckpt, device)  # its "model" is a plain VAE


@register_sampler("cvae")
def _cvae_sampler(ckpt: dict[str, Any], device: torch.device) -> Sampler:
    """Samples cycle through the classes (0, 1, ..., K-1, 0, ...) within each call."""
    from probgen.pipelines.fit_cvae import load_cvae

    cvae, _ = load_cvae(ckpt, device)
    return lambda n, gen: cvae.sample(n, generator=gen)


@register_sampler("ae")
def _ae_sampler(ckpt: dict[str, Any], device: torch.device) -> Sampler:
    """Decodes draws from the autoencoder's ex-post Gaussian of its codes."""
    from probgen.pipelines.fit_ae import load_autoencoder

    ae, _ = load_autoencoder(ckpt, device)
    return lambda n, gen: ae.sample(n, generator=gen)


def load_sampler(ckpt_path: str | Path, device: torch.device) -> tuple[Sampler, dict[str, Any]]:
    """The sampler of the model in a checkpoint of any registered kind, and the checkpoint itself."""
    ckpt = load_checkpoint(ckpt_path, kind=tuple(SAMPLERS))
    return SAMPLERS[ckpt["kind"]](ckpt, device), ckpt


@torch.no_grad()
def sample_images(sampler: Sampler, n: int, seed: int, device: torch.device, batch_size: int = 500) -> torch.Tensor:
    """n samples in [0, 1] on the CPU, drawn in batches from one seeded generator."""
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.cat([sampler(min(batch_size, n - i), gen).cpu() for i in range(0, n, batch_size)])


def sample_grid(ckpt: str | Path, n: int, out: str | Path, nrow: int = 10, seed: int = 0, device: str = "auto") -> Path:
    dev = resolve_device(device)
    sampler, _ = load_sampler(ckpt, dev)
    images = sample_images(sampler, n, seed, dev)
    if images.dim() != 4:
        raise UserError(f"--ckpt: the sampler returned shape {tuple(images.shape)}")
    return save_grid(images, out, nrow=nrow)
