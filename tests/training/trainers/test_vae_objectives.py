"""`probgen fit vae --objective ... / --elbo iwae`: run files, checkpoints that load, exact resume, clear errors."""

import dataclasses
import json

import pytest
import torch

from probgen.checkpoint import load_checkpoint
from probgen.cli import main
from probgen.config import ObjectiveConfig
from probgen.errors import UserError
from probgen.training.trainers.vae import fit_vae, load_vae
from probgen.utils.io import read_csv
from tests.factories import TINY_FLAGS, tiny_vae_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_DISC = ["--factor-disc-hidden", "16,16"]
CASES = {
    "beta-tcvae": (["--objective", "beta-tcvae"], ("mi", "tc", "dim_kl")),
    "factor-vae": (["--objective", "factor-vae", *SMALL_DISC], ("tc", "d_loss")),
    "dip-vae-ii": (["--objective", "dip-vae-ii"], ("dip",)),
    "capacity": (["--objective", "capacity", "--capacity-steps", "4", "--capacity-max", "3"], ("capacity",)),
    "iwae": (["--elbo", "iwae", "--particles", "3"], ()),
}


@pytest.mark.parametrize("name", list(CASES))
def test_objective_trains_records_itself_and_loads_as_a_plain_vae(tmp_path, name):
    flags, terms = CASES[name]
    out = tmp_path / name
    assert main(["fit", "vae", *TINY_FLAGS, "--max-steps", "6", *flags, "--out", str(out)]) == 0
    rows = read_csv(out / "losses.csv")
    assert set(terms) <= set(rows[0]) and all(r["loss"] not in ("", "nan") for r in rows)
    config = json.loads((out / "config.json").read_text())
    ckpt = load_checkpoint(out / "checkpoint.pt", kind="vae")
    assert config["objective"] == ckpt["config"]["objective"] and config["train"] == ckpt["config"]["train"]
    if name == "iwae":
        assert (config["train"]["elbo"], config["train"]["particles"]) == ("iwae", 3)
        # the IWAE bound is above the K-sample ELBO of the same particles (both nats per image)
        assert all(-float(r["loss"]) >= float(r["elbo"]) - 1e-3 for r in rows)
    else:
        assert config["objective"]["objective"] == ckpt["objective"]["name"] == name
    if name == "factor-vae":
        assert {"factor_discriminator", "factor_optimizer"} <= set(ckpt["state"])
    if name == "capacity":  # C reaches C_max = 3 nats after 4 steps
        assert ckpt["objective"]["capacity"] == 3.0 and float(rows[-1]["capacity"]) == pytest.approx(3.0)
    vae, cfg = load_vae(out)  # loglik, eval, plot and disentangle load the model this way
    assert cfg.objective.objective == config["objective"]["objective"]
    assert vae.sample(2).shape == (2, 1, 64, 64)
    if name == "factor-vae":  # the extra modules in the checkpoint do not disturb the readers
        sizes = ["--num-points", "64", "--num-train", "40", "--num-eval", "20", "--group-size", "4"]
        assert main(["-q", "disentangle", "--ckpt", str(out), *sizes]) == 0
        assert main(["-q", "plot", "reconstructions", "--ckpt", str(out), "--num-images", "4"]) == 0
        assert (out / "disentanglement.json").is_file() and (out / "reconstructions_test.png").is_file()


def _objective_config(out, name, **train):
    """A 16 px dSprites VAE: 144 training images, 9 steps of 16 per epoch."""
    cfg = tiny_vae_config(out, epochs=3, checkpoint_every=4, batch_size=16, **train)
    cfg.data.limit, cfg.data.image_size = 160, 16
    cfg.model = dataclasses.replace(cfg.model, conv_channels=(4, 4), hidden_dims=(16,), latent_dim=2)
    if name == "iwae":
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, elbo="iwae", particles=3))
    obj = {"factor-vae": {"factor_disc_hidden": (16, 16)}, "capacity": {"capacity_steps": 10}}.get(name, {})
    return dataclasses.replace(cfg, objective=ObjectiveConfig(objective=name, **obj))


@pytest.mark.slow  # FactorVAE's case runs by default in tests/training/test_resume.py
@pytest.mark.parametrize("name", ["factor-vae", "capacity", "beta-tcvae", "iwae"])
def test_resume_is_bitwise_equal_for_each_objective(tmp_path, name):
    # 9 steps per epoch; stop mid-epoch 2 (step 13, checkpoint at 12), resume to 22
    full = fit_vae(_objective_config(tmp_path / "full", name, max_steps=22))
    fit_vae(_objective_config(tmp_path / "part", name, max_steps=13))
    cfg = _objective_config(tmp_path / "part", name, max_steps=22)
    cfg.run.resume = True
    part = fit_vae(cfg)
    a, b = load_checkpoint(full / "checkpoint.pt"), load_checkpoint(part / "checkpoint.pt")
    assert a["step"] == b["step"] == 22 and set(a["state"]) == set(b["state"])
    for module in a["state"]:
        if "optimizer" in module:
            continue
        for k, v in a["state"][module].items():
            assert torch.equal(v, b["state"][module][k]), (module, k)
    for k, v in a["state"].get("factor_optimizer", {}).get("state", {}).items():
        assert torch.equal(v["exp_avg"], b["state"]["factor_optimizer"]["state"][k]["exp_avg"])
    assert read_csv(full / "losses.csv") == read_csv(part / "losses.csv")


def test_resume_refuses_another_objective(tmp_path):
    fit_vae(_objective_config(tmp_path / "run", "beta-tcvae", max_steps=2))
    cfg = _objective_config(tmp_path / "run", "dip-vae-ii", max_steps=4)
    cfg.run.resume = True
    with pytest.raises(UserError, match="--objective"):
        fit_vae(cfg)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "vaegan", *TINY_FLAGS, "--objective", "beta-tcvae"], "unrecognized arguments: --objective beta-tcvae"),
        (["fit", "vae", *TINY_FLAGS, "--elbo", "iwae", "--objective", "dip-vae-ii"], "not with --elbo iwae"),
        (["fit", "cvae", *TINY_FLAGS, "--elbo", "iwae"], "unrecognized arguments: --elbo iwae"),
        (["fit", "vae", *TINY_FLAGS, "--objective", "tcvae"], "--objective: invalid choice"),
        (["fit", "vae", *TINY_FLAGS, "--particles", "0"], "--particles: must be >= 1"),
    ],
)
def test_bad_objective_settings_are_one_line_errors(tmp_path, capsys, argv, message):
    assert main(["-q", *argv, "--max-steps", "1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
