import logging

import pytest
import torch

from probgen.config import DataConfig, MetricsConfig
from probgen.data import ImageData, Split, load_dataset
from probgen.errors import UserError
from probgen.metrics.domain import _targets
from probgen.metrics.harness import Harness
from probgen.metrics.prdc import realism


@pytest.fixture(scope="module")
def sprites():
    """dSprites at 32 px, 1200 images (procedural)."""
    return load_dataset(DataConfig(dataset="dsprites", limit=1200, image_size=32, data_root="/nonexistent"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _cfg(cache, **kw):
    kw = {"num_samples": 200, "feature_batch_size": 64, **kw}
    return MetricsConfig(domain_steps=40, cache_dir=str(cache), **kw)


def _from(images):
    def sampler(n, gen):
        idx = torch.randint(len(images), (n,), generator=gen)
        return images[idx].float() / 255.0  # floats in [0, 1], as samplers return them

    return sampler


def test_domain_fd_separates_real_data_from_noise(sprites, cache):
    h = Harness(sprites, _cfg(cache), torch.device("cpu"), show_progress=False)
    assert h.net.name == "domain-dsprites" and h.net.info["target"] == "factors"
    real = h.evaluate(_from(sprites.splits["test"].images))
    noise = h.evaluate(lambda n, gen: torch.rand(n, 1, 32, 32, generator=gen))
    fd_real, fd_noise = real["metrics"]["FD-dsprites"]["value"], noise["metrics"]["FD-dsprites"]["value"]
    assert fd_noise > 20 * fd_real
    kd_real, kd_noise = real["metrics"]["KD-dsprites"]["mean"], noise["metrics"]["KD-dsprites"]["mean"]
    assert kd_noise > 20 * abs(kd_real)
    assert not any("FID" in k for k in real["metrics"])  # never called FID


def test_every_result_states_n_split_network_and_resize(sprites, cache):
    h = Harness(sprites, _cfg(cache, num_real=150, ref_split="test"), torch.device("cpu"), show_progress=False)
    res = h.evaluate(_from(sprites.splits["train"].images), num_samples=120)
    for entry in res["metrics"].values():
        assert entry["num_generated"] == 120 and entry["num_real"] == 120  # the test split has 120 images
        assert entry["ref_split"] == "test" and entry["feature_network"] == "domain-dsprites"
        assert entry["resize"].startswith("none")
    assert res["metrics"]["KD-dsprites"]["subset_size"] == 60


def test_domain_net_and_reference_features_are_cached(sprites, cache, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("probgen"), "propagate", True)  # an earlier CLI run may have cut it
    cfg = _cfg(cache, eval_seed=5)
    first = Harness(sprites, cfg, torch.device("cpu"), show_progress=False)
    with caplog.at_level(logging.INFO, logger="probgen"):
        second = Harness(sprites, cfg, torch.device("cpu"), show_progress=False)
    assert "cached network" in caplog.text and "cached reference features" in caplog.text
    assert first.net.fingerprint == second.net.fingerprint
    assert torch.equal(first.real_features, second.real_features)
    sampler = _from(sprites.splits["test"].images)
    assert first.evaluate(sampler)["metrics"] == second.evaluate(sampler)["metrics"]  # seeded: reproducible
    other = Harness(sprites, _cfg(cache, eval_seed=6), torch.device("cpu"), show_progress=False)
    assert not torch.equal(other.real_features, first.real_features)  # another real subset, another entry


def test_bad_requests_are_user_errors(sprites, cache):
    with pytest.raises(UserError, match="--kid-subset-size"):
        Harness(sprites, _cfg(cache, kid_subset_size=500), torch.device("cpu"), show_progress=False).evaluate(
            _from(sprites.splits["test"].images)
        )
    with pytest.raises(UserError, match="--metrics"):
        MetricsConfig(metrics=("is",))  # IS needs Inception's classes
    h = Harness(sprites, _cfg(cache), torch.device("cpu"), show_progress=False)
    with pytest.raises(UserError, match="shape"):
        h.evaluate(lambda n, gen: torch.rand(n, 1, 64, 64, generator=gen))


def test_targets_labels_then_rotation():
    imgs = torch.zeros(10, 1, 8, 8, dtype=torch.uint8)
    labelled = ImageData("x", "test", {"train": Split(imgs, labels=torch.arange(10) % 3)})
    kind, heads, y = _targets(labelled, labelled.splits["train"])
    assert kind == "labels" and heads == {"label": 3} and y.shape == (10, 1)
    multi = ImageData(
        "x", "test", {"train": Split(imgs, labels=torch.stack([torch.arange(10) % 2, torch.arange(10)], 1))}
    )
    kind, heads, y = _targets(multi, multi.splits["train"])
    assert kind == "labels" and heads == {"label0": 2, "label1": 10} and y.shape == (10, 2)
    bare = ImageData("x", "test", {"train": Split(imgs)})
    kind, heads, y = _targets(bare, bare.splits["train"])
    assert kind == "rotation" and heads == {"rotation": 4} and y is None


def test_manifold_metrics_intervals_and_fid_infinity(sprites, cache):
    metrics = ("fid", "kid", "precision", "recall", "density", "coverage")
    cfg = _cfg(cache, metrics=metrics, bootstrap=50, fid_infinity=True, fid_infinity_points=5, nearest_k=3)
    h = Harness(sprites, cfg, torch.device("cpu"), show_progress=False)
    real = h.evaluate(_from(sprites.splits["test"].images))["metrics"]
    noise = h.evaluate(lambda n, gen: torch.rand(n, 1, 32, 32, generator=gen))["metrics"]
    for name in ("FD-dsprites", "precision", "recall", "density", "coverage"):
        for res in (real, noise):
            lo, hi = res[name]["ci95"]
            assert lo <= res[name]["value"] <= hi and res[name]["bootstrap"]["replicates"] == 50, name
    lo, hi = real["KD-dsprites"]["ci95"]
    assert lo <= real["KD-dsprites"]["u_statistic"] <= hi
    assert real["precision"]["k"] == 3 and real["precision"]["feature_network"] == "domain-dsprites"
    assert real["precision"]["value"] > 0.8 and real["coverage"]["value"] > 0.6  # held-out images, drawn with repeats
    assert noise["precision"]["value"] < 0.05 and noise["coverage"]["value"] < 0.05
    inf = real["FD-dsprites-infinity"]
    assert len(inf["points"]) == 5 and inf["points"][-1]["value"] == pytest.approx(real["FD-dsprites"]["value"])
    assert inf["value"] < real["FD-dsprites"]["value"]  # FD's small-N bias is positive


def test_intervals_can_be_switched_off(sprites, cache):
    h = Harness(sprites, _cfg(cache, bootstrap=0), torch.device("cpu"), show_progress=False)
    res = h.evaluate(_from(sprites.splits["test"].images), num_samples=100)["metrics"]
    assert "ci95" not in res["FD-dsprites"] and "ci95" not in res["KD-dsprites"]


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"metrics": ("fid", "recall", "bogus")}, "--metrics"),
        ({"nearest_k": 0}, "--nearest-k"),
        ({"bootstrap": 3}, "--bootstrap"),
        ({"fid_infinity": True, "metrics": ("kid",)}, "--fid-infinity"),
    ],
)
def test_bad_metric_options_name_the_flag(kw, needle):
    with pytest.raises(UserError, match=needle):
        MetricsConfig(**kw)


class _Pixels(torch.nn.Module):
    """Pixel features (a 'feature network' that needs no training): images (N, 1, 32, 32) -> (N, 64) by 4x4 pooling."""

    name, num_features, resize, fingerprint, info = "pixels", 64, "none", "pixels-v1", {}

    def forward(self, images):
        return torch.nn.functional.avg_pool2d(images.float() / 255, 4).flatten(1), None


def test_memorization_flags_a_model_that_returns_training_images(sprites, cache):
    cfg = _cfg(cache, num_samples=100, num_real=300, metrics=("fid", "memorization", "realism"), bootstrap=50)
    h = Harness(sprites, cfg, torch.device("cpu"), net=_Pixels(), show_progress=False)
    train = sprites.splits["train"].images
    copies = h.evaluate(_from(train[h.real_indices]))  # training images the memorisation test compares with
    unseen = torch.ones(len(train), dtype=torch.bool)
    unseen[h.real_indices] = False
    fresh = h.evaluate(_from(train[unseen]))  # other images of the same distribution
    mc, mf = copies["metrics"]["memorization"], fresh["metrics"]["memorization"]
    assert mc["copying"] and mc["value"] > 0.9 and mc["fraction_closer_than_test"] > 0.9
    assert not mf["copying"] and mf["ci95"][0] < 0.5 < mf["ci95"][1]
    base = mf["fraction_closer_than_test_baseline"]  # the test images' own fraction (0.65 here: small, discrete data)
    assert abs(mf["fraction_closer_than_test"] - base) < 0.1 and mc["fraction_closer_than_test"] > base + 0.2
    assert mc["num_train"] == 300 and mc["num_test"] == 120 and mc["feature_network"] == "pixels"
    assert set(h.per_sample) == {"realism", "nn_train_distance", "nn_train_index", "closer_than_test"}


def test_redraw_gives_the_scored_images(sprites, cache):
    cfg = _cfg(cache, num_samples=150, metrics=("fid", "realism"), feature_batch_size=64)
    h = Harness(sprites, cfg, torch.device("cpu"), net=_Pixels(), show_progress=False)
    sampler = _from(sprites.splits["test"].images)
    h.evaluate(sampler)
    idx = torch.tensor([149, 0, 70])
    images = h.redraw(sampler, idx)
    realism_again = realism(h.real_features, _Pixels()(images)[0], cfg.nearest_k)
    assert torch.allclose(realism_again, h.per_sample["realism"][idx])
