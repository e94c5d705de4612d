"""`probgen plot` (latent-space figures of a checkpoint) and `probgen sample` (a grid of samples)."""

from __future__ import annotations

from dataclasses import dataclass

from probgen.config.base import _help, check, check_device, choice, data_root_field, device_field

#: the figures of `probgen plot`
FIGURES = ("traversals", "manifold", "latents", "reconstructions")


@dataclass
class PlotTargetConfig:
    """Which figure of which checkpoint `probgen plot` draws, and where it writes."""

    figure: str = _help(
        f"which figure ({', '.join(FIGURES)}), or a comma list of them (traversals,manifold)",
        default="traversals",
        positional=True,
    )
    ckpt: str = _help("checkpoint file (or its run directory)", default="", required=True)
    out: str | None = _help("PNG file to write (default: <run dir>/<figure>.png; one figure only)", default=None)
    overwrite: bool = _help("replace --out if it exists", default=False)

    def __post_init__(self) -> None:
        for name in self.figures:
            choice(name, "figure", FIGURES)
        check(len(self.figures) == 1 or self.out is None, "out", "names one file: give it with one figure only")

    @property
    def figures(self) -> tuple[str, ...]:
        """The figures asked for, in order, each once."""
        return tuple(dict.fromkeys(f.strip() for f in self.figure.split(",")))


@dataclass
class PlotConfig:
    """`probgen plot traversals|manifold|latents|reconstructions`: latent-space figures of a checkpoint."""

    split: str = _help("data split whose images are encoded or reconstructed", default="test")
    num_images: int = _help(
        "reconstructions: images of the split (a seeded batch showing every label or shape)", default=32
    )
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
    data_root: str | None = data_root_field()
    device: str = device_field()

    def __post_init__(self) -> None:
        check(bool(self.split), "split", "must not be empty")
        check(self.num_images >= 1, "num_images", f"must be >= 1, got {self.num_images}")
        check(self.nrow >= 1, "nrow", f"must be >= 1, got {self.nrow}")
        check(self.num_points >= 2, "num_points", f"must be >= 2, got {self.num_points}")
        choice(self.projection, "projection", ("pca", "first"))
        check(self.index >= 0, "index", f"must be >= 0, got {self.index}")
        check(self.dims is None or (len(self.dims) >= 1 and min(self.dims) >= 0), "dims", f"bad dims {self.dims}")
        check(self.span > 0, "span", f"must be positive, got {self.span}")
        check(self.steps >= 2, "steps", f"must be >= 2, got {self.steps}")
        check(self.grid >= 2, "grid", f"must be >= 2, got {self.grid}")
        check(self.label >= 0, "label", f"must be >= 0, got {self.label}")
        check_device(self.device)


@dataclass
class SampleConfig:
    """`probgen sample`: a grid of samples from a checkpoint of any model kind."""

    ckpt: str = _help("checkpoint file (or its run directory)", default="", required=True)
    num: int = _help("number of samples", default=100, short="-n")
    out: str = _help("PNG file to write", default="", required=True)
    nrow: int = _help("images per row", default=10)
    seed: int = _help("random seed", default=0)
    device: str = device_field()
    overwrite: bool = _help("replace --out if it exists", default=False)

    def __post_init__(self) -> None:
        check(self.num >= 1, "num", f"must be >= 1, got {self.num}")
        check(self.nrow >= 1, "nrow", f"must be >= 1, got {self.nrow}")
        check_device(self.device)
