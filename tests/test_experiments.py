"""Every report experiment (experiments/r*.py) runs end to end with --smoke and writes sane outputs; run
again, it continues where it stopped (experiments/common.py: fit, derived)."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch
from torchvision.datasets import CIFAR10

from probgen.checkpoint import load_checkpoint
from probgen.config import ReportConfig
from probgen.pipelines.report import report
from probgen.utils.io import read_csv
from tests.factories import SMALL_FIT_VAE

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
CHECKED = [
    "r1_chest_xray_study",
    "r2_chest_xray_4layer",
    "r3_celeba_dsprites_bitmoji",
    "r4_cifar10_gan_early_stop",
    "r5_mnist_latent_study",
]


def test_every_experiment_is_checked():
    assert sorted(p.stem for p in EXPERIMENTS.glob("r*.py")) == sorted(CHECKED)


@pytest.fixture
def run_smoke(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    monkeypatch.setenv("PROBGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PROBGEN_DATA", raising=False)
    for attr in ("train_list", "test_list", "meta"):  # the CIFAR smoke fixture re-sets these: restore them
        monkeypatch.setattr(CIFAR10, attr, getattr(CIFAR10, attr))

    def run(name: str) -> tuple[dict, Path]:
        out = tmp_path / name
        module = importlib.import_module(name)
        summary = module.main(["--smoke", "--out", str(out)])
        assert json.loads((out / "summary.json").read_text())["mode"] == "smoke"
        page = report(ReportConfig(path=str(out)))[0]  # `probgen report` reads every output of the experiment
        assert page == out / "report.html" and 'id="problems"' not in page.read_text()
        return summary, out

    yield run
    for name in CHECKED + ["common", "digit_classifier"]:
        sys.modules.pop(name, None)


@pytest.fixture
def common(monkeypatch):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    yield importlib.import_module("common")
    sys.modules.pop("common", None)


def _args(out: Path, overwrite: bool = False) -> argparse.Namespace:
    return argparse.Namespace(device="cpu", overwrite=overwrite, out=out)


FIT = [*SMALL_FIT_VAE, "--epochs", 2, "--checkpoint-every", 4]  # 18 steps


def _stamp(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def test_fit_skips_a_finished_run_refuses_a_changed_one_and_overwrite_starts_over(common, tmp_path, capsys):
    run = tmp_path / "run"
    ckpt = run / "checkpoint.pt"
    common.fit(_args(tmp_path), *FIT, "--out", run)
    before = _stamp(ckpt)
    common.fit(_args(tmp_path), *FIT, "--out", run)
    assert f"skipping finished run {run}" in capsys.readouterr().out
    assert _stamp(ckpt) == before
    with pytest.raises(RuntimeError, match="exited with 2"):  # resumed, and probgen refuses the change
        common.fit(_args(tmp_path), *FIT, "--latent-dim", 3, "--out", run)
    assert "--latent-dim: cannot change on --resume" in capsys.readouterr().err
    assert _stamp(ckpt) == before
    common.fit(_args(tmp_path, overwrite=True), *FIT, "--latent-dim", 3, "--out", run)
    assert load_checkpoint(ckpt)["config"]["model"]["latent_dim"] == 3
    assert (run / "log.txt").read_text().count("run directory:") == 1  # replaced, not resumed


def test_fit_resumes_an_interrupted_run_to_the_uninterrupted_result(common, tmp_path, interrupt_fit):
    full, part = tmp_path / "full", tmp_path / "part"
    common.fit(_args(tmp_path), *FIT, "--out", full)
    interrupt_fit(12)  # Ctrl-C in epoch 2: a checkpoint at step 12, no metrics.json
    with pytest.raises(RuntimeError, match="exited with 130"):
        common.fit(_args(tmp_path), *FIT, "--out", part)
    assert load_checkpoint(part / "checkpoint.pt")["step"] == 12 and not (part / "metrics.json").exists()
    common.fit(_args(tmp_path), *FIT, "--out", part)
    assert "resuming" in (part / "log.txt").read_text()
    a, b = (load_checkpoint(r / "checkpoint.pt") for r in (full, part))
    assert a["step"] == b["step"] == 18
    for k, v in a["state"]["model"].items():
        assert torch.equal(v, b["state"]["model"][k]), k
    assert read_csv(full / "losses.csv") == read_csv(part / "losses.csv")


def test_derived_recomputes_only_an_output_that_is_stale_or_made_otherwise(common, tmp_path, tiny_vae_ckpt, capsys):
    png = tmp_path / "samples.png"
    cmd = ["sample", "--ckpt", tiny_vae_ckpt.parent, "--num", 4, "--out", png, "--device", "cpu", "--overwrite"]
    common.derived(_args(tmp_path), png, *cmd)
    made = png.stat().st_mtime_ns
    common.derived(_args(tmp_path), png, *cmd)
    assert f"skipping up-to-date {png}" in capsys.readouterr().out and png.stat().st_mtime_ns == made
    for args, argv in [
        (_args(tmp_path), [*cmd, "--nrow", 2]),  # another command line
        (_args(tmp_path, overwrite=True), cmd),  # the experiment's --overwrite
    ]:
        common.derived(args, png, *argv)
        assert "skipping" not in capsys.readouterr().out
    os.utime(png, ns=(0, 0))  # older than the checkpoint: a resumed run has moved on
    common.derived(_args(tmp_path), png, *cmd)
    assert "skipping" not in capsys.readouterr().out and png.stat().st_mtime_ns > 0


def _fd_ok(row: dict, metric: str) -> None:
    assert math.isfinite(row[metric]) and row[metric] >= 0
    assert row[f"{metric}_N"] >= 2 and row[f"{metric}_features"].startswith("domain-") and row[f"{metric}_resize"]


def test_r1(run_smoke):
    s, out = run_smoke("r1_chest_xray_study")
    assert len(s["runs"]) == 2 and (out / "combined_total_loss.png").stat().st_size > 1000
    for row in s["runs"]:
        run = out / row["run"]
        assert (run / "samples_epoch_2.png").exists() and (run / "loss_curves.png").exists()
        assert row["obs_scale"] == 0.1 and math.isfinite(row["final_train_loss_nats"])
        _fd_ok(row, "FD-chest-xray")
    assert (out / "results.csv").exists() and (out / "results.md").read_text().startswith("| run |")


def test_r2(run_smoke, capsys):
    s, out = run_smoke("r2_chest_xray_4layer")
    assert [r["run"] for r in s["runs"]] == ["vae_bottleneck", "ae_no_bottleneck"]
    for row in s["runs"]:
        assert (out / row["run"] / "reconstructions_test32.png").exists()
        assert row["final_train_loss_nats"] > 0  # Bernoulli NLL of grey images is positive
        _fd_ok(row, "FD-chest-xray")
    assert (out / "combined_loss.png").exists()
    # run again into the same --out: nothing is trained or evaluated again, the results are the same
    files = [out / r["run"] / name for r in s["runs"] for name in ("checkpoint.pt", "eval.json")]
    before = [_stamp(f) for f in files]
    capsys.readouterr()
    again, _ = run_smoke("r2_chest_xray_4layer")
    assert [_stamp(f) for f in files] == before
    assert capsys.readouterr().out.count("skipping finished run") == 2
    assert again["runs"] == s["runs"]


@pytest.mark.slow  # 3 VAE fits, 9 loglik estimates (HMC, IWAE, AIS), 3 GAN fits + evals: ~1-5 min on 2 cores
def test_r3(run_smoke):
    s, out = run_smoke("r3_celeba_dsprites_bitmoji")
    ll = s["loglik"]
    assert {(r["dataset"], r["method"]) for r in ll} >= {("dsprites", "appendix-d"), ("dsprites", "ais"),
                                                         ("celeba", "iwae")}  # fmt: skip
    for r in ll:
        assert math.isfinite(r["log_px_nats"]) and r["N"] == 2
        if r["likelihood"] == "bernoulli":  # a probability of binary data: log p(x) <= 0, bits/dim in (0, 2)
            assert r["log_px_nats"] < 0 and 0 < r["bits_per_dim"] < 2
    assert (out / "dsprites_best_samples_10x10.png").exists() and (out / "celeba_best_samples_10x10.png").exists()
    gans = s["gan_variants"]
    assert len(gans) == 2 and gans[0]["resumed_checkpoint_states"] == "discriminator,generator,opt_d,opt_g"
    assert all(g["metric"] == "FD-bitmoji" and g["N_generated"] == 16 and g["epochs"] == 2 for g in gans)
    assert (out / "loglik.md").exists() and (out / "gan_variants.csv").exists()
    # run again: every fit (the half-then-resumed GAN too) and every loglik/eval is skipped
    files = [*out.glob("*/*/checkpoint.pt"), *out.glob("*/*/loglik_*/loglik.json"), *out.glob("*/*/eval.json")]
    before = [_stamp(f) for f in files]
    again, _ = run_smoke("r3_celeba_dsprites_bitmoji")
    assert len(files) >= 9 and [_stamp(f) for f in files] == before
    assert again["gan_variants"] == gans and again["loglik"] == ll


def test_r4(run_smoke):
    s, out = run_smoke("r4_cifar10_gan_early_stop")
    assert s["metric"] == "FD-cifar10" and s["num_generated"] == 16 and s["resize"]
    assert 1 <= len(s["history"]) <= 3 and s["epochs_completed"] == len(s["history"])
    best = min(r["FD-cifar10"] for r in s["history"])
    assert s["best"]["value"] == pytest.approx(best)
    assert s["early_stopping"]["stopped"] or s["epochs_completed"] == 3
    assert {"eval_curve.png", "loss_curves.png", "samples.png"} <= set(s["figures"])


def test_r5(run_smoke):
    s, out = run_smoke("r5_mnist_latent_study")
    for tag in ("latent2", "dropout_both"):
        assert (out / tag / "manifold.png").exists() and (out / tag / "latents.png").exists()
    clf = s["classifier"]
    assert [r["real_fraction"] for r in clf] == [0.2, 0.5, 1.0]
    assert [r["num_real"] for r in clf] == [24, 60, 120] and all(r["num_generated"] == 200 for r in clf)
    assert all(0.0 <= r["test_accuracy"] <= 1.0 and r["num_test"] == 40 for r in clf)
    assert math.isfinite(s["vaegan_final"]["train"]["elbo"])
    ll = {r["method"]: r for r in s["loglik"]}
    assert sorted(ll) == ["ais", "appendix-d", "iwae"] and all(r["N"] == 4 for r in ll.values())
    assert all(r["log_px_nats"] < 0 for r in ll.values())  # binarised data: log p(x) is never positive
