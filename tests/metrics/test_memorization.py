import torch

from probgen.metrics.memorization import closer_probability, memorization, nearest


def _gauss(n, d=8, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_nearest_is_brute_force():
    q, r = _gauss(30, seed=1), _gauss(50, seed=2)
    d, i = nearest(q, r, k=2)
    full = torch.cdist(q, r)
    want = full.topk(2, dim=1, largest=False)
    assert torch.allclose(d, want.values, atol=1e-9) and torch.equal(i, want.indices)


def test_closer_probability_is_mann_whitney():
    a, b = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 3.0])
    # pairs where a < b: (0,1) (0,3) (1,3) (2,3) = 4, ties (1,1) = 1 -> (4 + 0.5) / 6
    assert closer_probability(a, b) == 4.5 / 6
    assert closer_probability(b, b) == 0.5


def test_a_model_that_returns_training_images_is_flagged_as_copying():
    train, test = _gauss(300, seed=1), _gauss(300, seed=2)
    copies = train[torch.randint(300, (300,), generator=torch.Generator().manual_seed(3))]
    summary, points = memorization(copies, train, test, bootstrap=50, seed=0)
    assert summary["value"] == 1.0 and summary["copying"] and summary["z_u"] < -15
    assert summary["fraction_closer_than_test"] == 1.0 and summary["median_nn_train_distance"] == 0.0
    assert torch.equal(train[points["nn_train_index"]], copies)


def test_an_independent_draw_of_the_data_is_not_flagged():
    for seed in range(3):
        train, test, new = (_gauss(300, seed=10 * seed + i) for i in (1, 2, 3))
        s, _ = memorization(new, train, test, bootstrap=100, seed=seed)
        assert not s["copying"], s
        assert abs(s["value"] - 0.5) < 0.06 and s["ci95"][0] < 0.5 < s["ci95"][1]
        # the same fraction as the test images' own (each against the other test images)
        assert abs(s["fraction_closer_than_test"] - s["fraction_closer_than_test_baseline"]) < 0.08


def test_a_half_copying_model_is_flagged_and_the_fraction_follows_it():
    train, test, new = _gauss(400, seed=4), _gauss(400, seed=5), _gauss(200, seed=6)
    gen = torch.cat([train[:200], new])
    s, points = memorization(gen, train, test, bootstrap=50)
    assert s["copying"] and s["value"] > 0.7
    assert points["closer_than_test"][:200].all()
    assert abs(s["fraction_closer_than_test"] - (0.5 + 0.5 * s["fraction_closer_than_test_baseline"])) < 0.08


def test_samples_off_the_data_score_below_one_half():
    train, test = _gauss(200, seed=7), _gauss(200, seed=8)
    far = _gauss(200, seed=9) * 3
    s, _ = memorization(far, train, test, bootstrap=0)
    assert s["value"] < 0.2 and not s["copying"] and "ci95" not in s
