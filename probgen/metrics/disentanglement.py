"""Disentanglement metrics from known generative factors, as defined in disentanglement_lib.

Every function takes a representation as arrays: ``codes`` (N, D) float (e.g. the encoder means
of N images) and ``factors`` (N, F) int (the class index of each generative factor of the same
images). Factors with a single value (dSprites' colour) carry no information and are dropped.

- BetaVAE score (Higgins et al. 2017): a linear classifier predicts which factor was held fixed
  from the mean absolute code difference of pairs that share it.
- FactorVAE score (Kim & Mnih 2018): majority vote from the code dimension of least normalised
  variance, in batches that share one factor, to that factor.
- MIG (Chen et al. 2018): mean over factors of the gap between the two largest mutual
  informations with a (histogram-discretised) code dimension, divided by the factor's entropy.
- DCI (Eastwood & Williams 2018): disentanglement, completeness and informativeness from an
  importance matrix of predictors of each factor from the codes.
- SAP (Kumar et al. 2018): mean over factors of the gap between the two most predictive single
  code dimensions.

Differences from disentanglement_lib (which uses scikit-learn; probgen does not depend on it):

- Interventions. BetaVAE and FactorVAE need batches in which one factor is held fixed. Instead of
  re-rendering images, they are drawn from the given sample: points whose factor j equals the
  anchor's. On the full factorial dSprites grid (independent uniform factors) this is the same
  distribution; on a random subset it is an empirical approximation of it.
- Classifiers are multinomial logistic regressions fitted here (full batch, FISTA, float64, on
  standardised inputs): L2 for BetaVAE (like sklearn's default ``C=1``), L1 for DCI's importances.
  DCI's gradient-boosted trees are replaced by the absolute L1-logistic weights (an importance
  in the spirit of Eastwood & Williams' lasso), so DCI numbers are not comparable with published
  GBT-based ones. SAP for discrete factors uses a majority vote within equal-width histogram bins
  of one code dimension instead of ``LinearSVC(C=0.01)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.optimize

# --- helpers ---------------------------------------------------------------------------------------


def _check(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes = np.asarray(codes, dtype=np.float64)
    factors = np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise ValueError(f"codes must be (N, D) and factors (N, F) with the same N, got {codes.shape}, {factors.shape}")
    if not np.issubdtype(factors.dtype, np.integer):
        raise ValueError(f"factors must be integer classes, got dtype {factors.dtype}")
    if not np.isfinite(codes).all():
        raise ValueError("codes contain NaN or Inf")
    return codes, factors


def varying_factors(factors: np.ndarray) -> np.ndarray:
    """Indices of the factors that take more than one value in ``factors`` (N, F)."""
    factors = np.asarray(factors)
    return np.array([j for j in range(factors.shape[1]) if len(np.unique(factors[:, j])) > 1], dtype=np.int64)


def _dense(y: np.ndarray) -> tuple[np.ndarray, int]:
    """Class labels -> 0..K-1 and K."""
    values, inv = np.unique(y, return_inverse=True)
    return inv.reshape(-1), len(values)


def histogram_discretize(codes: np.ndarray, num_bins: int = 20, edges: list[np.ndarray] | None = None) -> np.ndarray:
    """Each code dimension (N, D) -> bin index 0..num_bins-1 of ``num_bins`` equal-width bins over its range.

    As ``np.histogram``: a constant dimension falls in one bin. ``edges`` (from a previous call on
    training codes, see :func:`histogram_edges`) reuses those bins; values outside are clipped.
    """
    codes = np.asarray(codes, dtype=np.float64)
    edges = histogram_edges(codes, num_bins) if edges is None else edges
    out = np.empty(codes.shape, dtype=np.int64)
    for i in range(codes.shape[1]):
        out[:, i] = np.clip(np.digitize(codes[:, i], edges[i][1:-1]), 0, num_bins - 1)
    return out


def histogram_edges(codes: np.ndarray, num_bins: int = 20) -> list[np.ndarray]:
    return [np.histogram_bin_edges(codes[:, i], num_bins) for i in range(codes.shape[1])]


def mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in mutual information (nats) of two discrete label vectors (N,)."""
    a, ka = _dense(a)
    b, kb = _dense(b)
    joint = np.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb) / len(a)
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


def entropy(a: np.ndarray) -> float:
    """Plug-in entropy (nats) of a discrete label vector (N,)."""
    p = np.bincount(_dense(a)[0]) / len(a)
    return float(-(p * np.log(p)).sum())


def _standardize(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    mean, std = ref.mean(0), ref.std(0)
    return (x - mean) / np.where(std > 1e-12, std, 1.0)  # a constant dimension stays 0


def fit_softmax_regression(
    x: np.ndarray, y: np.ndarray, num_classes: int, l1: float = 0.0, l2: float = 0.0, max_iter: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression: minimise mean cross-entropy + l2/2 |W|^2 + l1 |W|_1.

    x (N, D) (standardise it first), y (N,) in 0..num_classes-1; the intercept is not penalised.
    Solved with scipy's L-BFGS-B, the L1 term made smooth by splitting W = W+ - W- with W+/- >= 0.
    Returns W (K, D) and b (K,). Written here because neither torch nor scipy has an (L1-penalised)
    classifier and scikit-learn is not a dependency.
    """
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    k = num_classes
    onehot = np.zeros((n, k))
    onehot[np.arange(n), np.asarray(y)] = 1.0

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        wp, wn, b = theta[: k * d].reshape(k, d), theta[k * d : 2 * k * d].reshape(k, d), theta[2 * k * d :]
        w = wp - wn
        logits = x @ w.T + b
        logits -= logits.max(1, keepdims=True)
        logz = np.log(np.exp(logits).sum(1, keepdims=True))
        loss = -(onehot * (logits - logz)).sum() / n + 0.5 * l2 * (w * w).sum() + l1 * (wp.sum() + wn.sum())
        r = (np.exp(logits - logz) - onehot) / n  # d loss / d logits
        gw = r.T @ x + l2 * w
        return loss, np.concatenate([(gw + l1).ravel(), (-gw + l1).ravel(), r.sum(0)])

    bounds = [(0.0, None)] * (2 * k * d) + [(None, None)] * k
    res = scipy.optimize.minimize(
        objective, np.zeros(2 * k * d + k), jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": max_iter}
    )
    theta = res.x
    return theta[: k * d].reshape(k, d) - theta[k * d : 2 * k * d].reshape(k, d), theta[2 * k * d :]


def _predict(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.argmax(x @ w.T + b, axis=1)


def _same_factor_partners(factors: np.ndarray, j: int, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each anchor index, a uniformly drawn index whose factor ``j`` has the anchor's value."""
    groups, k = _dense(factors[:, j])
    order = np.argsort(groups, kind="stable")
    counts = np.bincount(groups, minlength=k)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    g = groups[anchors]
    pick = starts[g] + np.floor(rng.random(anchors.shape) * counts[g]).astype(np.int64)
    return order[pick]


# --- the metrics -----------------------------------------------------------------------------------


def mig(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> dict[str, Any]:
    """Mutual Information Gap (Chen et al. 2018), disentanglement_lib's discrete estimator.

    codes (N, D), factors (N, F) int. Codes are discretised in ``num_bins`` equal-width bins; for
    each varying factor j, (I(c_a; v_j) - I(c_b; v_j)) / H(v_j) with a, b the codes of the two
    largest mutual informations (the second is 0 when D = 1). Returns ``mig`` in [0, 1], the
    per-factor gaps and the mutual-information matrix (D, F') in nats.
    """
    codes, factors = _check(codes, factors)
    keep = varying_factors(factors)
    disc = histogram_discretize(codes, num_bins)
    m = np.array([[mutual_info(disc[:, i], factors[:, j]) for j in keep] for i in range(codes.shape[1])])
    h = np.array([entropy(factors[:, j]) for j in keep])
    top = np.sort(m, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros_like(top[0])
    gaps = (top[0] - second) / h
    return {"mig": float(gaps.mean()), "per_factor": gaps.tolist(), "mutual_info": m.tolist(), "factors": keep.tolist()}


def sap(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    continuous: bool = False,
    num_bins: int = 20,
) -> dict[str, Any]:
    """SAP score (Kumar et al. 2018): mean over factors of the gap between the top two entries of a
    (D, F') score matrix.

    ``continuous``: score = squared correlation of code i and factor j on the training codes.
    Otherwise: test accuracy of a one-dimensional classifier of factor j from code i, a majority
    vote within ``num_bins`` equal-width bins fitted on the training codes.
    """
    codes_train, factors_train = _check(codes_train, factors_train)
    codes_test, factors_test = _check(codes_test, factors_test)
    keep = varying_factors(factors_train)
    d = codes_train.shape[1]
    score = np.zeros((d, len(keep)))
    if continuous:
        for a, j in enumerate(keep):
            y = factors_train[:, j].astype(np.float64)
            for i in range(d):
                c = np.cov(codes_train[:, i], y, ddof=1)
                score[i, a] = c[0, 1] ** 2 / (c[0, 0] * c[1, 1]) if c[0, 0] > 1e-12 else 0.0
    else:
        edges = histogram_edges(codes_train, num_bins)
        bins_train = histogram_discretize(codes_train, num_bins, edges)
        bins_test = histogram_discretize(codes_test, num_bins, edges)
        for a, j in enumerate(keep):
            values, y = np.unique(np.concatenate([factors_train[:, j], factors_test[:, j]]), return_inverse=True)
            y_train, y_test = y[: len(codes_train)], y[len(codes_train) :]
            k = len(values)
            fallback = np.bincount(y_train, minlength=k).argmax()
            for i in range(d):
                counts = np.bincount(bins_train[:, i] * k + y_train, minlength=num_bins * k).reshape(num_bins, k)
                vote = np.where(counts.sum(1) > 0, counts.argmax(1), fallback)
                score[i, a] = float((vote[bins_test[:, i]] == y_test).mean())
    top = np.sort(score, axis=0)
    second = top[-2] if d > 1 else np.zeros_like(top[-1])
    return {"sap": float((top[-1] - second).mean()), "score_matrix": score.tolist(), "factors": keep.tolist()}


def dci(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    l1: float = 1e-3,
) -> dict[str, Any]:
    """DCI (Eastwood & Williams 2018) with L1-logistic importances.

    For each varying factor j, an L1-penalised multinomial logistic regression predicts its class
    from the standardised codes; R[i, j] = sum_k |W_j[k, i]|, normalised to sum to 1 over codes
    (like the tree importances of disentanglement_lib), is the importance of code i. Then
    disentanglement = sum_i rho_i (1 - H_F(R[i, :] / sum_j R[i, j])), rho_i = code i's share of R,
    completeness = sum_j rho_j (1 - H_D(R[:, j] / sum_i R[i, j])) (entropies in base F' and D), and
    informativeness = mean classification accuracy (train and test). An all-zero R gives 0 and 0.
    """
    codes_train, factors_train = _check(codes_train, factors_train)
    codes_test, factors_test = _check(codes_test, factors_test)
    keep = varying_factors(factors_train)
    xtr = _standardize(codes_train, codes_train)
    xte = _standardize(codes_test, codes_train)
    d = codes_train.shape[1]
    imp = np.zeros((d, len(keep)))
    acc_train, acc_test = [], []
    for a, j in enumerate(keep):
        values, y = np.unique(np.concatenate([factors_train[:, j], factors_test[:, j]]), return_inverse=True)
        y_train, y_test = y[: len(xtr)], y[len(xtr) :]
        w, b = fit_softmax_regression(xtr, y_train, len(values), l1=l1)
        r = np.abs(w).sum(0)
        imp[:, a] = r / r.sum() if r.sum() > 0 else r  # sums to 1 per factor, as GBT importances do
        acc_train.append(float((_predict(w, b, xtr) == y_train).mean()))
        acc_test.append(float((_predict(w, b, xte) == y_test).mean()))
    return {
        "disentanglement": _weighted_one_minus_entropy(imp),
        "completeness": _weighted_one_minus_entropy(imp.T),
        "informativeness_train": float(np.mean(acc_train)),
        "informativeness_test": float(np.mean(acc_test)),
        "importance": imp.tolist(),
        "factors": keep.tolist(),
    }


def _weighted_one_minus_entropy(r: np.ndarray) -> float:
    """sum_i rho_i (1 - H(r_i / |r_i|) / log K) over rows i of r (rows, K); rho_i = |r_i| / |r|."""
    rows, k = r.shape
    if k == 1:
        return 1.0 if r.sum() > 0 else 0.0
    p = (r + 1e-11) / (r + 1e-11).sum(1, keepdims=True)
    per_row = np.clip(1.0 + (p * np.log(p)).sum(1) / np.log(k), 0.0, 1.0)  # no -1e-16 from rounding
    total = r.sum()
    rho = r.sum(1) / total if total > 0 else np.full(rows, 1.0 / rows)
    return float((rho * per_row).sum())


def beta_vae_score(
    codes: np.ndarray,
    factors: np.ndarray,
    rng: np.random.Generator,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
) -> dict[str, Any]:
    """BetaVAE score (Higgins et al. 2017): accuracy of a linear classifier of the fixed factor.

    Each training point: pick a varying factor j uniformly; draw ``batch_size`` pairs that share
    factor j (the second of each pair among the points with the first one's value); the feature is
    the mean over pairs of |c(x1) - c(x2)| (D,). A multinomial logistic regression (L2, as
    sklearn's default C=1, on standardised features) is fit on ``num_train`` points and scored on
    ``num_eval`` fresh ones. Chance level is 1 / F'.
    """
    codes, factors = _check(codes, factors)
    keep = varying_factors(factors)

    def draw(num: int) -> tuple[np.ndarray, np.ndarray]:
        label = rng.integers(len(keep), size=num)
        first = rng.integers(len(codes), size=(num, batch_size))
        second = np.empty_like(first)
        for a, j in enumerate(keep):
            sel = label == a
            second[sel] = _same_factor_partners(factors, j, first[sel], rng)
        feats = np.abs(codes[first] - codes[second]).mean(1)  # (num, D)
        return feats, label

    x_train, y_train = draw(num_train)
    x_eval, y_eval = draw(num_eval)
    xs_train, xs_eval = _standardize(x_train, x_train), _standardize(x_eval, x_train)
    w, b = fit_softmax_regression(xs_train, y_train, len(keep), l2=1.0 / num_train)
    return {
        "train_accuracy": float((_predict(w, b, xs_train) == y_train).mean()),
        "eval_accuracy": float((_predict(w, b, xs_eval) == y_eval).mean()),
        "chance": 1.0 / len(keep),
        "factors": keep.tolist(),
    }


def factor_vae_score(
    codes: np.ndarray,
    factors: np.ndarray,
    rng: np.random.Generator,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    prune_threshold: float = 0.05,
) -> dict[str, Any]:
    """FactorVAE score (Kim & Mnih 2018): majority-vote accuracy from argmin normalised variance.

    Code dimensions whose global std (over ``num_variance_estimate`` points) is below
    ``prune_threshold`` are dropped (collapsed to the prior); if none is left the score is 0. Each
    vote: pick a varying factor j, draw ``batch_size`` points sharing one value of it, and vote
    (j, argmin_i var_batch(c_i) / var_global(c_i)). The classifier maps each dimension to its
    most-voted factor on ``num_train`` votes; the score is its accuracy on ``num_eval`` votes.
    """
    codes, factors = _check(codes, factors)
    keep = varying_factors(factors)
    est = codes[rng.integers(len(codes), size=min(num_variance_estimate, len(codes)))]
    global_var = est.var(0, ddof=1)
    active = np.flatnonzero(np.sqrt(global_var) >= prune_threshold)
    out: dict[str, Any] = {"chance": 1.0 / len(keep), "factors": keep.tolist(), "active_dims": active.tolist()}
    if len(active) == 0:
        return {**out, "train_accuracy": 0.0, "eval_accuracy": 0.0}

    def votes(num: int) -> np.ndarray:
        label = rng.integers(len(keep), size=num)
        anchors = rng.integers(len(codes), size=num)
        idx = np.empty((num, batch_size), dtype=np.int64)
        for a, j in enumerate(keep):
            sel = label == a
            idx[sel] = _same_factor_partners(factors, j, np.repeat(anchors[sel, None], batch_size, 1), rng)
        local = codes[idx][:, :, active].var(1, ddof=1)  # (num, active)
        argmin = np.argmin(local / global_var[active], axis=1)
        v = np.zeros((len(keep), len(active)), dtype=np.int64)
        np.add.at(v, (label, argmin), 1)
        return v

    train, ev = votes(num_train), votes(num_eval)
    classifier = train.argmax(0)  # a factor per active dimension
    cols = np.arange(len(active))
    return {
        **out,
        "train_accuracy": float(train[classifier, cols].sum() / train.sum()),
        "eval_accuracy": float(ev[classifier, cols].sum() / ev.sum()),
    }


def disentanglement_scores(
    codes: np.ndarray,
    factors: np.ndarray,
    seed: int = 0,
    holdout_fraction: float = 1 / 3,
    num_bins: int = 20,
    group_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
) -> dict[str, Any]:
    """All five metrics on one sample of codes (N, D) and factor classes (N, F).

    MIG on all points; DCI and SAP on a seeded split that holds out ``holdout_fraction`` of the
    points for testing; BetaVAE and FactorVAE draw their groups of ``group_size`` from all points,
    with ``num_train``/``num_eval`` training/evaluation points (votes). The defaults are
    disentanglement_lib's. The headline numbers are under ``scores`` (all in [0, 1], higher is more
    disentangled); each metric's details are under its own key.
    """
    codes, factors = _check(codes, factors)
    if len(varying_factors(factors)) == 0:
        raise ValueError("no factor varies in this sample")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(codes))
    n_test = min(len(codes) - 1, max(1, int(round(len(codes) * holdout_fraction))))
    te, tr = perm[:n_test], perm[n_test:]
    res = {
        "mig": mig(codes, factors, num_bins),
        "dci": dci(codes[tr], factors[tr], codes[te], factors[te]),
        "sap": sap(codes[tr], factors[tr], codes[te], factors[te], num_bins=num_bins),
        "beta_vae": beta_vae_score(codes, factors, rng, group_size, num_train, num_eval),
        "factor_vae": factor_vae_score(codes, factors, rng, group_size, num_train, num_eval),
    }
    res["scores"] = {
        "beta_vae": res["beta_vae"]["eval_accuracy"],
        "factor_vae": res["factor_vae"]["eval_accuracy"],
        "mig": res["mig"]["mig"],
        "dci_disentanglement": res["dci"]["disentanglement"],
        "dci_completeness": res["dci"]["completeness"],
        "dci_informativeness": res["dci"]["informativeness_test"],
        "sap": res["sap"]["sap"],
    }
    return res
