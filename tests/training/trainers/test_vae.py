import json

import pytest
import torch

from probgen.checkpoint import load_checkpoint
from probgen.cli import main
from probgen.errors import UserError
from probgen.models.vae import load_vae
from probgen.training.trainers.vae import fit_vae
from probgen.utils.io import read_csv
from tests.factories import TINY_FLAGS, tiny_vae_config

RUN_FILES = {
    "config.json", "checkpoint.pt", "losses.csv", "metrics.json", "samples.png", "reconstructions.png",
    "loss_curves.png", "samples_epoch_1.png", "samples_epoch_2.png", "log.txt",
}  # fmt: skip


def test_cli_smoke_writes_every_run_file(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["fit", "vae", *TINY_FLAGS, "--epochs", "2", "--sample-epochs", "1,2", "--out", str(out)]
    assert main(argv) == 0
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    rows = read_csv(out / "losses.csv")
    assert [(r["epoch"], r["split"]) for r in rows] == [("1", "train"), ("1", "test"), ("2", "train"), ("2", "test")]
    for r in rows:
        assert float(r["recon"]) < 0 and float(r["kl"]) >= 0  # Bernoulli log-lik is never positive
        assert float(r["elbo"]) == pytest.approx(float(r["recon"]) - float(r["kl"]), rel=1e-6)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["likelihood"] == "bernoulli" and "procedural" in metrics["data_source"]
    assert {"probgen", "torch", "pyro-ppl", "device"} <= set(metrics["environment"])
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["likelihood"] == "bernoulli" and config["train"]["epochs"] == 2
    ckpt = load_checkpoint(out / "checkpoint.pt", kind="vae")
    assert ckpt["step"] == 2 * (288 // 32) and ckpt["epoch"] == 2
    assert {"model", "optimizer"} <= set(ckpt["state"]) and "torch" in ckpt["rng"]
    # `probgen sample` works from the checkpoint alone
    png = tmp_path / "grid.png"
    assert main(["sample", "--ckpt", str(out / "checkpoint.pt"), "-n", "16", "--nrow", "4", "--out", str(png)]) == 0
    assert png.stat().st_size > 0
    assert main(["sample", "--ckpt", str(out), "-n", "4", "--out", str(png)]) == 2  # refuses to overwrite
    assert "exists" in capsys.readouterr().err


def test_elbo_improves_on_tiny_data(tmp_path):
    out = fit_vae(tiny_vae_config(tmp_path / "run", epochs=4))
    rows = [r for r in read_csv(out / "losses.csv") if r["split"] == "train"]
    first, last = float(rows[0]["elbo"]), float(rows[-1]["elbo"])
    assert last > first + 100  # nats per image; a 64x64 binary image starts near 2800 nats


def test_existing_run_directory_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    fit_vae(tiny_vae_config(out, max_steps=2))
    before = (out / "checkpoint.pt").read_bytes()
    with pytest.raises(UserError, match="--resume"):
        fit_vae(tiny_vae_config(out, max_steps=2))
    assert (out / "checkpoint.pt").read_bytes() == before
    capsys.readouterr()
    assert main(["fit", "vae", *TINY_FLAGS, "--max-steps", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("probgen: error: --out"), err
    # --overwrite replaces it
    cfg = tiny_vae_config(out, max_steps=3)
    cfg.run.overwrite = True
    fit_vae(cfg)
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3


def test_resume_is_bitwise_equal_to_uninterrupted_run(tmp_path):
    # 9 steps per epoch; stop mid-epoch 2 (step 13) with a checkpoint at 12, then resume to 22.
    full = fit_vae(tiny_vae_config(tmp_path / "full", epochs=3, max_steps=22, checkpoint_every=4))
    part = fit_vae(tiny_vae_config(tmp_path / "part", epochs=3, max_steps=13, checkpoint_every=4))
    cfg = tiny_vae_config(tmp_path / "part", epochs=3, max_steps=22, checkpoint_every=4)
    cfg.run.resume = True
    fit_vae(cfg)
    a = load_checkpoint(full / "checkpoint.pt")
    b = load_checkpoint(part / "checkpoint.pt")
    assert a["step"] == b["step"] == 22
    for k, v in a["state"]["model"].items():
        assert torch.equal(v, b["state"]["model"][k]), k
    assert read_csv(full / "losses.csv") == read_csv(part / "losses.csv")


def test_resume_refuses_a_changed_architecture(tmp_path):
    out = fit_vae(tiny_vae_config(tmp_path / "run", max_steps=2))
    cfg = tiny_vae_config(out, max_steps=4)
    cfg.model.latent_dim = 7
    cfg.run.resume = True
    with pytest.raises(UserError, match="--latent-dim"):
        fit_vae(cfg)


def test_load_vae_refuses_other_kinds(tmp_path):
    from probgen.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "gan.pt", {"kind": "gan", "config": {}, "state": {}})
    with pytest.raises(UserError, match="'gan'"):
        load_vae(tmp_path / "gan.pt")


def test_batch_larger_than_dataset_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--batch-size"):
        fit_vae(tiny_vae_config(tmp_path / "run", batch_size=1000))


def test_max_steps_0_on_resume_lifts_an_earlier_limit(tmp_path):
    out = fit_vae(tiny_vae_config(tmp_path / "run", epochs=2, max_steps=3))  # 9 steps per epoch
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3
    cfg = tiny_vae_config(out, epochs=2)  # --max-steps left out: the run keeps its limit of 3
    cfg.run.resume = True
    fit_vae(cfg)
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3
    cfg = tiny_vae_config(out, epochs=2, max_steps=0)  # --max-steps 0: no limit
    cfg.run.resume = True
    fit_vae(cfg)
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == 18 and ckpt["epoch"] == 2


def test_recon_accuracy_steps_adds_the_factor_accuracy_of_test_reconstructions(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBGEN_CACHE", str(tmp_path / "cache"))  # the domain network is cached there
    run = fit_vae(tiny_vae_config(tmp_path / "run", max_steps=3, recon_accuracy_steps=5))
    metrics = json.loads((run / "metrics.json").read_text())
    acc = metrics["reconstruction_accuracy"]
    assert acc["num_images"] == metrics["num_test"] and acc["classifier"]["steps"] == 5
    assert "shape" in acc["reconstructions"] and acc["reconstructions"].keys() == acc["images"].keys()
    assert all(0 <= v <= 1 for v in [*acc["reconstructions"].values(), *acc["images"].values()])
    assert list((tmp_path / "cache" / "domain").glob("dsprites-*.pt"))
    plain = json.loads((fit_vae(tiny_vae_config(tmp_path / "off", max_steps=1)) / "metrics.json").read_text())
    assert "reconstruction_accuracy" not in plain  # off by default: no classifier is trained
