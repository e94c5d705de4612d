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

from probgen.checkpoint import load_checkpoint
from probgen.config import FitCVAEConfig, from_dict
from probgen.data import ImageData, Split
from probgen.errors import UserError
from probgen.models.cvae import CVAE
from probgen.pipelines.fit_vae import VAETrainer
from probgen.training.loop import fit


def split_labels(data: ImageData, split: Split, label_factor: str) -> torch.Tensor:
    """The split's labels (N,) int64: its own, else the class of generative factor ``label_factor``."""
    if split.labels is not None:
        return split.labels.long()
    if split.factor_classes is None:
        raise UserError(f"--dataset: {data.name!r} has neither labels nor generative factors to condition on")
    if label_factor not in data.factor_names:
        raise UserError(
            f"--label-factor: {data.name!r} has no factor {label_factor!r} (has: {', '.join(data.factor_names)})"
        )
    return split.factor_classes[:, data.factor_names.index(label_factor)].long()


def load_cvae(ckpt: str | Path | dict[str, Any], device: torch.device | str = "cpu") -> tuple[CVAE, FitCVAEConfig]:
    """Rebuild a trained conditional VAE (eval mode) and its config from a checkpoint path or loaded dict."""
    data = ckpt if isinstance(ckpt, dict) else load_checkpoint(ckpt, kind="cvae")
    cfg = from_dict(FitCVAEConfig, data["config"])
    assert cfg.cvae.num_classes is not None  # resolved when the run started
    cvae = CVAE(cfg.model, tuple(data["image_shape"]), cfg.cvae.num_classes)
    cvae.load_state_dict(data["state"]["model"])
    return cvae.to(device).eval(), cfg


class CVAETrainer(VAETrainer):
    kind = "cvae"
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
