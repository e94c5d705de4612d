"""FID-infinity (Chong & Forsyth 2020, "Effectively Unbiased FID and Inception Score and where to find them").

FID computed from N samples is biased upwards, by about a constant over N: a model's FID at N = 1000
is not its FID at N = 50,000, and two models can swap ranks between them. FID-infinity computes FID
on random subsets of several sizes N, fits ``FID_N = FID_inf + slope / N`` by least squares, and
reports the intercept, the FID an infinite sample would give.

The paper keeps the real statistics of a large set fixed and subsamples only the generated images.
Here both sets are subsampled in proportion (N generated with ``N * N_real / N_gen`` real ones), so
that the real set's own finite-sample bias, also linear in 1/N, is extrapolated away too; with a
large real set the two agree. Every point uses torchmetrics' FID (``scores.frechet_distance``).
"""

from __future__ import annotations

from typing import Any

import torch

from probgen.metrics.scores import frechet_distance

#: Chong & Forsyth fit 15 sizes; the smallest here is this fraction of the full N (theirs: 5k of 50k).
DEFAULT_POINTS = 15
MIN_FRACTION = 0.2


def subset_sizes(n: int, points: int = DEFAULT_POINTS, min_fraction: float = MIN_FRACTION) -> list[int]:
    """``points`` sizes evenly spaced from ``min_fraction * n`` to ``n`` (distinct, >= 2)."""
    if points < 2:
        raise ValueError(f"FID-infinity needs >= 2 sizes, got {points}")
    lo = max(2, int(round(min_fraction * n)))
    sizes = sorted({int(round(v)) for v in torch.linspace(lo, n, points).tolist()})
    if len(sizes) < 2:
        raise ValueError(f"FID-infinity needs >= 2 distinct subset sizes; {n} samples give {sizes}")
    return sizes


def fit_inverse_n(sizes: list[int], values: list[float]) -> tuple[float, float]:
    """Least-squares line ``value = intercept + slope / N``: (intercept, slope)."""
    inv = torch.tensor([1.0 / s for s in sizes], dtype=torch.float64)
    a = torch.stack([torch.ones_like(inv), inv], dim=1)  # (P, 2)
    coef = torch.linalg.lstsq(a, torch.tensor(values, dtype=torch.float64)[:, None]).solution[:, 0]
    return float(coef[0]), float(coef[1])


def fid_infinity(
    real: torch.Tensor,
    fake: torch.Tensor,
    points: int = DEFAULT_POINTS,
    seed: int = 0,
    min_fraction: float = MIN_FRACTION,
) -> dict[str, Any]:
    """FID-infinity of fake (M, D) against real (N, D).

    Returns:
        ``value`` (the intercept at 1/N = 0), ``slope`` (FID units times N), and ``points``: the
        (N generated, N real, FID) of every subset the line was fitted to.
    """
    gen = torch.Generator().manual_seed(seed)
    n_fake, n_real = len(fake), len(real)
    rows = []
    for n in subset_sizes(n_fake, points, min_fraction):
        m = max(2, min(n_real, int(round(n * n_real / n_fake))))
        f_idx = torch.randperm(n_fake, generator=gen)[:n].to(fake.device)
        r_idx = torch.randperm(n_real, generator=gen)[:m].to(real.device)
        rows.append((n, m, frechet_distance(real[r_idx], fake[f_idx])))
    intercept, slope = fit_inverse_n([r[0] for r in rows], [r[2] for r in rows])
    return {
        "value": intercept,
        "slope": slope,
        "points": [{"num_generated": n, "num_real": m, "value": v} for n, m, v in rows],
    }
