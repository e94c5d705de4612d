"""`probgen fit ... --tensorboard`: the events hold exactly the run's numbers and grids, also across resumes."""

import os
import signal

import numpy as np
import pytest

from probgen.cli import main
from probgen.training.trainers.gan import LOSS_FIELDS
from probgen.training.trainers.vae import VAETrainer
from probgen.utils.io import read_csv
from tests.factories import TINY_FLAGS
from tests.utils.events import read_events, read_png

pytest.importorskip("tensorboard")

# 320 dSprites images at 64 px: 288 train / 32 per batch = 9 steps per epoch.
VAE_FLAGS = [*TINY_FLAGS, "--tensorboard"]
# 160 images at 32 px: 144 train / 32 per batch = 4 steps per epoch; FD from a tiny domain network.
GAN_FLAGS = [
    "--dataset", "dsprites", "--limit", "160", "--image-size", "32", "--g-channels", "4", "--d-channels", "4",
    "--latent-dim", "8", "--batch-size", "32", "--eval-every", "1", "--metrics", "fid", "--num-samples", "64",
    "--domain-steps", "10", "--no-progress", "--tensorboard",
]  # fmt: skip


def f32(x):
    return float(np.float32(float(x)))  # TensorBoard keeps scalars in float32


def csv_scalars(rows):
    """losses.csv rows -> the TensorBoard scalars they should be: ``<split>/<column>`` -> [(step, value)]."""
    tags: dict[str, list] = {}
    for r in rows:
        for k, v in r.items():
            if k not in ("epoch", "step", "split"):
                tags.setdefault(f"{r['split']}/{k}", []).append((int(r["step"]), f32(v)))
    return tags


def steps(events):
    return [s for s, _ in events]


def test_fit_vae_logs_every_row_of_losses_csv_and_the_grids_of_the_pngs(tmp_path):
    out = tmp_path / "run"
    args = ["--epochs", "2", "--max-steps", "13", "--lr", "1e-3", "--sample-epochs", "1"]
    assert main(["fit", "vae", *VAE_FLAGS, *args, "--out", str(out)]) == 0
    rows = read_csv(out / "losses.csv")
    assert [(int(r["step"]), r["split"]) for r in rows] == [(9, "train"), (9, "test"), (13, "train"), (13, "test")]
    scalars, images = read_events(out / "tensorboard")
    assert scalars.pop("lr/optimizer") == [(9, f32(1e-3))]  # at epoch ends
    assert scalars == csv_scalars(rows)  # the partial epoch 2 (step 13) too; beta, bits/dim, test rows
    assert {"train/loss", "train/beta", "test/recon", "test/kl"} <= set(scalars)
    assert steps(images["samples"]) == steps(images["reconstructions"]) == [9, 13]
    assert np.array_equal(images["samples"][0][1], read_png(out / "samples_epoch_1.png"))
    assert np.array_equal(images["samples"][1][1], read_png(out / "samples.png"))
    assert np.array_equal(images["reconstructions"][1][1], read_png(out / "reconstructions.png"))
    assert images["samples"][0][1].shape == (2 + 10 * 66, 2 + 10 * 66, 3)  # 10 x 10 samples of 64 px
    assert images["reconstructions"][0][1].shape == (2 + 4 * 66, 2 + 10 * 66, 3)  # 2 x (10 inputs, 10 outputs)
    # the same run without the flag: the same numbers (logging never touches training) and no tensorboard/
    plain = tmp_path / "plain"
    assert main(["fit", "vae", *TINY_FLAGS, *args, "--out", str(plain)]) == 0
    assert read_csv(plain / "losses.csv") == rows and not (plain / "tensorboard").exists()


def test_fit_vae_resume_drops_what_an_interrupted_run_logged_after_its_checkpoint(tmp_path):
    out = tmp_path / "run"

    def fit(*more):
        argv = ["fit", "vae", *VAE_FLAGS, "--epochs", "3", "--sample-epochs", "1,2,3", "--out", str(out), *more]
        assert main(argv) == 0

    fit("--max-steps", "13")  # logs epoch 1 (step 9) and the partial epoch 2 (step 13)
    fit("--max-steps", "18", "--resume")  # from 13: the partial row at 13 is dropped; epoch 2 ends at 18
    at_18 = (out / "checkpoint.pt").read_bytes()
    fit("--max-steps", "22", "--resume")  # logs a partial epoch 3 at step 22 ...
    (out / "checkpoint.pt").write_bytes(at_18)  # ... and is lost: its last checkpoint is step 18's
    fit("--max-steps", "27", "--resume")  # from 18 to the end: step 18's rows and grids are logged again, 22's dropped
    rows = read_csv(out / "losses.csv")
    assert [int(r["step"]) for r in rows] == [9, 9, 18, 18, 27, 27]
    scalars, images = read_events(out / "tensorboard")
    assert steps(scalars.pop("lr/optimizer")) == [9, 18, 27]
    assert scalars == csv_scalars(rows)  # one value per tag and logged step: no duplicates, nothing stale
    assert steps(images["samples"]) == steps(images["reconstructions"]) == [9, 18, 27]
    for (step, grid), epoch in zip(images["samples"], (1, 2, 3)):
        assert np.array_equal(grid, read_png(out / f"samples_epoch_{epoch}.png")), step


def test_ctrl_c_leaves_complete_events_and_the_resumed_run_continues_them(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = ["fit", "vae", *VAE_FLAGS, "--epochs", "2", "--out", str(out)]
    train_step = VAETrainer.train_step

    def interrupted_step(self, idx, check):
        if self.step == 10:  # Ctrl-C during step 11: the checkpoint is saved at step 11 and the run exits
            os.kill(os.getpid(), signal.SIGINT)
        return train_step(self, idx, check)

    monkeypatch.setattr(VAETrainer, "train_step", interrupted_step)
    assert main(argv) == 130 and "interrupted" in capsys.readouterr().err
    scalars, images = read_events(out / "tensorboard")
    assert steps(scalars["train/loss"]) == steps(images["samples"]) == [9]  # epoch 1, flushed and closed
    monkeypatch.setattr(VAETrainer, "train_step", train_step)
    assert main([*argv, "--resume"]) == 0
    scalars, _ = read_events(out / "tensorboard")
    scalars.pop("lr/optimizer")
    assert scalars == csv_scalars(read_csv(out / "losses.csv")) and steps(scalars["train/loss"]) == [9, 18]


def test_fit_gan_logs_every_step_of_losses_csv_the_fd_and_the_samples(tmp_path):
    out = tmp_path / "run"
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert main(["fit", "gan", *GAN_FLAGS, *cache, "--epochs", "2", "--sample-epochs", "1", "--out", str(out)]) == 0
    scalars, images = read_events(out / "tensorboard")
    rows = read_csv(out / "losses.csv")  # per step, 6 significant digits
    assert set(scalars) == {*(f"train/{k}" for k in LOSS_FIELDS), "eval/FD-dsprites"}
    for k in LOSS_FIELDS:
        assert steps(scalars[f"train/{k}"]) == [int(r["step"]) for r in rows] == list(range(1, 9))
        assert [v for _, v in scalars[f"train/{k}"]] == pytest.approx([float(r[k]) for r in rows], rel=1e-5)
    evals = read_csv(out / "eval_history.csv")
    assert scalars["eval/FD-dsprites"] == [(int(r["step"]), f32(r["value"])) for r in evals] and len(evals) == 2
    assert steps(images["samples"]) == [4, 8]  # every epoch, not only --sample-epochs
    assert np.array_equal(images["samples"][0][1], read_png(out / "samples_epoch_1.png"))
    assert np.array_equal(images["samples"][1][1], read_png(out / "samples.png"))


def test_fit_gan_resume_drops_what_an_interrupted_run_logged_after_its_checkpoint(tmp_path):
    out = tmp_path / "run"

    def fit(*more):
        argv = ["fit", "gan", *GAN_FLAGS, "--cache-dir", str(tmp_path / "cache"), "--epochs", "3",
                "--sample-epochs", "1,2,3", "--out", str(out), *more]  # fmt: skip
        assert main(argv) == 0

    fit("--max-steps", "8")  # two epochs, each evaluated; the last checkpoint is at step 8 (an epoch's end)
    at_8 = (out / "checkpoint.pt").read_bytes()
    fit("--max-steps", "10", "--resume")  # logs steps 9 and 10 ...
    (out / "checkpoint.pt").write_bytes(at_8)  # ... and is lost
    fit("--max-steps", "12", "--resume")  # from 8 to the end
    scalars, images = read_events(out / "tensorboard")
    rows = read_csv(out / "losses.csv")
    for k in LOSS_FIELDS:
        assert steps(scalars[f"train/{k}"]) == [int(r["step"]) for r in rows] == list(range(1, 13))
        assert [v for _, v in scalars[f"train/{k}"]] == pytest.approx([float(r[k]) for r in rows], rel=1e-5)
    evals = read_csv(out / "eval_history.csv")
    assert scalars["eval/FD-dsprites"] == [(int(r["step"]), f32(r["value"])) for r in evals]
    assert steps(scalars["eval/FD-dsprites"]) == steps(images["samples"]) == [4, 8, 12]
    for (step, grid), epoch in zip(images["samples"], (1, 2, 3)):
        assert np.array_equal(grid, read_png(out / f"samples_epoch_{epoch}.png")), step


@pytest.mark.slow  # ~25 s of process start-up on 2 cores
def test_torchrun_writes_events_on_rank_0_only(tmp_path, monkeypatch):
    from tests.training.torchrun import torchrun  # its worker fails a rank > 0 that writes under --out

    monkeypatch.setenv("PROBGEN_DATA", str(tmp_path / "no-data"))
    out = tmp_path / "ddp"
    run = torchrun(["fit", "vae", *VAE_FLAGS, "--max-steps", "13", "--device", "cpu", "--out", str(out)])
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(list((out / "tensorboard").iterdir())) == 1  # one event file: rank 0's
    scalars, images = read_events(out / "tensorboard")
    scalars.pop("lr/optimizer")
    assert scalars == csv_scalars(read_csv(out / "losses.csv"))
    assert steps(images["samples"]) == [9, 13]
