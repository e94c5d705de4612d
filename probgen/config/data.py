"""Which dataset, where its files are and how it is split (`--dataset`, `--data-root`, ...)."""

from __future__ import annotations

from dataclasses import dataclass, field

from probgen.config.base import _help, check, choice


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
        check(bool(self.dataset), "dataset", "must not be empty")
        check(self.limit is None or self.limit > 0, "limit", f"must be positive, got {self.limit}")
        check(0.0 <= self.test_fraction < 1.0, "test_fraction", f"must be in [0, 1), got {self.test_fraction}")
        check(0.0 <= self.val_fraction < 1.0, "val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        check(self.test_fraction + self.val_fraction < 1.0, "test_fraction", "test + val fractions must be < 1")
        check(self.image_size is None or self.image_size >= 8, "image_size", f"must be >= 8, got {self.image_size}")
        check(self.channels in (None, 1, 3), "channels", f"must be 1 or 3, got {self.channels}")
        choice(self.binarize, "binarize", ("none", "static", "dynamic"))


@dataclass
class DataInfoConfig:
    """`probgen data info`: the dataset to describe, and an optional grid of its training images."""

    data: DataConfig = field(default_factory=DataConfig)
    out: str | None = _help("PNG grid of training images to write (default: none)", default=None)
    overwrite: bool = _help("replace --out if it exists", default=False)
    num: int = _help("images in the grid", default=64)

    def __post_init__(self) -> None:
        check(self.num >= 1, "num", f"must be >= 1, got {self.num}")


@dataclass
class DataExtractConfig:
    """`probgen data extract`: unpack a downloaded archive into the data root."""

    archive: str = _help("the archive file, e.g. chest-xray-pneumonia.zip", default="", positional=True)
    data_root: str | None = _help("folder to unpack into (default: $PROBGEN_DATA, then ./data)", default=None)
