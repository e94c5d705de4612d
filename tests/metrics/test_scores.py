import numpy as np
import pytest
import scipy.linalg
import torch

from probgen.metrics.scores import frechet_distance, inception_score, kernel_distance


def _features(n, d, seed, shift=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    return (torch.randn(n, d, generator=g, dtype=torch.float64) @ mix) * scale + shift


def _scipy_fid(a, b):
    """Independent reference: scipy's sqrtm, as in pytorch-fid."""
    a, b = a.numpy(), b.numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fid_of_a_set_with_itself_is_zero():
    f = _features(500, 16, 0)
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-8)


def test_equal_covariances_give_squared_mean_distance():
    f = _features(300, 12, 1)
    shift = torch.linspace(-1, 2, 12, dtype=torch.float64)
    assert frechet_distance(f, f + shift) == pytest.approx(float((shift**2).sum()), rel=1e-8)


@pytest.mark.parametrize("seed", [2, 3])
def test_fid_agrees_with_scipy(seed):
    a = _features(400, 20, seed)
    b = _features(300, 20, seed + 10, shift=0.3, scale=1.5)
    ref = _scipy_fid(a, b)
    assert ref > 1.0
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(a.float(), b.float()) == pytest.approx(ref, rel=1e-4)  # float32 in, float64 inside


def test_fid_needs_two_samples_and_equal_dims():
    with pytest.raises(ValueError):
        frechet_distance(torch.zeros(1, 4), torch.zeros(5, 4))
    with pytest.raises(ValueError):
        frechet_distance(torch.zeros(5, 4), torch.zeros(5, 3))


def _mmd2_unbiased(x, y):
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731 - the cubic kernel of Binkowski et al.
    m = len(x)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    off = lambda K: (K.sum() - K.diagonal().sum()) / (m * (m - 1))  # noqa: E731
    return float(off(kxx) + off(kyy) - 2 * kxy.mean())


def test_kid_with_one_full_subset_is_the_unbiased_mmd():
    a, b = _features(60, 8, 4), _features(60, 8, 5, shift=0.5)
    mean, std = kernel_distance(a, b, subsets=1, subset_size=60)
    assert mean == pytest.approx(_mmd2_unbiased(a, b), rel=1e-9)
    assert std == 0.0


def test_kid_is_seeded_and_leaves_the_global_rng_alone():
    a, b = _features(80, 8, 6), _features(80, 8, 7, shift=0.2)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    r1 = kernel_distance(a, b, subsets=20, subset_size=30, seed=1)
    assert torch.equal(torch.get_rng_state(), before)
    assert kernel_distance(a, b, subsets=20, subset_size=30, seed=1) == r1
    assert kernel_distance(a, b, subsets=20, subset_size=30, seed=2) != r1
    assert r1[1] > 0  # distinct subsets: a real spread


@pytest.mark.filterwarnings("ignore:std:UserWarning")  # one split has no spread
def test_inception_score_extremes():
    # Uniform predictions: p(y|x) = p(y), so IS = 1. Confident predictions spread evenly over K classes: IS = K.
    assert inception_score(torch.zeros(40, 10), splits=1)[0] == pytest.approx(1.0)
    k = 8
    logits = torch.full((80, k), -1e4)
    logits[torch.arange(80), torch.arange(80) % k] = 0.0
    assert inception_score(logits, splits=1)[0] == pytest.approx(k, rel=1e-6)
    mean, std = inception_score(logits.clamp_min(-20.0), splits=4, seed=0)  # shuffled: classes no longer even
    assert 6.0 < mean <= k and std > 0
