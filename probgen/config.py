"""Dataclass configs: the one home of probgen's defaults.

The CLI builds its flags from these dataclasses (`--latent-dim` is `VAEConfig.latent_dim`) and the
Python API takes them directly, so both see the same defaults and the same validation. Every check
raises :class:`~probgen.errors.UserError` naming the flag.

Defaults are full training settings for a GPU; the README shows the flags for a quick CPU run.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from probgen.errors import UserError

T = TypeVar("T")


def _help(text: str, **kw: Any) -> Any:
    """A dataclass field whose metadata carries the CLI help text."""
    return field(metadata={"help": text}, **kw)


def flag(name: str) -> str:
    """The CLI flag of a config field: ``latent_dim`` -> ``--latent-dim``."""
    return "--" + name.replace("_", "-")


def _check(cond: bool, name: str, msg: str) -> None:
    if not cond:
        raise UserError(f"{flag(name)}: {msg}")


def _choice(value: str, name: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, name, f"invalid choice {value!r} (choose from {', '.join(choices)})")


@dataclass
class DataConfig:
    """Which dataset, where its files are, and how it is split."""

    dataset: str = _help("dataset name (see `probgen data list`)", default="dsprites")
    data_root: str | None = _help(
        "folder holding the dataset files (default: $PROBGEN_DATA, then ./data)", default=None
    )
    limit: int | None = _help("use only N images in total (before the split), for quick runs", default=None)
    test_fraction: float = _help("fraction held out for testing when no official split exists", default=0.1)
    val_fraction: float = _help("fraction held out for validation when no official split exists", default=0.0)
    split_seed: int = _help("seed of the permutation that makes the split", default=0)
    image_size: int | None = _help("resize images to M x M (default: the dataset's native size)", default=None)
    channels: int | None = _help("1 or 3 channels (default: the dataset's own)", default=None)
    binarize: str = _help("MNIST binarisation: none, static (threshold) or dynamic (resampled)", default="none")
    skip_bad: bool = _help("skip unreadable images (and report the count) instead of failing", default=False)

    def __post_init__(self) -> None:
        _check(bool(self.dataset), "dataset", "must not be empty")
        _check(self.limit is None or self.limit > 0, "limit", f"must be positive, got {self.limit}")
        _check(0.0 <= self.test_fraction < 1.0, "test_fraction", f"must be in [0, 1), got {self.test_fraction}")
        _check(0.0 <= self.val_fraction < 1.0, "val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        _check(self.test_fraction + self.val_fraction < 1.0, "test_fraction", "test + val fractions must be < 1")
        _check(self.image_size is None or self.image_size >= 8, "image_size", f"must be >= 8, got {self.image_size}")
        _check(self.channels in (None, 1, 3), "channels", f"must be 1 or 3, got {self.channels}")
        _choice(self.binarize, "binarize", ("none", "static", "dynamic"))


@dataclass
class VAEConfig:
    """The VAE's networks and likelihood (Burgess et al. 2018 conv nets by default)."""

    arch: str = _help("encoder/decoder family: conv or mlp", default="conv")
    latent_dim: int = _help("dimension of z", default=10)
    conv_channels: tuple[int, ...] = _help("channels of the conv layers (k4 s2 each)", default=(32, 32, 32, 32))
    kernel_size: int = _help("conv kernel size (stride 2, 'same'-style padding)", default=4)
    hidden_dims: tuple[int, ...] = _help("widths of the fully connected layers", default=(256, 256))
    activation: str = _help("relu, leaky_relu or elu", default="relu")
    negative_slope: float = _help("slope of leaky_relu", default=0.01)
    batch_norm: bool = _help("batch-norm after each conv layer", default=False)
    dropout: float = _help("dropout probability (0 = off)", default=0.0)
    dropout_in: str = _help("where dropout acts: encoder or both", default="encoder")
    likelihood: str = _help(
        "auto (bernoulli for binary data, else gaussian), bernoulli, gaussian (fixed --obs-scale) or gaussian-learned",
        default="auto",
    )
    obs_scale: float = _help("std of the Gaussian likelihood, in pixel units of [0, 1]", default=0.1)

    def __post_init__(self) -> None:
        _choice(self.arch, "arch", ("conv", "mlp"))
        _check(self.latent_dim >= 1, "latent_dim", f"must be >= 1, got {self.latent_dim}")
        _check(len(self.conv_channels) >= 1, "conv_channels", "needs at least one layer")
        _check(all(c >= 1 for c in self.conv_channels), "conv_channels", f"must be positive: {self.conv_channels}")
        _check(self.kernel_size in (3, 4, 5), "kernel_size", f"must be 3, 4 or 5, got {self.kernel_size}")
        _check(all(h >= 1 for h in self.hidden_dims), "hidden_dims", f"must be positive: {self.hidden_dims}")
        _choice(self.activation, "activation", ("relu", "leaky_relu", "elu"))
        _check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        _choice(self.dropout_in, "dropout_in", ("encoder", "both"))
        _choice(self.likelihood, "likelihood", ("auto", "bernoulli", "gaussian", "gaussian-learned"))
        _check(self.obs_scale > 0, "obs_scale", f"must be positive, got {self.obs_scale}")


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
    particles: int = _help(
        "samples of z per image: the K of --elbo iwae (the others average K ELBO samples)", default=1
    )
    seed: int = _help("random seed", default=0)
    device: str = _help("auto, cpu or cuda", default="auto")
    checkpoint_every: int = _help("write checkpoint.pt every N steps (and at the end)", default=1000)
    sample_epochs: tuple[int, ...] = _help("epochs that also get samples_epoch_K.png", default=(1,))

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        _check(self.max_steps is None or self.max_steps >= 0, "max_steps", f"must be >= 0, got {self.max_steps}")
        _check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.eval_batch_size >= 1, "eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        _check(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        _check(self.beta > 0, "beta", f"must be > 0 (Pyro's poutine.scale needs a positive scale), got {self.beta}")
        _choice(self.beta_schedule, "beta_schedule", ("constant", "linear", "cyclical"))
        _check(self.beta_warmup_steps >= 1, "beta_warmup_steps", f"must be >= 1, got {self.beta_warmup_steps}")
        _check(self.beta_cycle_steps >= 2, "beta_cycle_steps", f"must be >= 2, got {self.beta_cycle_steps}")
        _choice(self.elbo, "elbo", ("trace", "tracemeanfield", "iwae"))
        _check(self.particles >= 1, "particles", f"must be >= 1, got {self.particles}")
        _choice(self.device, "device", ("auto", "cpu", "cuda"))
        _check(self.checkpoint_every >= 1, "checkpoint_every", f"must be >= 1, got {self.checkpoint_every}")
        _check(all(e >= 1 for e in self.sample_epochs), "sample_epochs", f"must be >= 1: {self.sample_epochs}")


@dataclass
class RunConfig:
    """Where a run writes, and what it may do to an existing run directory."""

    out: str | None = _help("run directory (default: runs/<kind>-<dataset>-<time>)", default=None)
    resume: bool = _help("continue the run in --out from its checkpoint", default=False)
    overwrite: bool = _help("delete an existing run directory at --out and start again", default=False)
    progress: bool = _help("show a progress bar (only on a terminal)", default=True)
    tensorboard: bool = _help(
        "also log losses and image grids to <out>/tensorboard (needs: pip install 'probgen[tensorboard]')",
        default=False,
    )

    def __post_init__(self) -> None:
        _check(not (self.resume and self.overwrite), "resume", "cannot be combined with --overwrite")


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
    amp: str = _help("mixed precision of the encoder/decoder nets: none or bf16 (ELBO terms stay fp32)", default="none")
    compile: str = _help(
        "torch.compile the encoder and decoder: none, default or reduce-overhead (CUDA graphs)", default="none"
    )
    cuda_graph: bool = _help(
        "capture the whole SVI step (Pyro tracing, backward, Adam) as one CUDA graph and replay it", default=False
    )

    def __post_init__(self) -> None:
        _choice(self.data_placement, "data_placement", ("auto", "device", "packed", "stream"))
        _check(
            0.0 < self.device_memory_fraction <= 1.0,
            "device_memory_fraction",
            f"must be in (0, 1], got {self.device_memory_fraction}",
        )
        _check(self.num_workers >= 0, "num_workers", f"must be >= 0, got {self.num_workers}")
        _choice(self.amp, "amp", ("none", "bf16"))
        _choice(self.compile, "compile", ("none", "default", "reduce-overhead"))
        _check(not (self.cuda_graph and self.compile != "none"), "cuda_graph", "cannot be combined with --compile")


OBJECTIVES = ("elbo", "beta-tcvae", "factor-vae", "dip-vae-ii", "capacity")


@dataclass
class ObjectiveConfig:
    """The VAE's training objective beyond the (beta-)ELBO (docs/zoo.md); the generative model is the same."""

    objective: str = _help(
        "elbo (beta-VAE with --beta), beta-tcvae (Chen et al. 2018), factor-vae (Kim & Mnih 2018), "
        "dip-vae-ii (Kumar et al. 2018) or capacity (Burgess et al. 2018)",
        default="elbo",
    )
    tc_beta: float = _help("beta-tcvae: weight of the total correlation (1: the ELBO)", default=6.0)
    factor_gamma: float = _help("factor-vae: weight of the discriminator's total-correlation estimate", default=10.0)
    factor_disc_hidden: tuple[int, ...] = _help(
        "factor-vae: hidden widths of the latent discriminator MLP", default=(1000, 1000, 1000, 1000, 1000, 1000)
    )
    factor_disc_lr: float = _help("factor-vae: Adam learning rate of the discriminator (betas 0.5, 0.9)", default=1e-4)
    dip_lambda_od: float = _help("dip-vae-ii: weight of the off-diagonal covariance penalty", default=10.0)
    dip_lambda_d: float = _help("dip-vae-ii: weight of the diagonal (variance - 1) penalty", default=10.0)
    capacity_gamma: float = _help("capacity: weight gamma of |KL - C|", default=1000.0)
    capacity_max: float = _help("capacity: final capacity C_max in nats per image", default=25.0)
    capacity_steps: int = _help("capacity: steps of the linear increase of C from 0 to C_max", default=100000)

    def __post_init__(self) -> None:
        _choice(self.objective, "objective", OBJECTIVES)
        _check(self.tc_beta >= 0, "tc_beta", f"must be >= 0, got {self.tc_beta}")
        _check(self.factor_gamma >= 0, "factor_gamma", f"must be >= 0, got {self.factor_gamma}")
        _check(
            len(self.factor_disc_hidden) >= 1 and min(self.factor_disc_hidden) >= 1,
            "factor_disc_hidden",
            f"must be positive and non-empty: {self.factor_disc_hidden}",
        )
        _check(self.factor_disc_lr > 0, "factor_disc_lr", f"must be positive, got {self.factor_disc_lr}")
        _check(self.dip_lambda_od >= 0, "dip_lambda_od", f"must be >= 0, got {self.dip_lambda_od}")
        _check(self.dip_lambda_d >= 0, "dip_lambda_d", f"must be >= 0, got {self.dip_lambda_d}")
        _check(self.capacity_gamma >= 0, "capacity_gamma", f"must be >= 0, got {self.capacity_gamma}")
        _check(self.capacity_max >= 0, "capacity_max", f"must be >= 0, got {self.capacity_max}")
        _check(self.capacity_steps >= 1, "capacity_steps", f"must be >= 1, got {self.capacity_steps}")


@dataclass
class FitVAEConfig:
    """Everything `probgen fit vae` needs; stored in config.json and in the checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    model: VAEConfig = field(default_factory=VAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    run: RunConfig = field(default_factory=RunConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)


@dataclass
class GANConfig:
    """The DCGAN's networks (Radford et al. 2015); the image size comes from the data (16 to 256 px)."""

    latent_dim: int = _help("dimension of the generator's noise z", default=100)
    latent_dist: str = _help("noise z: normal (N(0, I)), uniform (U[-1, 1]) or uniform01 (U[0, 1])", default="normal")
    g_channels: int = _help("generator width: channels of its last hidden layer (ngf)", default=64)
    d_channels: int = _help("discriminator width: channels of its first layer (ndf)", default=64)
    g_norm: str = _help("generator normalisation: batch, instance or none", default="batch")
    d_norm: str = _help("discriminator normalisation: batch, instance or none", default="batch")
    init: str = _help("weight init: normal (N(0, 0.02), Radford et al.) or he (Kaiming normal)", default="normal")
    output: str = _help("generator output: tanh (images in [-1, 1]) or sigmoid (images in [0, 1])", default="tanh")
    leaky_slope: float = _help("negative slope of the discriminator's LeakyReLU", default=0.2)

    def __post_init__(self) -> None:
        _check(self.latent_dim >= 1, "latent_dim", f"must be >= 1, got {self.latent_dim}")
        _choice(self.latent_dist, "latent_dist", ("normal", "uniform", "uniform01"))
        _check(self.g_channels >= 1, "g_channels", f"must be >= 1, got {self.g_channels}")
        _check(self.d_channels >= 1, "d_channels", f"must be >= 1, got {self.d_channels}")
        _choice(self.g_norm, "g_norm", ("batch", "instance", "none"))
        _choice(self.d_norm, "d_norm", ("batch", "instance", "none"))
        _choice(self.init, "init", ("normal", "he"))
        _choice(self.output, "output", ("tanh", "sigmoid"))
        _check(0.0 <= self.leaky_slope < 1.0, "leaky_slope", f"must be in [0, 1), got {self.leaky_slope}")


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
    device: str = _help("auto, cpu or cuda", default="auto")
    checkpoint_every: int = _help("write checkpoint.pt every N steps (and at each epoch's end)", default=1000)
    sample_epochs: tuple[int, ...] = _help("epochs that also get samples_epoch_K.png", default=(1, 10, 20))
    eval_every: int = _help("compute FID / FD every K epochs (0 = never)", default=0)
    early_stop_patience: int | None = _help(
        "stop after P evaluations without improvement (needs --eval-every)", default=None
    )

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        _check(self.max_steps is None or self.max_steps >= 0, "max_steps", f"must be >= 0, got {self.max_steps}")
        _check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        _check(0.0 <= self.beta1 < 1.0, "beta1", f"must be in [0, 1), got {self.beta1}")
        _check(0.0 <= self.beta2 < 1.0, "beta2", f"must be in [0, 1), got {self.beta2}")
        _check(0.0 <= self.ema_decay < 1.0, "ema_decay", f"must be in [0, 1), got {self.ema_decay}")
        _choice(self.device, "device", ("auto", "cpu", "cuda"))
        _check(self.checkpoint_every >= 1, "checkpoint_every", f"must be >= 1, got {self.checkpoint_every}")
        _check(all(e >= 1 for e in self.sample_epochs), "sample_epochs", f"must be >= 1: {self.sample_epochs}")
        _check(self.eval_every >= 0, "eval_every", f"must be >= 0, got {self.eval_every}")
        p = self.early_stop_patience
        _check(p is None or p >= 1, "early_stop_patience", f"must be >= 1, got {p}")
        _check(p is None or self.eval_every > 0, "early_stop_patience", "needs --eval-every K > 0")


@dataclass
class EvalConfig:
    """How samples are scored: feature network, metrics, sample counts and the reference split."""

    features: str = _help(
        "inception (FID/IS/KID; needs local weights) or domain (FD-<dataset> from a classifier trained on the data)",
        default="domain",
    )
    metrics: tuple[str, ...] = _help(
        "any of fid, kid, is (default: fid,kid,is with inception; fid,kid with domain features)", default=()
    )
    num_samples: int = _help("number of generated images scored", default=1000)
    num_real: int | None = _help("number of real reference images (default: --num-samples)", default=None)
    ref_split: str = _help("split of the dataset that holds the real reference images", default="train")
    inception_weights: str | None = _help(
        "torch-fidelity Inception weights file (else $PROBGEN_INCEPTION_WEIGHTS, else the torch hub cache)",
        default=None,
    )
    antialias: bool = _help(
        "resize to 299 with antialiasing (default: off, the TF-compatible resize of published FIDs)", default=False
    )
    feature_batch_size: int = _help("images per batch through the feature network", default=100)
    kid_subsets: int = _help("number of random subsets KID averages over", default=100)
    kid_subset_size: int | None = _help("images per KID subset (default: min(1000, N/2))", default=None)
    is_splits: int = _help("number of splits Inception Score averages over", default=10)
    domain_steps: int = _help("training steps of the domain feature network (when not cached)", default=2000)
    cache_dir: str | None = _help(
        "cache of domain networks and reference statistics (default: $PROBGEN_CACHE, else ~/.cache/probgen)",
        default=None,
    )
    eval_seed: int = _help("seed of the generated samples, the real subset and the KID/IS subsets", default=0)

    def __post_init__(self) -> None:
        _choice(self.features, "features", ("inception", "domain"))
        for m in self.metrics:
            _choice(m, "metrics", ("fid", "kid", "is"))
        _check(len(set(self.metrics)) == len(self.metrics), "metrics", f"repeated metric in {self.metrics}")
        _check(
            self.features == "inception" or "is" not in self.metrics,
            "metrics",
            "is (Inception Score) needs ImageNet classes: use --features inception",
        )
        _check(self.num_samples >= 2, "num_samples", f"must be >= 2, got {self.num_samples}")
        _check(self.num_real is None or self.num_real >= 2, "num_real", f"must be >= 2, got {self.num_real}")
        _check(bool(self.ref_split), "ref_split", "must not be empty")
        _check(self.feature_batch_size >= 1, "feature_batch_size", f"must be >= 1, got {self.feature_batch_size}")
        _check(self.kid_subsets >= 1, "kid_subsets", f"must be >= 1, got {self.kid_subsets}")
        k = self.kid_subset_size
        _check(k is None or k >= 2, "kid_subset_size", f"must be >= 2, got {k}")
        _check(self.is_splits >= 1, "is_splits", f"must be >= 1, got {self.is_splits}")
        _check(self.domain_steps >= 1, "domain_steps", f"must be >= 1, got {self.domain_steps}")

    def metric_names(self) -> tuple[str, ...]:
        """The metrics to compute: ``--metrics``, else all that apply to the feature network."""
        if self.metrics:
            return self.metrics
        return ("fid", "kid", "is") if self.features == "inception" else ("fid", "kid")


@dataclass
class FitGANConfig:
    """Everything `probgen fit gan` needs; stored in config.json and in the checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    model: GANConfig = field(default_factory=GANConfig)
    train: GANTrainConfig = field(default_factory=GANTrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)


@dataclass
class EvalTargetConfig:
    """What `probgen eval` scores and where it writes."""

    ckpt: str | None = _help("checkpoint file (or its run directory) of a VAE or a GAN (required)", default=None)
    out: str | None = _help("JSON file to write (default: eval.json next to the checkpoint)", default=None)
    overwrite: bool = _help("replace the JSON file if it exists", default=False)
    json: bool = _help("print the results as JSON on stdout (instead of one line per metric)", default=False)
    data_root: str | None = _help("folder of the dataset files, if not where the training run found them", default=None)
    device: str = _help("auto, cpu or cuda", default="auto")
    progress: bool = _help("show a progress bar (only on a terminal)", default=True)

    def __post_init__(self) -> None:
        _choice(self.device, "device", ("auto", "cpu", "cuda"))


@dataclass
class EvaluateConfig:
    """Everything `probgen eval` needs."""

    eval: EvalConfig = field(default_factory=EvalConfig)
    target: EvalTargetConfig = field(default_factory=EvalTargetConfig)


@dataclass
class DisentangleConfig:
    """`probgen disentangle`: disentanglement metrics of a VAE's encoder means from known factors."""

    split: str = _help("data split whose images are encoded", default="test")
    num_points: int = _help("encode at most this many images of the split (a seeded subset)", default=10000)
    num_train: int = _help("training points (BetaVAE) / votes (FactorVAE)", default=10000)
    num_eval: int = _help("evaluation points (BetaVAE) / votes (FactorVAE)", default=5000)
    group_size: int = _help("pairs (BetaVAE) / images (FactorVAE) per point that share one factor", default=64)
    num_bins: int = _help("equal-width bins per code dimension (MIG, SAP)", default=20)
    holdout_fraction: float = _help("fraction of the encoded points held out by DCI and SAP", default=1 / 3)
    seed: int = _help("seed of the subset, the split and the metric sampling", default=0)
    data_root: str | None = _help("folder holding the dataset files (default: the checkpoint's)", default=None)
    device: str = _help("auto, cpu or cuda", default="auto")

    def __post_init__(self) -> None:
        _check(bool(self.split), "split", "must not be empty")
        _check(self.num_points >= 10, "num_points", f"must be >= 10, got {self.num_points}")
        _check(self.num_train >= 1, "num_train", f"must be >= 1, got {self.num_train}")
        _check(self.num_eval >= 1, "num_eval", f"must be >= 1, got {self.num_eval}")
        _check(self.group_size >= 2, "group_size", f"must be >= 2, got {self.group_size}")
        _check(self.num_bins >= 2, "num_bins", f"must be >= 2, got {self.num_bins}")
        _check(0.0 < self.holdout_fraction < 1.0, "holdout_fraction", f"must be in (0, 1), got {self.holdout_fraction}")
        _choice(self.device, "device", ("auto", "cpu", "cuda"))


@dataclass
class AEConfig:
    """The plain autoencoder baseline (`probgen fit ae`): the VAE's networks, no sampling, no KL."""

    bottleneck: bool = _help(
        "a linear bottleneck of --latent-dim units between the conv stacks (default: none, purely convolutional)",
        default=False,
    )


@dataclass
class FitAEConfig:
    """Everything `probgen fit ae` needs (the train section's beta settings are unused)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: VAEConfig = field(default_factory=VAEConfig)
    ae: AEConfig = field(default_factory=AEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)


@dataclass
class CVAEConfig:
    """The conditional VAE's labels (`probgen fit cvae`)."""

    label_factor: str = _help(
        "for datasets without labels, the generative factor used as the class (dSprites: shape)", default="shape"
    )
    num_classes: int | None = _help("number of classes (default: 1 + the largest training label)", default=None)

    def __post_init__(self) -> None:
        _check(bool(self.label_factor), "label_factor", "must not be empty")
        _check(
            self.num_classes is None or self.num_classes >= 2, "num_classes", f"must be >= 2, got {self.num_classes}"
        )


@dataclass
class FitCVAEConfig:
    """Everything `probgen fit cvae` needs."""

    data: DataConfig = field(default_factory=DataConfig)
    model: VAEConfig = field(default_factory=VAEConfig)
    cvae: CVAEConfig = field(default_factory=CVAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)


@dataclass
class VAEGANConfig:
    """The discriminator of the VAE-GAN (`probgen fit vaegan`, Larsen et al. 2016)."""

    gan_weight: float = _help("weight of the adversarial loss added to -ELBO (both in nats per image)", default=1.0)
    disc_channels: tuple[int, ...] | None = _help(
        "channels of the discriminator's stride-2 conv layers (default: --conv-channels)", default=None
    )
    disc_lr: float = _help("Adam learning rate of the discriminator", default=2e-4)

    def __post_init__(self) -> None:
        _check(self.gan_weight >= 0, "gan_weight", f"must be >= 0, got {self.gan_weight}")
        _check(
            self.disc_channels is None or (len(self.disc_channels) >= 1 and min(self.disc_channels) >= 1),
            "disc_channels",
            f"must be positive and non-empty: {self.disc_channels}",
        )
        _check(self.disc_lr > 0, "disc_lr", f"must be positive, got {self.disc_lr}")


@dataclass
class FitVAEGANConfig(FitVAEConfig):
    """Everything `probgen fit vaegan` needs: a VAE's settings plus the discriminator's."""

    gan: VAEGANConfig = field(default_factory=VAEGANConfig)


@dataclass
class PlotConfig:
    """`probgen plot traversals|manifold|latents|reconstructions`: latent-space figures of a checkpoint."""

    split: str = _help("data split whose images are encoded or reconstructed", default="test")
    num_images: int = _help("reconstructions: images of the split, from its start (a fixed batch)", default=32)
    nrow: int = _help("reconstructions: images per row", default=8)
    num_points: int = _help("latents: encode at most this many images of the split", default=2000)
    projection: str = _help("latents when latent_dim > 2: pca (of the means) or first (two dimensions)", default="pca")
    label_factor: str = _help("latents: colour by this generative factor when the data have no labels", default="shape")
    index: int = _help("traversals: the image of the split whose encoder mean is the starting point", default=0)
    dims: tuple[int, ...] | None = _help(
        "traversals: latent dimensions to vary (default: the 10 of largest mean KL)", default=None
    )
    span: float = _help(
        "traversals: each dimension takes values in [-span, span] (prior sds); the others keep the start's", default=3.0
    )
    steps: int = _help("traversals: values per dimension", default=9)
    grid: int = _help("manifold: images per side of the grid over the 2-D latent space", default=20)
    label: int = _help("conditional VAE: the class to decode in traversals and the manifold", default=0)
    data_root: str | None = _help("folder holding the dataset files (default: the checkpoint's)", default=None)
    device: str = _help("auto, cpu or cuda", default="auto")

    def __post_init__(self) -> None:
        _check(bool(self.split), "split", "must not be empty")
        _check(self.num_images >= 1, "num_images", f"must be >= 1, got {self.num_images}")
        _check(self.nrow >= 1, "nrow", f"must be >= 1, got {self.nrow}")
        _check(self.num_points >= 2, "num_points", f"must be >= 2, got {self.num_points}")
        _choice(self.projection, "projection", ("pca", "first"))
        _check(self.index >= 0, "index", f"must be >= 0, got {self.index}")
        _check(self.dims is None or (len(self.dims) >= 1 and min(self.dims) >= 0), "dims", f"bad dims {self.dims}")
        _check(self.span > 0, "span", f"must be positive, got {self.span}")
        _check(self.steps >= 2, "steps", f"must be >= 2, got {self.steps}")
        _check(self.grid >= 2, "grid", f"must be >= 2, got {self.grid}")
        _check(self.label >= 0, "label", f"must be >= 0, got {self.label}")
        _choice(self.device, "device", ("auto", "cpu", "cuda"))


@dataclass
class SweepConfig:
    """`probgen sweep`: which model the grid trains; the grid itself is ``--grid`` or a config file's ``grid``."""

    kind: str = _help("model of every run: vae, ae, cvae or vaegan", default="vae")
    grid: tuple[str, ...] = _help("FIELD=V1,V2 ... (tuple fields: V1/V2 with commas inside)", default=())

    def __post_init__(self) -> None:
        _choice(self.kind, "kind", ("vae", "ae", "cvae", "vaegan"))


@dataclass
class SweepFlags:
    """Every setting `probgen sweep` accepts: the sweep's own and the base settings of each run."""

    sweep: SweepConfig = field(default_factory=SweepConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: VAEConfig = field(default_factory=VAEConfig)
    ae: AEConfig = field(default_factory=AEConfig)
    cvae: CVAEConfig = field(default_factory=CVAEConfig)
    gan: VAEGANConfig = field(default_factory=VAEGANConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    run: RunConfig = field(default_factory=RunConfig)


@dataclass
class ChainCheckConfig:
    """Thresholds that decide whether HMC chains mixed (Vehtari et al. 2021)."""

    rhat_max: float = _help("a data point fails if any latent's rank-normalised R-hat exceeds this", default=1.01)
    min_ess_per_chain: float = _help(
        "a data point fails if any latent's bulk or tail ESS is below this x chains", default=100.0
    )

    def __post_init__(self) -> None:
        _check(self.rhat_max >= 1.0, "rhat_max", f"must be >= 1, got {self.rhat_max}")
        _check(self.min_ess_per_chain >= 0, "min_ess_per_chain", f"must be >= 0, got {self.min_ess_per_chain}")


LOGLIK_METHODS = ("appendix-d", "iwae", "ais", "elbo", "all")


@dataclass
class LoglikConfig:
    """Everything `probgen loglik` needs: which checkpoint and data, which estimators, how long to sample."""

    ckpt: str = _help("VAE checkpoint file (or its run directory)", default="")
    split: str = _help("dataset split to evaluate", default="test")
    num_data: int = _help("evaluate the first N data points of the split (all of them if fewer)", default=100)
    method: str = _help("appendix-d, iwae, ais, elbo or all", default="all")
    sampler: str = _help(
        "posterior sampler for appendix-d: hmc (batched) or nuts (stock Pyro, per point; slow)", default="hmc"
    )
    chains: int = _help("HMC chains per data point, also the number of AIS chains", default=8)
    warmup: int = _help("HMC warm-up (adaptation) transitions per chain", default=500)
    samples: int = _help("HMC draws per chain in each Appendix D stage (fit, then estimate)", default=1000)
    trajectory_length: float = _help(
        "HMC trajectory length in units of the adapted posterior scale (leapfrog steps = this / median step size); "
        "0: use --leapfrog-steps",
        default=2.5,
    )
    leapfrog_steps: int = _help(
        "leapfrog steps per AIS temperature (and per HMC transition if --trajectory-length 0)", default=10
    )
    target_accept: float = _help("target acceptance of the HMC step-size adaptation", default=0.8)
    adapt_mass: bool = _help("adapt a diagonal mass per data point during warm-up", default=True)
    shrink: float = _help(
        "Appendix D: the fitted Gaussian's covariance is scaled by this (< 1: lighter tails)", default=0.8
    )
    iwae_samples: int = _help("importance samples per data point for IWAE and the ELBO", default=5000)
    max_batch: int = _help("at most this many decoder evaluations per batch when scoring IWAE samples", default=4096)
    ais_steps: int = _help("AIS temperatures (sigmoid schedule), one HMC transition each", default=1000)
    points_per_batch: int = _help(
        "data points sampled together (all chains of a batch share each decoder call)", default=128
    )
    plot_points: tuple[int, ...] = _help(
        "data points (indices into the split) that get trace and rank PNGs (default: the 2 with the worst R-hat)",
        default=(),
    )
    data_root: str | None = _help("where the dataset files are (default: as stored in the checkpoint)", default=None)
    seed: int = _help("random seed", default=0)
    device: str = _help("auto, cpu or cuda", default="auto")
    out: str | None = _help("output directory (default: <checkpoint's folder>/loglik)", default=None)
    overwrite: bool = _help("replace the results in an existing --out", default=False)
    progress: bool = _help("show progress bars (only on a terminal)", default=True)
    json: bool = _help("print loglik.json to stdout instead of the table", default=False)
    checks: ChainCheckConfig = field(default_factory=ChainCheckConfig)

    def __post_init__(self) -> None:
        _check(self.num_data >= 1, "num_data", f"must be >= 1, got {self.num_data}")
        _choice(self.method, "method", LOGLIK_METHODS)
        _choice(self.sampler, "sampler", ("hmc", "nuts"))
        _check(self.chains >= 1, "chains", f"must be >= 1, got {self.chains}")
        _check(self.warmup >= 0, "warmup", f"must be >= 0, got {self.warmup}")
        _check(self.samples >= 2, "samples", f"must be >= 2, got {self.samples}")
        _check(self.leapfrog_steps >= 1, "leapfrog_steps", f"must be >= 1, got {self.leapfrog_steps}")
        _check(self.trajectory_length >= 0, "trajectory_length", f"must be >= 0, got {self.trajectory_length}")
        _check(0 < self.target_accept < 1, "target_accept", f"must be in (0, 1), got {self.target_accept}")
        _check(0 < self.shrink <= 1, "shrink", f"must be in (0, 1], got {self.shrink}")
        _check(self.iwae_samples >= 1, "iwae_samples", f"must be >= 1, got {self.iwae_samples}")
        _check(self.max_batch >= 1, "max_batch", f"must be >= 1, got {self.max_batch}")
        _check(self.ais_steps >= 2, "ais_steps", f"must be >= 2, got {self.ais_steps}")
        _check(self.points_per_batch >= 1, "points_per_batch", f"must be >= 1, got {self.points_per_batch}")
        _check(all(i >= 0 for i in self.plot_points), "plot_points", f"must be >= 0: {self.plot_points}")
        _choice(self.device, "device", ("auto", "cpu", "cuda"))

    @property
    def methods(self) -> tuple[str, ...]:
        """The estimators to run, in report order."""
        return ("elbo", "iwae", "appendix-d", "ais") if self.method == "all" else (self.method,)


@dataclass
class DiagnoseConfig:
    """`probgen diagnose`: R-hat/ESS of the chains in a chains.nc."""

    chains_file: str = _help("chains.nc written by `probgen loglik` (or its folder)", default="")
    json: bool = _help("print the per-point diagnostics as JSON instead of the ArviZ summary", default=False)
    checks: ChainCheckConfig = field(default_factory=ChainCheckConfig)


# --- (de)serialisation ---------------------------------------------------------------------------


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config; tuples become lists."""
    return json_ready(dataclasses.asdict(cfg))


def json_ready(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def strip_optional(tp: Any) -> Any:
    """``int | None`` -> ``int``; other types unchanged."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a (nested) config from :func:`to_dict` output; unknown keys are a UserError."""
    if not isinstance(data, dict):
        raise UserError(f"config for {cls.__name__} must be a mapping, got {type(data).__name__}")
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"unknown config key(s) for {cls.__name__}: {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        tp = strip_optional(hints[name])
        if _is_dataclass_type(tp):
            kwargs[name] = from_dict(tp, value)
        elif typing.get_origin(tp) is tuple and isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # wrong value types surface here
        raise UserError(f"bad config for {cls.__name__}: {exc}") from None
