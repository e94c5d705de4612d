"""`probgen fit vae`: train a Pyro VAE with SVI and write a complete run directory.

Run directory: config.json, checkpoint.pt, losses.csv, metrics.json, samples.png,
reconstructions.png, loss_curves.png, samples_epoch_K.png, log.txt.

The loop, checkpoints and exact resume are the shared :class:`~probgen.training.loop.Trainer`'s:
the data order of epoch e is a permutation seeded by (seed, e), the beta schedule is a function of
the step, and the checkpoint holds model, optimizer, RNG states, the position inside the epoch and
the epoch's running sums, so an interrupted-and-resumed run ends bitwise equal (on CPU) to an
uninterrupted one. :class:`VAETrainer` is also the base of the conditional VAE and the VAE-GAN.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from probgen.config import FitVAEConfig, ObjectiveConfig
from probgen.data import to_unit
from probgen.errors import UserError
from probgen.inference.svi.schedules import beta_at
from probgen.inference.svi.step import svi_step
from probgen.metrics.cache import default_cache_dir
from probgen.metrics.domain import load_or_train_domain_net, reconstruction_accuracy
from probgen.models.vae import VAE, build_vae, load_vae, resolve_likelihood
from probgen.plots import save_grid
from probgen.training.ddp import distributed_loss, sync_batchnorm
from probgen.training.loop import RESUMABLE_FIELDS, Trainer, fit
from probgen.training.objective import BASE_TERMS, make_objective
from probgen.training.perf import adam_kwargs, make_train_step

log = logging.getLogger("probgen")

__all__ = ["RESUMABLE_FIELDS", "VAETrainer", "build_vae", "evaluate_elbo", "fit_vae", "load_vae"]


@torch.no_grad()
def evaluate_elbo(
    vae: VAE,
    elbo_fn: Any,
    images: torch.Tensor,
    batch_size: int,
    beta: float,
    labels: torch.Tensor | None = None,
    extra: tuple[str, ...] = (),
) -> dict[str, float]:
    """Per-image averages of the ELBO terms on uint8 ``images`` (one-sample estimates, in nats).

    ``labels`` (N,), when given, are passed to the model and guide after x (the conditional VAE).
    ``extra``: further terms of ``elbo_fn.last_terms`` to average (an objective's, e.g. ``tc``).
    """
    was_training = vae.training
    vae.eval()
    device = next(vae.parameters()).device
    loss_fn = elbo_fn(vae.model, vae.guide)
    names = BASE_TERMS + extra
    sums = torch.zeros(len(names), device=device, dtype=torch.float64)
    for start in range(0, len(images), batch_size):
        x = to_unit(images[start : start + batch_size].to(device))
        cond = () if labels is None else (labels[start : start + batch_size].to(device),)
        loss_fn(x, *cond, beta)
        t = elbo_fn.last_terms
        sums += torch.stack([t[k] for k in names]).double()
    vae.train(was_training)
    return _term_row(sums, len(images), beta, images[0].numel(), names)


def _term_row(
    sums: torch.Tensor, n: int, beta: float, pixels: int, names: tuple[str, ...] = BASE_TERMS
) -> dict[str, float]:
    loss, recon, kl, *extra = (sums / max(n, 1)).tolist()
    elbo = recon - kl
    return {
        "beta": beta,
        "loss": loss,
        "elbo": elbo,
        "recon": recon,
        "kl": kl,
        "neg_elbo_bits_per_dim": -elbo / (pixels * math.log(2)),
        **dict(zip(names[3:], extra)),
    }


class VAETrainer(Trainer):
    """`fit vae`: SVI on a Pyro VAE with the beta schedule; batch sums are (loss, recon, kl)."""

    config_cls = FitVAEConfig
    term_names: tuple[str, ...] = ("loss", "recon", "kl")
    outputs = ("samples.png", "reconstructions.png", "loss_curves.png", "metrics.json")
    supports_ddp = True

    def resolve_config(self, cfg: FitVAEConfig) -> FitVAEConfig:
        likelihood = resolve_likelihood(cfg.model, self.data.binary)
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, likelihood=likelihood))

    def build_model(self) -> VAE:
        return build_vae(self.cfg, self.data.image_shape)

    def build(self) -> None:
        if self.cfg.train.recon_accuracy_steps and ("test" not in self.data.splits or not self.data.factor_names):
            raise UserError(
                f"--recon-accuracy-steps: {self.data.name} has no generative factors with a test split to "
                "classify (dSprites has)"
            )
        self.vae = self.build_model().to(self.device)
        self.vae.register_once()  # the step reads parameters(), not Pyro's param sites
        if self.dist.enabled:
            self.vae = sync_batchnorm(self.vae, self.device)
        self.modules["model"] = self.vae
        adam = adam_kwargs(self.perf, self.device)  # capturable for --cuda-graph
        self.optimizers["optimizer"] = self.optim = torch.optim.Adam(
            self.vae.parameters(), lr=self.cfg.train.lr, **adam
        )
        t = self.cfg.train
        ocfg = getattr(self.cfg, "objective", None) or ObjectiveConfig()  # `fit cvae` has no objective section
        self.objective = make_objective(ocfg, t.elbo, t.particles, self.cfg.model.latent_dim, self.device)
        self._check_objective()
        self.elbo = self.objective.elbo
        if not self.objective.plain:
            self.term_names = self.objective.term_names
        self.modules.update(self.objective.modules)
        self.optimizers.update(self.objective.optimizers)
        self.loss_fn = self.elbo(self.vae.model, self.vae.guide)
        if self.dist.enabled:  # DDP over Pyro's ELBOModule; gradients equal the single-process ones
            self.loss_fn = distributed_loss(self.elbo, self.vae, self.dist, self.device)
        self.step_fn = make_train_step(self.loss_fn, self.elbo, self.optim, self.perf, self.device, self.dist.enabled)

    def _check_objective(self) -> None:
        if not self.objective.plain:
            special = f"--objective {self.objective.name}"
        elif self.cfg.train.elbo == "iwae":
            special = "--elbo iwae"
        else:
            return
        # a kind that does not take them declares so in the registry (ModelKind.unused_flags)
        if self.dist.enabled:  # batch statistics (TC, covariance, |KL - C|) would be per rank slice
            raise UserError(f"{special}: trains in one process only (not under torchrun)")
        if self.perf.cuda_graph:
            raise UserError(f"{special}: cannot be combined with --cuda-graph")

    def learning_rates(self) -> dict[str, float]:
        return {**super().learning_rates(), **self.objective.learning_rates}

    def speed_nets(self) -> list[torch.nn.Module]:
        return [self.vae.encoder, self.vae.decoder]

    def _beta(self) -> float:
        t = self.cfg.train
        return beta_at(self.step, t.beta, t.beta_schedule, t.beta_warmup_steps, t.beta_cycle_steps)

    def model_args(self, idx: torch.Tensor) -> tuple:
        """Arguments of model/guide before beta for training images ``idx``: (x,) for the VAE."""
        return (self.batch_images(idx),)

    def train_step(self, idx: torch.Tensor, check: Callable[[torch.Tensor], None]) -> torch.Tensor:
        x, *rest = self.model_args(idx)
        if not self.objective.plain:
            self.objective.prepare(self.step)
            return self.objective.step(self.loss_fn, self.optim, x, self._beta(), check)
        if not rest:
            return self.step_fn(x, self._beta(), check)  # svi_step, or its CUDA-graph replay
        loss_fn = lambda x_, beta: self.loss_fn(x_, *rest, beta)  # noqa: E731
        return svi_step(loss_fn, self.elbo, self.optim, x, self._beta(), check)

    def train_row(self, sums: torch.Tensor, n: int) -> dict[str, float]:
        return _term_row(sums, n, self._beta(), self.train_images[0].numel(), self.term_names)

    def test_row(self) -> dict[str, float] | None:
        if self.test_images is None:
            return None
        t = self.cfg.train
        self.objective.prepare(self.step)
        extra = tuple(k for k in self.objective.term_names[3:] if k != "d_loss")  # d_loss: a training-step term only
        return evaluate_elbo(
            self.vae, self.elbo, self.test_images, t.eval_batch_size, self._beta(), self.test_labels, extra
        )

    def describe(self, row: dict[str, Any]) -> str:
        return f"-elbo {-row['elbo']:.2f} (recon {row['recon']:.2f}, kl {row['kl']:.2f})"

    def status(self) -> str:
        return f"beta {self._beta():.3g}"

    def curves(self) -> dict[str, tuple[str, float]]:
        curves = {"-ELBO (nats)": ("elbo", -1.0), "reconstruction log-lik": ("recon", 1.0), "KL": ("kl", 1.0)}
        if self.cfg.train.elbo == "iwae":
            curves[f"-IWAE bound, K={self.cfg.train.particles} (nats)"] = ("loss", 1.0)
        return {**curves, **{f"{k} (nats)": (k, 1.0) for k in self.objective.term_names[3:]}}

    def extra_payload(self) -> dict[str, Any]:
        return {
            "schedule": {"name": self.cfg.train.beta_schedule, "beta": self._beta()},
            "objective": self.objective.state(self.step),
        }

    def metrics_extra(self) -> dict[str, Any]:
        extra = {"likelihood": self.cfg.model.likelihood, "objective": self.objective.state(self.step)}
        acc = self.reconstruction_accuracy()
        return extra if acc is None else {**extra, "reconstruction_accuracy": acc}

    def reconstruction_accuracy(self) -> dict[str, Any] | None:
        """``--recon-accuracy-steps``: the domain classifier's verdict on the test reconstructions, per
        generative factor (:func:`probgen.metrics.domain.reconstruction_accuracy`); None when off."""
        steps = self.cfg.train.recon_accuracy_steps
        if not steps:
            return None
        net = load_or_train_domain_net(self.data, steps, default_cache_dir(), self.device, self.cfg.run.progress)
        labels = self.test_labels

        def reconstruct(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return self.reconstruct(x, None if labels is None else labels[rows].to(self.device))

        acc = reconstruction_accuracy(net, self.data, reconstruct, self.device)
        if acc is not None:
            got, best = acc["reconstructions"], acc["images"]
            log.info(
                "test reconstructions classified by the domain net: %s",
                ", ".join(f"{k} {got[k]:.1%} (images {best[k]:.1%})" for k in got),
            )
        return acc

    # --- figures --------------------------------------------------------------------------------

    def samples(self, n: int = 100) -> tuple[torch.Tensor, int]:
        """Grid images from fixed noise (the same at every epoch) and the grid's row length."""
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.train.seed + 1)
        return self.vae.sample(n, generator=gen), 10

    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.vae.reconstruct(x)

    def epoch_figures(self) -> None:
        images, nrow = self.samples()
        save_grid(images, self.out / f"samples_epoch_{self.epoch}.png", nrow=nrow)

    def reconstruction_pairs(self) -> torch.Tensor:
        """20 test images (training images without a test split) and their reconstructions, (40, C, H, W).

        The images are a seeded draw that shows every label or dSprites shape (``display_indices``),
        the same in every run on the same data. Laid out for a 10-wide grid: 10 inputs above their
        10 reconstructions, twice.
        """
        test = self.test_images is not None
        ref = self.test_images if test else self.train_images
        labels = self.test_labels if test else self.train_labels
        idx = self.data.display_indices("test" if test else "train", 20)  # seeded; every shape / digit
        x = to_unit(ref[idx.to(ref.device)].to(self.device))
        recon = self.reconstruct(x, None if labels is None else labels[idx.to(labels.device)])
        return torch.cat([x[:10], recon[:10], x[10:20], recon[10:20]])

    def final_figures(self) -> None:
        images, nrow = self.samples()
        save_grid(images, self.out / "samples.png", nrow=nrow)
        save_grid(self.reconstruction_pairs(), self.out / "reconstructions.png", nrow=10)

    def tensorboard_images(self, final: bool) -> dict[str, tuple[torch.Tensor, int]]:
        return {"samples": self.samples(), "reconstructions": (self.reconstruction_pairs(), 10)}


def fit_vae(cfg: FitVAEConfig) -> Path:
    """Train a VAE as configured; returns the run directory."""
    return fit(VAETrainer, cfg)
