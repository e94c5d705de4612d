import numpy as np
import pytest
import torch

from probgen.metrics import prdc as prdc_module
from probgen.metrics.prdc import expected_coverage, knn_radii, prdc


def _gauss(n, d, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


def _reference(real, fake, k):
    """Independent brute force: a Python loop over points with numpy, closed balls."""
    real, fake = real.numpy(), fake.numpy()

    def radii(a):
        d = np.sqrt(((a[:, None, :] - a[None, :, :]) ** 2).sum(-1))
        return np.sort(d, axis=1)[:, k]

    rr, rf = radii(real), radii(fake)
    d = np.sqrt(((real[:, None, :] - fake[None, :, :]) ** 2).sum(-1))  # (N, M)
    precision = np.mean([any(d[i, j] <= rr[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(d[i, j] <= rf[j] for j in range(len(fake))) for i in range(len(real))])
    density = np.mean([sum(d[i, j] <= rr[i] for i in range(len(real))) for j in range(len(fake))]) / k
    coverage = np.mean([d[i].min() <= rr[i] for i in range(len(real))])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def test_identical_sets():
    x = _gauss(300, 16, 0)
    out = prdc(x, x.clone(), k=5)
    assert out["precision"] == 1.0 and out["recall"] == 1.0 and out["coverage"] == 1.0
    # each point lies in its own ball and in the balls of the points it is a 5-NN of: (k + 1) / k
    assert out["density"] == pytest.approx(6 / 5, abs=1e-12)


def test_disjoint_far_apart_sets_score_zero():
    out = prdc(_gauss(200, 8, 1), _gauss(150, 8, 2, shift=100.0), k=5)
    assert out == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


@pytest.mark.parametrize("seed", [3, 4])
def test_agrees_with_brute_force(seed):
    real, fake = _gauss(90, 5, seed), _gauss(70, 5, seed + 10, shift=0.7) * 1.3
    out = prdc(real, fake, k=3)
    ref = _reference(real, fake, 3)
    assert 0.05 < out["precision"] < 0.95 and 0.05 < out["recall"] < 0.95  # a non-trivial case
    for name, value in ref.items():
        assert out[name] == pytest.approx(value, abs=1e-12), name


def test_points_on_a_grid_exactly():
    """1-D integer grid 0..9, k = 2: radius 1 inside, 2 at the two ends (closed balls)."""
    real = torch.arange(10, dtype=torch.float64)[:, None]
    assert knn_radii(real, 2).tolist() == [2.0] + [1.0] * 8 + [2.0]
    fake = torch.tensor([0.5, 4.0, 11.0, 11.5, -3.0])[:, None]  # 11 lies on the boundary of 9's ball
    out = prdc(real, fake, k=2)
    assert out["precision"] == pytest.approx(3 / 5)
    # density: 0.5 is in the balls of 0 (radius 2) and 1; 4.0 in those of 3, 4, 5; 11 in 9's (radius 2)
    assert out["density"] == pytest.approx((2 + 3 + 1) / 5 / 2)
    # coverage: real points with a fake one within their radius: 0, 1 (0.5), 3, 4, 5 (4.0), 9 (11)
    assert out["coverage"] == pytest.approx(6 / 10)
    # fake radii (k=2 among the fakes): 0.5 -> 3.5, 4.0 -> 7.0, 11 -> 7.0, 11.5 -> 7.5, -3 -> 7.0;
    # every real point 0..9 lies within one of them
    assert out["recall"] == 1.0


@pytest.mark.parametrize("dim", [1, 32])
def test_density_and_coverage_match_naeem_lemmas_on_gaussians(dim):
    """Same distribution: E[density] = 1 and E[coverage] = 1 - prod (N-i)/(N+M-i) (Naeem et al.,
    Lemmas 1 and 2), exact for any N, M and any continuous distribution."""
    n, m, k, seeds = 400, 300, 5, 40  # per run sd: coverage ~0.02, density ~0.03 (1-D) to ~0.08 (32-D)
    runs = [prdc(_gauss(n, dim, 1000 + s), _gauss(m, dim, 2000 + s), k=k) for s in range(seeds)]
    density = np.mean([r["density"] for r in runs])
    coverage = np.mean([r["coverage"] for r in runs])
    expected = expected_coverage(n, m, k)
    assert expected == pytest.approx(1 - np.prod([(n - i) / (n + m - i) for i in range(1, 6)]))
    assert coverage == pytest.approx(expected, abs=0.012)  # radii of k - 1 or k + 1 neighbours move it by > 0.02
    assert density == pytest.approx(1.0, abs=0.05)  # counting the point itself as a neighbour would give 1.2


def test_coverage_drops_and_density_rises_when_samples_collapse():
    real = _gauss(400, 8, 5)
    collapsed = _gauss(400, 8, 6) * 0.2  # all samples near the mode
    out = prdc(real, collapsed, k=5)
    assert out["precision"] > 0.99 and out["density"] > 2.0
    assert out["recall"] < 0.05 and out["coverage"] < 0.3


def test_chunking_does_not_change_the_result(monkeypatch):
    real, fake = _gauss(120, 6, 7), _gauss(100, 6, 8, shift=0.3)
    whole = prdc(real, fake, k=4)
    monkeypatch.setattr(prdc_module, "_CHUNK_BYTES", 8 * 120 * 7)  # 7 rows per chunk
    assert prdc(real, fake, k=4) == whole
    assert torch.equal(knn_radii(real, 4), prdc_module.knn_radii(real, 4))


def test_precomputed_real_radii_give_the_same_answer():
    real, fake = _gauss(100, 6, 9), _gauss(100, 6, 10, shift=0.5)
    assert prdc(real, fake, k=5, real_radii=knn_radii(real, 5)) == prdc(real, fake, k=5)


def test_bad_input():
    with pytest.raises(ValueError, match="k must be >= 1"):
        prdc(_gauss(10, 2, 0), _gauss(10, 2, 1), k=0)
    with pytest.raises(ValueError, match="N > k"):
        prdc(_gauss(5, 2, 0), _gauss(10, 2, 1), k=5)
    with pytest.raises(ValueError, match="dimensions differ"):
        prdc(_gauss(10, 2, 0), _gauss(10, 3, 1), k=3)


def test_realism_is_at_least_one_exactly_inside_a_kept_ball():
    from probgen.metrics.prdc import knn_radii, realism

    g = torch.Generator().manual_seed(0)
    real = torch.randn(200, 4, generator=g, dtype=torch.float64)
    fake = torch.randn(300, 4, generator=g, dtype=torch.float64) * 1.5
    r = realism(real, fake, k=3)
    radii = knn_radii(real, 3)
    keep = radii <= radii.median()
    inside = (torch.cdist(fake, real[keep]) <= radii[keep][None, :]).any(1)
    assert torch.equal(r >= 1, inside)
    brute = (radii[keep][None, :] / torch.cdist(fake, real[keep])).amax(1)
    assert torch.allclose(r, brute, rtol=1e-9)
    assert (realism(real, real[keep][:5], k=3) > 1e6).all()  # copies of kept real points: distance ~0
    far = realism(real, real[:10] + 100.0, k=3)
    assert (far < 0.01).all()
