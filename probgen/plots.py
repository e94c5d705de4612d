"""Figures written into run directories (PNG only; matplotlib with the Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision.utils as vutils  # noqa: E402

from probgen.utils.io import atomic_write  # noqa: E402


def grid_tensor(images: torch.Tensor, nrow: int = 10) -> torch.Tensor:
    """Images in [0, 1], (N, C, H, W) -> one grid (3, H', W') on the CPU, ``nrow`` images per row."""
    return vutils.make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2, pad_value=0.5)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 10) -> Path:
    """Save images in [0, 1], (N, C, H, W), as one PNG grid with ``nrow`` images per row."""
    path = Path(path)
    grid = grid_tensor(images, nrow)
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


# --- latent-space figures (traversals, manifold, latents, reconstructions) -------------------------


def _grid_image(images: torch.Tensor, nrow: int, padding: int = 2) -> Any:
    """(N, C, H, W) in [0, 1] -> (H', W', C) grid for imshow (grey images keep one channel)."""
    grid = vutils.make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=padding, pad_value=0.5)
    if images.shape[1] == 1:
        grid = grid[:1]
    return grid.permute(1, 2, 0).numpy()


def _cell_centres(n: int, size: int, padding: int = 2) -> list[float]:
    return [padding + i * (size + padding) + size / 2 for i in range(n)]


def plot_traversals(
    images: torch.Tensor, values: Sequence[float], dims: Sequence[int], path: str | Path, notes: Sequence[str] = ()
) -> Path:
    """Latent traversals: ``images`` (len(dims), S, C, H, W), row r varies latent ``dims[r]`` over ``values`` (S,).

    ``notes`` (one per row, optional) are appended to the row labels (e.g. each dimension's KL).
    """
    rows, steps, c, h, w = images.shape
    grid = _grid_image(images.reshape(rows * steps, c, h, w), nrow=steps)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * steps + 1.5), max(2.0, 0.6 * rows + 0.8)))
    ax.imshow(grid.squeeze(-1) if c == 1 else grid, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks(_cell_centres(steps, w), [f"{v:.2g}" for v in values])
    labels = [f"z{d}" + (f" ({notes[i]})" if i < len(notes) else "") for i, d in enumerate(dims)]
    ax.set_yticks(_cell_centres(rows, h), labels)
    ax.set_xlabel("value of the traversed latent (others fixed)")
    ax.tick_params(length=0)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_manifold(images: torch.Tensor, x_values: Sequence[float], y_values: Sequence[float], path: str | Path) -> Path:
    """A 2-D latent manifold: ``images`` (G, G', C, H, W); row i decodes z1 = y_values[i], column j z0 = x_values[j]."""
    g, g2, c, h, w = images.shape
    grid = _grid_image(images.reshape(g * g2, c, h, w), nrow=g2, padding=0)
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.imshow(grid.squeeze(-1) if c == 1 else grid, cmap="gray", vmin=0, vmax=1)
    every = max(1, g // 8)
    ax.set_xticks(_cell_centres(g2, w, 0)[::every], [f"{v:.2g}" for v in list(x_values)[::every]])
    ax.set_yticks(_cell_centres(g, h, 0)[::every], [f"{v:.2g}" for v in list(y_values)[::every]])
    ax.set_xlabel("z0")
    ax.set_ylabel("z1")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_latents(
    points: torch.Tensor,
    covariances: torch.Tensor,
    labels: torch.Tensor | None,
    path: str | Path,
    axis_labels: tuple[str, str] = ("z1", "z2"),
    class_names: Sequence[str] = (),
    title: str = "",
    max_ellipses: int = 300,
) -> Path:
    """Encoder means in 2-D, coloured by label, with 1-sd ellipses of q(z|x).

    points (N, 2); covariances (N, 2, 2) of q(z|x) in the same coordinates; labels (N,) int or None.
    Ellipses are drawn for the first ``max_ellipses`` points (all means are drawn).
    """
    from matplotlib.patches import Ellipse

    pts = points.detach().double().cpu().numpy()
    cov = covariances.detach().double().cpu()
    lab = None if labels is None else labels.cpu().numpy()
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    cmap = plt.get_cmap("tab10")
    groups = [None] if lab is None else sorted(set(lab.tolist()))
    for k in groups:
        sel = np.ones(len(pts), dtype=bool) if k is None else lab == k
        color = "tab:blue" if k is None else cmap(int(k) % 10)
        name = None if k is None else (class_names[int(k)] if int(k) < len(class_names) else str(k))
        ax.scatter(pts[sel, 0], pts[sel, 1], s=6, color=color, label=name, alpha=0.8, linewidths=0)
        idx = np.flatnonzero(sel)
        for i in idx[idx < max_ellipses].tolist():
            evals, evecs = torch.linalg.eigh(cov[i])
            angle = float(torch.rad2deg(torch.atan2(evecs[1, 1], evecs[0, 1])))
            w, h = (2 * evals.clamp_min(0).sqrt()).tolist()[::-1]
            ax.add_patch(Ellipse(pts[i].tolist(), w, h, angle=angle, fill=False, color=color, alpha=0.25, lw=0.6))
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    if labels is not None:
        ax.legend(markerscale=3, fontsize=8, loc="best")
    ax.set_title(title or "encoder means with 1-sd ellipses of q(z|x)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def save_reconstructions(originals: torch.Tensor, recons: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Rows of ``nrow`` originals, each followed by the row of their reconstructions; both (N, C, H, W) in [0, 1]."""
    rows = []
    for i in range(0, len(originals), nrow):
        a, b = originals[i : i + nrow], recons[i : i + nrow]
        pad = a.new_full((nrow - len(a), *a.shape[1:]), 0.5)  # keep a short last row from wrapping
        rows += [a, pad, b, pad]
    return save_grid(torch.cat(rows), path, nrow=nrow)


def plot_runs(
    curves: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]],
    path: str | Path,
    ylabel: str,
    xlabel: str = "epoch",
    title: str = "",
) -> Path:
    """One panel per split (train, test), one line per run: ``curves[run][split] = (x, y)``."""
    splits = [s for s in ("train", "test") if any(s in c for c in curves.values())]
    splits += sorted({s for c in curves.values() for s in c} - set(splits))
    fig, axes = plt.subplots(1, len(splits), figsize=(5.6 * len(splits), 4.2), squeeze=False)
    cmap = plt.get_cmap("tab20" if len(curves) > 10 else "tab10")
    for ax, split in zip(axes[0], splits):
        for i, (run, by_split) in enumerate(curves.items()):
            if split in by_split:
                xs, ys = by_split[split]
                ax.plot(list(xs), list(ys), marker="o" if len(ys) < 30 else None, ms=3, color=cmap(i % 20), label=run)
        ax.set_title(split)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
