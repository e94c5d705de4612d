"""Figures written into run directories (PNG only; matplotlib with the Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torchvision.utils as vutils  # noqa: E402

from probgen.checkpoint import atomic_write  # noqa: E402


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 10) -> Path:
    """Save images in [0, 1], (N, C, H, W), as one PNG grid with ``nrow`` images per row."""
    path = Path(path)
    grid = vutils.make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2, pad_value=0.5)
    atomic_write(path, lambda f: vutils.save_image(grid, f, format="png"))
    return path


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def plot_curves(
    series: dict[str, dict[str, Sequence[float]]],
    x: dict[str, Sequence[float]],
    path: str | Path,
    xlabel: str = "epoch",
    title: str = "",
) -> Path:
    """One panel per quantity; within a panel one line per split.

    ``series[quantity][split]`` are y-values at ``x[split]``.
    """
    n = len(series)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
    for ax, (quantity, by_split) in zip(axes[0], series.items()):
        for split, ys in by_split.items():
            ax.plot(list(x[split]), list(ys), marker="o" if len(ys) < 30 else None, ms=3, label=split)
        ax.set_title(quantity)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
