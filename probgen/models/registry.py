"""Every model kind, known in one place: kind -> fit config class, CLI text, and (resolved lazily,
so that importing the registry stays light) checkpoint loader, sampler and latent view.

Adding a kind touches this table and the kind's own files only: its config (probgen/config/),
its modules (probgen/models/<kind>.py) and its command (probgen/pipelines/fit_<kind>.py, whose
``fit_<kind>(cfg)`` trains it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from probgen.config import FitAEConfig, FitCVAEConfig, FitGANConfig, FitVAEConfig, FitVAEGANConfig
from probgen.errors import UserError

_NO_BETA = ("beta", "beta_schedule", "beta_warmup_steps", "beta_cycle_steps", "elbo")


@dataclass(frozen=True)
class ModelKind:
    """One model kind: what `probgen fit <name>` takes and how its checkpoints are read."""

    name: str  # the checkpoint's "kind" and the `probgen fit` subcommand
    config: type  # the whole config of `probgen fit <name>` (stored in config.json and the checkpoint)
    summary: str  # one line for `probgen fit --help`
    description: str  # the paragraph of `probgen fit <name> --help`
    unused_flags: tuple[str, ...] = ()  # flags of ``config`` this kind ignores (left off its CLI)


KINDS: dict[str, ModelKind] = {
    k.name: k
    for k in (
        ModelKind(
            "vae",
            FitVAEConfig,
            "a VAE as a Pyro model/guide pair, trained by SVI",
            "Train a VAE (Pyro model/guide, SVI with Trace_ELBO, beta via poutine.scale). "
            "Defaults are full training settings for a GPU.",
        ),
        ModelKind(
            "gan",
            FitGANConfig,
            "a DCGAN (Radford et al. 2015) in plain PyTorch",
            "Train a DCGAN (non-saturating loss, Adam) with optional EMA generator, FID/FD evaluation "
            "every K epochs and early stopping. Defaults are full training settings for a GPU.",
        ),
        ModelKind(
            "ae",
            FitAEConfig,
            "a plain (deterministic) convolutional autoencoder baseline",
            "Train an autoencoder on the reconstruction negative log-likelihood of the VAE's likelihood "
            "(no latent sampling, no KL); --bottleneck adds a linear layer of --latent-dim units.",
            unused_flags=_NO_BETA,
        ),
        ModelKind(
            "cvae",
            FitCVAEConfig,
            "a conditional VAE (labels observed in the Pyro model and guide)",
            "Train a conditional VAE: p(x | z, y) p(z) p(y) with observed labels y, guide q(z | x, y). "
            "Datasets without labels use a generative factor (--label-factor, dSprites: shape).",
        ),
        ModelKind(
            "vaegan",
            FitVAEGANConfig,
            "a VAE-GAN: the Pyro VAE plus a discriminator (Larsen et al. 2016)",
            "Train a VAE whose objective adds --gan-weight times a non-saturating adversarial loss from a "
            "discriminator on reconstructions and prior samples.",
        ),
    )
}


def model_kind(name: str) -> ModelKind:
    """The registered kind called ``name``; an unknown name is a UserError listing the kinds."""
    if name not in KINDS:
        raise UserError(f"unknown model kind {name!r} (known: {', '.join(KINDS)})")
    return KINDS[name]


def kind_of_config(cfg: Any) -> ModelKind:
    """The kind whose fit config is exactly ``type(cfg)`` (or ``cfg`` itself when it is a class)."""
    cls = cfg if isinstance(cfg, type) else type(cfg)
    for k in KINDS.values():
        if k.config is cls:
            return k
    raise UserError(f"{cls.__name__} is not the fit config of any model kind ({', '.join(KINDS)})")
