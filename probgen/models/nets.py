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


def conv_layers(cfg: VAEConfig, in_channels: int, where: str = "encoder") -> list[nn.Module]:
    """The stride-2 conv stack of ``cfg.conv_channels``: each halves H and W (for k = 3, 4, 5)."""
    k = cfg.kernel_size
    layers: list[nn.Module] = []
    prev = in_channels
    for ch in cfg.conv_channels:
        layers += [nn.Conv2d(prev, ch, k, stride=2, padding=(k - 1) // 2)]
        layers += [nn.BatchNorm2d(ch)] if cfg.batch_norm else []
        layers += [activation(cfg), *_dropout(cfg, where)]
        prev = ch
    return layers


def deconv_layers(cfg: VAEConfig, out_channels: int, where: str = "decoder") -> list[nn.Module]:
    """The mirrored transposed-conv stack, from ``conv_channels[-1]`` to ``out_channels``, each doubling
    H and W; the last layer has no normalisation or activation (the likelihood reads its output)."""
    k = cfg.kernel_size
    chans = list(cfg.conv_channels)[::-1]
    outs = chans[1:] + [out_channels]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(chans, outs)):
        pad, opad = (k - 1) // 2, k % 2  # doubles H for k = 3, 4, 5
        layers.append(nn.ConvTranspose2d(a, b, k, stride=2, padding=pad, output_padding=opad))
        if i < len(outs) - 1:
            layers += [nn.BatchNorm2d(b)] if cfg.batch_norm else []
            layers += [activation(cfg), *_dropout(cfg, where)]
    return layers


def encoder_trunk(cfg: VAEConfig, image_shape: tuple[int, int, int]) -> tuple[list[nn.Module], int]:
    """Conv stack (``arch=conv``), flatten and the hidden MLP; returns the layers and their output width."""
    c, h, w = image_shape
    layers: list[nn.Module] = []
    if cfg.arch == "conv":
        layers += conv_layers(cfg, c, "encoder")
        s = conv_geometry(cfg, image_shape)
        flat = cfg.conv_channels[-1] * s * s
    else:
        flat = c * h * w
    layers.append(nn.Flatten())
    layers += _mlp([flat, *cfg.hidden_dims], cfg, "encoder")
    return layers, (cfg.hidden_dims[-1] if cfg.hidden_dims else flat)


class Encoder(nn.Module):
    """x (B, C, H, W) in [0, 1] -> (loc, scale) of q(z | x), each (B, D).

    With ``cond_dim`` > 0, a conditioning vector (B, cond_dim) (a one-hot label) is concatenated to
    the trunk's features before the output layer: q(z | x, y).
    """

    def __init__(self, cfg: VAEConfig, image_shape: tuple[int, int, int], cond_dim: int = 0):
        super().__init__()
        layers, width = encoder_trunk(cfg, image_shape)
        self.cond_dim = cond_dim
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width + cond_dim, 2 * cfg.latent_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        if self.cond_dim:
            if cond is None:
                raise ValueError("this encoder is conditional: pass cond (B, cond_dim)")
            h = torch.cat([h, cond.to(h.dtype)], dim=-1)
        loc, raw = self.head(h).chunk(2, dim=-1)
        return loc, nn.functional.softplus(raw) + 1e-4


class Decoder(nn.Module):
    """z (..., D + cond_dim) -> pixel parameters (..., C, H, W): Bernoulli logits or Gaussian means (pre-sigmoid).

    A conditional decoder (``cond_dim`` > 0) takes z concatenated with the conditioning vector.
    """

    def __init__(self, cfg: VAEConfig, image_shape: tuple[int, int, int], cond_dim: int = 0):
        super().__init__()
        c, h, w = image_shape
        self.image_shape = image_shape
        hidden = list(cfg.hidden_dims)
        mlp = _mlp([cfg.latent_dim + cond_dim, *hidden], cfg, "decoder")
        last = hidden[-1] if hidden else cfg.latent_dim + cond_dim
        if cfg.arch == "conv":
            s = conv_geometry(cfg, image_shape)
            self.start = (cfg.conv_channels[-1], s, s)
            layers: list[nn.Module] = [*mlp, nn.Linear(last, math.prod(self.start)), activation(cfg)]
            layers += [nn.Unflatten(-1, self.start), *deconv_layers(cfg, c, "decoder")]
        else:
            layers = [*mlp, nn.Linear(last, c * h * w), nn.Unflatten(-1, (c, h, w))]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[:-1]
        out = self.body(z.reshape(-1, z.shape[-1]))  # conv layers need one batch dim
        return out.reshape(*batch, *self.image_shape)
