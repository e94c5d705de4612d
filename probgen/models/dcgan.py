"""DCGAN generator and discriminator (Radford et al. 2015) in plain PyTorch.

Generator: z (N, latent) -> a 4x4 projection (a transposed conv on a 1x1 input, i.e. a dense layer)
-> transposed convs (k4, s2, p1) that double the size and halve the channels up to the image size,
normalisation + ReLU between them, tanh (images in [-1, 1]) or sigmoid ([0, 1]) at the end.
Discriminator: strided convs (k4, s2, p1) that halve the size down to 4x4, LeakyReLU, no
normalisation on the first layer (as in the paper), then a 4x4 conv to one logit per image.
Both sizes of the paper (32 and 64 px) and any other power of two from 16 to 256 are supported.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from probgen.config import FitGANConfig, GANConfig, from_dict
from probgen.errors import UserError


def _check_shape(image_shape: tuple[int, int, int]) -> int:
    c, h, w = image_shape
    if h != w or h < 16 or h > 256 or h & (h - 1):
        raise ValueError(f"DCGAN needs square images of 16 to 256 px, a power of two; got {h}x{w}")
    if c not in (1, 3):
        raise ValueError(f"DCGAN needs 1 or 3 channels, got {c}")
    return int(math.log2(h)) - 2  # stride-2 layers between 4x4 and the image size


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class Generator(nn.Module):
    """z (N, latent_dim) -> images (N, C, H, W) in [-1, 1] (tanh) or [0, 1] (sigmoid)."""

    def __init__(self, cfg: GANConfig, image_shape: tuple[int, int, int]):
        super().__init__()
        n_up = _check_shape(image_shape)
        self.latent_dim = cfg.latent_dim
        self.image_shape = tuple(image_shape)
        bias = cfg.g_norm == "none"  # a bias before a normalisation layer is redundant
        ch = cfg.g_channels * 2 ** (n_up - 1)  # channels at 4x4: ngf*8 at 64 px, ngf*4 at 32 px
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(cfg.latent_dim, ch, 4, 1, 0, bias=bias),  # (N, ch, 4, 4)
            _norm(cfg.g_norm, ch),
            nn.ReLU(inplace=True),
        ]
        for _ in range(n_up - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=bias), _norm(cfg.g_norm, ch // 2), nn.ReLU(True)]
            ch //= 2
        layers.append(nn.ConvTranspose2d(ch, image_shape[0], 4, 2, 1))  # (N, C, H, W)
        layers.append(nn.Tanh() if cfg.output == "tanh" else nn.Sigmoid())
        self.net = nn.Sequential(*layers)
        init_weights(self, cfg.init, "relu")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])  # (N, latent, 1, 1) -> (N, C, H, W)


class Discriminator(nn.Module):
    """images (N, C, H, W) in the generator's range -> logits (N,) of "real"."""

    def __init__(self, cfg: GANConfig, image_shape: tuple[int, int, int]):
        super().__init__()
        n_down = _check_shape(image_shape)
        bias = cfg.d_norm == "none"
        ch = cfg.d_channels
        slope = cfg.leaky_slope
        layers: list[nn.Module] = [nn.Conv2d(image_shape[0], ch, 4, 2, 1), nn.LeakyReLU(slope, True)]
        for _ in range(n_down - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=bias), _norm(cfg.d_norm, ch * 2), nn.LeakyReLU(slope, True)]
            ch *= 2
        layers.append(nn.Conv2d(ch, 1, 4, 1, 0))  # (N, 1, 1, 1)
        self.net = nn.Sequential(*layers)
        init_weights(self, cfg.init, "leaky_relu", slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()  # (N,)


def init_weights(module: nn.Module, scheme: str, nonlinearity: str = "relu", slope: float = 0.0) -> None:
    """``normal``: conv weights N(0, 0.02), norm scales N(1, 0.02) (Radford et al.); ``he``: Kaiming
    normal (fan-in) conv weights, norm scales 1. Biases are zero in both."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            if scheme == "normal":
                nn.init.normal_(m.weight, 0.0, 0.02)
            else:
                nn.init.kaiming_normal_(m.weight, a=slope, nonlinearity=nonlinearity)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            if scheme == "normal":
                nn.init.normal_(m.weight, 1.0, 0.02)
            else:
                nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def sample_latent(
    n: int, cfg: GANConfig, device: torch.device | str = "cpu", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Noise z (n, latent_dim): N(0, I), U[-1, 1] or U[0, 1] by ``cfg.latent_dist``."""
    shape = (n, cfg.latent_dim)
    if cfg.latent_dist == "normal":
        return torch.randn(shape, device=device, generator=generator)
    u = torch.rand(shape, device=device, generator=generator)
    return u * 2 - 1 if cfg.latent_dist == "uniform" else u


def output_range(cfg: GANConfig) -> tuple[float, float]:
    """Pixel range of the generator's output, which is also the range the discriminator sees."""
    return (-1.0, 1.0) if cfg.output == "tanh" else (0.0, 1.0)


# --- the registry's view of the kind "gan" (probgen.models.registry) ------------------------------


def build_gan(cfg: GANConfig, image_shape: tuple[int, int, int]) -> tuple[Generator, Discriminator]:
    """The untrained generator and discriminator for images of ``image_shape`` (C, H, W)."""
    try:
        return Generator(cfg, image_shape), Discriminator(cfg, image_shape)
    except ValueError as exc:
        raise UserError(f"--image-size: {exc} (resize with --image-size 32 or 64)") from None


def _generator_state(ckpt: dict[str, Any], ema: bool) -> tuple[dict[str, Any], str]:
    state = ckpt["state"]
    if ema and "ema" in state:
        return {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}, "ema"
    return state["generator"], "generator"


def generator_from_checkpoint(ckpt: dict[str, Any], cfg: FitGANConfig) -> Generator:
    """The generator of a loaded ``gan`` checkpoint: its EMA copy when the run kept one."""
    g = Generator(cfg.model, tuple(ckpt["image_shape"]))
    g.load_state_dict(_generator_state(ckpt, ema=True)[0])
    return g


def load_generator(
    ckpt: str | Path | dict[str, Any], device: torch.device | str = "cpu", ema: bool = True
) -> tuple[Generator, FitGANConfig, str]:
    """The trained generator (in eval mode), its config, and which one it is ("ema" or "generator")."""
    from probgen.checkpoint import load_checkpoint

    data = ckpt if isinstance(ckpt, dict) else load_checkpoint(ckpt, kind="gan")
    cfg = from_dict(FitGANConfig, data["config"])
    g = Generator(cfg.model, tuple(data["image_shape"]))
    state, which = _generator_state(data, ema)
    g.load_state_dict(state)
    return g.to(device).eval(), cfg, which


def generator_sampler(g: Generator, cfg: GANConfig) -> Callable[[int, torch.Generator], torch.Tensor]:
    """``(n, generator) -> images in [0, 1] (n, C, H, W)``, the sampler contract of `probgen sample`."""
    lo, hi = output_range(cfg)
    device = next(g.parameters()).device

    @torch.no_grad()
    def sample(n: int, gen: torch.Generator) -> torch.Tensor:
        return (g(sample_latent(n, cfg, device, gen)) - lo) / (hi - lo)

    return sample


def gan_sampler(g: Generator, cfg: FitGANConfig) -> Callable[[int, torch.Generator], torch.Tensor]:
    """The registry's sampler of a loaded GAN: :func:`generator_sampler` with the run's model config."""
    return generator_sampler(g, cfg.model)
