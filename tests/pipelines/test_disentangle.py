import json

import pytest

from probgen.checkpoint import save_checkpoint
from probgen.cli import main
from probgen.config import DisentangleConfig
from probgen.errors import UserError
from probgen.pipelines.disentangle import OUTPUT, disentangle

SMALL = ["--num-train", "200", "--num-eval", "100", "--group-size", "8", "--device", "cpu"]


def test_cli_writes_scores_of_a_dsprites_vae(tiny_vae_ckpt, tmp_path, capsys):
    out = tmp_path / "scores"
    assert main(["disentangle", "--ckpt", str(tiny_vae_ckpt), "--out", str(out), *SMALL]) == 0
    report = json.loads((out / OUTPUT).read_text())
    assert report["factors"] == ["shape", "scale", "orientation", "posX", "posY"]  # colour is constant
    assert report["latent_dim"] == 3 and report["split"] == "test" and report["num_points"] == 64
    assert set(report["scores"]) == {
        "beta_vae", "factor_vae", "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "sap"
    }  # fmt: skip
    for k, v in report["scores"].items():
        assert 0.0 <= v <= 1.0, k
    assert len(report["details"]["mig"]["mutual_info"]) == 3  # (codes, factors)
    # refuses to overwrite, then does so when asked
    assert main(["disentangle", "--ckpt", str(tiny_vae_ckpt), "--out", str(out), *SMALL]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["disentangle", "--ckpt", str(tiny_vae_ckpt), "--out", str(out), "--overwrite", *SMALL]) == 0


def test_default_output_is_next_to_the_checkpoint(tiny_vae_ckpt, tmp_path):
    import shutil

    ckpt = tmp_path / "run" / "checkpoint.pt"
    ckpt.parent.mkdir()
    shutil.copy(tiny_vae_ckpt, ckpt)
    cfg = DisentangleConfig(num_points=40, num_train=50, num_eval=50, group_size=4, device="cpu")
    assert disentangle(ckpt.parent, cfg) == ckpt.parent / OUTPUT
    assert json.loads((ckpt.parent / OUTPUT).read_text())["num_points"] == 40


def test_refuses_other_checkpoint_kinds(tmp_path):
    save_checkpoint(tmp_path / "gan.pt", {"kind": "gan", "config": {}, "state": {}})
    with pytest.raises(UserError, match="'gan'"):
        disentangle(tmp_path / "gan.pt", DisentangleConfig(), out=tmp_path)


def test_bad_flags_are_user_errors(tiny_vae_ckpt, capsys):
    assert main(["disentangle", "--ckpt", str(tiny_vae_ckpt), "--num-points", "3"]) == 2
    assert "--num-points" in capsys.readouterr().err
    with pytest.raises(UserError, match="no split 'val'"):
        disentangle(tiny_vae_ckpt, DisentangleConfig(split="val"))
