"""`probgen disentangle`: disentanglement metrics of a VAE's encoder means."""

from __future__ import annotations

from dataclasses import dataclass

from probgen.config.base import _help, check, check_device, data_root_field, device_field


@dataclass
class DisentangleTargetConfig:
    """Which checkpoint `probgen disentangle` scores, and where it writes."""

    ckpt: str = _help("checkpoint file (or its run directory)", default="", required=True)
    out: str | None = _help("folder for disentanglement.json (default: the checkpoint's)", default=None)
    overwrite: bool = _help("replace an existing disentanglement.json", default=False)


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
    data_root: str | None = data_root_field()
    device: str = device_field()

    def __post_init__(self) -> None:
        check(bool(self.split), "split", "must not be empty")
        check(self.num_points >= 10, "num_points", f"must be >= 10, got {self.num_points}")
        check(self.num_train >= 1, "num_train", f"must be >= 1, got {self.num_train}")
        check(self.num_eval >= 1, "num_eval", f"must be >= 1, got {self.num_eval}")
        check(self.group_size >= 2, "group_size", f"must be >= 2, got {self.group_size}")
        check(self.num_bins >= 2, "num_bins", f"must be >= 2, got {self.num_bins}")
        check(0.0 < self.holdout_fraction < 1.0, "holdout_fraction", f"must be in (0, 1), got {self.holdout_fraction}")
        check_device(self.device)
