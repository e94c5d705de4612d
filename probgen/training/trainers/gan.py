"""`probgen fit gan`: train a DCGAN (non-saturating loss, Adam) and write a complete run directory.

Run directory: config.json, checkpoint.pt, best.pt (with --eval-every), losses.csv (per step: G and D
losses, D(x), D(G(z))), loss_curves.png, samples_epoch_K.png, samples.png (10x10, fixed noise),
eval_history.csv + eval_curve.png + eval.json (with --eval-every), metrics.json, log.txt; with
--tensorboard, tensorboard/ (the rows of losses.csv and eval_history.csv, the samples grid every epoch).

The DCGAN trains on the shared loop (:class:`~probgen.training.loop.Trainer`): data order, data
placement and streaming, speed options, torchrun/DDP, signals, the NaN guard and exact resume are
the loop's. The checkpoint holds G, D, both optimisers, the EMA generator, the RNG states, the
position inside the epoch and (through the state hooks) the fixed noise, the evaluations and the
early-stopping state, so an interrupted-and-resumed run ends bitwise equal (on CPU) to an
uninterrupted one. Evaluation draws from its own seeded generator and never touches the training
RNG; under torchrun rank 0 evaluates and every rank takes its result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from probgen.config import FitGANConfig, to_dict
from probgen.metrics.harness import Harness
from probgen.models.dcgan import build_gan, generator_sampler, output_range, sample_latent
from probgen.plots import plot_curves, save_grid
from probgen.training.ddp import ddp_module, global_batch_rows, sync_batchnorm
from probgen.training.ema import DeviceEMA
from probgen.training.loop import RESUMABLE_FIELDS as LOOP_RESUMABLE
from probgen.training.loop import Trainer, fit
from probgen.training.rundir import CHECKPOINT
from probgen.utils.io import environment_info, write_csv, write_json

log = logging.getLogger("probgen")

RESUMABLE_FIELDS = {
    "train": ("epochs", "max_steps", "checkpoint_every", "sample_epochs", "device", "eval_every")
    + ("early_stop_patience",),
    "eval": ("feature_batch_size", "cache_dir", "inception_weights"),
    "run": ("progress", "out", "resume", "overwrite", "tensorboard"),
    "perf": LOOP_RESUMABLE["perf"],
}
LOSS_FIELDS = ("loss_d", "loss_g", "d_real", "d_fake")  # d_*: mean D output (probability) on real / generated


class GANTrainer(Trainer):
    """`fit gan`: one D and one G update per step; batch sums of the losses and of D's mean outputs."""

    config_cls = FitGANConfig
    term_names = LOSS_FIELDS
    resumable = RESUMABLE_FIELDS
    outputs = ("samples.png", "loss_curves.png", "losses.csv", "metrics.json")
    supports_ddp = True
    step_rows = True

    # --- set-up ---------------------------------------------------------------------------------

    def build(self) -> None:
        t, m = self.cfg.train, self.cfg.model
        self.harness: Harness | None = None
        if t.eval_every:  # built first, so that missing weights or data fail before training starts
            self.dist.from_main(self._build_harness)  # rank 0 evaluates (and fails for every rank)
        self.G, self.D = (net.to(self.device) for net in build_gan(m, self.data.image_shape))
        if self.dist.enabled:
            self.G, self.D = sync_batchnorm(self.G, self.device), sync_batchnorm(self.D, self.device)
        self._ddp: tuple[torch.nn.Module, torch.nn.Module] | None = None  # wrapped at the first step (below)
        betas = (t.beta1, t.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=t.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=t.lr, betas=betas)
        self.ema = DeviceEMA(self.G, t.ema_decay) if t.ema_decay > 0 else None  # AveragedModel, no per-step sync
        self.modules.update(generator=self.G, discriminator=self.D, **({"ema": self.ema} if self.ema else {}))
        self.optimizers.update(opt_g=self.opt_g, opt_d=self.opt_d)
        gen = torch.Generator().manual_seed(t.seed + 1)
        self.fixed_noise = sample_latent(100, m, "cpu", gen).to(self.device)  # the grids' noise, (100, latent)
        self.eval_history: list[dict[str, Any]] = []
        self.early: dict[str, Any] = {"best": None, "best_epoch": None, "bad_evals": 0, "stopped": False}
        self._eval_note = ""

    def _build_harness(self) -> None:
        self.harness = Harness(self.data, self.cfg.eval, self.device, show_progress=self.cfg.run.progress)

    def speed_nets(self) -> list[torch.nn.Module]:
        return [self.G, self.D]

    # --- the step -------------------------------------------------------------------------------

    def train_step(self, idx: torch.Tensor, check: Callable[[torch.Tensor], None]) -> torch.Tensor:
        """One D update and one G update (non-saturating loss); batch sums of loss_d, loss_g, D(x), D(G(z))."""
        x = self.batch_images(idx)  # [0, 1]; a fresh binary draw with --binarize dynamic
        if self.cfg.model.output == "tanh":
            x = x * 2 - 1
        b = len(x)
        z = global_batch_rows(lambda n: sample_latent(n, self.cfg.model, self.device), b, self.dist)
        if self._ddp is None:  # after the speed options and a restore changed the parameters (DDP must come last)
            self._ddp = ddp_module(self.G, self.dist, self.device), ddp_module(self.D, self.dist, self.device)
        g_step, d_step = self._ddp  # the plain modules in a single process
        fake = g_step(z)  # (B, C, H, W)
        d_real, d_fake = d_step(x), d_step(fake.detach())  # logits (B,)
        bce = F.binary_cross_entropy_with_logits
        loss_d = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()  # under torchrun DDP averages D's gradients: the mean over the global batch
        check(loss_d)
        self.opt_d.step()
        d_gen = self.D(fake)  # the plain module: D's gradients from here are dropped at the next zero_grad
        loss_g = bce(d_gen, torch.ones_like(d_gen))  # non-saturating: -log D(G(z))
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        check(loss_g)
        self.opt_g.step()
        if self.ema is not None:
            self.ema.update_parameters(self.G)
        means = torch.stack([loss_d, loss_g, torch.sigmoid(d_real).mean(), torch.sigmoid(d_fake).mean()])
        return means.detach() * b

    # --- state ----------------------------------------------------------------------------------

    def extra_payload(self) -> dict[str, Any]:
        return {
            "fixed_noise": self.fixed_noise.cpu(),
            "eval_history": self.eval_history,
            "early_stop": dict(self.early),
        }

    def restore_extra(self, ckpt: dict[str, Any]) -> None:
        self.fixed_noise = ckpt["fixed_noise"].to(self.device)
        self.eval_history = list(ckpt["eval_history"])
        self.early = dict(ckpt["early_stop"])

    # --- epoch end: evaluation and early stopping -----------------------------------------------

    def after_epoch(self) -> None:
        self._eval_note = ""
        every = self.cfg.train.eval_every
        if not every or self.epoch % every:
            return
        row, record = self.dist.from_main(self._score)  # rank 0 scores; every rank takes the result
        self.eval_history.append(row)
        improved = self.early["best"] is None or row["value"] < self.early["best"]
        if improved:
            self.early.update(best=row["value"], best_epoch=self.epoch, bad_evals=0)
        else:
            self.early["bad_evals"] += 1
        name, patience = row["metric"], self.cfg.train.early_stop_patience
        if patience is not None and self.early["bad_evals"] >= patience:
            self.early["stopped"] = True
            log.info("early stopping: %s has not improved for %d evaluations", name, patience)
        if self.dist.is_main:
            self._write_eval_files(record)
        if improved:
            self.save("best.pt")
        self._eval_note = f"  {name} {row['value']:.3f}" + (" (best)" if improved else "")

    def _score(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """FID / FD of the sampling generator: the row of eval_history.csv and the evaluation's result."""
        assert self.harness is not None
        result = self.harness.evaluate(generator_sampler(self._sampling_generator(), self.cfg.model))
        name = result["primary"]
        row = {"epoch": self.epoch, "step": self.step, "metric": name, "value": self.harness.primary_value(result)}
        for label, entry in result["metrics"].items():
            if "mean" in entry:
                row[f"{label}_mean"], row[f"{label}_std"] = entry["mean"], entry["std"]
        return row, result

    def _write_eval_files(self, result: dict[str, Any]) -> None:
        write_csv(self.out / "eval_history.csv", self.eval_history)
        name = result["primary"]
        xs = [r["epoch"] for r in self.eval_history]
        n_gen = result["metrics"][name]["num_generated"]
        curve = {name: {"generated": [r["value"] for r in self.eval_history]}}
        plot_curves(curve, {"generated": xs}, self.out / "eval_curve.png", title=f"{name}, {n_gen} samples")
        write_json(self.out / "eval.json", self._eval_record(result))

    def _eval_record(self, result: dict[str, Any]) -> dict[str, Any]:
        return {
            "checkpoint": str(self.out / CHECKPOINT),
            "kind": self.kind,
            "generator": "ema" if self.ema is not None else "generator",
            "epoch": self.epoch,
            "step": self.step,
            **result,
            "best": {"value": self.early["best"], "epoch": self.early["best_epoch"]},
            "eval_config": to_dict(self.cfg.eval),
            "environment": environment_info(self.device),
        }

    def should_stop(self) -> bool:
        return bool(self.early["stopped"])

    # --- diagnostics and figures ----------------------------------------------------------------

    def describe(self, row: dict[str, Any]) -> str:
        return (
            f"D {row['loss_d']:.3f}  G {row['loss_g']:.3f}  D(x) {row['d_real']:.3f}  "
            f"D(G(z)) {row['d_fake']:.3f}{self._eval_note}"
        )

    def step_curves(self) -> dict[str, dict[str, str]]:
        return {
            "loss": {"G": "loss_g", "D": "loss_d"},
            "discriminator output": {"D(x)": "d_real", "D(G(z))": "d_fake"},
        }

    def final_metrics(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        assert self.step_log is not None
        n, final = self.step_log.means(self.steps_per_epoch)
        return {
            "final_losses": {"over_last_steps": n, **final},
            "early_stopping": dict(self.early),
            "evaluations": self.eval_history,
        }

    def _sampling_generator(self) -> torch.nn.Module:
        g = self.ema.module if self.ema is not None else self.G
        return g.eval()

    @torch.no_grad()
    def _grid(self) -> torch.Tensor:
        lo, hi = output_range(self.cfg.model)
        return (self._sampling_generator()(self.fixed_noise) - lo) / (hi - lo)  # (100, C, H, W) in [0, 1]

    def epoch_figures(self) -> None:
        save_grid(self._grid(), self.out / f"samples_epoch_{self.epoch}.png")

    def final_figures(self) -> None:
        save_grid(self._grid(), self.out / "samples.png")

    def tensorboard_images(self, final: bool) -> dict[str, tuple[torch.Tensor, int]]:
        return {"samples": (self._grid(), 10)}

    def tensorboard_scalars(self) -> dict[str, dict[str, float]]:
        """eval/<metric> (e.g. eval/FD-dsprites) and KID's mean and std, when this epoch was evaluated."""
        row = self.eval_history[-1] if self.eval_history else None
        if row is None or row["step"] != self.step:
            return {}
        return {
            "eval": {row["metric"]: row["value"], **{k: v for k, v in row.items() if k.endswith(("_mean", "_std"))}}
        }


def fit_gan(cfg: FitGANConfig) -> Path:
    """Train a DCGAN as configured; returns the run directory."""
    return fit(GANTrainer, cfg)
