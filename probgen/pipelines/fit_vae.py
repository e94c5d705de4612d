"""`probgen fit vae`: train a Pyro VAE with SVI and write a complete run directory.

Run directory: config.json, checkpoint.pt, losses.csv, metrics.json, samples.png,
reconstructions.png, loss_curves.png, samples_epoch_K.png, log.txt.

Exact resume: the data order of epoch e is a permutation seeded by (seed, e), the beta schedule is a
function of the step, and the checkpoint holds model, optimizer, RNG states, the position inside the
epoch and the epoch's running sums, so an interrupted-and-resumed run ends bitwise equal (on CPU) to
an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from probgen.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from probgen.config import FitVAEConfig, PerfConfig, from_dict, to_dict
from probgen.data import ImageData, load_dataset, to_unit
from probgen.data.transforms import bernoulli_resample
from probgen.errors import UserError
from probgen.inference.elbo import make_elbo
from probgen.inference.schedules import beta_at
from probgen.inference.svi import hot_loop
from probgen.models.vae import VAE, resolve_likelihood
from probgen.pipelines.batches import make_batches
from probgen.pipelines.distributed import (
    Dist,
    distributed_loss,
    distributed_session,
    global_batch_draw,
    global_sums,
    local_sums,
    rank_rng_state,
    restore_rng,
    sync_batchnorm,
)
from probgen.pipelines.speed import adam_kwargs, apply_speed_options, make_train_step
from probgen.pipelines.training import (
    GracefulStop,
    NonFiniteGuard,
    epoch_permutation,
    log_to_file,
    resume_config,
)
from probgen.plots import plot_curves, save_grid
from probgen.utils.device import resolve_device
from probgen.utils.io import environment_info, write_csv, write_json
from probgen.utils.progress import progress
from probgen.utils.rundir import CHECKPOINT, prepare_run_dir

log = logging.getLogger("probgen")

# Train-config fields a resumed run may change; everything else must match the stored run.
RESUMABLE_FIELDS = {
    "train": ("epochs", "max_steps", "lr", "checkpoint_every", "sample_epochs", "device", "eval_batch_size"),
    "run": ("progress", "out", "resume", "overwrite"),
    "perf": tuple(f.name for f in dataclasses.fields(PerfConfig)),
}


def build_vae(cfg: FitVAEConfig, image_shape: tuple[int, int, int]) -> VAE:
    return VAE(cfg.model, image_shape)


def load_vae(ckpt: str | Path | dict[str, Any], device: torch.device | str = "cpu") -> tuple[VAE, FitVAEConfig]:
    """Rebuild a trained VAE (in eval mode) and its config from a checkpoint path or loaded dict."""
    data = ckpt if isinstance(ckpt, dict) else load_checkpoint(ckpt, kind="vae")
    if data.get("kind") != "vae":
        raise UserError(f"--ckpt: holds a {data.get('kind')!r} model, but this command needs a VAE")
    cfg = from_dict(FitVAEConfig, data["config"])
    vae = build_vae(cfg, tuple(data["image_shape"]))
    vae.load_state_dict(data["state"]["model"])
    return vae.to(device).eval(), cfg


@torch.no_grad()
def evaluate_elbo(vae: VAE, elbo_fn: Any, images: torch.Tensor, batch_size: int, beta: float) -> dict[str, float]:
    """Per-image averages of the ELBO terms on uint8 ``images`` (one-sample estimates, in nats)."""
    was_training = vae.training
    vae.eval()
    device = next(vae.parameters()).device
    loss_fn = elbo_fn(vae.model, vae.guide)
    sums = torch.zeros(3, device=device, dtype=torch.float64)
    for start in range(0, len(images), batch_size):
        x = to_unit(images[start : start + batch_size].to(device))
        loss_fn(x, beta)
        t = elbo_fn.last_terms
        sums += torch.stack([t["loss"], t["recon"], t["kl"]]).double()
    vae.train(was_training)
    return _term_row(sums, len(images), beta, images[0].numel())


def _term_row(sums: torch.Tensor, n: int, beta: float, pixels: int) -> dict[str, float]:
    loss, recon, kl = (sums / max(n, 1)).tolist()
    elbo = recon - kl
    return {
        "beta": beta,
        "loss": loss,
        "elbo": elbo,
        "recon": recon,
        "kl": kl,
        "neg_elbo_bits_per_dim": -elbo / (pixels * math.log(2)),
    }


class VAETrainer:
    """Holds everything one `fit vae` run mutates; :meth:`run` trains and writes the run directory."""

    def __init__(self, cfg: FitVAEConfig, out: Path, resume: bool, dist: Dist | None = None):
        self.out = out
        self.dist = dist = dist or Dist()  # the torchrun job this process belongs to (or a single process)
        ckpt = dist.from_main(lambda: load_checkpoint(out / CHECKPOINT, kind="vae")) if resume else None
        if ckpt is not None:
            cfg = resume_config(from_dict(FitVAEConfig, ckpt["config"]), cfg, RESUMABLE_FIELDS)
        self.device = dist.device(resolve_device(cfg.train.device))
        self.data: ImageData = load_dataset(cfg.data)
        t = cfg.train
        train, test = self.data.split("train").images, self.data.splits.get("test")
        n = len(train)
        if t.batch_size > n:
            raise UserError(f"--batch-size: {t.batch_size} is larger than the training set ({n} images)")
        if t.batch_size % dist.world_size:
            raise UserError(f"--batch-size: the global batch {t.batch_size} must divide by {dist.world_size} processes")
        test_bytes = 0 if test is None else test.images.numel()
        self.batches, self.placement = make_batches(
            train, self.data.binary, self.device, t.batch_size, cfg.perf, dist.rank, dist.world_size, test_bytes
        )
        on_device = self.placement == "device"  # else the uint8 images stay in host memory
        self.train_images = self.batches.images if on_device else train
        self.test_images = None if test is None else test.images.to(self.device) if on_device else test.images
        # --binarize dynamic: train images stay grey and every batch gets a fresh Bernoulli draw
        self.resample_binary = self.data.notes.get("binarize") == "dynamic"
        if ckpt is None:
            likelihood = resolve_likelihood(cfg.model, self.data.binary)
            cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, likelihood=likelihood))
        self.cfg = cfg
        self.steps_per_epoch = n // t.batch_size  # drop_last: constant batch shapes
        total = t.epochs * self.steps_per_epoch
        self.total_steps = min(total, t.max_steps) if t.max_steps else total
        torch.manual_seed(t.seed)
        self.vae = build_vae(cfg, self.data.image_shape).to(self.device)
        if dist.enabled:
            self.vae = sync_batchnorm(self.vae, self.device)
        apply_speed_options([self.vae.encoder, self.vae.decoder], cfg.perf, self.device)
        self.optim = torch.optim.Adam(self.vae.parameters(), lr=t.lr, **adam_kwargs(cfg.perf, self.device))
        self.elbo = make_elbo(t.elbo)
        self.loss_fn = self.elbo(self.vae.model, self.vae.guide)
        if dist.enabled:  # DDP over Pyro's ELBOModule; gradients equal the single-process ones
            self.loss_fn = distributed_loss(self.elbo, self.vae, dist, self.device)
        self.train_step = make_train_step(self.loss_fn, self.elbo, self.optim, cfg.perf, self.device, dist.enabled)
        self.step = 0
        self.epoch = 0  # epochs completed
        self.batch = 0  # batches done inside the current epoch
        self.sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss, recon, kl of this epoch
        self.history: list[dict[str, Any]] = []
        self.elapsed = 0.0
        if ckpt is not None:
            self._restore(ckpt)
            log.info("resuming %s at step %d (epoch %d)", out, self.step, self.epoch + 1)

    # --- checkpoints ----------------------------------------------------------------------------

    def _payload(self) -> dict[str, Any]:
        """The checkpoint's content; with several processes a collective (every rank calls it)."""
        per_rank = {"rng_ranks": self.dist.all_gather(rank_rng_state(self.device))} if self.dist.enabled else {}
        return {
            "kind": "vae",
            "config": to_dict(self.cfg),
            "image_shape": list(self.data.image_shape),
            "data_source": self.data.source,
            "state": {"model": self.vae.state_dict(), "optimizer": self.optim.state_dict()},
            "schedule": {"name": self.cfg.train.beta_schedule, "beta": self._beta()},
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
        self.vae.load_state_dict(ckpt["state"]["model"])
        self.optim.load_state_dict(ckpt["state"]["optimizer"])
        for group in self.optim.param_groups:  # a resumed run may lower the learning rate
            group["lr"] = self.cfg.train.lr
        self.step, self.epoch, self.batch = ckpt["step"], ckpt["epoch"], ckpt["batch"]
        self.sums = local_sums(ckpt["sums"], self.dist, self.device)
        self.history = list(ckpt["history"])
        self.elapsed = float(ckpt.get("elapsed", 0.0))
        if self.dist.enabled:
            restore_rng(ckpt, self.dist, self.device)
        else:
            set_rng_state(ckpt["rng"])

    def save(self) -> None:
        payload = self._payload()
        if self.dist.is_main:
            save_checkpoint(self.out / CHECKPOINT, payload)

    # --- training -------------------------------------------------------------------------------

    def _beta(self) -> float:
        t = self.cfg.train
        return beta_at(self.step, t.beta, t.beta_schedule, t.beta_warmup_steps, t.beta_cycle_steps)

    def run(self) -> dict[str, Any]:
        t = self.cfg.train
        guard = self.dist.guard(self.device)
        show = self.cfg.run.progress and self.dist.is_main
        bar = progress(self.total_steps, desc="fit vae", enabled=show, initial=self.step)
        started = time.perf_counter()
        with GracefulStop() as stop, bar, hot_loop():
            while self.step < self.total_steps:
                perm = epoch_permutation(len(self.train_images), t.seed, self.epoch)
                batches = self.batches.epoch(perm, self.batch)  # this rank's share of each global batch
                self.vae.train()
                while self.batch < self.steps_per_epoch and self.step < self.total_steps:
                    beta = self._beta()
                    x = next(batches)
                    if self.resample_binary:  # global torch RNG: checkpointed, so resume stays exact
                        x = global_batch_draw(bernoulli_resample, x, self.dist)
                    check = functools.partial(guard.check, step=self.step)  # runs before the update
                    terms = self.train_step(x, beta, check)
                    self.sums += terms.double()
                    self.step += 1
                    self.batch += 1
                    bar.update(1)
                    requested = self.dist.stop_requested(stop, self.step)  # all ranks agree
                    if self.step % t.checkpoint_every == 0 or requested:
                        guard.raise_if_bad()
                        self.elapsed += time.perf_counter() - started
                        started = time.perf_counter()
                        self.save()
                    if requested:
                        stop.exit(self.out)
                if self.batch == self.steps_per_epoch:
                    self._end_epoch(guard)
                else:  # max_steps reached mid-epoch
                    break
        guard.raise_if_bad()
        self.elapsed += time.perf_counter() - started
        self.save()
        return self._finish()

    def _end_epoch(self, guard: NonFiniteGuard) -> None:
        guard.raise_if_bad()
        t = self.cfg.train
        beta = self._beta()
        pixels = self.train_images[0].numel()
        sums = self.dist.all_reduce_sum(self.sums)
        rows = [{"epoch": self.epoch + 1, "step": self.step, "split": "train",
                 **_term_row(sums, self.steps_per_epoch * t.batch_size, beta, pixels)}]  # fmt: skip
        if self.test_images is not None and len(self.test_images):
            test = evaluate_elbo(self.vae, self.elbo, self.test_images, t.eval_batch_size, beta)
            rows.append({"epoch": self.epoch + 1, "step": self.step, "split": "test", **test})
        self.history += rows
        self.epoch += 1
        self.batch = 0
        self.sums.zero_()
        line = "  ".join(
            f"{r['split']} -elbo {-r['elbo']:.2f} (recon {r['recon']:.2f}, kl {r['kl']:.2f})" for r in rows
        )
        log.info("epoch %d/%d step %d beta %.3g  %s", self.epoch, t.epochs, self.step, beta, line)
        if self.dist.is_main:
            self._write_logs()
            if self.epoch in t.sample_epochs:
                save_grid(self._samples(), self.out / f"samples_epoch_{self.epoch}.png")
        self.save()

    # --- outputs --------------------------------------------------------------------------------

    def _samples(self, n: int = 100) -> torch.Tensor:
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.train.seed + 1)  # same noise each time
        self.vae.eval()
        out = self.vae.sample(n, generator=gen)
        self.vae.train()
        return out

    def _write_logs(self, rows: list[dict[str, Any]] | None = None) -> None:
        rows = self.history if rows is None else rows
        write_csv(self.out / "losses.csv", rows)
        if not rows:
            return
        series: dict[str, dict[str, list[float]]] = {"-ELBO (nats)": {}, "reconstruction log-lik": {}, "KL": {}}
        xs: dict[str, list[float]] = {}
        for split in ("train", "test"):
            sel = [r for r in rows if r["split"] == split]
            if sel:
                xs[split] = [r["epoch"] for r in sel]
                series["-ELBO (nats)"][split] = [-r["elbo"] for r in sel]
                series["reconstruction log-lik"][split] = [r["recon"] for r in sel]
                series["KL"][split] = [r["kl"] for r in sel]
        plot_curves(series, xs, self.out / "loss_curves.png", title=f"VAE on {self.data.name}")

    def _finish(self) -> dict[str, Any]:
        sums = self.dist.all_reduce_sum(self.sums)
        if not self.dist.is_main:
            return {}
        self.vae.eval()
        save_grid(self._samples(), self.out / "samples.png")
        ref = self.test_images if self.test_images is not None and len(self.test_images) else self.train_images
        x = to_unit(ref[:20].to(self.device))
        recon = self.vae.reconstruct(x)
        pairs = torch.cat([x[:10], recon[:10], x[10:20], recon[10:20]])
        save_grid(pairs, self.out / "reconstructions.png", nrow=10)
        rows = list(self.history)
        if self.batch:  # stopped by --max-steps inside an epoch: report the partial epoch too
            t = self.cfg.train
            frac = self.epoch + self.batch / self.steps_per_epoch
            pixels = self.train_images[0].numel()
            rows.append({"epoch": frac, "step": self.step, "split": "train",
                         **_term_row(sums, self.batch * t.batch_size, self._beta(), pixels)})  # fmt: skip
            if self.test_images is not None and len(self.test_images):
                test = evaluate_elbo(self.vae, self.elbo, self.test_images, t.eval_batch_size, self._beta())
                rows.append({"epoch": frac, "step": self.step, "split": "test", **test})
        self._write_logs(rows)
        final = {r["split"]: r for r in rows}  # the last row of each split
        metrics = {
            "kind": "vae",
            "dataset": self.data.name,
            "data_source": self.data.source,
            "num_train": len(self.train_images),
            "num_test": 0 if self.test_images is None else len(self.test_images),
            "likelihood": self.cfg.model.likelihood,
            "steps": self.step,
            "epochs_completed": self.epoch,
            "train_seconds": self.elapsed,
            "images_per_second": self.step * self.cfg.train.batch_size / max(self.elapsed, 1e-9),
            "world_size": self.dist.world_size,
            "data_placement": self.placement,
            "final": final,
            "units": "nats per image (averages over the split); bits/dim = nats / (pixels * ln 2)",
            "environment": environment_info(self.device),
        }
        write_json(self.out / "metrics.json", metrics)
        return metrics


def fit_vae(cfg: FitVAEConfig) -> Path:
    """Train a VAE as configured; returns the run directory."""
    with distributed_session(resolve_device(cfg.train.device)) as dist:  # a no-op outside torchrun
        out, resuming = dist.from_main(lambda: prepare_run_dir(cfg.run, "vae", cfg.data.dataset))
        with log_to_file(out / "log.txt") if dist.is_main else contextlib.nullcontext():
            trainer = VAETrainer(cfg, out, resuming, dist)
            if not resuming and dist.is_main:
                env = environment_info(trainer.device)
                write_json(out / "config.json", {**to_dict(trainer.cfg), "environment": env})
            log.info("run directory: %s%s", out, f" ({dist.world_size} processes)" if dist.enabled else "")
            trainer.run()
            log.info("done: %s (samples.png, reconstructions.png, loss_curves.png, metrics.json)", out)
    return out
