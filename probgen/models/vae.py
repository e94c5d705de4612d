"""The VAE as a Pyro model/guide pair (Kingma & Welling 2013), beta through ``poutine.scale``.

Sites: ``"z"`` (latent, event dim 1) and ``"x"`` (observed pixels, event dim 3), both inside
``pyro.plate("data", N, dim=-1)``. ``beta`` scales the latent site in BOTH model and guide: with
TraceMeanField_ELBO the analytic KL takes the guide site's scale, so wrapping only the model would
silently ignore beta.

Parameters live in the ``nn.Module`` and a torch optimizer trains them through Pyro's
``Trace_ELBO()(model, guide)`` module; ``pyro.module`` also names them in the param store, which
training never reads, so several VAEs in one process never share weights by name. Training registers
the networks once (:meth:`VAE.register_once`) instead of on every step: on the small MLP of issue 28
Pyro's per-call registration was about 5% of a step, and nothing in the step reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from torch import nn
from torch.distributions import constraints

from probgen.config import FitVAEConfig, VAEConfig
from probgen.models.nets import Decoder, Encoder

if TYPE_CHECKING:
    from probgen.models.registry import LatentModel

LIKELIHOODS = ("bernoulli", "gaussian", "gaussian-learned")


class BernoulliImage(dist.TorchDistribution):
    """Independent Bernoulli pixels with logits ``logits`` (..., C, H, W); the last ``event_dim`` dims are the event.

    The same distribution as ``dist.Bernoulli(logits=logits).to_event(event_dim)``, with bitwise equal
    ``log_prob`` and ``sample`` (tested), in one object instead of two: the plate's ``expand`` to the
    shape it already has returns it unchanged, and ``log_prob`` is one ``binary_cross_entropy_with_logits``
    and one sum. That halves the Python cost of the likelihood site of an SVI step. Values are not
    validated (as before: images are checked when they are loaded). log_prob in nats.
    """

    arg_constraints = {"logits": constraints.real}
    has_rsample = False

    def __init__(self, logits: torch.Tensor, event_dim: int = 3) -> None:
        self.logits = logits
        n = logits.dim() - event_dim
        super().__init__(logits.shape[:n], logits.shape[n:], validate_args=False)

    @constraints.dependent_property
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.boolean, len(self.event_shape))

    def expand(self, batch_shape: torch.Size | tuple[int, ...], _instance: object = None) -> BernoulliImage:
        """The distribution with batch shape ``batch_shape`` (itself when it already has it)."""
        batch_shape = torch.Size(batch_shape)
        if batch_shape == self.batch_shape:
            return self
        return BernoulliImage(self.logits.expand(batch_shape + self.event_shape), len(self.event_shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """sum over the event of x log sigmoid(l) + (1 - x) log sigmoid(-l); shape broadcast(batch, value batch)."""
        logits = self.logits
        if value.shape != logits.shape:
            logits, value = torch.broadcast_tensors(logits, value)
        lp = -F.binary_cross_entropy_with_logits(logits, value, reduction="none")
        return lp.reshape(lp.shape[: lp.dim() - len(self.event_shape)] + (-1,)).sum(-1)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        """{0, 1} pixels, shape ``sample_shape + batch_shape + event_shape`` (the draws of torch's Bernoulli)."""
        with torch.no_grad():
            return torch.bernoulli(torch.sigmoid(self.logits).expand(self._extended_shape(sample_shape)))

    @property
    def mean(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    @property
    def variance(self) -> torch.Tensor:
        p = torch.sigmoid(self.logits)
        return p * (1 - p)


def pixel_dist(params: torch.Tensor, likelihood: str, obs_scale: torch.Tensor | float) -> dist.Distribution:
    """p(x | decoder output) with event dim 3: Bernoulli(logits) or Normal(sigmoid(params), obs_scale), in nats."""
    if likelihood == "bernoulli":
        return BernoulliImage(params, event_dim=3)
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
        # pyro.module on every model/guide call: param sites in every trace, as pyro.infer.SVI with a
        # Pyro optimiser needs; register_once() turns it off for training with a torch optimiser
        self.register_every_call = True

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

    def register_nets(self, part: str) -> None:
        """``pyro.module`` for the networks of ``part`` ("model": the decoder, "guide": the encoder), when
        :attr:`register_every_call` is on."""
        if not self.register_every_call:
            return
        if part == "guide":
            pyro.module("encoder", self.encoder)
            return
        pyro.module("decoder", self.decoder)
        if self.cfg.likelihood == "gaussian-learned":
            pyro.module("vae", self)  # registers log_obs_scale too

    def register_once(self) -> None:
        """Register the networks in Pyro's param store now, and no more on each model/guide call.

        The store holds the modules' own parameter tensors, so it stays current as they train; traces
        of model and guide then have no ``param`` sites. For training through ``Trace_ELBO()(model,
        guide)`` and a torch optimiser over :meth:`parameters`, which never read them.
        """
        self.register_every_call = True
        self.register_nets("model")
        self.register_nets("guide")
        self.register_every_call = False

    def model(self, x: torch.Tensor, beta: float = 1.0) -> None:
        self.register_nets("model")
        with pyro.plate("data", x.shape[0], dim=-1):
            with poutine.scale(scale=beta):
                z = pyro.sample("z", self.prior(x.shape[:1], x))
            pyro.sample("x", self.obs_dist(z), obs=x)

    def guide(self, x: torch.Tensor, beta: float = 1.0) -> None:
        self.register_nets("guide")
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
