"""experiments/benchmarks/peer_pythae.py: the shared data, the timing arithmetic, probgen's worker.

With pythae installed, also a smoke run of the whole benchmark.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "experiments" / "benchmarks"
EXPERIMENTS = BENCHMARKS.parent


@pytest.fixture
def script(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    yield importlib.import_module("peer_pythae")
    sys.modules.pop("peer_pythae", None)


@pytest.fixture
def digits(tmp_path, monkeypatch) -> Path:
    """Random grey 28x28 'digits' as MNIST idx files: 600 train / 100 test."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    from mnist_from_mlxtend import write_mnist_idx

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10, dtype=np.uint8), 70)
    images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
    write_mnist_idx(tmp_path / "mnist", images, labels, test_per_class=10)
    return tmp_path / "mnist"


def test_both_sides_read_equal_binary_tensors(script, digits):
    assert script.check_same_data(digits) == {"train": 600, "test": 100}
    x = script.peer_split(digits, "train")
    assert x.shape == (600, 1, 28, 28) and set(x.unique().tolist()) == {0.0, 1.0}


def test_subset_keeps_the_first_digits(script, digits, tmp_path):
    sub = script.write_subset(digits, tmp_path / "sub", 64, 16)
    assert torch.equal(script.peer_split(sub, "train"), script.peer_split(digits, "train")[:64])
    assert len(script.peer_split(sub, "test")) == 16


def test_epoch_times_split_steps_from_bookkeeping(script):
    steps, whole = script.epoch_times([(3.0, 4.0), (6.5, 7.0)], start=1.0)
    assert steps == [2.0, 2.5] and whole == [3.0, 3.0]


def test_summary_and_ratios(script):
    def run(side, seed, steps, elbo):
        return {"side": side, "seed": seed, "steps_s": steps, "epoch_s": [2 * s for s in steps],
                "process_s": 10.0, "test_elbo": elbo, "loglik_s": 4.0 if seed == 1 else None}  # fmt: skip

    runs = [run("probgen", 1, [1.0, 1.2, 1.1], -100.0), run("probgen", 2, [1.3, 1.3, 1.3], -102.0),
            run("pythae", 1, [1.0, 1.0, 1.0], -99.0), run("pythae", 2, [1.0, 1.0, 1.0], -101.0)]  # fmt: skip
    s = script.summarise(runs)
    assert s["probgen"]["steps_s"] == pytest.approx(1.2)  # median of the per-run medians 1.1 and 1.3
    assert s["probgen"]["test_elbo_mean"] == -101.0 and s["probgen"]["test_elbo_sd"] == pytest.approx(2**0.5)
    r = script.ratios(s)
    assert r["steps_s"] == pytest.approx(1.2) and r["epoch_s"] == pytest.approx(1.2)
    assert r["process_s"] == 1.0 and r["loglik_s"] == 1.0 and r["test_elbo_diff_nats"] == -1.0


def test_probgen_worker_times_every_epoch(script, digits, tmp_path):
    args = argparse.Namespace(
        worker="probgen", seed=1, data_root=digits, out=tmp_path / "runs", epochs=2, elbo="trace",
        loglik=True, k=4, loglik_points=3, threads=1, result=str(tmp_path / "r.json"),
    )  # fmt: skip
    assert script.worker(args) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert len(r["steps_s"]) == len(r["epoch_s"]) == 2
    assert all(0 < s <= e for s, e in zip(r["steps_s"], r["epoch_s"]))
    assert r["test_elbo"] < 0 and r["loglik_s"] > 0
    from probgen.training.trainers.vae import VAETrainer

    assert VAETrainer.train_step.__name__ == "train_step"  # the timing wrappers are removed afterwards


def test_smoke_with_pythae(script, digits, tmp_path, capsys):
    pytest.importorskip("pythae")
    assert script.main(["--smoke", "--data-root", str(digits), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("test ELBO probgen - pythae")
    report = json.loads((tmp_path / "out" / "peer_pythae.json").read_text())
    assert set(report["summary"]) == {"probgen", "pythae"} and report["ratios"]["steps_s"] > 0


def test_without_pythae_says_how_to_install(script, digits, monkeypatch, capsys):
    monkeypatch.setattr(script, "have_pythae", lambda: False)
    assert script.main(["--data-root", str(digits)]) == 2
    assert "pip install" in capsys.readouterr().err
