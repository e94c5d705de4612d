"""The VAE as a Pyro model/guide pair (Kingma & Welling 2013), beta through ``poutine.scale``.

Sites: ``"z"`` (latent, event dim 1) and ``"x"`` (observed pixels, event dim 3), both inside
``pyro.plate("data", N, dim=-1)``. ``beta`` scales the latent site in BOTH model and guide: with
TraceMeanField_ELBO the analytic KL takes the guide site's scale, so wrapping only the model would
silently ignore beta.

Parameters live in the ``nn.Module`` and a torch optimizer trains them through Pyro's
``Trace_ELBO()(model, guide)`` module; ``pyro.module`` also names them in the param store, which
training never reads, so several VAEs in one process never share weights by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from probgen.config import FitVAEConfig, VAEConfig
from probgen.models.nets import Decoder, Encoder

if TYPE_CHECKING:
    from probgen.models.registry import LatentModel

LIKELIHOODS = ("bernoulli", "gaussian", "gaussian-learned")


def pixel_dist(params: torch.Tensor, likelihood: str, obs_scale: torch.Tensor | float) -> dist.Distribution:
    """p(x | decoder output) with event dim 3: Bernoulli(logits) or Normal(sigmoid(params), obs_scale), in nats."""
    if likelihood == "bernoulli":
        return dist.Bernoulli(logits=params, validate_args=False).to_event(3)
    return dist.Normal(torch.sigmoid(params), obs_scale).to_event(3)


def resolve_likelihood(cfg: VAEConfig, binary_data: bool) -> str:
    """``auto`` -> bernoulli for binary data, gaussian (fixed scale) otherwise."""
    if cfg.likelihood != "auto":
        return cfg.likelihood
    return "bernoulli" if binary_data else "gaussian"


class VAE(nn.Module):
    """Encoder + decoder with Pyro ``model``/``guide`` methods.

    Args:
        cfg: networks and likelihood; ``cfg.likelihood`` must be resolved (not ``auto``).
        image_shape: (C, H, W) of the data.
        cond_dim: size of a conditioning vector fed to the encoder's output layer and the decoder's
            input (0: unconditional; :class:`~probgen.models.cvae.CVAE` uses it for one-hot labels).
    """

    def __init__(self, cfg: VAEConfig, image_shape: tuple[int, int, int], cond_dim: int = 0):
        super().__init__()
        if cfg.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be resolved to one of {LIKELIHOODS}, got {cfg.likelihood!r}")
        self.cfg = cfg
        self.image_shape = tuple(image_shape)
        self.latent_dim = cfg.latent_dim
        self.encoder = Encoder(cfg, self.image_shape, cond_dim)
        self.decoder = Decoder(cfg, self.image_shape, cond_dim)
        if cfg.likelihood == "gaussian-learned":
            self.log_obs_scale = nn.Parameter(torch.tensor(float(cfg.obs_scale)).log())

    # --- distributions -------------------------------------------------------------------------

    def prior(self, batch_shape: torch.Size | tuple[int, ...], like: torch.Tensor) -> dist.Distribution:
        """p(z) = Normal(0, I), batch ``batch_shape``, event (D,)."""
        zeros = like.new_zeros((*batch_shape, self.latent_dim))
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def obs_scale(self) -> torch.Tensor | float:
        if self.cfg.likelihood == "gaussian-learned":
            return self.log_obs_scale.exp().clamp_min(1e-3)
        return self.cfg.obs_scale

    def obs_dist(self, z: torch.Tensor) -> dist.Distribution:
        """p(x | z) with batch ``z.shape[:-1]`` and event (C, H, W); densities in nats."""
        return pixel_dist(self.decoder(z), self.cfg.likelihood, self.obs_scale())

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, C, H, W) in [0, 1] -> loc, scale of q(z | x), each (N, D)."""
        return self.encoder(x)

    def mean_image(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z] in [0, 1], shape (..., C, H, W)."""
        return torch.sigmoid(self.decoder(z))

    # --- Pyro model and guide -------------------------------------------------------------------

    def model(self, x: torch.Tensor, beta: float = 1.0) -> None:
        pyro.module("decoder", self.decoder)
        if self.cfg.likelihood == "gaussian-learned":
            pyro.module("vae", self)  # registers log_obs_scale too
        with pyro.plate("data", x.shape[0], dim=-1):
            with poutine.scale(scale=beta):
                z = pyro.sample("z", self.prior(x.shape[:1], x))
            pyro.sample("x", self.obs_dist(z), obs=x)

    def guide(self, x: torch.Tensor, beta: float = 1.0) -> None:
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0], dim=-1):
            loc, scale = self.encoder(x)
            with poutine.scale(scale=beta):
                pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # --- generation -----------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n prior samples decoded to mean images in [0, 1], (n, C, H, W)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return self.mean_image(z)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the encoder mean of x; mean images in [0, 1]."""
        loc, _ = self.encode(x)
        return self.mean_image(loc)


# --- the registry's view of the kinds "vae" and "vaegan" (probgen.models.registry) ----------------


def build_vae(cfg: FitVAEConfig, image_shape: tuple[int, int, int]) -> VAE:
    """The untrained VAE of a fit config (a VAE-GAN's VAE too) for images of ``image_shape`` (C, H, W)."""
    return VAE(cfg.model, image_shape)


def vae_from_checkpoint(ckpt: dict[str, Any], cfg: FitVAEConfig) -> VAE:
    """The VAE stored in a loaded ``vae`` or ``vaegan`` checkpoint (a VAE-GAN's without its discriminator)."""
    vae = build_vae(cfg, tuple(ckpt["image_shape"]))
    vae.load_state_dict(ckpt["state"]["model"])
    return vae


def load_vae(ckpt: str | Path | dict[str, Any], device: torch.device | str = "cpu") -> tuple[VAE, FitVAEConfig]:
    """Rebuild a trained VAE (in eval mode) and its config from a checkpoint path or loaded dict.

    Accepts ``vae`` checkpoints and ``vaegan`` ones (whose VAE is used without its discriminator).
    """
    from probgen.models.registry import kinds_where, load_model

    m = load_model(ckpt, device, kinds=kinds_where(lambda k: k.plain_vae), need="a VAE")
    return m.model, m.config


def vae_latent(vae: VAE, cfg: FitVAEConfig) -> LatentModel:
    """Encoder means/scales, decoder means and reconstructions of a VAE (labels ignored)."""
    from probgen.models.registry import LatentModel

    return LatentModel(
        vae.latent_dim,
        lambda x, y: vae.encode(x),
        lambda z, y: vae.mean_image(z),
        lambda x, y: vae.reconstruct(x),
        cfg,
    )
