"""Manifold metrics on feature matrices: precision / recall and density / coverage.

- Precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for
  Assessing Generative Models"): each set's manifold is the union of balls around its points, each
  ball's radius the distance to the point's k-th nearest neighbour in its own set (itself excluded).
  Precision is the fraction of generated points inside the real manifold; recall the fraction of real
  points inside the generated manifold.
- Realism (Kynkäänniemi et al. 2019, Sec. 5): a per-sample score, the largest ratio of a real
  ball's radius to the sample's distance from its centre (>= 1 inside the real manifold).
- Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative
  Models"): density counts how many real balls contain each generated point, divided by k and
  averaged (about 1 when both sets come from one distribution, above 1 when samples crowd the modes);
  coverage is the fraction of real points whose ball holds at least one generated point.

Balls are closed (``distance <= radius``), as in Kynkäänniemi et al.'s definition; Naeem et al.'s
reference code uses ``<``, which differs only on ties (measure zero for continuous features, but on
discrete or duplicated data ``<`` makes identical sets score 0).

torchmetrics has none of these metrics, hence this module. Distances are computed in row chunks
(batched matrix products, no loop over samples) so that memory stays bounded for 50k x 50k sets.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

#: The default number of neighbours, as in both papers.
DEFAULT_K = 5
PRDC_METRICS = ("precision", "recall", "density", "coverage")
_CHUNK_BYTES = 256 * 2**20  # one chunk of the distance matrix


def _check(feats: torch.Tensor, name: str, k: int) -> torch.Tensor:
    if feats.dim() != 2 or feats.shape[0] <= k:
        raise ValueError(f"{name} features must be (N > k = {k}, D), got {tuple(feats.shape)}")
    return feats.double()


def _chunks(n_rows: int, n_cols: int) -> Iterator[slice]:
    step = max(1, _CHUNK_BYTES // (8 * max(n_cols, 1)))
    for i in range(0, n_rows, step):
        yield slice(i, min(i + step, n_rows))


def _sq_dists(a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (A, B) by one matrix product, clamped at 0 against rounding."""
    return ((a * a).sum(1, keepdim=True) - 2.0 * (a @ b.T) + b_sq[None, :]).clamp_(min=0.0)


def knn_radii(feats: torch.Tensor, k: int = DEFAULT_K) -> torch.Tensor:
    """Distance from each row of ``feats`` (N, D) to its k-th nearest other row: radii (N,), float64."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return _sq_radii(_check(feats, "the", k), k).sqrt_()


def _sq_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Squared k-NN radii of float64 rows (N, D); kept squared so that a distance computed by the same
    operations compares equal to the radius it came from (no sqrt-then-square rounding)."""
    x_sq = (x * x).sum(1)
    out = torch.empty(len(x), dtype=torch.float64, device=x.device)
    for rows in _chunks(len(x), len(x)):
        d2 = _sq_dists(x[rows], x, x_sq)  # (R, N)
        idx = torch.arange(rows.start, rows.stop, device=x.device)
        d2[idx - rows.start, idx] = 0.0  # the point itself: exactly 0, whatever the rounding
        out[rows] = d2.topk(k + 1, dim=1, largest=False).values[:, k]  # index 0 is the point itself
    return out


def prdc(
    real: torch.Tensor,
    fake: torch.Tensor,
    k: int = DEFAULT_K,
    real_radii: torch.Tensor | None = None,
) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` (M, D) against ``real`` (N, D).

    Args:
        real: real-image features (N, D), N > k.
        fake: generated-image features (M, D), M > k.
        k: neighbours that set each ball's radius.
        real_radii: :func:`knn_radii` of ``real`` with this ``k``, if already computed (they depend on
            the real set only, so a harness scoring many models computes them once).

    Returns:
        ``{"precision", "recall", "density", "coverage"}``, fractions in [0, 1] except density in [0, N/k].
    """
    return {name: float(v.double().mean()) for name, v in prdc_points(real, fake, k, real_radii).items()}


def prdc_points(
    real: torch.Tensor,
    fake: torch.Tensor,
    k: int = DEFAULT_K,
    real_radii: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The per-point values whose means :func:`prdc` returns (arguments as there).

    Returns:
        ``precision`` (M,) and ``density`` (M,): per generated point, whether it lies in a real ball
        and how many real balls hold it, divided by k; ``recall`` (N,) and ``coverage`` (N,): per
        real point, whether it lies in a generated ball and whether its ball holds a generated point.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x, y = _check(real, "real", k), _check(fake, "fake", k)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    y = y.to(x.device)
    if real_radii is None:
        r2_real = _sq_radii(x, k)
    elif real_radii.shape != (len(x),):
        raise ValueError(f"real_radii must be ({len(x)},), got {tuple(real_radii.shape)}")
    else:
        r2_real = real_radii.to(x.device, torch.float64).square()
    r2_fake = _sq_radii(y, k)
    y_sq = (y * y).sum(1)
    in_real = torch.zeros(len(y), dtype=torch.bool, device=x.device)  # fake j inside some real ball
    balls = torch.zeros(len(y), dtype=torch.float64, device=x.device)  # real balls holding fake j
    in_fake = torch.zeros(len(x), dtype=torch.bool, device=x.device)  # real i inside some fake ball
    covered = torch.zeros(len(x), dtype=torch.bool, device=x.device)  # real i's ball holds a fake point
    # chunks of real rows, as in knn_radii: when fake equals real, each distance is then computed by the
    # same operations as the radius it is compared with, so points on a ball's boundary stay on it
    for rows in _chunks(len(x), len(y)):
        d2 = _sq_dists(x[rows], y, y_sq)  # (R real, M fake)
        inside = d2 <= r2_real[rows, None]  # fake column in real row's ball
        in_real |= inside.any(0)
        balls += inside.sum(0, dtype=torch.float64)
        covered[rows] = inside.any(1)
        in_fake[rows] = (d2 <= r2_fake[None, :]).any(1)
    return {"precision": in_real, "recall": in_fake, "density": balls / k, "coverage": covered}


def expected_coverage(num_real: int, num_fake: int, k: int = DEFAULT_K) -> float:
    """E[coverage] when real and fake are independent samples of one continuous distribution.

    Naeem et al. 2020, Lemma 2: ``1 - prod_{i=1..k} (N - i) / (N + M - i)``; with M = N it tends to
    ``1 - 2**-k`` (0.969 for k = 5). A real point's ball misses every fake point exactly when its k
    nearest neighbours in the pooled set are all real, whatever the distribution.
    """
    p = 1.0
    for i in range(1, k + 1):
        p *= (num_real - i) / (num_real + num_fake - i)
    return 1.0 - p


def realism(
    real: torch.Tensor, fake: torch.Tensor, k: int = DEFAULT_K, real_radii: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-sample realism scores (M,) of ``fake`` (M, D) against ``real`` (N, D), float64.

    Kynkäänniemi et al. 2019, Sec. 5: ``R(g) = max_i r_i / ||g - x_i||`` over the real points x_i whose
    k-NN radius r_i is at most the median radius (the paper discards the half of the balls with the
    largest radii, which outliers inflate). R >= 1 exactly when g lies inside one of the kept balls;
    larger is more realistic. A copy of a kept real point scores ~1e7 or more (``inf`` at distance 0).

    Args:
        real_radii: :func:`knn_radii` of ``real`` with this ``k``, if already computed.
    """
    x, y = _check(real, "real", k), _check(fake, "fake", 0)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    y = y.to(x.device)
    radii = knn_radii(x, k) if real_radii is None else real_radii.to(x.device, torch.float64)
    keep = radii <= radii.median()
    x, radii = x[keep], radii[keep]
    y_sq = (y * y).sum(1)
    best = torch.zeros(len(y), dtype=torch.float64, device=x.device)
    for rows in _chunks(len(x), len(y)):
        d = _sq_dists(x[rows], y, y_sq).sqrt_()  # (R real, M fake)
        best = torch.maximum(best, (radii[rows, None] / d).amax(0))  # r / 0 = inf: a copy of a real point
    return best
