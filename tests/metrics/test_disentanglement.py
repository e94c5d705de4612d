import math

import numpy as np
import pytest

from probgen.metrics.disentanglement import (
    _weighted_one_minus_entropy,
    beta_vae_score,
    dci,
    disentanglement_scores,
    entropy,
    factor_vae_score,
    fit_softmax_regression,
    histogram_discretize,
    mig,
    mutual_info,
    sap,
)

SIZES = (1, 3, 6, 10, 8)  # a constant factor (like dSprites' colour) and four varying ones
FAST = {"num_train": 800, "num_eval": 400}


def _factors(n: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(s, size=n) for s in SIZES], axis=1)


@pytest.fixture(scope="module")
def factors() -> np.ndarray:
    return _factors()


def test_mutual_info_and_entropy_exact():
    a = np.repeat(np.arange(4), 4)
    assert entropy(a) == pytest.approx(math.log(4))
    assert mutual_info(a, a) == pytest.approx(math.log(4))
    assert mutual_info(a, a % 2) == pytest.approx(math.log(2))  # a determines a % 2: I = H(a % 2)
    b = np.tile(np.arange(4), 4)  # every (a, b) pair once: independent
    assert mutual_info(a, b) == pytest.approx(0.0, abs=1e-12)


def test_histogram_discretize_separates_up_to_num_bins_integers_and_keeps_constants_in_one_bin():
    codes = np.stack([np.arange(20) % 20, np.full(20, 3.0)], axis=1).astype(float)
    d = histogram_discretize(codes, 20)
    assert sorted(d[:, 0].tolist()) == list(range(20))
    assert len(set(d[:, 1].tolist())) == 1


def test_identity_representation_scores_high(factors):
    codes = factors[:, 1:].astype(float)
    res = disentanglement_scores(codes, factors, **FAST)
    s = res["scores"]
    assert res["mig"]["factors"] == [1, 2, 3, 4]  # the constant factor is dropped
    assert s["mig"] > 0.99
    assert s["beta_vae"] > 0.98 and s["factor_vae"] > 0.98
    assert s["dci_disentanglement"] > 0.97 and s["dci_completeness"] > 0.97 and s["dci_informativeness"] > 0.97
    # SAP's top-two gap is accuracy 1 minus chance (the other codes are independent of the factor)
    assert s["sap"] == pytest.approx(np.mean([1 - 1 / k for k in SIZES[1:]]), abs=0.05)


def test_scores_do_not_depend_on_permuting_scaling_or_shifting_the_codes(factors):
    def scores(codes):
        tr, te = slice(0, 1500), slice(1500, None)
        return [
            mig(codes, factors)["mig"],
            sap(codes[tr], factors[tr], codes[te], factors[te])["sap"],
            beta_vae_score(codes, factors, np.random.default_rng(0), 16, 200, 200)["eval_accuracy"],
            factor_vae_score(codes, factors, np.random.default_rng(0), 16, 200, 200)["eval_accuracy"],
        ]

    codes = factors[:, 1:].astype(float)
    a = scores(codes)
    b = scores(codes[:, [2, 0, 3, 1]] * np.array([0.1, -3.0, 2.0, 7.0]) + 5.0)
    np.testing.assert_allclose(a, b, atol=0.02)


def test_constant_representation_scores_zero_or_chance(factors):
    res = disentanglement_scores(np.zeros((len(factors), 5)), factors, **FAST)
    s = res["scores"]
    assert s["mig"] == 0.0 and s["sap"] == 0.0 and s["factor_vae"] == 0.0
    assert s["dci_disentanglement"] == pytest.approx(0.0, abs=1e-6)
    assert s["dci_completeness"] == pytest.approx(0.0, abs=1e-6)
    assert res["factor_vae"]["active_dims"] == []  # every dimension is pruned
    assert s["beta_vae"] < 0.25 + 0.08  # chance is 1/4


def test_random_representation_scores_low(factors):
    codes = np.random.default_rng(1).normal(size=(len(factors), 6))
    s = disentanglement_scores(codes, factors, **FAST)["scores"]
    assert s["mig"] < 0.02 and s["sap"] < 0.05
    assert s["beta_vae"] < 0.35 and s["factor_vae"] < 0.35
    assert s["dci_disentanglement"] < 0.3 and s["dci_completeness"] < 0.1


def test_mig_of_a_duplicated_code_is_zero_for_that_factor(factors):
    codes = factors[:, [1, 1, 2, 3, 4]].astype(float)  # factor 1 in two codes: no gap
    res = mig(codes, factors)
    assert res["per_factor"][0] == pytest.approx(0.0, abs=1e-12)
    assert res["mig"] == pytest.approx(0.75, abs=0.01)


def test_dci_weighting_of_known_importance_matrices():
    assert _weighted_one_minus_entropy(np.eye(4)) == pytest.approx(1.0)
    assert _weighted_one_minus_entropy(np.ones((4, 4))) == pytest.approx(0.0, abs=1e-9)
    # one code importance spread evenly over 2 of 4 factors: 1 - log 2 / log 4 = 0.5
    assert _weighted_one_minus_entropy(np.array([[1.0, 1.0, 0.0, 0.0]])) == pytest.approx(0.5, abs=1e-6)


def test_dci_uses_a_sparse_importance_for_an_entangled_pair(factors):
    codes = np.stack([factors[:, 1] + factors[:, 2], factors[:, 1] - factors[:, 2], factors[:, 3], factors[:, 4]], 1)
    res = dci(codes[:1500].astype(float), factors[:1500], codes[1500:].astype(float), factors[1500:])
    imp = np.array(res["importance"])  # (codes, factors), each column sums to 1
    assert res["informativeness_test"] > 0.95
    np.testing.assert_allclose(imp.sum(0), 1.0)
    np.testing.assert_allclose(imp[:, 2:], np.eye(4)[:, 2:], atol=0.01)  # codes 2, 3 are factors 3, 4 alone
    np.testing.assert_allclose(imp[:2, :2], 0.5, atol=0.05)  # codes 0, 1 share factors 1, 2
    # codes 0 and 1 each spread over two of four factors: 1 - log 2 / log 4 = 0.5, a quarter of the weight each
    assert res["disentanglement"] == pytest.approx(0.5 * 0.5 + 0.5 * 1.0, abs=0.03)


def test_softmax_regression_separates_separable_classes():
    rng = np.random.default_rng(0)
    y = rng.integers(3, size=300)
    x = np.stack([y + 0.1 * rng.normal(size=300), rng.normal(size=300)], 1)
    w, b = fit_softmax_regression((x - x.mean(0)) / x.std(0), y, 3, l2=1e-3)
    pred = np.argmax(((x - x.mean(0)) / x.std(0)) @ w.T + b, axis=1)
    assert (pred == y).mean() > 0.99
    w1, _ = fit_softmax_regression((x - x.mean(0)) / x.std(0), y, 3, l1=0.05)
    assert np.abs(w1[:, 1]).max() == pytest.approx(0.0, abs=1e-6)  # L1 removes the noise feature


def test_metrics_validate_their_inputs(factors):
    with pytest.raises(ValueError, match="integer"):
        mig(np.zeros((10, 2)), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="same N"):
        sap(np.zeros((10, 2)), factors[:9], np.zeros((5, 2)), factors[:5])
    with pytest.raises(ValueError, match="NaN"):
        mig(np.full((len(factors), 2), np.nan), factors)


def test_beta_and_factor_vae_report_chance_and_accuracies(factors):
    rng = np.random.default_rng(0)
    codes = factors[:, 1:].astype(float)
    b = beta_vae_score(codes, factors, rng, batch_size=16, num_train=200, num_eval=100)
    f = factor_vae_score(codes, factors, rng, batch_size=16, num_train=200, num_eval=100)
    assert b["chance"] == f["chance"] == 0.25
    assert b["train_accuracy"] == 1.0 and f["train_accuracy"] == 1.0
    assert f["active_dims"] == [0, 1, 2, 3]
