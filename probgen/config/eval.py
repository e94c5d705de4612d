"""`probgen eval`: how samples are scored (also the evaluation section of `fit gan`) and what is scored."""

from __future__ import annotations

from dataclasses import dataclass, field

from probgen.config.base import _help, check, check_device, choice, data_root_field, device_field, progress_field

#: Resize modes (described in probgen/metrics/images.py).
RESIZE_CHOICES = ("legacy-tf", "clean", "pil-bicubic", "legacy-pytorch", "bilinear-antialias")
METRICS = ("fid", "kid", "is", "precision", "recall", "density", "coverage", "realism", "memorization")


@dataclass
class MetricsConfig:
    """How samples are scored: feature network, metrics, sample counts and the reference split."""

    features: str = _help(
        "inception (FID/IS/KID; needs local weights), dinov2 (FD_DINOv2/KD_DINOv2 on DINOv2 ViT-L/14 CLS "
        "features; needs local weights) or domain (FD-<dataset> from a classifier trained on the data)",
        default="domain",
    )
    metrics: tuple[str, ...] = _help(
        "any of fid, kid, is, precision, recall, density, coverage, realism, memorization "
        "(default: fid,kid,is with inception; fid,kid with dinov2 or domain features)",
        default=(),
    )
    num_samples: int = _help("number of generated images scored", default=1000)
    num_real: int | None = _help("number of real reference images (default: --num-samples)", default=None)
    ref_split: str = _help("split of the dataset that holds the real reference images", default="train")
    inception_weights: str | None = _help(
        "torch-fidelity Inception weights file (else $PROBGEN_INCEPTION_WEIGHTS, else the torch hub cache)",
        default=None,
    )
    dinov2_weights: str | None = _help(
        "official DINOv2 checkpoint dinov2_vitl14_pretrain.pth "
        "(else $PROBGEN_DINOV2_WEIGHTS, else the torch hub cache)",
        default=None,
    )
    resize: str | None = _help(
        "how images reach the network's input size: legacy-tf (TF1 bilinear of published FIDs), clean (PIL bicubic, "
        "antialiased, float; clean-fid), pil-bicubic (the same, rounded to uint8; dgm-eval), legacy-pytorch, "
        "bilinear-antialias (default: legacy-tf for inception, pil-bicubic for dinov2; domain features take none)",
        default=None,
        choices=RESIZE_CHOICES,
    )
    antialias: bool = _help(
        "deprecated: the same as --resize bilinear-antialias (ignored by domain features)", default=False
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
    eval_seed: int = _help(
        "seed of the generated samples, the real subset, the KID/IS subsets and the bootstrap", default=0
    )
    nearest_k: int = _help("neighbours k that set the balls of precision, recall, density and coverage", default=5)
    bootstrap: int = _help("bootstrap replicates behind each 95%% confidence interval (0: no intervals)", default=100)
    fid_infinity: bool = _help(
        "also report FID-infinity (FD-<dataset>-infinity): FID at several N extrapolated to 1/N = 0", default=False
    )
    fid_infinity_points: int = _help("subset sizes (20%% to 100%% of N) behind FID-infinity's fit", default=15)

    def __post_init__(self) -> None:
        choice(self.features, "features", ("inception", "dinov2", "domain"))
        for m in self.metrics:
            choice(m, "metrics", METRICS)
        check(len(set(self.metrics)) == len(self.metrics), "metrics", f"repeated metric in {self.metrics}")
        check(
            self.features == "inception" or "is" not in self.metrics,
            "metrics",
            "is (Inception Score) needs ImageNet classes: use --features inception",
        )
        check(self.num_samples >= 2, "num_samples", f"must be >= 2, got {self.num_samples}")
        check(self.num_real is None or self.num_real >= 2, "num_real", f"must be >= 2, got {self.num_real}")
        check(bool(self.ref_split), "ref_split", "must not be empty")
        check(self.feature_batch_size >= 1, "feature_batch_size", f"must be >= 1, got {self.feature_batch_size}")
        check(self.kid_subsets >= 1, "kid_subsets", f"must be >= 1, got {self.kid_subsets}")
        k = self.kid_subset_size
        check(k is None or k >= 2, "kid_subset_size", f"must be >= 2, got {k}")
        check(self.is_splits >= 1, "is_splits", f"must be >= 1, got {self.is_splits}")
        check(self.domain_steps >= 1, "domain_steps", f"must be >= 1, got {self.domain_steps}")
        check(self.nearest_k >= 1, "nearest_k", f"must be >= 1, got {self.nearest_k}")
        check(self.bootstrap == 0 or self.bootstrap >= 10, "bootstrap", f"must be 0 or >= 10, got {self.bootstrap}")
        if self.antialias and self.features != "domain":  # the flag before --resize, mapped (as before, domain
            # features, which are never resized, ignore it): old commands and configs keep their meaning
            check(
                self.resize in (None, "bilinear-antialias"),
                "antialias",
                f"is the old name of --resize bilinear-antialias; it contradicts --resize {self.resize}",
            )
            self.resize = "bilinear-antialias"
        if self.resize is not None:
            choice(self.resize, "resize", RESIZE_CHOICES)
            check(self.features != "domain", "resize", "domain features take images at their native size")
        p = self.fid_infinity_points
        check(p >= 2, "fid_infinity_points", f"must be >= 2, got {p}")
        check(not self.fid_infinity or "fid" in self.metric_names(), "fid_infinity", "needs fid in --metrics")

    def resize_mode(self) -> str:
        """The resize in use: ``--resize``, else the feature network's default (domain features: none)."""
        if self.resize is not None:
            return self.resize
        return {"inception": "legacy-tf", "dinov2": "pil-bicubic"}.get(self.features, "none")

    def metric_names(self) -> tuple[str, ...]:
        """The metrics to compute: ``--metrics``, else all that apply to the feature network."""
        if self.metrics:
            return self.metrics
        return ("fid", "kid", "is") if self.features == "inception" else ("fid", "kid")


@dataclass
class EvalTargetConfig:
    """What `probgen eval` scores and where it writes."""

    ckpt: str | None = _help("checkpoint file (or its run directory) of a VAE or a GAN (required)", default=None)
    out: str | None = _help("JSON file to write (default: eval.json next to the checkpoint)", default=None)
    overwrite: bool = _help("replace the JSON file if it exists", default=False)
    json: bool = _help("print the results as JSON on stdout (instead of one line per metric)", default=False)
    data_root: str | None = data_root_field()
    device: str = device_field()
    progress: bool = progress_field()

    def __post_init__(self) -> None:
        check_device(self.device)


@dataclass
class EvalCommandConfig:
    """Everything `probgen eval` needs."""

    eval: MetricsConfig = field(default_factory=MetricsConfig)
    target: EvalTargetConfig = field(default_factory=EvalTargetConfig)
