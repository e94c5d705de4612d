"""Bad input: one clear line, a non-zero exit, and nothing on disk damaged (docs/reliability.md)."""

import errno
import json
import os

import numpy as np
import pytest

from probgen.checkpoint import load_checkpoint, save_checkpoint
from probgen.cli import main
from probgen.errors import UserError
from probgen.training.trainers.vae import fit_vae
from tests.factories import TINY_FLAGS, tiny_vae_config


def _one_line_error(capsys, needle):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("probgen: error:") and needle in err[0], err


def test_read_only_output_location(tmp_path, capsys):
    target = "/sys/probgen-test-run"  # sysfs refuses new entries even to root
    if os.access("/sys", os.W_OK) and os.path.exists(target):
        pytest.skip("no read-only location on this machine")
    capsys.readouterr()
    assert main(["fit", "vae", *TINY_FLAGS, "--max-steps", "1", "--out", target]) == 2
    _one_line_error(capsys, "--out")


def test_full_disk_while_checkpointing_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    out = fit_vae(tiny_vae_config(tmp_path / "run", max_steps=3))
    before = (out / "checkpoint.pt").read_bytes()
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError, match="No space left on device"):
        save_checkpoint(out / "checkpoint.pt", load_checkpoint(out / "checkpoint.pt"))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert (out / "checkpoint.pt").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_dataset_of_the_wrong_shape(tmp_path, capsys):
    root = tmp_path / "data"
    (root / "dsprites").mkdir(parents=True)
    arrays = {"imgs": np.zeros((10, 32, 32), np.uint8), "latents_values": np.zeros((10, 6))}
    np.savez(
        root / "dsprites" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
        **arrays,
        latents_classes=np.zeros((10, 6)),
    )
    capsys.readouterr()
    assert main(["fit", "vae", *TINY_FLAGS, "--data-root", str(root), "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, "not a dSprites file")


def test_corrupt_dataset_file(tmp_path, capsys):
    root = tmp_path / "data"
    root.mkdir()
    (root / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz").write_bytes(b"garbage")
    capsys.readouterr()
    assert main(["fit", "vae", *TINY_FLAGS, "--data-root", str(root), "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, "cannot read dSprites file")


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"model": {"latent_dim": 0}}, "--latent-dim"),
        ({"betta": 1}, "unknown setting"),
        ({"train": {"beta": -1}}, "--beta"),
    ],
)
def test_config_file_with_bad_values(tmp_path, capsys, settings, needle):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(settings))
    capsys.readouterr()
    assert main(["fit", "vae", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, needle)
    assert not (tmp_path / "r").exists()


def test_config_file_is_data_not_code(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("dataset = \"__import__('os').system('touch PWNED')\"\n")
    capsys.readouterr()
    assert main(["fit", "vae", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, "--dataset: unknown dataset")
    assert not (tmp_path / "PWNED").exists()
    (tmp_path / "bad.toml").write_text("model = [unclosed")
    assert main(["fit", "vae", "--config", str(tmp_path / "bad.toml")]) == 2
    _one_line_error(capsys, "not valid toml")


def test_config_file_settings_apply_and_flags_override(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model": {"latent_dim": 3}, "train": {"max_steps": 2, "beta": 2.0}}))
    out = tmp_path / "r"
    assert main(["fit", "vae", *TINY_FLAGS, "--config", str(cfg), "--beta", "0.5", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["latent_dim"] == 4  # TINY_FLAGS sets --latent-dim 4 on the command line
    assert saved["train"]["beta"] == 0.5 and saved["train"]["max_steps"] == 2
