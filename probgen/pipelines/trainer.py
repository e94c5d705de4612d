"""The training loop every `probgen fit MODEL` shares: data order, checkpoints, exact resume, run files.

A :class:`Trainer` subclass supplies the model: ``build`` (modules and optimizers), ``train_step``
(one batch of indices -> detached batch sums of its ``term_names``), the per-epoch rows and the
figures. The base class owns everything else, so every model kind gets the same guarantees:

- the data order of epoch e is a permutation seeded by (seed, e);
- the checkpoint holds every module and optimizer state, the RNG states, the position inside the
  epoch and the epoch's running sums, so an interrupted-and-resumed run ends bitwise equal (on the
  CPU) to an uninterrupted one;
- Ctrl-C saves a checkpoint at the next step; a NaN/Inf loss stops before the update;
- ``losses.csv``, ``metrics.json``, ``loss_curves.png`` and the model's figures in the run directory.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from probgen.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from probgen.config import from_dict, to_dict
from probgen.data import ImageData, Split, load_dataset, to_unit
from probgen.data.transforms import bernoulli_resample
from probgen.errors import UserError
from probgen.inference.svi import hot_loop
from probgen.pipelines.training import (
    GracefulStop,
    NonFiniteGuard,
    epoch_permutation,
    log_to_file,
    resume_config,
)
from probgen.plots import plot_curves
from probgen.utils.device import resolve_device
from probgen.utils.io import environment_info, write_csv, write_json
from probgen.utils.progress import progress
from probgen.utils.rundir import CHECKPOINT, prepare_run_dir

log = logging.getLogger("probgen")

# Train-config fields a resumed run may change; everything else must match the stored run.
RESUMABLE_FIELDS: dict[str, tuple[str, ...]] = {
    "train": ("epochs", "max_steps", "lr", "checkpoint_every", "sample_epochs", "device", "eval_batch_size"),
    "run": ("progress", "out", "resume", "overwrite"),
}


class Trainer:
    """One training run of a model kind; :meth:`run` trains and writes the run directory.

    Subclasses set ``kind`` (the checkpoint kind and run-directory prefix), ``config_cls`` (a
    dataclass with ``data``, ``train`` and ``run`` sections), ``term_names`` (the batch sums
    ``train_step`` returns) and implement the hooks below.
    """

    kind: ClassVar[str]
    config_cls: ClassVar[type]
    term_names: ClassVar[tuple[str, ...]]
    resumable: ClassVar[dict[str, tuple[str, ...]]] = RESUMABLE_FIELDS
    outputs: ClassVar[tuple[str, ...]] = ("losses.csv", "loss_curves.png", "metrics.json")

    def __init__(self, cfg: Any, out: Path, resume: bool):
        self.out = out
        ckpt = load_checkpoint(out / CHECKPOINT, kind=self.kind) if resume else None
        if ckpt is not None:
            cfg = resume_config(from_dict(self.config_cls, ckpt["config"]), cfg, self.resumable)
        self.device = resolve_device(cfg.train.device)
        self.data: ImageData = load_dataset(cfg.data)
        train = self.data.split("train")
        test = self.data.splits.get("test")
        if test is not None and len(test) == 0:
            test = None
        self.train_images = train.images.to(self.device)
        self.test_images = test.images.to(self.device) if test is not None else None
        # --binarize dynamic: train images stay grey and every batch gets a fresh Bernoulli draw
        self.resample_binary = self.data.notes.get("binarize") == "dynamic"
        t = cfg.train
        n = len(self.train_images)
        if t.batch_size > n:
            raise UserError(f"--batch-size: {t.batch_size} is larger than the training set ({n} images)")
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
        self.step = 0
        self.epoch = 0  # epochs completed
        self.batch = 0  # batches done inside the current epoch
        self.sums = torch.zeros(len(self.term_names), dtype=torch.float64, device=self.device)
        self.history: list[dict[str, Any]] = []
        self.elapsed = 0.0
        if ckpt is not None:
            self._restore(ckpt)
            log.info("resuming %s at step %d (epoch %d)", out, self.step, self.epoch + 1)

    # --- hooks ----------------------------------------------------------------------------------

    def resolve_config(self, cfg: Any) -> Any:
        """A new run's config with data-dependent defaults filled in (e.g. the likelihood)."""
        return cfg

    def labels(self, split: Split) -> torch.Tensor | None:
        """Per-image labels (N,) on the device, for models that need them."""
        return None

    def build(self) -> None:
        """Create ``self.modules`` and ``self.optimizers`` (their names are the checkpoint's state keys)."""
        raise NotImplementedError

    def batch_images(self, idx: torch.Tensor) -> torch.Tensor:
        """Training images ``idx`` (B,) as floats in [0, 1], resampled to {0, 1} under ``--binarize dynamic``."""
        x = to_unit(self.train_images[idx])
        if self.resample_binary:
            x = bernoulli_resample(x)  # global torch RNG: checkpointed, so resume stays exact
        return x

    def train_step(self, idx: torch.Tensor, check: Callable[[torch.Tensor], None]) -> torch.Tensor:
        """One update on training images ``idx`` (B,); returns detached batch sums of ``term_names``.

        ``check(loss)`` must run after backward and before the optimizer steps (the NaN guard).
        """
        raise NotImplementedError

    def train_row(self, sums: torch.Tensor, n: int) -> dict[str, float]:
        """The epoch's training row from the running sums over ``n`` images."""
        return {name: v / max(n, 1) for name, v in zip(self.term_names, sums.tolist())}

    def test_row(self) -> dict[str, float] | None:
        """Per-image averages on the test split (None: no test split or nothing to report)."""
        return None

    def describe(self, row: dict[str, Any]) -> str:
        """One row of the epoch's log line."""
        return f"loss {row['loss']:.2f}"

    def status(self) -> str:
        """Extra state for the epoch's log line (e.g. the current beta)."""
        return ""

    def curves(self) -> dict[str, tuple[str, float]]:
        """Panels of loss_curves.png: title -> (column of losses.csv, sign)."""
        return {"loss": ("loss", 1.0)}

    def extra_payload(self) -> dict[str, Any]:
        return {}

    def epoch_figures(self) -> None:
        """Figures written at the epochs of ``--sample-epochs``."""

    def final_figures(self) -> None:
        """Figures written at the end of the run."""

    def before_final_save(self) -> None:
        """Runs once training is done, before the last checkpoint is written."""

    def metrics_extra(self) -> dict[str, Any]:
        return {}

    # --- checkpoints ----------------------------------------------------------------------------

    def _payload(self) -> dict[str, Any]:
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
            "sums": self.sums.cpu(),
            "history": self.history,
            "elapsed": self.elapsed,
            "rng": rng_state(),
            "environment": environment_info(self.device),
        }

    def learning_rates(self) -> dict[str, float]:
        """The learning rate of each optimizer; a resumed run applies them (it may lower ``--lr``)."""
        return {name: self.cfg.train.lr for name in self.optimizers}

    def _restore(self, ckpt: dict[str, Any]) -> None:
        for name, module in self.modules.items():
            module.load_state_dict(ckpt["state"][name])
        lrs = self.learning_rates()
        for name, optim in self.optimizers.items():
            optim.load_state_dict(ckpt["state"][name])
            for group in optim.param_groups:
                group["lr"] = lrs[name]
        self.step, self.epoch, self.batch = ckpt["step"], ckpt["epoch"], ckpt["batch"]
        self.sums = ckpt["sums"].to(self.device)
        self.history = list(ckpt["history"])
        self.elapsed = float(ckpt.get("elapsed", 0.0))
        set_rng_state(ckpt["rng"])

    def save(self) -> None:
        save_checkpoint(self.out / CHECKPOINT, self._payload())

    def _train_mode(self, mode: bool) -> None:
        for m in self.modules.values():
            m.train(mode)

    # --- training -------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        t = self.cfg.train
        guard = NonFiniteGuard(self.device)
        bar = progress(self.total_steps, desc=f"fit {self.kind}", enabled=self.cfg.run.progress, initial=self.step)
        started = time.perf_counter()
        B = t.batch_size
        with GracefulStop() as stop, bar, hot_loop():
            while self.step < self.total_steps:
                perm = epoch_permutation(len(self.train_images), t.seed, self.epoch).to(self.device)
                self._train_mode(True)
                while self.batch < self.steps_per_epoch and self.step < self.total_steps:
                    idx = perm[self.batch * B : (self.batch + 1) * B]
                    check = functools.partial(guard.check, step=self.step)  # runs before the update
                    self.sums += self.train_step(idx, check).double()
                    self.step += 1
                    self.batch += 1
                    bar.update(1)
                    if self.step % t.checkpoint_every == 0 or stop.requested:
                        guard.raise_if_bad()
                        self.elapsed += time.perf_counter() - started
                        started = time.perf_counter()
                        self.save()
                    if stop.requested:
                        stop.exit(self.out)
                if self.batch == self.steps_per_epoch:
                    self._end_epoch(guard)
                else:  # max_steps reached mid-epoch
                    break
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
        rows = self._rows(self.epoch + 1, self.sums, self.steps_per_epoch * t.batch_size)
        self.history += rows
        self.epoch += 1
        self.batch = 0
        self.sums.zero_()
        line = "  ".join(f"{r['split']} {self.describe(r)}" for r in rows)
        status = self.status()
        log.info("epoch %d/%d step %d%s  %s", self.epoch, t.epochs, self.step, f" {status}" if status else "", line)
        self._write_logs()
        if self.epoch in t.sample_epochs:
            self._train_mode(False)
            self.epoch_figures()
            self._train_mode(True)
        self.save()

    # --- outputs --------------------------------------------------------------------------------

    def _write_logs(self, rows: list[dict[str, Any]] | None = None) -> None:
        rows = self.history if rows is None else rows
        write_csv(self.out / "losses.csv", rows)
        if not rows:
            return
        series: dict[str, dict[str, list[float]]] = {title: {} for title in self.curves()}
        xs: dict[str, list[float]] = {}
        for split in ("train", "test"):
            sel = [r for r in rows if r["split"] == split]
            if sel:
                xs[split] = [r["epoch"] for r in sel]
                for title, (key, sign) in self.curves().items():
                    if all(key in r for r in sel):
                        series[title][split] = [sign * r[key] for r in sel]
        series = {k: v for k, v in series.items() if v}
        plot_curves(series, xs, self.out / "loss_curves.png", title=f"{self.kind.upper()} on {self.data.name}")

    def _finish(self) -> dict[str, Any]:
        self._train_mode(False)
        self.final_figures()
        rows = list(self.history)
        if self.batch:  # stopped by --max-steps inside an epoch: report the partial epoch too
            frac = self.epoch + self.batch / self.steps_per_epoch
            rows += self._rows(frac, self.sums, self.batch * self.cfg.train.batch_size)
            self._train_mode(False)
        self._write_logs(rows)
        final = {r["split"]: r for r in rows}  # the last row of each split
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
            "final": final,
            "units": "nats per image (averages over the split); bits/dim = nats / (pixels * ln 2)",
            "environment": environment_info(self.device),
        }
        write_json(self.out / "metrics.json", metrics)
        return metrics


def fit(trainer_cls: type[Trainer], cfg: Any) -> Path:
    """Train ``trainer_cls``'s model as configured; returns the run directory."""
    out, resuming = prepare_run_dir(cfg.run, trainer_cls.kind, cfg.data.dataset)
    with log_to_file(out / "log.txt"):
        trainer = trainer_cls(cfg, out, resuming)
        if not resuming:
            write_json(out / "config.json", {**to_dict(trainer.cfg), "environment": environment_info(trainer.device)})
        log.info("run directory: %s", out)
        trainer.run()
        log.info("done: %s (%s)", out, ", ".join(trainer.outputs))
    return out
