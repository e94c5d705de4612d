"""The training loop every `probgen fit MODEL` shares: data order, checkpoints, exact resume, run files.

A :class:`Trainer` subclass supplies the model through the hooks of :class:`~probgen.training.hooks.Hooks`:
``build`` (modules and optimizers), ``train_step`` (one batch of indices -> detached batch sums of its
``term_names``), the rows and the figures. The loop owns everything else, so every model kind (the
VAEs, the autoencoder, the VAE-GAN and the DCGAN) gets the same guarantees:

- the data order of epoch e is a permutation seeded by (seed, e);
- the checkpoint holds every module and optimizer state, the RNG states, the position inside the
  epoch and the epoch's running sums, so an interrupted-and-resumed run ends bitwise equal (on the
  CPU) to an uninterrupted one;
- Ctrl-C saves a checkpoint at the next step; a NaN/Inf loss stops before the update;
- the data stay on the device, bit-packed or streamed (``--data-placement``), the speed options of
  ``PerfConfig`` apply, and under torchrun every rank computes its slice of the global batch;
- ``losses.csv``, ``metrics.json``, ``loss_curves.png`` and the model's figures in the run directory;
  bookkeeping whose cost does not scale with an epoch runs at a bounded rate: ``loss_curves.png`` is
  redrawn and an epoch's end checkpointed at most every ``--bookkeeping-every`` seconds (and always at
  the run's end; checkpoints also every ``--checkpoint-every`` steps and at Ctrl-C), so many short
  epochs do not pay a matplotlib figure and a checkpoint each;
  losses.csv has a row per epoch and split, or per step (``step_rows``, written atomically at every
  checkpoint); with ``--tensorboard`` also the rows of losses.csv, the learning rates (epoch rows),
  the model's scalars and its image grids (every epoch) in ``tensorboard/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from probgen.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from probgen.config import PerfConfig, from_dict, resume_config, to_dict
from probgen.data import ImageData, load_dataset
from probgen.data.transforms import bernoulli_resample
from probgen.errors import UserError
from probgen.inference.svi.step import hot_loop
from probgen.models.registry import KINDS, kind_of_config
from probgen.training.batches import epoch_permutation, make_batches
from probgen.training.ddp import global_batch_draw
from probgen.training.distributed import global_sums, local_sums, make_guard, rank_rng_state, restore_rng
from probgen.training.guards import GracefulStop, NonFiniteGuard
from probgen.training.hooks import Hooks
from probgen.training.perf import apply_speed_options
from probgen.training.rundir import CHECKPOINT, prepare_run_dir
from probgen.training.runlog import StepLog, log_to_file
from probgen.training.tensorboard import TensorBoard, require_tensorboard
from probgen.utils.device import resolve_device
from probgen.utils.distributed import Dist, distributed_session
from probgen.utils.io import environment_info, write_csv, write_json
from probgen.utils.progress import progress

log = logging.getLogger("probgen")

# Train-config fields a resumed run may change; everything else must match the stored run.
RESUMABLE_FIELDS: dict[str, tuple[str, ...]] = {
    "train": (
        "epochs",
        "max_steps",
        "lr",
        "checkpoint_every",
        "sample_epochs",
        "device",
        "eval_batch_size",
        "recon_accuracy_steps",
    ),
    "run": ("progress", "out", "resume", "overwrite", "tensorboard", "bookkeeping_every"),
    "perf": tuple(f.name for f in dataclasses.fields(PerfConfig)),
}


class Trainer(Hooks):
    """One training run of a model kind; :meth:`run` trains and writes the run directory.

    Subclasses implement the hooks of :class:`~probgen.training.hooks.Hooks` (``build`` and
    ``train_step`` at least); docs/architecture.md shows how a model kind plugs in.
    """

    resumable = RESUMABLE_FIELDS

    def __init__(self, cfg: Any, out: Path, resume: bool, dist: Dist | None = None):
        if self.kind in KINDS:  # (a trainer may name an unregistered kind: tests/training/test_loop.py's toy)
            KINDS[self.kind].check_unused(cfg)  # the flags its CLI does not show, set through the API
        self.out = out
        self.dist = dist = dist or Dist()  # the torchrun job this process belongs to (or a single process)
        if dist.enabled and not self.supports_ddp:
            raise UserError(f"torchrun: `fit {self.kind}` trains in one process only (its step is not wired for DDP)")
        ckpt = dist.from_main(lambda: load_checkpoint(out / CHECKPOINT, kind=self.kind)) if resume else None
        if ckpt is not None:
            cfg = resume_config(from_dict(self.config_cls, ckpt["config"]), cfg, self.resumable)
        self.device = dist.device(resolve_device(cfg.train.device))
        self.data: ImageData = load_dataset(cfg.data)
        train = self.data.split("train")
        test = self.data.splits.get("test")
        if test is not None and len(test) == 0:
            test = None
        t = cfg.train
        n = len(train)
        if t.batch_size > n:
            raise UserError(f"--batch-size: {t.batch_size} is larger than the training set ({n} images)")
        if t.batch_size % dist.world_size:
            raise UserError(f"--batch-size: the global batch {t.batch_size} must divide by {dist.world_size} processes")
        self.perf: PerfConfig = getattr(cfg, "perf", None) or PerfConfig()
        self.batches, self.placement = make_batches(
            train.images, self.data.binary, self.device, t.batch_size, self.perf, dist.rank, dist.world_size,
            0 if test is None else test.images.numel(),
        )  # fmt: skip
        on_device = self.placement == "device"  # else the uint8 images stay in host memory
        self.train_images = self.batches.images_u8 if on_device else train.images
        self.test_images = None if test is None else test.images.to(self.device) if on_device else test.images
        # --binarize dynamic: train images stay grey and every batch gets a fresh Bernoulli draw
        self.resample_binary = self.data.notes.get("binarize") == "dynamic"
        if ckpt is None:
            cfg = self.resolve_config(cfg)
        self.cfg = cfg
        self.train_labels = self.labels(train)
        self.test_labels = self.labels(test) if test is not None else None
        self.steps_per_epoch = n // t.batch_size  # drop_last: constant batch shapes
        total = t.epochs * self.steps_per_epoch
        self.total_steps = min(total, t.max_steps) if t.max_steps else total
        torch.manual_seed(t.seed)
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.build()
        apply_speed_options(self.speed_nets(), self.perf, self.device)
        self.step = 0
        self.epoch = 0  # epochs completed
        self.batch = 0  # batches done inside the current epoch
        self.sums = torch.zeros(len(self.term_names), dtype=torch.float64, device=self.device)
        self.history: list[dict[str, Any]] = []
        self.step_log = StepLog(out / "losses.csv", self.term_names, t.batch_size, dist) if self.step_rows else None
        self.elapsed = 0.0
        self.tb = TensorBoard()  # the run's writer while :meth:`run` runs (--tensorboard, rank 0)
        self.resumed_at: int | None = None  # the checkpoint's step on --resume
        self._checkpoint_lrs: dict[str, float] = {}
        # bounded-rate bookkeeping (--bookkeeping-every): when loss_curves.png was drawn and the last checkpoint written
        self._drawn_at = self._saved_at = time.monotonic()
        if ckpt is not None:
            self._restore(ckpt)
            log.info("resuming %s at step %d (epoch %d)", out, self.step, self.epoch + 1)

    def batch_images(self, idx: torch.Tensor) -> torch.Tensor:
        """Training images ``idx`` (B,) as floats in [0, 1], resampled to {0, 1} under ``--binarize dynamic``."""
        x = self.batches.images(idx)  # device-resident, bit-packed or prefetched by the stream's workers
        if self.resample_binary:  # global torch RNG: checkpointed, so resume stays exact
            x = global_batch_draw(bernoulli_resample, x, self.dist)
        return x

    # --- checkpoints ----------------------------------------------------------------------------

    def _payload(self) -> dict[str, Any]:
        """The checkpoint's content; with several processes a collective (every rank calls it)."""
        per_rank = {"rng_ranks": self.dist.all_gather(rank_rng_state(self.device))} if self.dist.enabled else {}
        state = {k: m.state_dict() for k, m in self.modules.items()}
        state.update({k: o.state_dict() for k, o in self.optimizers.items()})
        return {
            "kind": self.kind,
            "config": to_dict(self.cfg),
            "image_shape": list(self.data.image_shape),
            "data_source": self.data.source,
            "state": state,
            **self.extra_payload(),
            "step": self.step,
            "epoch": self.epoch,
            "batch": self.batch,
            "sums": global_sums(self.sums, self.dist),
            "history": self.history,
            "elapsed": self.elapsed,
            "rng": rng_state(),
            **per_rank,
            "environment": environment_info(self.device),
        }

    def _restore(self, ckpt: dict[str, Any]) -> None:
        for name, module in self.modules.items():
            module.load_state_dict(ckpt["state"][name])
        lrs = self.learning_rates()
        self.resumed_at = ckpt["step"]
        self._checkpoint_lrs = {k: float(ckpt["state"][k]["param_groups"][0]["lr"]) for k in self.optimizers}
        for name, optim in self.optimizers.items():
            optim.load_state_dict(ckpt["state"][name])
            for group in optim.param_groups:
                group["lr"] = lrs[name]
        self.step, self.epoch, self.batch = ckpt["step"], ckpt["epoch"], ckpt["batch"]
        # a GAN checkpoint written before the GAN trained on this loop has no epoch sums nor rows
        self.sums = local_sums(ckpt.get("sums", self.sums.cpu()), self.dist, self.device)
        self.history = list(ckpt.get("history", []))
        self.elapsed = float(ckpt.get("elapsed", 0.0))
        if self.step_log is not None:
            self.step_log.truncate(self.step)
        self.restore_extra(ckpt)
        if self.dist.enabled:
            restore_rng(ckpt, self.dist, self.device)
        else:
            set_rng_state(ckpt["rng"])

    def save(self, name: str = CHECKPOINT) -> None:
        """Write the checkpoint (``name`` in the run directory); with several processes every rank calls it."""
        if self.step_log is not None:
            self.step_log.flush(self.tb)  # losses.csv never lags the checkpoint
        self.tb.flush()  # nor do TensorBoard's events (resume purges only what follows it)
        payload = self._payload()
        if self.dist.is_main:
            save_checkpoint(self.out / name, payload)
        self._saved_at = time.monotonic()

    def _due(self, since: float) -> bool:
        """Whether bounded-rate bookkeeping last done at ``since`` (time.monotonic) is due again.

        Under torchrun every epoch's end is due: a checkpoint is a collective and the ranks' clocks
        would not agree.
        """
        every = self.cfg.run.bookkeeping_every
        return self.dist.enabled or every <= 0 or time.monotonic() - since >= every

    def _train_mode(self, mode: bool) -> None:
        for m in self.modules.values():
            m.train(mode)

    # --- training -------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Train to the end (or to a signal, a NaN or :meth:`should_stop`); returns metrics.json's content."""
        # --resume: TensorBoard drops what the interrupted run logged at or after the checkpoint's step
        enabled = self.cfg.run.tensorboard and self.dist.is_main
        with TensorBoard.for_run(self.out, enabled, purge_step=self.resumed_at) as self.tb:
            if self.resumed_at is not None and self.tb.enabled:  # log again what the checkpoint's step logged
                if self.step_log is not None:
                    self.step_log.relog(self.tb, self.step)
                if self.batch == 0 and self.epoch >= 1:  # the checkpoint is an epoch's end
                    self._log_epoch([r for r in self.history if r["step"] == self.step], self._checkpoint_lrs)
            return self._train()

    def _train(self) -> dict[str, Any]:
        t = self.cfg.train
        guard = make_guard(self.device, self.dist)
        show = self.cfg.run.progress and self.dist.is_main
        bar = progress(self.total_steps, desc=f"fit {self.kind}", enabled=show, initial=self.step)
        started = time.perf_counter()
        with GracefulStop() as stop, bar, hot_loop():
            while self.step < self.total_steps and not self.should_stop():
                perm = epoch_permutation(len(self.train_images), t.seed, self.epoch)
                batches = self.batches.epoch(perm, self.batch)  # this rank's share of each global batch
                self._train_mode(True)
                while self.batch < self.steps_per_epoch and self.step < self.total_steps:
                    idx = next(batches)
                    check = functools.partial(guard.check, step=self.step)  # runs before the update
                    values = self.train_step(idx, check)
                    self.sums += values.double()
                    self.step += 1
                    self.batch += 1
                    if self.step_log is not None:
                        self.step_log.record(self.step, self.epoch + 1, values)
                    bar.update(1)
                    requested = self.dist.stop_requested(stop, self.step)  # all ranks agree
                    if self.step % t.checkpoint_every == 0 or requested:
                        guard.raise_if_bad()
                        self.elapsed += time.perf_counter() - started
                        started = time.perf_counter()
                        self.save()
                    if requested:
                        stop.exit(self.out)
                if self.batch < self.steps_per_epoch:  # max_steps reached mid-epoch
                    break
                self.elapsed += time.perf_counter() - started  # the epoch's evaluations are not training time
                self._end_epoch(guard)
                started = time.perf_counter()
        guard.raise_if_bad()
        self.elapsed += time.perf_counter() - started
        self._train_mode(False)
        self.before_final_save()
        self.save()
        return self._finish()

    def _rows(self, epoch: float, sums: torch.Tensor, n: int) -> list[dict[str, Any]]:
        rows = [{"epoch": epoch, "step": self.step, "split": "train", **self.train_row(sums, n)}]
        was = {k: m.training for k, m in self.modules.items()}
        test = self.test_row()
        for k, m in self.modules.items():
            m.train(was[k])
        if test is not None:
            rows.append({"epoch": epoch, "step": self.step, "split": "test", **test})
        return rows

    def _end_epoch(self, guard: NonFiniteGuard) -> None:
        guard.raise_if_bad()
        t = self.cfg.train
        rows = self._rows(self.epoch + 1, self.dist.all_reduce_sum(self.sums), self.steps_per_epoch * t.batch_size)
        self.history += rows
        self.epoch += 1
        self.batch = 0
        self.sums.zero_()
        self.after_epoch()
        self._train_mode(True)
        line = "  ".join(f"{r['split']} {self.describe(r)}" for r in rows)
        status = self.status()
        log.info("epoch %d/%d step %d%s  %s", self.epoch, t.epochs, self.step, f" {status}" if status else "", line)
        self._write_logs(draw=self._due(self._drawn_at))
        if self.epoch in t.sample_epochs and self.dist.is_main:
            self._train_mode(False)
            self.epoch_figures()
            self._train_mode(True)
        self._log_epoch(rows)
        if self._due(self._saved_at):  # else the next --checkpoint-every step, Ctrl-C or the end writes it
            self.save()

    def _log_epoch(self, rows: list[dict[str, Any]], lrs: dict[str, float] | None = None) -> None:
        """--tensorboard at an epoch's end: the epoch rows and learning rates (unless the rows are per step),
        the model's scalars and its grids."""
        if not self.tb.enabled:
            return
        if self.step_log is None:
            self.tb.rows(rows)
            lrs = lrs or {k: float(o.param_groups[0]["lr"]) for k, o in self.optimizers.items()}
            self.tb.scalars("lr", lrs, self.step)
        for prefix, values in self.tensorboard_scalars().items():
            self.tb.scalars(prefix, values, self.step)
        self._log_images(final=False)

    def _log_images(self, final: bool) -> None:
        if not self.tb.enabled:
            return
        was = {k: m.training for k, m in self.modules.items()}
        self._train_mode(False)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            for tag, (images, nrow) in self.tensorboard_images(final).items():  # never moves the training RNG
                self.tb.images(tag, images, self.step, nrow)
        for k, m in self.modules.items():
            m.train(was[k])

    # --- outputs --------------------------------------------------------------------------------

    def _write_logs(self, rows: list[dict[str, Any]] | None = None, draw: bool = True) -> None:
        """losses.csv and (``draw``) loss_curves.png; every rank calls it (the step rows' flush is a collective)."""
        title = f"{self.kind.upper()} on {self.data.name}"
        if self.step_log is not None:
            self.step_log.flush(self.tb)
            if self.dist.is_main and draw:
                self.step_log.plot(self.step_curves(), self.out / "loss_curves.png", title)
                self._drawn_at = time.monotonic()
            return
        if not self.dist.is_main:
            return
        rows = self.history if rows is None else rows
        write_csv(self.out / "losses.csv", rows)
        if not rows or not draw:
            return
        from probgen.plots import plot_curves  # matplotlib: imported when a figure is first drawn

        series: dict[str, dict[str, list[float]]] = {title: {} for title in self.curves()}
        xs: dict[str, list[float]] = {}
        for split in ("train", "test"):
            sel = [r for r in rows if r["split"] == split]
            if sel:
                xs[split] = [r["epoch"] for r in sel]
                for name, (key, sign) in self.curves().items():
                    if all(key in r for r in sel):
                        series[name][split] = [sign * r[key] for r in sel]
        series = {k: v for k, v in series.items() if v}
        plot_curves(series, xs, self.out / "loss_curves.png", title=title)
        self._drawn_at = time.monotonic()

    def _finish(self) -> dict[str, Any]:
        sums = self.dist.all_reduce_sum(self.sums)
        if self.step_log is not None:
            self.step_log.flush(self.tb)  # a collective: before the other ranks leave
        if not self.dist.is_main:
            return {}
        self._train_mode(False)
        self.final_figures()
        rows = list(self.history)
        if self.batch:  # stopped by --max-steps inside an epoch: report the partial epoch too
            frac = self.epoch + self.batch / self.steps_per_epoch
            rows += self._rows(frac, sums, self.batch * self.cfg.train.batch_size)
            self._train_mode(False)
        self._write_logs(rows)
        if self.step_log is None:
            self.tb.rows(rows[len(self.history) :])  # the partial epoch's rows
        self._log_images(final=True)
        metrics = {
            "kind": self.kind,
            "dataset": self.data.name,
            "data_source": self.data.source,
            "num_train": len(self.train_images),
            "num_test": 0 if self.test_images is None else len(self.test_images),
            **self.metrics_extra(),
            "steps": self.step,
            "epochs_completed": self.epoch,
            "train_seconds": self.elapsed,
            "images_per_second": self.step * self.cfg.train.batch_size / max(self.elapsed, 1e-9),
            "world_size": self.dist.world_size,
            "data_placement": self.placement,
            **self.final_metrics(rows),
            "environment": environment_info(self.device),
        }
        write_json(self.out / "metrics.json", metrics)
        return metrics


def fit(trainer_cls: type[Trainer], cfg: Any) -> Path:
    """Train ``trainer_cls``'s model as configured; returns the run directory."""
    require_tensorboard(cfg.run.tensorboard)  # before anything is created
    with distributed_session(resolve_device(cfg.train.device)) as dist:  # a no-op outside torchrun
        out, resuming = dist.from_main(lambda: prepare_run_dir(cfg.run, _kind(trainer_cls), cfg.data.dataset))
        with log_to_file(out / "log.txt") if dist.is_main else contextlib.nullcontext():
            trainer = trainer_cls(cfg, out, resuming, dist)
            if not resuming and dist.is_main:
                env = environment_info(trainer.device)
                write_json(out / "config.json", {**to_dict(trainer.cfg), "environment": env})
            log.info("run directory: %s%s", out, f" ({dist.world_size} processes)" if dist.enabled else "")
            trainer.run()
            log.info("done: %s (%s)", out, ", ".join(trainer.outputs))
    return out


def _kind(trainer_cls: type[Trainer]) -> str:
    """The kind a trainer class trains: its own ``kind`` if it names one, else its config's registry entry."""
    kind = trainer_cls.kind
    return kind if isinstance(kind, str) else kind_of_config(trainer_cls.config_cls).name
