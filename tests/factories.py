"""Tiny configs and command lines for tests: they train in seconds on 2 CPU cores.

The one home of test builders (test modules import this, never each other). Append new builders at
the end of their section, one function each, so parallel additions merge cleanly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from probgen.config import (
    AEConfig,
    CVAEConfig,
    DataConfig,
    FitAEConfig,
    FitCVAEConfig,
    FitGANConfig,
    FitVAEConfig,
    FitVAEGANConfig,
    GANConfig,
    GANTrainConfig,
    MetricsConfig,
    ObjectiveConfig,
    RunConfig,
    TrainConfig,
    VAEConfig,
    VAEGANConfig,
)

# --- command lines -----------------------------------------------------------------------------------

TINY_FLAGS = [
    "--dataset", "dsprites", "--limit", "320", "--conv-channels", "8,8,8,8", "--hidden-dims", "32",
    "--latent-dim", "4", "--batch-size", "32", "--eval-batch-size", "64", "--no-progress",
]  # fmt: skip

#: `probgen fit` arguments of a 16 px dSprites VAE: 144 training images, 9 steps of 16 per epoch
SMALL_FIT_VAE = [
    "vae", "--dataset", "dsprites", "--limit", "160", "--image-size", "16", "--conv-channels", "4,4",
    "--hidden-dims", "16", "--latent-dim", "2", "--batch-size", "16", "--no-progress",
]  # fmt: skip

GAN_FLAGS = [
    "--dataset", "dsprites", "--limit", "160", "--image-size", "32", "--g-channels", "4", "--d-channels", "4",
    "--latent-dim", "8", "--batch-size", "32", "--num-samples", "64", "--domain-steps", "10", "--kid-subsets", "10",
    "--no-progress",
]  # fmt: skip

ZOO_FLAGS = [
    "--dataset", "dsprites", "--limit", "320", "--image-size", "16", "--conv-channels", "8,8", "--hidden-dims", "16",
    "--latent-dim", "3", "--batch-size", "32", "--eval-batch-size", "64", "--no-progress",
]  # fmt: skip


# --- configs -----------------------------------------------------------------------------------------


def tiny_data(out: Path, limit: int = 320, image_size: int | None = None) -> DataConfig:
    """Procedural dSprites (no files: ``data_root`` points at an empty folder next to ``out``)."""
    return DataConfig(dataset="dsprites", limit=limit, image_size=image_size, data_root=str(out.parent / "no-data"))


def tiny_run(out: Path) -> RunConfig:
    return RunConfig(out=str(out), progress=False)


def tiny_vae_config(out: Path, **train: object) -> FitVAEConfig:
    """A dSprites VAE small enough for unit tests (procedural data, 320 images)."""
    t = {"epochs": 1, "batch_size": 32, "eval_batch_size": 64, "lr": 2e-3, "checkpoint_every": 1000, **train}
    return FitVAEConfig(
        data=DataConfig(dataset="dsprites", limit=320, data_root=str(out.parent / "no-data")),
        model=VAEConfig(conv_channels=(8, 8, 8, 8), hidden_dims=(32,), latent_dim=4),
        train=TrainConfig(**t),  # type: ignore[arg-type]
        run=RunConfig(out=str(out), progress=False),
    )


def tiny_gan_config(out: Path, cache: Path, model: dict | None = None, **train: Any) -> FitGANConfig:
    """A 32 px DCGAN (160 images, 4 + 4 channels) with a 10-step domain feature network for FD."""
    t = {"epochs": 2, "batch_size": 32, "checkpoint_every": 1000, "sample_epochs": (1,), **train}
    return FitGANConfig(
        data=DataConfig(dataset="dsprites", limit=160, image_size=32, data_root=str(out.parent / "no-data")),
        model=GANConfig(latent_dim=8, g_channels=4, d_channels=4, **(model or {})),
        train=GANTrainConfig(**t),
        eval=MetricsConfig(
            num_samples=64, domain_steps=10, cache_dir=str(cache), feature_batch_size=64, metrics=("fid",)
        ),
        run=RunConfig(out=str(out), progress=False),
    )


def tiny_zoo_config(kind: str, out: Path, **train: object) -> Any:
    """An autoencoder, conditional VAE or VAE-GAN at 16 px (320 images) for `fit ae|cvae|vaegan` tests."""
    t = {"epochs": 1, "batch_size": 32, "eval_batch_size": 64, "lr": 5e-3, "checkpoint_every": 1000, **train}
    common = {
        "data": DataConfig(dataset="dsprites", limit=320, image_size=16, data_root=str(out.parent / "no-data")),
        "model": VAEConfig(conv_channels=(8, 8), hidden_dims=(16,), latent_dim=3),
        "train": TrainConfig(**t),  # type: ignore[arg-type]
        "run": RunConfig(out=str(out), progress=False),
    }
    if kind == "ae":
        return FitAEConfig(**common, ae=AEConfig(bottleneck=False))
    if kind == "cvae":
        return FitCVAEConfig(**common, cvae=CVAEConfig())
    return FitVAEGANConfig(**common, gan=VAEGANConfig(gan_weight=1.0, disc_channels=(8,)))


def tiny_latent_config(cls: type, out: Path, latent_dim: int) -> Any:
    """A 16 px dSprites VAE-like fit config of ``cls`` (2 steps) whose latent size a figure needs."""
    data = DataConfig(dataset="dsprites", limit=320, image_size=16, data_root=str(out.parent / "no-data"))
    model = VAEConfig(conv_channels=(8, 8), hidden_dims=(16,), latent_dim=latent_dim)
    train = TrainConfig(epochs=1, batch_size=32, max_steps=2)
    return cls(data=data, model=model, train=train, run=RunConfig(out=str(out), progress=False))


# --- modules -----------------------------------------------------------------------------------------


def tiny_net(**kw: Any) -> VAEConfig:
    """A small conv VAE network config (Bernoulli likelihood); keywords override any field."""
    return VAEConfig(
        **{"conv_channels": (8, 8, 8, 8), "hidden_dims": (32,), "latent_dim": 3, "likelihood": "bernoulli", **kw}
    )


def tiny_vae(image_shape: tuple[int, int, int] = (1, 64, 64), seed: int | None = None, **kw: Any) -> Any:
    """An untrained VAE of :func:`tiny_net` (``kw``) for images of ``image_shape``; ``seed`` fixes its weights."""
    import torch

    from probgen.models.vae import VAE

    if seed is not None:
        torch.manual_seed(seed)
    return VAE(tiny_net(**kw), image_shape)


def every_kind_config(kind: str, out: Path) -> Any:
    """A tiny fit config of model kind ``kind`` (or ``vae-factor``: a FactorVAE) writing to ``out``: 160 dSprites
    images at 16 px, 9 steps of 16 per epoch, 2 epochs, a checkpoint every 7 steps (for resume tests)."""
    data = DataConfig(dataset="dsprites", limit=160, image_size=16, data_root=str(out.parent / "no-data"))
    run = RunConfig(out=str(out), progress=False)
    if kind == "gan":  # batch norm, EMA and the fixed noise: all checkpointed
        train = GANTrainConfig(epochs=2, batch_size=16, checkpoint_every=7, sample_epochs=(1,), ema_decay=0.9)
        return FitGANConfig(data=data, model=GANConfig(latent_dim=4, g_channels=4, d_channels=4), train=train, run=run)
    schedule = {"beta_schedule": "linear", "beta_warmup_steps": 10}  # beta is a function of the resumed step
    train = TrainConfig(epochs=2, batch_size=16, eval_batch_size=64, lr=2e-3, checkpoint_every=7, **schedule)
    common = {"data": data, "model": VAEConfig(conv_channels=(4, 4), hidden_dims=(8,), latent_dim=2), "train": train}
    if kind == "ae":  # no beta: an autoencoder does not take the beta schedule (ModelKind.unused_flags)
        plain = dataclasses.replace(train, beta_schedule="constant", beta_warmup_steps=TrainConfig().beta_warmup_steps)
        return FitAEConfig(**{**common, "train": plain}, run=run, ae=AEConfig())
    if kind == "cvae":
        return FitCVAEConfig(**common, run=run, cvae=CVAEConfig())
    if kind == "vaegan":
        return FitVAEGANConfig(**common, run=run, gan=VAEGANConfig(disc_channels=(4,)))
    if kind == "vae-factor":  # FactorVAE: its discriminator, its Adam and the permutations' RNG draws
        return FitVAEConfig(**common, run=run, objective=ObjectiveConfig("factor-vae", factor_disc_hidden=(8,)))
    if kind == "vae":
        return FitVAEConfig(**common, run=run)
    raise AssertionError(f"model kind {kind!r} is registered but has no tiny config here: add one to every_kind_config")
