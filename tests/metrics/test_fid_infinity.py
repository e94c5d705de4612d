import pytest
import torch

from probgen.metrics.fid_infinity import fid_infinity, fit_inverse_n, subset_sizes
from probgen.metrics.scores import frechet_distance


def test_fit_recovers_an_exact_line():
    sizes = [100, 200, 400, 800]
    intercept, slope = fit_inverse_n(sizes, [3.0 + 50.0 / n for n in sizes])
    assert intercept == pytest.approx(3.0) and slope == pytest.approx(50.0)


def test_subset_sizes():
    assert subset_sizes(1000, 5) == [200, 400, 600, 800, 1000]
    with pytest.raises(ValueError, match=">= 2"):
        subset_sizes(1000, 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fid_infinity_recovers_a_known_fid_better_than_fid_at_n(seed):
    """real ~ N(0, I), fake ~ N(mu, diag(s^2)): FD = |mu|^2 + sum (1 - s)^2 exactly."""
    d, n = 32, 1000
    g = torch.Generator().manual_seed(seed)
    mu = torch.full((d,), 0.1, dtype=torch.float64)
    s = torch.linspace(0.8, 1.2, d, dtype=torch.float64)
    truth = float((mu**2).sum() + ((1 - s) ** 2).sum())
    real = torch.randn(n, d, generator=g, dtype=torch.float64)
    fake = torch.randn(n, d, generator=g, dtype=torch.float64) * s + mu
    at_n = frechet_distance(real, fake)
    inf = fid_infinity(real, fake, points=15, seed=seed)
    assert at_n - truth > 0.5  # the bias FID-infinity removes: about d^2 / N here
    assert abs(inf["value"] - truth) < 0.5 * (at_n - truth)
    assert inf["slope"] > 0 and len(inf["points"]) == 15
    assert inf["points"][-1]["num_generated"] == n and inf["points"][-1]["num_real"] == n
