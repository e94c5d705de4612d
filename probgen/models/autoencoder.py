"""A plain (deterministic) convolutional autoencoder: the baseline "without a bottleneck" of R2.

No latent sampling and no KL: x -> encoder -> code -> decoder -> pixel parameters, trained on
-log p(x | decoder(encoder(x))) with the VAE's likelihoods (Bernoulli: binary cross-entropy summed
over pixels; Gaussian: squared error / (2 sigma^2) plus its normaliser, in nats), so its loss is on
the same scale as a VAE's reconstruction term.

``bottleneck=False``: the VAE's conv stack and its mirror, nothing in between (the code is the last
feature map). ``bottleneck=True``: the VAE's encoder trunk, a linear layer to ``latent_dim`` units
and the VAE's decoder, i.e. a VAE without noise or KL.

Sampling: an autoencoder has no prior. After training, :meth:`fit_code_density` fits a diagonal
Gaussian to the codes of the training images (an ex-post density, Ghosh et al. 2020); ``sample``
decodes draws from it. The statistics are buffers, so they travel in the checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from probgen.config import FitAEConfig, VAEConfig
from probgen.errors import UserError
from probgen.models.nets import Decoder, conv_geometry, conv_layers, deconv_layers, encoder_trunk
from probgen.models.vae import LIKELIHOODS, pixel_dist

if TYPE_CHECKING:
    from probgen.models.registry import LatentModel


class Autoencoder(nn.Module):
    """Deterministic encoder/decoder; ``loss(x)`` is the summed reconstruction NLL in nats.

    Args:
        cfg: the networks (conv stack, activation, batch norm, dropout) and the likelihood (resolved).
        image_shape: (C, H, W).
        bottleneck: a linear bottleneck of ``cfg.latent_dim`` units (else purely convolutional).
    """

    def __init__(self, cfg: VAEConfig, image_shape: tuple[int, int, int], bottleneck: bool = False):
        super().__init__()
        if cfg.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be resolved to one of {LIKELIHOODS}, got {cfg.likelihood!r}")
        self.cfg = cfg
        self.image_shape = tuple(image_shape)
        self.bottleneck = bottleneck
        c = image_shape[0]
        if bottleneck:
            layers, width = encoder_trunk(cfg, self.image_shape)
            self.encoder = nn.Sequential(*layers, nn.Linear(width, cfg.latent_dim))
            self.decoder: nn.Module = Decoder(cfg, self.image_shape)
            code_shape: tuple[int, ...] = (cfg.latent_dim,)
        else:
            if cfg.arch != "conv":
                raise UserError("--no-bottleneck: an autoencoder without a bottleneck needs --arch conv")
            s = conv_geometry(cfg, self.image_shape)
            self.encoder = nn.Sequential(*conv_layers(cfg, c, "encoder"))
            self.decoder = nn.Sequential(*deconv_layers(cfg, c, "decoder"))
            code_shape = (cfg.conv_channels[-1], s, s)
        self.code_shape = code_shape
        if cfg.likelihood == "gaussian-learned":
            self.log_obs_scale = nn.Parameter(torch.tensor(float(cfg.obs_scale)).log())
        self.register_buffer("code_mean", torch.zeros(code_shape))
        self.register_buffer("code_std", torch.ones(code_shape))
        self.register_buffer("code_fitted", torch.zeros((), dtype=torch.bool))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, C, H, W) in [0, 1] -> codes (N, *code_shape)."""
        return self.encoder(x)

    def obs_scale(self) -> torch.Tensor | float:
        if self.cfg.likelihood == "gaussian-learned":
            return self.log_obs_scale.exp().clamp_min(1e-3)
        return self.cfg.obs_scale

    def obs_dist(self, code: torch.Tensor) -> torch.distributions.Distribution:
        """p(x | code) with event (C, H, W)."""
        return pixel_dist(self.decoder(code), self.cfg.likelihood, self.obs_scale())

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """-sum_n log p(x_n | decoder(encoder(x_n))), in nats (a scalar)."""
        return -self.obs_dist(self.encode(x)).log_prob(x).sum()

    def mean_image(self, code: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(code))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.mean_image(self.encode(x))

    @torch.no_grad()
    def fit_code_density(self, codes: torch.Tensor) -> None:
        """Fit the diagonal Gaussian of :meth:`sample` to codes (N, *code_shape)."""
        self.code_mean.copy_(codes.mean(0))
        self.code_std.copy_(codes.std(0).clamp_min(1e-6))
        self.code_fitted.fill_(True)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images decoded from the ex-post diagonal Gaussian of the codes, (n, C, H, W) in [0, 1]."""
        if not bool(self.code_fitted):
            raise UserError("--ckpt: this autoencoder's code density was not fitted yet (the run did not finish)")
        eps = torch.randn(n, *self.code_shape, generator=generator, device=self.code_mean.device)
        return self.mean_image(self.code_mean + self.code_std * eps)


# --- the registry's view of the kind "ae" (probgen.models.registry) -------------------------------


def autoencoder_from_checkpoint(ckpt: dict[str, Any], cfg: FitAEConfig) -> Autoencoder:
    """The autoencoder stored in a loaded ``ae`` checkpoint."""
    ae = Autoencoder(cfg.model, tuple(ckpt["image_shape"]), cfg.ae.bottleneck)
    ae.load_state_dict(ckpt["state"]["model"])
    return ae


def load_autoencoder(
    ckpt: str | Path | dict[str, Any], device: torch.device | str = "cpu"
) -> tuple[Autoencoder, FitAEConfig]:
    """Rebuild a trained autoencoder (eval mode) and its config from a checkpoint path or loaded dict."""
    from probgen.models.registry import load_model

    m = load_model(ckpt, device, kinds=("ae",))
    return m.model, m.config


def autoencoder_latent(ae: Autoencoder, cfg: FitAEConfig) -> LatentModel:
    """Reconstructions only: a deterministic code has no posterior to encode or prior to decode from."""
    from probgen.models.registry import LatentModel

    return LatentModel(None, None, None, lambda x, y: ae.reconstruct(x), cfg)
