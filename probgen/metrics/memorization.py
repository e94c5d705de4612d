"""Memorisation: are generated samples closer to the training images than new images of the data are?

FID rewards a model that returns its training set. The field's answer is a test-vs-train gap in
feature space (Meehan et al. 2020, "A Non-Parametric Test to Detect Data-Copying in Generative
Models", C_T; Jiralerspong et al. 2023, FLD's generalisation gap; Alaa et al. 2022, authenticity).
Here, in the evaluation's feature space (Inception, DINOv2 or domain features):

- ``d_gen[j]``: distance of generated sample j to its nearest training image; ``d_test[i]``: the
  same for held-out test image i. A model that generalises draws samples as far from the training
  set as new data are; one that copies draws them closer.
- ``value`` (the generalisation-gap score): A = P(d_gen < d_test) + P(d_gen = d_test) / 2, the
  Mann-Whitney probability that a generated sample is closer to the training set than a test image
  is. 0.5: as close as new data; 1: every sample closer (copies); below 0.5: farther than new data
  (samples off the data, the usual state of a weak model). ``z_u`` is the same comparison as Meehan
  et al.'s Z-scored U statistic over the whole space (their C_T averages it over cells; negative =
  copying). The 95% interval resamples generated and test distances (training set fixed).
  ``copying`` is True when the whole interval lies above 0.5.
- ``fraction_closer_than_test``: the fraction of generated samples closer to their nearest training
  image than any test image is to that training image; ``fraction_closer_than_test_baseline`` is the
  same fraction for the test images themselves (each against the other test images): what a model
  that draws new images of the data scores. A copy is closer than every test image (unless the
  test split holds a duplicate of it).

Distances are Euclidean, in float64, by batched matrix products in row chunks (as in prdc).
"""

from __future__ import annotations

from typing import Any

import torch

from probgen.metrics.bootstrap import percentile_interval
from probgen.metrics.prdc import _chunks, _sq_dists


def nearest(query: torch.Tensor, ref: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances (Q, k) and indices (Q, k) of each query row's ``k`` nearest rows of ``ref``, float64."""
    q, r = query.double(), ref.double().to(query.device)
    if q.dim() != 2 or r.dim() != 2 or q.shape[1] != r.shape[1]:
        raise ValueError(f"features must be (Q, D) and (R, D), got {tuple(q.shape)} and {tuple(r.shape)}")
    if len(r) < k:
        raise ValueError(f"need >= {k} reference rows, got {len(r)}")
    r_sq = (r * r).sum(1)
    dist = torch.empty(len(q), k, dtype=torch.float64, device=q.device)
    index = torch.empty(len(q), k, dtype=torch.long, device=q.device)
    for rows in _chunks(len(q), len(r)):
        top = _sq_dists(q[rows], r, r_sq).topk(k, dim=1, largest=False)
        dist[rows], index[rows] = top.values.sqrt(), top.indices
    return dist, index


def closer_probability(d_gen: torch.Tensor, d_test: torch.Tensor) -> float:
    """A = P(d_gen < d_test) + P(d_gen = d_test) / 2 over all (generated, test) pairs (Mann-Whitney)."""
    s = d_test.sort().values
    below = torch.searchsorted(s, d_gen, right=False)  # test distances < d_gen
    upto = torch.searchsorted(s, d_gen, right=True)  # test distances <= d_gen
    greater = len(s) - upto  # test distances > d_gen: pairs where the sample is closer
    ties = upto - below
    return float((greater.double() + 0.5 * ties.double()).sum() / (len(d_gen) * len(s)))


def memorization(
    gen: torch.Tensor, train: torch.Tensor, test: torch.Tensor, bootstrap: int = 100, seed: int = 0
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The test-vs-train gap of generated features ``gen`` (M, D) against ``train`` (T, D) and ``test`` (S, D).

    Args:
        bootstrap: replicates of the 95% interval of ``value`` (0: none; then ``copying`` uses the point value).
        seed: seeds the replicates (the caller's RNG is untouched).

    Returns:
        The summary (JSON-ready; see the module docstring) and per generated sample:
        ``nn_train_distance`` (M,), ``nn_train_index`` (M,) into ``train``, ``closer_than_test`` (M,) bool.
    """
    if len(test) < 2:
        raise ValueError(f"need >= 2 test images, got {len(test)}")
    d_gen, i_gen = (t[:, 0] for t in nearest(gen, train))
    d_test, i_test = (t[:, 0] for t in nearest(test, train))
    # per training image: its two nearest test images (the second stands in when the first is the point itself)
    d_tt, i_tt = nearest(train, test, k=2)
    closer = d_gen < d_tt[i_gen, 0]
    first_is_self = i_tt[i_test, 0] == torch.arange(len(test), device=i_test.device)
    other = torch.where(first_is_self, d_tt[i_test, 1], d_tt[i_test, 0])
    closer_test = d_test < other
    value = closer_probability(d_gen, d_test)
    n, m = len(d_gen), len(d_test)
    sigma = (n * m * (n + m + 1) / 12.0) ** 0.5
    summary: dict[str, Any] = {
        "value": value,
        "z_u": n * m * (0.5 - value) / sigma,
        "fraction_closer_than_test": float(closer.double().mean()),
        "fraction_closer_than_test_baseline": float(closer_test.double().mean()),
        "median_nn_train_distance": float(d_gen.median()),
        "median_nn_train_distance_test": float(d_test.median()),
        "num_train": len(train),
        "num_test": m,
    }
    copying = value > 0.5
    if bootstrap:
        g = torch.Generator().manual_seed(seed)
        reps = torch.empty(bootstrap, dtype=torch.float64)
        for b in range(bootstrap):
            jg = torch.randint(n, (n,), generator=g).to(d_gen.device)
            jt = torch.randint(m, (m,), generator=g).to(d_test.device)
            reps[b] = closer_probability(d_gen[jg], d_test[jt])
        lo, hi = percentile_interval(reps, value)
        ci = [max(lo, 0.0), min(hi, 1.0)]  # re-centring may step past the range of a probability
        summary["ci95"] = ci
        summary["bootstrap"] = {"replicates": bootstrap, "mean": float(reps.mean()), "seed": seed}
        copying = ci[0] > 0.5
    summary["copying"] = bool(copying)
    per_sample = {"nn_train_distance": d_gen, "nn_train_index": i_gen, "closer_than_test": closer}
    return summary, per_sample
