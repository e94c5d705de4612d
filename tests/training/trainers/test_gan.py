import json

import pytest
import torch

from probgen.checkpoint import load_checkpoint
from probgen.cli import main
from probgen.config import GANTrainConfig, PerfConfig
from probgen.errors import UserError
from probgen.training.trainers.gan import fit_gan
from probgen.utils.io import read_csv
from tests.factories import GAN_FLAGS, tiny_gan_config

# 160 images at 32 px: 144 train / 32 per batch = 4 steps per epoch.


RUN_FILES = {
    "config.json", "checkpoint.pt", "best.pt", "losses.csv", "loss_curves.png", "samples_epoch_1.png", "samples.png",
    "eval_history.csv", "eval_curve.png", "eval.json", "metrics.json", "log.txt",
}  # fmt: skip


def test_cli_run_writes_every_file_and_eval_and_sample_read_it(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["fit", "gan", *GAN_FLAGS, "--epochs", "2", "--sample-epochs", "1", "--eval-every", "1",
            "--ema-decay", "0.9", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    names = {p.name for p in out.iterdir()}
    assert RUN_FILES <= names
    rows = read_csv(out / "losses.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert all(0 < float(r["d_real"]) < 1 and float(r["loss_g"]) > 0 for r in rows)
    ckpt = load_checkpoint(out / "checkpoint.pt", kind="gan")
    assert {"generator", "discriminator", "opt_g", "opt_d", "ema"} <= set(ckpt["state"])
    assert ckpt["state"]["opt_d"]["state"]  # the discriminator's Adam moments are saved too
    assert ckpt["fixed_noise"].shape == (100, 8) and ckpt["step"] == 8
    ev = json.loads((out / "eval.json").read_text())
    assert ev["generator"] == "ema" and set(ev["metrics"]) == {"FD-dsprites", "KD-dsprites"}
    assert [int(r["epoch"]) for r in read_csv(out / "eval_history.csv")] == [1, 2]
    capsys.readouterr()
    # probgen sample and probgen eval take the GAN checkpoint
    png = tmp_path / "grid.png"
    assert main(["sample", "--ckpt", str(out), "-n", "16", "--nrow", "4", "--out", str(png)]) == 0
    assert png.stat().st_size > 0
    capsys.readouterr()
    evj = tmp_path / "eval.json"
    cache = str(tmp_path / "cache")
    argv = ["eval", "--ckpt", str(out / "best.pt"), "--num-samples", "64", "--domain-steps", "10",
            "--kid-subsets", "10", "--cache-dir", cache, "--out", str(evj), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("FD-dsprites ") and "64 generated vs 64 real (train split)" in lines[0]
    got = json.loads(evj.read_text())
    assert got["kind"] == "gan" and got["metrics"]["FD-dsprites"]["value"] > 0
    assert main(argv) == 2 and "exists" in capsys.readouterr().err  # never overwritten silently


def test_resume_is_bitwise_equal_to_an_uninterrupted_run(tmp_path):
    # 4 steps per epoch; stop mid-epoch 2 (step 6, checkpoints at 3 and 6), then resume to step 8.
    # EMA, BatchNorm and an evaluation at each epoch's end are all on: none may perturb training.
    cache = tmp_path / "cache"
    kw = {"epochs": 2, "checkpoint_every": 3, "ema_decay": 0.9, "eval_every": 1}
    full = fit_gan(tiny_gan_config(tmp_path / "full", cache, **kw))
    part = fit_gan(tiny_gan_config(tmp_path / "part", cache, max_steps=6, **kw))
    cfg = tiny_gan_config(tmp_path / "part", cache, max_steps=8, **kw)
    cfg.run.resume = True
    fit_gan(cfg)
    a, b = load_checkpoint(full / "checkpoint.pt"), load_checkpoint(part / "checkpoint.pt")
    assert a["step"] == b["step"] == 8
    for net in ("generator", "discriminator", "ema"):
        for k, v in a["state"][net].items():
            assert torch.equal(v, b["state"][net][k]), (net, k)
    for opt in ("opt_g", "opt_d"):
        for i, st in a["state"][opt]["state"].items():
            for k in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(st[k], b["state"][opt]["state"][i][k]), (opt, i, k)
    assert read_csv(full / "losses.csv") == read_csv(part / "losses.csv")
    assert a["eval_history"][-1]["value"] == b["eval_history"][-1]["value"]


def test_early_stopping_stops_after_patience_evaluations(tmp_path):
    # lr 1e-30 leaves the weights bitwise unchanged (no normalisation: no running statistics either), so
    # FD never improves after the first evaluation: with patience 2 training stops at the end of epoch 3.
    model = {"g_norm": "none", "d_norm": "none"}
    cfg = tiny_gan_config(tmp_path / "run", tmp_path / "cache", model, epochs=10, lr=1e-30, eval_every=1,
                          early_stop_patience=2)  # fmt: skip
    out = fit_gan(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 3 and metrics["steps"] == 12
    assert metrics["early_stopping"] == {"best": metrics["evaluations"][0]["value"], "best_epoch": 1,
                                         "bad_evals": 2, "stopped": True}  # fmt: skip
    assert load_checkpoint(out / "best.pt")["epoch"] == 1


def test_early_stopping_needs_evaluations():
    with pytest.raises(UserError, match="--early-stop-patience"):
        GANTrainConfig(early_stop_patience=3)


def test_non_power_of_two_images_are_a_user_error(tmp_path):
    cfg = tiny_gan_config(tmp_path / "run", tmp_path / "cache")
    cfg.data.image_size = 24
    with pytest.raises(UserError, match="--image-size"):
        fit_gan(cfg)


def test_dynamic_binarisation_draws_every_batch(tmp_path, monkeypatch):
    import probgen.training.loop as mod  # the shared training loop loads the data and draws the resample

    real_load, real_draw, draws = mod.load_dataset, mod.bernoulli_resample, []

    def grey_data(cfg):  # as MNIST with --binarize dynamic: grey images, a fresh binary draw per batch
        data = real_load(cfg)
        data.splits["train"].images = data.splits["train"].images // 2
        data.notes["binarize"] = "dynamic"
        return data

    def counting(x01):
        draws.append(x01)
        return real_draw(x01)

    monkeypatch.setattr(mod, "load_dataset", grey_data)
    monkeypatch.setattr(mod, "bernoulli_resample", counting)
    fit_gan(tiny_gan_config(tmp_path / "run", tmp_path / "cache", max_steps=3))
    assert len(draws) == 3 and all(d.max() <= 0.51 for d in draws)  # the grey batch went in, not a binary one


@pytest.mark.gpu
def test_gpu_training_and_evaluation(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from probgen.data import load_dataset
    from probgen.metrics.harness import Harness

    cfg = tiny_gan_config(tmp_path / "run", tmp_path / "cache", device="cuda", eval_every=1, ema_decay=0.9)
    out = fit_gan(cfg)
    ev = json.loads((out / "eval.json").read_text())
    assert ev["environment"]["device"].startswith("cuda") and ev["metrics"]["FD-dsprites"]["value"] > 0
    # The same images scored on the CPU and on the GPU: equal up to the GPU's TF32 convolutions.
    data = load_dataset(cfg.data)
    test = data.splits["test"].images

    def first_images(n, gen):
        return test[:n]

    fds = []
    for device in ("cpu", "cuda"):
        h = Harness(data, cfg.eval, torch.device(device), show_progress=False)
        fds.append(h.evaluate(first_images, num_samples=16)["metrics"]["FD-dsprites"]["value"])
    assert fds[1] == pytest.approx(fds[0], rel=1e-2)


def test_every_data_placement_trains_the_same_gan_bitwise(tmp_path):
    # the shared loop's batches: device uint8, bit-packed and streamed through DataLoader workers
    cache = tmp_path / "cache"
    ref = load_checkpoint(fit_gan(tiny_gan_config(tmp_path / "device", cache, max_steps=3)) / "checkpoint.pt")
    for placement in ("packed", "stream"):
        cfg = tiny_gan_config(tmp_path / placement, cache, max_steps=3)
        cfg.perf = PerfConfig(data_placement=placement, num_workers=1)
        out = fit_gan(cfg)
        other = load_checkpoint(out / "checkpoint.pt")
        for net in ("generator", "discriminator"):
            for name, value in ref["state"][net].items():
                assert torch.equal(value, other["state"][net][name]), (placement, net, name)
        assert json.loads((out / "metrics.json").read_text())["data_placement"] == placement
