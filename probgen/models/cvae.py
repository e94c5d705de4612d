"""A conditional VAE (Sohn et al. 2015; Kingma et al. 2014's M2 with observed labels) in Pyro.

Model:  y ~ Categorical(1/K) (observed),  z ~ Normal(0, I),  x ~ p(x | z, y);
guide:  q(z | x, y) = Normal(loc, scale) from the encoder with the one-hot label at its output layer.

Sites: ``"y"`` (observed label), ``"z"`` (event dim 1) and ``"x"`` (event dim 3), all in
``pyro.plate("data", N, dim=-1)``; beta scales ``"z"`` in model and guide as in the VAE. The ELBO
bounds log p(x, y) = log p(x | y) - log K, so the ``recon`` term reported by training includes the
constant log p(y) = -log K. Generation picks the class: :meth:`CVAE.sample` takes labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from probgen.config import FitCVAEConfig, VAEConfig
from probgen.data import ImageData, Split
from probgen.errors import UserError
from probgen.models.vae import VAE

if TYPE_CHECKING:
    from probgen.models.registry import LatentModel


class CVAE(VAE):
    """The VAE's networks and likelihoods, conditioned on a one-hot label of ``num_classes`` classes."""

    def __init__(self, cfg: VAEConfig, image_shape: tuple[int, int, int], num_classes: int):
        if num_classes < 2:
            raise ValueError(f"a conditional VAE needs at least 2 classes, got {num_classes}")
        super().__init__(cfg, image_shape, cond_dim=num_classes)
        self.num_classes = num_classes

    def onehot(self, y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Labels (...,) int -> one-hot (..., K) with ``like``'s dtype and device."""
        return nn.functional.one_hot(y.long(), self.num_classes).to(like)

    def _cond(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """z (..., N, D) and labels (N,) -> decoder input (..., N, D + K), the label broadcast over z's batch."""
        c = self.onehot(y, z).expand(*z.shape[:-1], self.num_classes)
        return torch.cat([z, c], dim=-1)

    # --- distributions -------------------------------------------------------------------------

    def obs_dist(self, z: torch.Tensor, y: torch.Tensor | None = None) -> dist.Distribution:  # type: ignore[override]
        """p(x | z, y), batch ``z.shape[:-1]``, event (C, H, W); y (N,) labels of the last batch dim."""
        if y is None:
            raise ValueError("the conditional VAE needs labels y")
        return super().obs_dist(self._cond(z, y))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        """x (N, C, H, W) in [0, 1] and labels (N,) -> loc, scale of q(z | x, y), each (N, D)."""
        if y is None:
            raise ValueError("the conditional VAE needs labels y")
        return self.encoder(x, self.onehot(y, x))

    def mean_image(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """E[x | z, y] in [0, 1], (..., C, H, W)."""
        if y is None:
            raise ValueError("the conditional VAE needs labels y")
        return torch.sigmoid(self.decoder(self._cond(z, y)))

    # --- Pyro model and guide -------------------------------------------------------------------

    def model(self, x: torch.Tensor, y: torch.Tensor, beta: float = 1.0) -> None:  # type: ignore[override]
        self.register_nets("model")
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("y", dist.Categorical(logits=x.new_zeros(self.num_classes)), obs=y)
            with poutine.scale(scale=beta):
                z = pyro.sample("z", self.prior(x.shape[:1], x))
            pyro.sample("x", self.obs_dist(z, y), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor, beta: float = 1.0) -> None:  # type: ignore[override]
        self.register_nets("guide")
        with pyro.plate("data", x.shape[0], dim=-1):
            loc, scale = self.encode(x, y)
            with poutine.scale(scale=beta):
                pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # --- generation -----------------------------------------------------------------------------

    @torch.no_grad()
    def sample(  # type: ignore[override]
        self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """n samples of the given classes (default: cycling 0, 1, ..., K-1), mean images (n, C, H, W)."""
        device = next(self.parameters()).device
        y = torch.arange(n, device=device) % self.num_classes if labels is None else labels.to(device)
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return self.mean_image(z, y)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        loc, _ = self.encode(x, y)
        return self.mean_image(loc, y)


# --- the registry's view of the kind "cvae" (probgen.models.registry) -----------------------------


def cvae_from_checkpoint(ckpt: dict[str, Any], cfg: FitCVAEConfig) -> CVAE:
    """The conditional VAE stored in a loaded ``cvae`` checkpoint."""
    assert cfg.cvae.num_classes is not None  # resolved when the run started
    cvae = CVAE(cfg.model, tuple(ckpt["image_shape"]), cfg.cvae.num_classes)
    cvae.load_state_dict(ckpt["state"]["model"])
    return cvae


def load_cvae(ckpt: str | Path | dict[str, Any], device: torch.device | str = "cpu") -> tuple[CVAE, FitCVAEConfig]:
    """Rebuild a trained conditional VAE (eval mode) and its config from a checkpoint path or loaded dict."""
    from probgen.models.registry import load_model

    m = load_model(ckpt, device, kinds=("cvae",))
    return m.model, m.config


def cvae_latent(cvae: CVAE, cfg: FitCVAEConfig) -> LatentModel:
    """Encoder, decoder and reconstructions of a conditional VAE, each given the labels y (N,)."""
    from probgen.models.registry import LatentModel

    return LatentModel(
        cvae.latent_dim, cvae.encode, cvae.mean_image, cvae.reconstruct, cfg, cvae.num_classes, cfg.cvae.label_factor
    )


def split_labels(data: ImageData, split: Split, label_factor: str) -> torch.Tensor:
    """The class labels (N,) a conditional VAE conditions on: the split's labels, else a generative factor."""
    if split.labels is not None:
        return split.labels.long()
    if split.factor_classes is None:
        raise UserError(f"--dataset: {data.name!r} has neither labels nor generative factors to condition on")
    if label_factor not in data.factor_names:
        raise UserError(
            f"--label-factor: {data.name!r} has no factor {label_factor!r} (has: {', '.join(data.factor_names)})"
        )
    return split.factor_classes[:, data.factor_names.index(label_factor)].long()
