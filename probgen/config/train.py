"""How models train: SVI / the VAE objective, the DCGAN's optimiser, and the speed settings."""

from __future__ import annotations

from dataclasses import dataclass

from probgen.config.base import _help, check, check_device, choice, device_field


@dataclass
class TrainConfig:
    """How SVI runs: epochs, optimiser, beta and its schedule, checkpoints."""

    epochs: int = _help("training epochs", default=30)
    max_steps: int | None = _help(
        "stop after this many optimiser steps in total (0: no limit, which lifts an earlier limit on --resume)",
        default=None,
    )
    batch_size: int = _help("training batch size", default=64)
    eval_batch_size: int = _help("batch size for test-set evaluation", default=512)
    lr: float = _help("Adam learning rate", default=5e-4)
    beta: float = _help("weight of the KL term (beta-VAE); 1 is the true ELBO", default=1.0)
    beta_schedule: str = _help("constant, linear (warm-up) or cyclical", default="constant")
    beta_warmup_steps: int = _help("steps of the linear warm-up from 0 to --beta", default=10000)
    beta_cycle_steps: int = _help("period of the cyclical schedule, in steps", default=10000)
    elbo: str = _help(
        "trace (Trace_ELBO), tracemeanfield (analytic KL) or iwae (RenyiELBO alpha=0: the IWAE bound of "
        "Burda et al. 2016)",
        default="trace",
    )
    particles: int = _help("samples of z per image: the K of --elbo iwae (other ELBOs average K samples)", default=1)
    seed: int = _help("random seed", default=0)
    device: str = device_field()
    checkpoint_every: int = _help("write checkpoint.pt every N steps (and at the end)", default=1000)
    sample_epochs: tuple[int, ...] = _help("epochs that also get samples_epoch_K.png", default=(1,))
    recon_accuracy_steps: int = _help(
        "N > 0: after training, the dataset's domain classifier (trained N steps on the training images, "
        "cached; 2000 steps know dSprites' shapes) classifies the reconstructions of 500 random test images; "
        "metrics.json gets each generative factor's accuracy (dSprites: shape, scale, orientation, x, y). 0: off",
        default=0,
    )

    def __post_init__(self) -> None:
        check(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        check(self.max_steps is None or self.max_steps >= 0, "max_steps", f"must be >= 0, got {self.max_steps}")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.eval_batch_size >= 1, "eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        check(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        check(self.recon_accuracy_steps >= 0, "recon_accuracy_steps", f"must be >= 0, got {self.recon_accuracy_steps}")
        check(self.beta > 0, "beta", f"must be > 0 (Pyro's poutine.scale needs a positive scale), got {self.beta}")
        choice(self.beta_schedule, "beta_schedule", ("constant", "linear", "cyclical"))
        check(self.beta_warmup_steps >= 1, "beta_warmup_steps", f"must be >= 1, got {self.beta_warmup_steps}")
        check(self.beta_cycle_steps >= 2, "beta_cycle_steps", f"must be >= 2, got {self.beta_cycle_steps}")
        choice(self.elbo, "elbo", ("trace", "tracemeanfield", "iwae"))
        check(self.particles >= 1, "particles", f"must be >= 1, got {self.particles}")
        check_device(self.device)
        check(self.checkpoint_every >= 1, "checkpoint_every", f"must be >= 1, got {self.checkpoint_every}")
        check(all(e >= 1 for e in self.sample_epochs), "sample_epochs", f"must be >= 1: {self.sample_epochs}")


@dataclass
class GANTrainConfig:
    """How the DCGAN trains: Adam, non-saturating loss, EMA, checkpoints, evaluation and early stopping."""

    epochs: int = _help("training epochs (the maximum, with early stopping)", default=25)
    max_steps: int | None = _help(
        "stop after this many steps, one D and one G update each (0: no limit; lifts an earlier limit on --resume)",
        default=None,
    )
    batch_size: int = _help("training batch size", default=128)
    lr: float = _help("Adam learning rate of both networks", default=2e-4)
    beta1: float = _help("Adam beta1 of both networks", default=0.5)
    beta2: float = _help("Adam beta2 of both networks", default=0.999)
    ema_decay: float = _help("decay of an EMA copy of the generator (0 = no EMA; e.g. 0.999)", default=0.0)
    seed: int = _help("random seed", default=0)
    device: str = device_field()
    checkpoint_every: int = _help("write checkpoint.pt every N steps (and at each epoch's end)", default=1000)
    sample_epochs: tuple[int, ...] = _help("epochs that also get samples_epoch_K.png", default=(1, 10, 20))
    eval_every: int = _help("compute FID / FD every K epochs (0 = never)", default=0)
    early_stop_patience: int | None = _help(
        "stop after P evaluations without improvement (needs --eval-every)", default=None
    )

    def __post_init__(self) -> None:
        check(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        check(self.max_steps is None or self.max_steps >= 0, "max_steps", f"must be >= 0, got {self.max_steps}")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        check(0.0 <= self.beta1 < 1.0, "beta1", f"must be in [0, 1), got {self.beta1}")
        check(0.0 <= self.beta2 < 1.0, "beta2", f"must be in [0, 1), got {self.beta2}")
        check(0.0 <= self.ema_decay < 1.0, "ema_decay", f"must be in [0, 1), got {self.ema_decay}")
        check_device(self.device)
        check(self.checkpoint_every >= 1, "checkpoint_every", f"must be >= 1, got {self.checkpoint_every}")
        check(all(e >= 1 for e in self.sample_epochs), "sample_epochs", f"must be >= 1: {self.sample_epochs}")
        check(self.eval_every >= 0, "eval_every", f"must be >= 0, got {self.eval_every}")
        p = self.early_stop_patience
        check(p is None or p >= 1, "early_stop_patience", f"must be >= 1, got {p}")
        check(p is None or self.eval_every > 0, "early_stop_patience", "needs --eval-every K > 0")


@dataclass
class PerfConfig:
    """Where the training data lives and optional speed settings; none changes what is computed.

    Off by default unless measured to help (docs/scale.md). TF32 and bf16 change float rounding.
    """

    data_placement: str = _help(
        "auto (on the device when it fits --device-memory-fraction, bit-packed if binary and that fits, "
        "else streamed), device (uint8), packed (binary data, 1 bit per pixel), stream (DataLoader)",
        default="auto",
    )
    device_memory_fraction: float = _help(
        "auto placement: the training + test images may take this fraction of the GPU's free memory", default=0.5
    )
    num_workers: int = _help("DataLoader worker processes when the data are streamed", default=2)
    pin_memory: bool = _help("page-locked host batches when streaming to a GPU", default=True)
    channels_last: bool = _help("NHWC memory layout for the conv nets and inputs", default=False)
    tf32: bool = _help("TensorFloat-32 matmuls and convolutions on Ampere+ GPUs (10-bit mantissa)", default=False)
    cudnn_benchmark: bool = _help("let cuDNN time its convolution algorithms (fixed shapes)", default=False)
    amp: str = _help(
        "mixed precision of the networks (encoder/decoder; G and D): none or bf16 (losses stay fp32)", default="none"
    )
    compile: str = _help(
        "torch.compile the networks (encoder/decoder; G and D): none, default or reduce-overhead (CUDA graphs)",
        default="none",
    )
    cuda_graph: bool = _help(
        "fit vae: capture the whole SVI step (Pyro tracing, backward, Adam) as one CUDA graph and replay it",
        default=False,
    )

    def __post_init__(self) -> None:
        choice(self.data_placement, "data_placement", ("auto", "device", "packed", "stream"))
        check(
            0.0 < self.device_memory_fraction <= 1.0,
            "device_memory_fraction",
            f"must be in (0, 1], got {self.device_memory_fraction}",
        )
        check(self.num_workers >= 0, "num_workers", f"must be >= 0, got {self.num_workers}")
        choice(self.amp, "amp", ("none", "bf16"))
        choice(self.compile, "compile", ("none", "default", "reduce-overhead"))
        check(not (self.cuda_graph and self.compile != "none"), "cuda_graph", "cannot be combined with --compile")
