"""`probgen fit ae`: the plain (deterministic) convolutional autoencoder baseline.

Same loop, checkpoints, exact resume and run files as `fit vae` (the shared Trainer). The loss is
the reconstruction negative log-likelihood under the VAE's likelihood (nats per image), so it
compares directly with a VAE's ``-recon``. At the end, a diagonal Gaussian is fitted to the codes
of the training images so that ``samples.png`` and `probgen sample` can decode draws from it.

Run directory: config.json, checkpoint.pt, losses.csv, metrics.json, loss_curves.png,
reconstructions.png, reconstructions_epoch_K.png, samples.png, log.txt.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from probgen.config import FitAEConfig
from probgen.data import to_unit
from probgen.models.autoencoder import Autoencoder, load_autoencoder  # noqa: F401  (load_autoencoder: moved there)
from probgen.models.vae import resolve_likelihood
from probgen.plots import save_grid
from probgen.training.loop import Trainer, fit


def _row(nll_sum: float, n: int, pixels: int) -> dict[str, float]:
    nll = nll_sum / max(n, 1)
    return {"loss": nll, "recon": -nll, "nll_bits_per_dim": nll / (pixels * math.log(2))}


class AETrainer(Trainer):
    config_cls = FitAEConfig
    term_names = ("loss",)
    outputs = ("reconstructions.png", "samples.png", "loss_curves.png", "metrics.json")

    def resolve_config(self, cfg: FitAEConfig) -> FitAEConfig:
        likelihood = resolve_likelihood(cfg.model, self.data.binary)
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, likelihood=likelihood))

    def build(self) -> None:
        self.ae = Autoencoder(self.cfg.model, self.data.image_shape, self.cfg.ae.bottleneck).to(self.device)
        self.modules["model"] = self.ae
        self.optimizers["optimizer"] = self.optim = torch.optim.Adam(self.ae.parameters(), lr=self.cfg.train.lr)

    def train_step(self, idx: torch.Tensor, check: Callable[[torch.Tensor], None]) -> torch.Tensor:
        loss = self.ae.loss(self.batch_images(idx))
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        check(loss)
        self.optim.step()
        return loss.detach().reshape(1)

    @torch.no_grad()
    def _batches(self, images: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
        bs = self.cfg.train.eval_batch_size
        return [fn(to_unit(images[i : i + bs])) for i in range(0, len(images), bs)]

    def train_row(self, sums: torch.Tensor, n: int) -> dict[str, float]:
        return _row(float(sums[0]), n, self.train_images[0].numel())

    def test_row(self) -> dict[str, float] | None:
        if self.test_images is None:
            return None
        self.ae.eval()
        total = sum(float(v) for v in self._batches(self.test_images, self.ae.loss))
        return _row(total, len(self.test_images), self.test_images[0].numel())

    def describe(self, row: dict[str, Any]) -> str:
        return f"-log p(x|code) {row['loss']:.2f}"

    def curves(self) -> dict[str, tuple[str, float]]:
        return {"reconstruction NLL (nats)": ("loss", 1.0)}

    def metrics_extra(self) -> dict[str, Any]:
        return {"likelihood": self.cfg.model.likelihood, "bottleneck": self.cfg.ae.bottleneck}

    def before_final_save(self) -> None:
        self.ae.eval()
        self.ae.fit_code_density(torch.cat(self._batches(self.train_images, self.ae.encode)))

    def _reconstruction_pairs(self) -> torch.Tensor:
        """10 inputs above their 10 reconstructions, twice: (40, C, H, W) for a 10-wide grid."""
        test = self.test_images is not None
        ref = self.test_images if test else self.train_images
        idx = self.data.display_indices("test" if test else "train", 20)  # seeded; every shape / digit
        x = to_unit(ref[idx.to(ref.device)].to(self.device))
        recon = self.ae.reconstruct(x)
        return torch.cat([x[:10], recon[:10], x[10:20], recon[10:20]])

    def _samples(self) -> torch.Tensor:
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.train.seed + 1)
        return self.ae.sample(100, generator=gen)

    def epoch_figures(self) -> None:
        save_grid(self._reconstruction_pairs(), self.out / f"reconstructions_epoch_{self.epoch}.png", nrow=10)

    def final_figures(self) -> None:
        save_grid(self._reconstruction_pairs(), self.out / "reconstructions.png", nrow=10)
        save_grid(self._samples(), self.out / "samples.png", nrow=10)

    def tensorboard_images(self, final: bool) -> dict[str, tuple[torch.Tensor, int]]:
        # samples need the code density, fitted once training is done
        images = {"reconstructions": (self._reconstruction_pairs(), 10)}
        return {**images, "samples": (self._samples(), 10)} if final else images


def fit_ae(cfg: FitAEConfig) -> Path:
    """Train the autoencoder baseline as configured; returns the run directory."""
    return fit(AETrainer, cfg)
