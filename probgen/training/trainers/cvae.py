"""`probgen fit cvae`: a conditional VAE (Pyro model/guide with observed labels), class-conditional samples.

Labels are the dataset's own (MNIST digits, ...); a dataset without labels but with generative
factors uses one factor as the class (``--label-factor``, dSprites: ``shape``). Same loop,
checkpoints and exact resume as `fit vae`; ``samples.png`` has one row per class (fixed noise).
The ELBO bounds log p(x, y), so ``recon`` includes log p(y) = -log K (a constant).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from probgen.config import FitCVAEConfig
from probgen.data import Split
from probgen.errors import UserError
from probgen.models.cvae import CVAE, load_cvae, split_labels  # noqa: F401  (load_cvae: moved there)
from probgen.training.loop import fit
from probgen.training.trainers.vae import VAETrainer


class CVAETrainer(VAETrainer):
    config_cls = FitCVAEConfig

    def resolve_config(self, cfg: FitCVAEConfig) -> FitCVAEConfig:  # type: ignore[override]
        cfg = super().resolve_config(cfg)  # type: ignore[arg-type]
        if cfg.cvae.num_classes is None:
            k = 1 + max(int(split_labels(self.data, s, cfg.cvae.label_factor).max()) for s in self.data.splits.values())
            cfg = dataclasses.replace(cfg, cvae=dataclasses.replace(cfg.cvae, num_classes=k))
        return cfg

    def labels(self, split: Split) -> torch.Tensor:
        y = split_labels(self.data, split, self.cfg.cvae.label_factor)
        k = self.cfg.cvae.num_classes
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
            raise UserError(f"--num-classes: labels range over {int(y.min())}..{int(y.max())}, outside 0..{k - 1}")
        return y.to(self.device)

    def build_model(self) -> CVAE:
        return CVAE(self.cfg.model, self.data.image_shape, self.cfg.cvae.num_classes)

    def model_args(self, idx: torch.Tensor) -> tuple:
        return (self.batch_images(idx), self.train_labels[idx])

    def samples(self, n: int = 10) -> tuple[torch.Tensor, int]:
        """n samples per class, one row per class, from fixed noise."""
        k = self.cfg.cvae.num_classes
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.train.seed + 1)
        y = torch.arange(k, device=self.device).repeat_interleave(n)
        return self.vae.sample(k * n, generator=gen, labels=y), n

    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.vae.reconstruct(x, labels)

    def metrics_extra(self) -> dict[str, Any]:
        c = self.cfg.cvae
        source = "labels" if self.data.split("train").labels is not None else f"factor {c.label_factor}"
        return {**super().metrics_extra(), "num_classes": c.num_classes, "label_source": source}


def fit_cvae(cfg: FitCVAEConfig) -> Path:
    """Train a conditional VAE as configured; returns the run directory."""
    return fit(CVAETrainer, cfg)
