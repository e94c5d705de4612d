"""Encoder and decoder networks for VAEs: configurable conv stacks (Burgess et al. 2018 by default) and MLPs."""

from __future__ import annotations

import math

import torch
from torch import nn

from probgen.config import VAEConfig
from probgen.errors import UserError


def activation(cfg: VAEConfig) -> nn.Module:
    if cfg.activation == "relu":
        return nn.ReLU()
    if cfg.activation == "leaky_relu":
        return nn.LeakyReLU(cfg.negative_slope)
    return nn.ELU()


def _dropout(cfg: VAEConfig, where: str) -> list[nn.Module]:
    active = cfg.dropout > 0 and (where == "encoder" or cfg.dropout_in == "both")
    return [nn.Dropout(cfg.dropout)] if active else []


def _mlp(sizes: list[int], cfg: VAEConfig, where: str) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), activation(cfg), *_dropout(cfg, where)]
    return layers


def conv_geometry(cfg: VAEConfig, image_shape: tuple[int, int, int]) -> int:
    """Spatial size after the encoder's stride-2 convs; a UserError if the image does not divide."""
    _, h, w = image_shape
    n = len(cfg.conv_channels)
    if h != w or h % (2**n) != 0:
        raise UserError(
            f"--conv-channels: {n} stride-2 layers need square images whose size divides by {2**n}, "
            f"got {h}x{w} (change --image-size or the number of conv layers)"
        )
    return h // 2**n


class Encoder(nn.Module):
    """x (B, C, H, W) in [0, 1] -> (loc, scale) of q(z | x), each (B, D)."""

    def __init__(self, cfg: VAEConfig, image_shape: tuple[int, int, int]):
        super().__init__()
        c, h, w = image_shape
        layers: list[nn.Module] = []
        if cfg.arch == "conv":
            k = cfg.kernel_size
            prev = c
            for ch in cfg.conv_channels:
                layers += [nn.Conv2d(prev, ch, k, stride=2, padding=(k - 1) // 2)]  # halves H for k = 3, 4, 5
                layers += [nn.BatchNorm2d(ch)] if cfg.batch_norm else []
                layers += [activation(cfg), *_dropout(cfg, "encoder")]
                prev = ch
            s = conv_geometry(cfg, image_shape)
            flat = prev * s * s
        else:
            flat = c * h * w
        layers.append(nn.Flatten())
        layers += _mlp([flat, *cfg.hidden_dims], cfg, "encoder")
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cfg.hidden_dims[-1] if cfg.hidden_dims else flat, 2 * cfg.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = self.head(self.body(x)).chunk(2, dim=-1)
        return loc, nn.functional.softplus(raw) + 1e-4


class Decoder(nn.Module):
    """z (..., D) -> pixel parameters (..., C, H, W): Bernoulli logits or Gaussian means (pre-sigmoid)."""

    def __init__(self, cfg: VAEConfig, image_shape: tuple[int, int, int]):
        super().__init__()
        c, h, w = image_shape
        self.image_shape = image_shape
        hidden = list(cfg.hidden_dims)
        mlp = _mlp([cfg.latent_dim, *hidden], cfg, "decoder")
        last = hidden[-1] if hidden else cfg.latent_dim
        if cfg.arch == "conv":
            k = cfg.kernel_size
            s = conv_geometry(cfg, image_shape)
            chans = list(cfg.conv_channels)[::-1]
            self.start = (chans[0], s, s)
            layers: list[nn.Module] = [*mlp, nn.Linear(last, math.prod(self.start)), activation(cfg)]
            layers += [nn.Unflatten(-1, self.start)]
            outs = chans[1:] + [c]
            for i, (a, b) in enumerate(zip(chans, outs)):
                pad, opad = (k - 1) // 2, k % 2  # doubles H for k = 3, 4, 5
                layers.append(nn.ConvTranspose2d(a, b, k, stride=2, padding=pad, output_padding=opad))
                if i < len(outs) - 1:
                    layers += [nn.BatchNorm2d(b)] if cfg.batch_norm else []
                    layers += [activation(cfg), *_dropout(cfg, "decoder")]
        else:
            layers = [*mlp, nn.Linear(last, c * h * w), nn.Unflatten(-1, (c, h, w))]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[:-1]
        out = self.body(z.reshape(-1, z.shape[-1]))  # conv layers need one batch dim
        return out.reshape(*batch, *self.image_shape)
