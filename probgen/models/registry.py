"""Every model kind, known in one place: kind -> fit config class, CLI text, the flags it does not
take, what `probgen plot`, `sweep`, `eval` and `loglik` may ask of it, and (resolved lazily, so that
importing the registry stays light) its trainer, checkpoint loader, sampler and latent view.

Adding a kind touches this table and the kind's own files only: its config (probgen/config/),
its modules (probgen/models/<kind>.py) and its trainer (probgen/training/trainers/<kind>.py).
No module outside probgen/models/ names a kind (tests/models/test_registry.py checks it): commands
ask this table instead.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probgen.config import (
    FIGURES,
    FitAEConfig,
    FitCVAEConfig,
    FitGANConfig,
    FitVAEConfig,
    FitVAEGANConfig,
    ObjectiveConfig,
    from_dict,
    leaves,
)
from probgen.errors import UserError

if TYPE_CHECKING:  # torch is imported by the loaders, when a model is loaded
    import torch

#: ``(n, generator) -> images in [0, 1], (n, C, H, W)``: what `probgen sample` and `probgen eval` draw from
Sampler = Callable[[int, "torch.Generator"], "torch.Tensor"]

_NO_BETA = ("beta", "beta_schedule", "beta_warmup_steps", "beta_cycle_steps", "elbo", "particles")
_NO_OBJECTIVE = tuple(leaf.name for leaf in leaves(ObjectiveConfig))  # --objective and its parameters
_VAE_ONLY = ("cuda_graph", "elbo")  # the CUDA-graph step and --elbo iwae are wired for a plain VAE only


@dataclass(frozen=True)
class ModelKind:
    """One model kind: what `probgen fit <name>` takes and how its checkpoints are read."""

    name: str  # the checkpoint's "kind" and the `probgen fit` subcommand
    config: type  # the whole config of `probgen fit <name>` (stored in config.json and the checkpoint)
    summary: str  # one line for `probgen fit --help`
    description: str  # the paragraph of `probgen fit <name> --help`
    # "module:Class" / "module:function" names, imported when first used (so the registry stays light):
    trainer: str = ""  # the Trainer subclass (probgen/training/trainers/<name>.py) that trains it
    loader: str = ""  # (checkpoint dict, config) -> the trained nn.Module, weights loaded
    sampler: str | None = None  # (model, config) -> Sampler; None: ``model.sample(n, generator=gen)``
    latent: str | None = None  # (model, config) -> LatentModel; None: no latent view at all
    # what the commands may ask of it:
    unused_flags: tuple[str, ...] = ()  # leaves of ``config`` it does not take: off its CLI, refused if set
    latent_space: bool = False  # an encoder and a prior (traversals, manifold, latents, disentanglement)
    figures: tuple[str, ...] = ()  # what `probgen plot` draws of it
    model_sections: tuple[str, ...] = ("data", "model")  # config sections a resumed `probgen sweep` keeps
    plain_vae: bool = False  # its checkpoint's "model" state is a plain VAE (``load_vae`` reads it)
    loglik: bool = False  # `probgen loglik` estimates its log-likelihood
    sampled_from: tuple[str, ...] = ()  # the state entries its sampler draws from, first found wins

    def trainer_class(self) -> type:
        """Its Trainer subclass (imports the training code)."""
        return _resolve(self.trainer)

    def check_unused(self, cfg: Any) -> None:
        """A UserError naming the first flag of :attr:`unused_flags` that ``cfg`` sets (Python API,
        config files); the command line does not show them. The message names the kinds that take it."""
        for leaf in leaves(self.config):
            if leaf.name in self.unused_flags and (value := _leaf_value(cfg, leaf)) != leaf.default:
                shown = "" if isinstance(value, bool) else f" {value}"
                takers = [f"`fit {k.name}`" for k in KINDS.values() if _has_leaf(k, leaf.name)]
                raise UserError(
                    f"--{leaf.name.replace('_', '-')}{shown}: only for {' / '.join(takers)} (not `fit {self.name}`)"
                )

    def load(self, ckpt: dict[str, Any], device: torch.device | str = "cpu") -> tuple[Any, Any]:
        """The model (eval mode, on ``device``) and config stored in a loaded checkpoint of this kind."""
        cfg = from_dict(self.config, ckpt["config"])
        return _resolve(self.loader)(ckpt, cfg).to(device).eval(), cfg


@dataclass
class LatentModel:
    """What latent-space figures and metrics need from a model, whatever its kind.

    ``encode(x, y) -> (loc, scale)`` (N, D) each; ``decode(z, y) -> mean images`` (N, C, H, W) in
    [0, 1]; y is the label (N,) for a conditional VAE and ignored otherwise. ``reconstruct(x, y) ->
    images``. ``encode`` and ``decode`` are None for a model without a probabilistic latent space.
    ``label_factor``: the generative factor a conditional model conditions on (None: unconditional).
    ``kind`` is filled in by :meth:`LoadedModel.latent`.
    """

    latent_dim: int | None
    encode: Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]] | None
    decode: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None
    reconstruct: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    config: Any
    num_classes: int | None = None
    label_factor: str | None = None
    kind: str = ""


@dataclass
class LoadedModel:
    """A model rebuilt from its checkpoint: its kind, the module (eval mode), its config and the checkpoint."""

    kind: ModelKind
    model: Any
    config: Any
    checkpoint: dict[str, Any]

    def sampler(self) -> Sampler:
        """``(n, generator) -> images in [0, 1] (n, C, H, W)``, drawn on the model's device."""
        if self.kind.sampler is None:
            model = self.model
            return lambda n, gen: model.sample(n, generator=gen)
        return _resolve(self.kind.sampler)(self.model, self.config)

    def latent(self) -> LatentModel:
        """The model's latent view; a UserError for a kind without one (a GAN)."""
        if self.kind.latent is None:
            raise UserError(f"--ckpt: a {self.kind.name!r} model has no encoder, so no latent-space view")
        view = _resolve(self.kind.latent)(self.model, self.config)
        return dataclasses.replace(view, kind=self.kind.name)


KINDS: dict[str, ModelKind] = {
    k.name: k
    for k in (
        ModelKind(
            "vae",
            FitVAEConfig,
            "a VAE as a Pyro model/guide pair, trained by SVI",
            "Train a VAE (Pyro model/guide, SVI with Trace_ELBO, beta via poutine.scale). "
            "Defaults are full training settings for a GPU.",
            trainer="probgen.training.trainers.vae:VAETrainer",
            loader="probgen.models.vae:vae_from_checkpoint",
            latent="probgen.models.vae:vae_latent",
            latent_space=True,
            figures=FIGURES,
            plain_vae=True,
            loglik=True,
        ),
        ModelKind(
            "gan",
            FitGANConfig,
            "a DCGAN (Radford et al. 2015) in plain PyTorch",
            "Train a DCGAN (non-saturating loss, Adam) with optional EMA generator, FID/FD evaluation "
            "every K epochs and early stopping. Defaults are full training settings for a GPU.",
            unused_flags=("cuda_graph",),
            trainer="probgen.training.trainers.gan:GANTrainer",
            loader="probgen.models.dcgan:generator_from_checkpoint",
            sampler="probgen.models.dcgan:gan_sampler",
            sampled_from=("ema", "generator"),
        ),
        ModelKind(
            "ae",
            FitAEConfig,
            "a plain (deterministic) convolutional autoencoder baseline",
            "Train an autoencoder on the reconstruction negative log-likelihood of the VAE's likelihood "
            "(no latent sampling, no KL); --bottleneck adds a linear layer of --latent-dim units.",
            unused_flags=(*_NO_BETA, "cuda_graph"),
            trainer="probgen.training.trainers.ae:AETrainer",
            loader="probgen.models.autoencoder:autoencoder_from_checkpoint",
            latent="probgen.models.autoencoder:autoencoder_latent",
            figures=("reconstructions",),
            model_sections=("data", "model", "ae"),
        ),
        ModelKind(
            "cvae",
            FitCVAEConfig,
            "a conditional VAE (labels observed in the Pyro model and guide)",
            "Train a conditional VAE: p(x | z, y) p(z) p(y) with observed labels y, guide q(z | x, y). "
            "Datasets without labels use a generative factor (--label-factor, dSprites: shape).",
            unused_flags=_VAE_ONLY,
            trainer="probgen.training.trainers.cvae:CVAETrainer",
            loader="probgen.models.cvae:cvae_from_checkpoint",
            latent="probgen.models.cvae:cvae_latent",
            latent_space=True,
            figures=FIGURES,
            model_sections=("data", "model", "cvae"),
        ),
        ModelKind(
            "vaegan",
            FitVAEGANConfig,
            "a VAE-GAN: the Pyro VAE plus a discriminator (Larsen et al. 2016)",
            "Train a VAE whose objective adds --gan-weight times a non-saturating adversarial loss from a "
            "discriminator on reconstructions and prior samples.",
            unused_flags=(*_VAE_ONLY, *_NO_OBJECTIVE),
            trainer="probgen.training.trainers.vaegan:VAEGANTrainer",
            loader="probgen.models.vae:vae_from_checkpoint",  # its "model" state is a plain VAE
            latent="probgen.models.vae:vae_latent",
            latent_space=True,
            figures=FIGURES,
            model_sections=("data", "model", "gan"),
            plain_vae=True,
        ),
    )
}


#: the kind a command uses when none is named (`probgen sweep` without --kind)
DEFAULT_KIND = next(iter(KINDS))


def kinds_where(what: Callable[[ModelKind], Any]) -> tuple[str, ...]:
    """The names of the registered kinds for which ``what(kind)`` holds, e.g. ``kinds_where(lambda k: k.loglik)``."""
    return tuple(name for name, k in KINDS.items() if what(k))


def register(kind: ModelKind) -> ModelKind:
    """Add ``kind`` to the registry (a kind defined outside this table, e.g. a plug-in); returns it."""
    if kind.name in KINDS:
        raise ValueError(f"model kind {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    return kind


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


def load_model(
    checkpoint: str | Path | dict[str, Any],
    device: torch.device | str = "cpu",
    kinds: tuple[str, ...] | None = None,
    need: str | None = None,
) -> LoadedModel:
    """Rebuild the model of any registered kind from a checkpoint file, its run directory or the
    loaded dict, without importing a training pipeline (as nanoGPT's sample.py does).

    ``kinds`` restricts the accepted kinds; ``need`` names them in the error (``"a VAE"``). Every
    problem a user can cause is a one-line UserError.
    """
    accepted = tuple(KINDS) if kinds is None else kinds
    if isinstance(checkpoint, dict):
        ckpt = checkpoint
        if ckpt.get("kind") not in accepted:
            raise UserError(
                f"--ckpt: holds a {ckpt.get('kind')!r} model, but this command needs {need or ' or '.join(accepted)}"
            )
    else:
        from probgen.checkpoint import load_checkpoint

        ckpt = load_checkpoint(checkpoint, kind=accepted)
    kind = model_kind(ckpt["kind"])
    model, cfg = kind.load(ckpt, device)
    return LoadedModel(kind, model, cfg, ckpt)


def _leaf_value(cfg: Any, leaf: Any) -> Any:
    for section in leaf.path:
        cfg = getattr(cfg, section)
    return getattr(cfg, leaf.name)


def _has_leaf(kind: ModelKind, name: str) -> bool:
    return name not in kind.unused_flags and any(leaf.name == name for leaf in leaves(kind.config))


def _resolve(name: str) -> Callable[..., Any]:
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)
