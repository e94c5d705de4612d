"""`probgen fit gan`: train a DCGAN (non-saturating loss, Adam) and write a complete run directory.

Run directory: config.json, checkpoint.pt, best.pt (with --eval-every), losses.csv (per step: G and D
losses, D(x), D(G(z))), loss_curves.png, samples_epoch_K.png, samples.png (10x10, fixed noise),
eval_history.csv + eval_curve.png + eval.json (with --eval-every), metrics.json, log.txt; with
--tensorboard, tensorboard/ (the rows of losses.csv and eval_history.csv, the samples grid every epoch).

Exact resume: the data order of epoch e is a permutation seeded by (seed, e); the checkpoint holds
G, D, both optimisers, the EMA generator, RNG states, the fixed noise, the position inside the
epoch and the early-stopping state, so an interrupted-and-resumed run ends bitwise equal (on CPU)
to an uninterrupted one. Evaluation draws from its own seeded generator and never touches the
training RNG.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from probgen.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from probgen.config import FitGANConfig, GANConfig, from_dict, to_dict
from probgen.data import ImageData, load_dataset, to_symmetric, to_unit
from probgen.data.transforms import bernoulli_resample
from probgen.errors import UserError
from probgen.metrics.harness import Harness
from probgen.models.dcgan import Discriminator, Generator, output_range, sample_latent
from probgen.plots import plot_curves, save_grid
from probgen.training.ema import DeviceEMA
from probgen.training.guards import GracefulStop, NonFiniteGuard
from probgen.training.resume import epoch_permutation, resume_config
from probgen.training.runlog import log_to_file
from probgen.utils.device import resolve_device
from probgen.utils.io import environment_info, read_csv, write_csv, write_json
from probgen.utils.progress import progress
from probgen.utils.rundir import CHECKPOINT, prepare_run_dir
from probgen.utils.tensorboard import TensorBoard, require_tensorboard

log = logging.getLogger("probgen")

RESUMABLE_FIELDS = {
    "train": ("epochs", "max_steps", "checkpoint_every", "sample_epochs", "device", "eval_every")
    + ("early_stop_patience",),
    "eval": ("feature_batch_size", "cache_dir", "inception_weights"),
    "run": ("progress", "out", "resume", "overwrite", "tensorboard"),
}
LOSS_FIELDS = ("loss_d", "loss_g", "d_real", "d_fake")  # d_*: mean D output (probability) on real / generated


def to_model_range(images: torch.Tensor, cfg: GANConfig) -> torch.Tensor:
    """uint8 -> the generator's output range: [-1, 1] for tanh, [0, 1] for sigmoid."""
    return to_symmetric(images) if cfg.output == "tanh" else to_unit(images)


def build_gan(cfg: GANConfig, image_shape: tuple[int, int, int]) -> tuple[Generator, Discriminator]:
    try:
        return Generator(cfg, image_shape), Discriminator(cfg, image_shape)
    except ValueError as exc:
        raise UserError(f"--image-size: {exc} (resize with --image-size 32 or 64)") from None


def load_generator(
    ckpt: str | Path | dict[str, Any], device: torch.device | str = "cpu", ema: bool = True
) -> tuple[Generator, FitGANConfig, str]:
    """The trained generator (in eval mode), its config, and which one it is ("ema" or "generator")."""
    data = ckpt if isinstance(ckpt, dict) else load_checkpoint(ckpt, kind="gan")
    cfg = from_dict(FitGANConfig, data["config"])
    g = Generator(cfg.model, tuple(data["image_shape"]))
    state = data["state"]
    if ema and "ema" in state:
        g.load_state_dict({k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")})
        which = "ema"
    else:
        g.load_state_dict(state["generator"])
        which = "generator"
    return g.to(device).eval(), cfg, which


def generator_sampler(g: Generator, cfg: GANConfig) -> Any:
    """``(n, generator) -> images in [0, 1] (n, C, H, W)``, the sampler contract of `probgen sample`."""
    lo, hi = output_range(cfg)
    device = next(g.parameters()).device

    @torch.no_grad()
    def sample(n: int, gen: torch.Generator) -> torch.Tensor:
        return (g(sample_latent(n, cfg, device, gen)) - lo) / (hi - lo)

    return sample


class LossLog:
    """Per-step losses: kept on the device between flushes (no host sync per step), appended to
    losses.csv (and TensorBoard's ``train/<loss>``) at checkpoints and epoch ends, and truncated to
    the checkpoint's step on resume."""

    def __init__(self, path: Path):
        self.path = path
        self.tb = TensorBoard()
        self.pending: list[torch.Tensor] = []
        self.pending_meta: list[tuple[int, int]] = []
        self.columns: dict[str, list[float]] = {k: [] for k in ("step", "epoch", *LOSS_FIELDS)}

    def record(self, step: int, epoch: int, values: torch.Tensor) -> None:
        self.pending.append(values.detach())
        self.pending_meta.append((step, epoch))

    def flush(self) -> None:
        if not self.pending:
            return
        values = torch.stack(self.pending).cpu().tolist()  # one sync per flush
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(self.columns)
            for (step, epoch), row in zip(self.pending_meta, values):
                w.writerow([step, epoch, *(f"{v:.6g}" for v in row)])
                for k, v in zip(self.columns, (step, epoch, *row)):
                    self.columns[k].append(v)
                self.tb.scalars("train", dict(zip(LOSS_FIELDS, row)), step)
        self.pending, self.pending_meta = [], []

    def truncate(self, step: int) -> None:
        """Keep the rows up to ``step`` (a resumed run rewrites what followed its checkpoint)."""
        rows = [r for r in read_csv(self.path) if int(r["step"]) <= step] if self.path.exists() else []
        write_csv(self.path, rows)
        self.columns = {k: [float(r[k]) for r in rows] for k in self.columns}
        if not rows:
            self.path.unlink(missing_ok=True)

    def plot(self, path: Path, title: str) -> None:
        c = self.columns
        if not c["step"]:
            return
        x = {k: c["step"] for k in ("G", "D", "D(x)", "D(G(z))")}
        series = {
            "loss": {"G": c["loss_g"], "D": c["loss_d"]},
            "discriminator output": {"D(x)": c["d_real"], "D(G(z))": c["d_fake"]},
        }
        plot_curves(series, x, path, xlabel="step", title=title)


class GANTrainer:
    """Holds everything one `fit gan` run mutates; :meth:`run` trains and writes the run directory."""

    def __init__(self, cfg: FitGANConfig, out: Path, resume: bool):
        self.out = out
        ckpt = load_checkpoint(out / CHECKPOINT, kind="gan") if resume else None
        if ckpt is not None:
            cfg = resume_config(from_dict(FitGANConfig, ckpt["config"]), cfg, RESUMABLE_FIELDS)
        self.cfg = cfg
        t, m = cfg.train, cfg.model
        self.device = resolve_device(t.device)
        self.data: ImageData = load_dataset(cfg.data)
        self.train_images = self.data.split("train").images.to(self.device)
        self.resample_binary = self.data.notes.get("binarize") == "dynamic"  # MNIST --binarize dynamic
        n = len(self.train_images)
        if t.batch_size > n:
            raise UserError(f"--batch-size: {t.batch_size} is larger than the training set ({n} images)")
        self.steps_per_epoch = n // t.batch_size  # drop_last: constant batch shapes (BatchNorm)
        total = t.epochs * self.steps_per_epoch
        self.total_steps = min(total, t.max_steps) if t.max_steps else total
        self.harness = None
        if t.eval_every:  # built first, so that missing weights or data fail before training starts
            self.harness = Harness(self.data, cfg.eval, self.device, show_progress=cfg.run.progress)
        torch.manual_seed(t.seed)
        self.G, self.D = (net.to(self.device) for net in build_gan(m, self.data.image_shape))
        betas = (t.beta1, t.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=t.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=t.lr, betas=betas)
        self.ema = DeviceEMA(self.G, t.ema_decay) if t.ema_decay > 0 else None  # AveragedModel, no per-step sync
        gen = torch.Generator().manual_seed(t.seed + 1)
        self.fixed_noise = sample_latent(100, m, "cpu", gen).to(self.device)  # the grids' noise, (100, latent)
        self.step = self.epoch = self.batch = 0
        self.eval_history: list[dict[str, Any]] = []
        self.early = {"best": None, "best_epoch": None, "bad_evals": 0, "stopped": False}
        self.elapsed = 0.0
        self.losses = LossLog(out / "losses.csv")
        self.tb = TensorBoard()  # the run's writer while :meth:`run` runs (--tensorboard)
        self.resumed_at: int | None = None  # the checkpoint's step on --resume
        if ckpt is not None:
            self._restore(ckpt)
            log.info("resuming %s at step %d (epoch %d)", out, self.step, self.epoch + 1)
        elif self.losses.path.exists():
            self.losses.path.unlink()

    # --- checkpoints ----------------------------------------------------------------------------

    def _payload(self) -> dict[str, Any]:
        state = {
            "generator": self.G.state_dict(),
            "discriminator": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return {
            "kind": "gan",
            "config": to_dict(self.cfg),
            "image_shape": list(self.data.image_shape),
            "data_source": self.data.source,
            "state": state,
            "fixed_noise": self.fixed_noise.cpu(),
            "step": self.step,
            "epoch": self.epoch,
            "batch": self.batch,
            "eval_history": self.eval_history,
            "early_stop": dict(self.early),
            "elapsed": self.elapsed,
            "rng": rng_state(),
            "environment": environment_info(self.device),
        }

    def _restore(self, ckpt: dict[str, Any]) -> None:
        state = ckpt["state"]
        self.G.load_state_dict(state["generator"])
        self.D.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.fixed_noise = ckpt["fixed_noise"].to(self.device)
        self.step, self.epoch, self.batch = ckpt["step"], ckpt["epoch"], ckpt["batch"]
        self.eval_history = list(ckpt["eval_history"])
        self.early = dict(ckpt["early_stop"])
        self.elapsed = float(ckpt.get("elapsed", 0.0))
        self.losses.truncate(self.step)
        self.resumed_at = self.step
        set_rng_state(ckpt["rng"])

    def save(self, name: str = CHECKPOINT) -> None:
        self.losses.flush()  # losses.csv (and TensorBoard's events) never lag the checkpoint
        self.tb.flush()
        save_checkpoint(self.out / name, self._payload())

    # --- training -------------------------------------------------------------------------------

    def _train_step(self, x: torch.Tensor, guard: NonFiniteGuard) -> torch.Tensor:
        """One D update and one G update (non-saturating loss); returns (4,) loss_d, loss_g, D(x), D(G(z))."""
        z = sample_latent(len(x), self.cfg.model, self.device)
        fake = self.G(z)  # (B, C, H, W)
        d_real, d_fake = self.D(x), self.D(fake.detach())  # logits (B,)
        bce = F.binary_cross_entropy_with_logits
        loss_d = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        guard.check(loss_d, self.step)
        self.opt_d.step()
        d_gen = self.D(fake)
        loss_g = bce(d_gen, torch.ones_like(d_gen))  # non-saturating: -log D(G(z))
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        guard.check(loss_g, self.step)
        self.opt_g.step()
        if self.ema is not None:
            self.ema.update_parameters(self.G)
        return torch.stack([loss_d, loss_g, torch.sigmoid(d_real).mean(), torch.sigmoid(d_fake).mean()]).detach()

    def _batch(self, idx: torch.Tensor) -> torch.Tensor:
        """Training images ``idx`` in the generator's range; a fresh binary draw with --binarize dynamic."""
        images = self.train_images[idx]
        if not self.resample_binary:
            return to_model_range(images, self.cfg.model)
        x01 = bernoulli_resample(to_unit(images))  # global torch RNG: checkpointed, so resume stays exact
        return x01 * 2 - 1 if self.cfg.model.output == "tanh" else x01

    def run(self) -> dict[str, Any]:
        """Train to the end (or to a signal, a NaN or early stopping); returns metrics.json's content."""
        # --resume: TensorBoard drops what the interrupted run logged at or after the checkpoint's step
        with TensorBoard.for_run(self.out, self.cfg.run.tensorboard, purge_step=self.resumed_at) as self.tb:
            self.losses.tb = self.tb  # closed (a no-op) once the run is over
            if self.resumed_at is not None and self.tb.enabled:
                self._log_checkpoint_step()
            return self._train()

    def _log_checkpoint_step(self) -> None:
        """On --resume: log again what the interrupted run logged at the checkpoint's step (purged)."""
        c = self.losses.columns
        if c["step"] and int(c["step"][-1]) == self.step:
            self.tb.scalars("train", {k: c[k][-1] for k in LOSS_FIELDS}, self.step)
        for row in self.eval_history:
            if row["step"] == self.step:
                self._log_eval(row)
        if self.batch == 0 and self.epoch >= 1:  # the checkpoint is an epoch's end
            self.tb.images("samples", self._grid(), self.step)

    def _train(self) -> dict[str, Any]:
        t = self.cfg.train
        guard = NonFiniteGuard(self.device)
        bar = progress(self.total_steps, desc="fit gan", enabled=self.cfg.run.progress, initial=self.step)
        started = time.perf_counter()
        B = t.batch_size
        with GracefulStop() as stop, bar:
            while self.step < self.total_steps and not self.early["stopped"]:
                perm = epoch_permutation(len(self.train_images), t.seed, self.epoch).to(self.device)
                self.G.train()
                self.D.train()
                while self.batch < self.steps_per_epoch and self.step < self.total_steps:
                    x = self._batch(perm[self.batch * B : (self.batch + 1) * B])
                    values = self._train_step(x, guard)
                    self.step += 1
                    self.batch += 1
                    self.losses.record(self.step, self.epoch + 1, values)
                    bar.update(1)
                    if self.step % t.checkpoint_every == 0 or stop.requested:
                        guard.raise_if_bad()
                        self.elapsed += time.perf_counter() - started
                        started = time.perf_counter()
                        self.save()
                    if stop.requested:
                        stop.exit(self.out)
                if self.batch == self.steps_per_epoch:
                    self.elapsed += time.perf_counter() - started
                    self._end_epoch(guard)
                    started = time.perf_counter()
                else:  # max_steps reached mid-epoch
                    break
        guard.raise_if_bad()
        self.elapsed += time.perf_counter() - started
        self.save()
        return self._finish()

    def _end_epoch(self, guard: NonFiniteGuard) -> None:
        guard.raise_if_bad()
        t = self.cfg.train
        self.epoch += 1
        self.batch = 0
        self.losses.flush()
        self.losses.plot(self.out / "loss_curves.png", f"DCGAN on {self.data.name}")
        if self.epoch in t.sample_epochs or self.tb.enabled:
            grid = self._grid()
            if self.epoch in t.sample_epochs:
                save_grid(grid, self.out / f"samples_epoch_{self.epoch}.png")
            self.tb.images("samples", grid, self.step)
        line = ""
        if self.harness is not None and self.epoch % t.eval_every == 0:
            line = self._evaluate()
        n = self.steps_per_epoch
        mean = {k: sum(self.losses.columns[k][-n:]) / n for k in LOSS_FIELDS}
        log.info(
            "epoch %d/%d step %d  D %.3f  G %.3f  D(x) %.3f  D(G(z)) %.3f%s",
            self.epoch, t.epochs, self.step, mean["loss_d"], mean["loss_g"], mean["d_real"], mean["d_fake"], line,
        )  # fmt: skip
        self.save()

    def _evaluate(self) -> str:
        """FID / FD of the sampling generator; updates early stopping, best.pt and the eval files."""
        assert self.harness is not None
        result = self.harness.evaluate(generator_sampler(self._sampling_generator(), self.cfg.model))
        self.G.train()
        value = self.harness.primary_value(result)
        name = result["primary"]
        row = {"epoch": self.epoch, "step": self.step, "metric": name, "value": value}
        for label, entry in result["metrics"].items():
            if "mean" in entry:
                row[f"{label}_mean"], row[f"{label}_std"] = entry["mean"], entry["std"]
        self.eval_history.append(row)
        self._log_eval(row)
        improved = self.early["best"] is None or value < self.early["best"]
        if improved:
            self.early.update(best=value, best_epoch=self.epoch, bad_evals=0)
        else:
            self.early["bad_evals"] += 1
        patience = self.cfg.train.early_stop_patience
        if patience is not None and self.early["bad_evals"] >= patience:
            self.early["stopped"] = True
            log.info("early stopping: %s has not improved for %d evaluations", name, patience)
        write_csv(self.out / "eval_history.csv", self.eval_history)
        xs = [r["epoch"] for r in self.eval_history]
        n_gen = result["metrics"][name]["num_generated"]
        curve = {name: {"generated": [r["value"] for r in self.eval_history]}}
        plot_curves(curve, {"generated": xs}, self.out / "eval_curve.png", title=f"{name}, {n_gen} samples")
        write_json(self.out / "eval.json", self._eval_record(result))
        if improved:
            self.save("best.pt")
        return f"  {name} {value:.3f}" + (" (best)" if improved else "")

    def _log_eval(self, row: dict[str, Any]) -> None:
        """An eval_history.csv row to TensorBoard: ``eval/<metric>`` (e.g. eval/FD-dsprites) and KID's mean and std."""
        values = {row["metric"]: row["value"], **{k: v for k, v in row.items() if k.endswith(("_mean", "_std"))}}
        self.tb.scalars("eval", values, row["step"])

    def _eval_record(self, result: dict[str, Any]) -> dict[str, Any]:
        return {
            "checkpoint": str(self.out / CHECKPOINT),
            "kind": "gan",
            "generator": "ema" if self.ema is not None else "generator",
            "epoch": self.epoch,
            "step": self.step,
            **result,
            "best": {"value": self.early["best"], "epoch": self.early["best_epoch"]},
            "eval_config": to_dict(self.cfg.eval),
            "environment": environment_info(self.device),
        }

    # --- outputs --------------------------------------------------------------------------------

    def _sampling_generator(self) -> torch.nn.Module:
        g = self.ema.module if self.ema is not None else self.G
        return g.eval()

    @torch.no_grad()
    def _grid(self) -> torch.Tensor:
        lo, hi = output_range(self.cfg.model)
        images = (self._sampling_generator()(self.fixed_noise) - lo) / (hi - lo)  # (100, C, H, W) in [0, 1]
        self.G.train()
        return images

    def _finish(self) -> dict[str, Any]:
        self.losses.flush()
        self.losses.plot(self.out / "loss_curves.png", f"DCGAN on {self.data.name}")
        grid = self._grid()
        save_grid(grid, self.out / "samples.png")
        self.tb.images("samples", grid, self.step)
        c = self.losses.columns
        n = min(len(c["step"]), self.steps_per_epoch)
        final = {k: sum(c[k][-n:]) / max(n, 1) for k in LOSS_FIELDS}
        metrics = {
            "kind": "gan",
            "dataset": self.data.name,
            "data_source": self.data.source,
            "num_train": len(self.train_images),
            "steps": self.step,
            "epochs_completed": self.epoch,
            "train_seconds": self.elapsed,
            "images_per_second": self.step * self.cfg.train.batch_size / max(self.elapsed, 1e-9),
            "final_losses": {"over_last_steps": n, **final},
            "early_stopping": dict(self.early),
            "evaluations": self.eval_history,
            "environment": environment_info(self.device),
        }
        write_json(self.out / "metrics.json", metrics)
        return metrics


def fit_gan(cfg: FitGANConfig) -> Path:
    """Train a DCGAN as configured; returns the run directory."""
    require_tensorboard(cfg.run.tensorboard)  # before anything is created
    out, resuming = prepare_run_dir(cfg.run, "gan", cfg.data.dataset)
    with log_to_file(out / "log.txt"):
        trainer = GANTrainer(cfg, out, resuming)
        if not resuming:
            write_json(out / "config.json", {**to_dict(trainer.cfg), "environment": environment_info(trainer.device)})
        log.info("run directory: %s", out)
        trainer.run()
        log.info("done: %s (samples.png, loss_curves.png, losses.csv, metrics.json)", out)
    return out
