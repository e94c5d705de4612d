"""Per-sample outputs of an evaluation: ``samples_scores.csv`` and the grids that show which samples
are good, which are bad, and which sit next to a training image.

- ``samples_scores.csv``: one row per generated sample (its index in the evaluation's seeded draw):
  ``realism`` (Kynkäänniemi et al. 2019; >= 1 inside the real manifold), ``in_real_manifold`` and
  ``density`` (precision's and density's per-sample values), ``nn_train_distance``,
  ``nn_train_index`` (row of the train split) and ``closer_than_test`` (memorisation); the columns
  of the metrics that were computed.
- ``best_samples.png`` / ``worst_samples.png``: the highest and lowest realism scores, best first /
  worst first (with ``realism``).
- ``nearest_train.png``: generated samples (odd columns) next to their nearest training images (even
  columns), the closest pairs first (with ``memorization``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from probgen.plots import save_grid
from probgen.utils.io import write_csv

#: per-sample key of :attr:`Harness.per_sample` -> CSV column
COLUMNS = {
    "realism": "realism",
    "precision": "in_real_manifold",
    "density": "density",
    "nn_train_distance": "nn_train_distance",
    "nn_train_index": "nn_train_index",
    "closer_than_test": "closer_than_test",
}
GRID = 50  # images in the best / worst grids
PAIRS = 32  # pairs in nearest_train.png


def write_scores_csv(path: Path, per_sample: dict[str, torch.Tensor], train_indices: torch.Tensor | None) -> Path:
    """``samples_scores.csv`` from per-sample tensors (all of one length); ``nn_train_index`` is mapped
    through ``train_indices`` to rows of the train split."""
    cols = [k for k in COLUMNS if k in per_sample]
    values = {k: per_sample[k].cpu() for k in cols}
    if "nn_train_index" in values and train_indices is not None:
        values["nn_train_index"] = train_indices.cpu()[values["nn_train_index"]]
    for k, v in values.items():
        values[k] = v.to(torch.int64) if v.dtype == torch.bool else v
    lists = {COLUMNS[k]: v.tolist() for k, v in values.items()}
    n = len(next(iter(lists.values())))
    write_csv(path, [{"sample": i, **{c: v[i] for c, v in lists.items()}} for i in range(n)])
    return path


def write_sample_report(
    folder: Path,
    per_sample: dict[str, torch.Tensor],
    redraw: Callable[[torch.Tensor], torch.Tensor],
    train_images: Callable[[torch.Tensor], torch.Tensor] | None = None,
    train_indices: torch.Tensor | None = None,
    prefix: str = "",
) -> list[Path]:
    """Write the per-sample files into ``folder``; returns their paths.

    Args:
        per_sample: :attr:`probgen.metrics.harness.Harness.per_sample` after an evaluation.
        redraw: generated-sample indices (K,) -> their uint8 images (K, C, H, W).
        train_images: rows of the train split (K,) -> uint8 images (K, C, H, W) (for ``nearest_train.png``).
        train_indices: rows of the train split behind ``nn_train_index``.
        prefix: put before each file name (``probgen eval --out other.json`` writes ``other_samples_scores.csv``, ...).
    """
    if not any(k in per_sample for k in COLUMNS):
        return []
    paths = [write_scores_csv(folder / f"{prefix}samples_scores.csv", per_sample, train_indices)]
    if "realism" in per_sample:
        r = per_sample["realism"].cpu()
        k = min(GRID, len(r))
        order = torch.argsort(r, descending=True, stable=True)
        best, worst = order[:k], order.flip(0)[:k]
        images = redraw(torch.cat([best, worst]))
        paths.append(save_grid(images[:k].float() / 255, folder / f"{prefix}best_samples.png"))
        paths.append(save_grid(images[k:].float() / 255, folder / f"{prefix}worst_samples.png"))
    if "nn_train_distance" in per_sample and train_images is not None:
        d = per_sample["nn_train_distance"].cpu()
        chosen = torch.argsort(d, stable=True)[: min(PAIRS, len(d))]
        gen = redraw(chosen)
        rows = per_sample["nn_train_index"].cpu()[chosen]
        train = train_images(train_indices.cpu()[rows] if train_indices is not None else rows)
        pairs = torch.stack([gen, train.to(gen.device)], dim=1).flatten(0, 1)  # (2K, C, H, W): sample, its neighbour
        paths.append(save_grid(pairs.float() / 255, folder / f"{prefix}nearest_train.png", nrow=16))
    return paths
