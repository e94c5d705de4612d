import pytest
import torch

from probgen.metrics.bootstrap import (
    bootstrap_fd,
    bootstrap_kid,
    bootstrap_means,
    frechet_from_moments,
    kid_u_statistic,
    percentile_interval,
    resample_counts,
)
from probgen.metrics.scores import frechet_distance, kernel_distance


def _features(n, d, seed, shift=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    return (torch.randn(n, d, generator=g, dtype=torch.float64) @ mix) * scale + shift


def _drawn_indices(n_real, n_fake, replicates, seed):
    """The rows resample_counts draws, in bootstrap_fd's order (real first, then fake)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(n_real, (replicates, n_real), generator=g), torch.randint(
        n_fake, (replicates, n_fake), generator=g
    )


def test_counts_sum_to_n_and_are_seeded():
    c = resample_counts(50, 7, torch.Generator().manual_seed(0))
    assert c.shape == (7, 50) and torch.all(c.sum(1) == 50)
    assert torch.equal(c, resample_counts(50, 7, torch.Generator().manual_seed(0)))


def test_frechet_from_moments_agrees_with_torchmetrics():
    a, b = _features(400, 10, 0), _features(300, 10, 1, shift=0.4, scale=1.3)
    fd = frechet_from_moments(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))
    assert float(fd) == pytest.approx(frechet_distance(a, b), rel=1e-9)


@pytest.mark.parametrize("dim", [6, 150])  # N > D: D x D moments; N < D: the low-rank route
def test_each_fd_replicate_is_the_fd_of_its_resample(dim):
    a, b = _features(120, dim, 2), _features(90, dim, 3, shift=0.5)
    reps = bootstrap_fd(a, b, replicates=4, seed=11)
    ir, jf = _drawn_indices(120, 90, 4, 11)
    for r in range(4):
        # rel 1e-6: with N < D torchmetrics takes square roots of ~D - N rounding-level eigenvalues
        assert float(reps[r]) == pytest.approx(frechet_distance(a[ir[r]], b[jf[r]]), rel=1e-6)


def test_each_kid_replicate_is_the_unbiased_mmd_of_its_resample():
    a, b = _features(80, 6, 4), _features(80, 6, 5, shift=0.5)
    reps = bootstrap_kid(a, b, replicates=3, seed=12)
    ir, jf = _drawn_indices(80, 80, 3, 12)
    for r in range(3):
        one_subset, _ = kernel_distance(a[ir[r]], b[jf[r]], subsets=1, subset_size=80)
        assert float(reps[r]) == pytest.approx(one_subset, rel=1e-9)


def test_kid_u_statistic_is_what_the_subset_mean_estimates():
    a, b = _features(200, 8, 6), _features(200, 8, 7, shift=0.3)
    full, _ = kernel_distance(a, b, subsets=1, subset_size=200)
    assert kid_u_statistic(a, b) == pytest.approx(full, rel=1e-9)
    mean, std = kernel_distance(a, b, subsets=400, subset_size=100, seed=0)
    assert kid_u_statistic(a, b) == pytest.approx(mean, abs=4 * std / 400**0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fd_interval_contains_the_estimate_and_shrinks_with_n(seed):
    widths = []
    for n in (250, 1000):
        a, b = _features(n, 8, 10 + seed), _features(n, 8, 20 + seed, shift=0.5, scale=1.2)
        lo, hi = percentile_interval(bootstrap_fd(a, b, replicates=200, seed=seed))
        assert lo <= frechet_distance(a, b) <= hi
        widths.append(hi - lo)
    assert widths[1] < 0.7 * widths[0]  # ~ 1/sqrt(N): 0.5 expected


@pytest.mark.parametrize("seed", [0, 1])
def test_kid_interval_contains_the_estimate_and_shrinks_with_n(seed):
    widths = []
    for n in (150, 600):
        a, b = _features(n, 8, 30 + seed), _features(n, 8, 40 + seed, shift=0.4)
        lo, hi = percentile_interval(bootstrap_kid(a, b, replicates=200, seed=seed))
        assert lo <= kid_u_statistic(a, b) <= hi
        widths.append(hi - lo)
    assert widths[1] < 0.7 * widths[0]


def test_recentred_interval_keeps_the_spread_and_drops_the_shift():
    reps = torch.linspace(10.0, 14.0, 401, dtype=torch.float64)  # mean 12, all above an estimate of 5
    lo, hi = percentile_interval(reps)
    assert lo == pytest.approx(10.1) and hi == pytest.approx(13.9)
    lo_c, hi_c = percentile_interval(reps, estimate=5.0)
    assert lo_c == pytest.approx(lo - 7.0) and hi_c == pytest.approx(hi - 7.0)


def test_bootstrap_means_interval_matches_the_binomial_spread():
    v = (torch.arange(1000) % 4 == 0).double()  # p = 0.25
    lo, hi = percentile_interval(bootstrap_means(v, replicates=2000, seed=0))
    half = 1.96 * (0.25 * 0.75 / 1000) ** 0.5
    assert lo == pytest.approx(0.25 - half, abs=0.006) and hi == pytest.approx(0.25 + half, abs=0.006)


def test_bootstrap_leaves_the_global_rng_alone():
    a, b = _features(50, 4, 8), _features(50, 4, 9)
    before = torch.get_rng_state()
    r1 = bootstrap_fd(a, b, 5, seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(r1, bootstrap_fd(a, b, 5, seed=3))
    assert not torch.equal(r1, bootstrap_fd(a, b, 5, seed=4))
