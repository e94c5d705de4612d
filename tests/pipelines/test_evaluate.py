import json

import pytest

from probgen.cli import main
from probgen.training.trainers.vae import fit_vae
from tests.factories import tiny_vae_config


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vae")
    return fit_vae(tiny_vae_config(tmp / "run", max_steps=3))


def test_eval_on_a_vae_checkpoint(vae_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    argv = ["eval", "--ckpt", str(vae_run), "--num-samples", "40", "--num-real", "30", "--domain-steps", "5",
            "--kid-subsets", "5", "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--json",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert printed["metrics"] == saved["metrics"]
    assert saved["kind"] == "vae" and saved["generator"] is None and saved["step"] == 3
    fd = saved["metrics"]["FD-dsprites"]
    assert fd["value"] > 0 and fd["num_generated"] == 40 and fd["num_real"] == 30 and fd["ref_split"] == "train"
    assert saved["metrics"]["KD-dsprites"]["subset_size"] == 15
    assert saved["eval_config"]["features"] == "domain" and "device" in saved["environment"]


def test_eval_manifold_metrics_from_a_comma_list(vae_run, tmp_path, capsys):
    argv = ["eval", "--ckpt", str(vae_run), "--num-samples", "40", "--domain-steps", "5",
            "--metrics", "fid,precision,recall,density,coverage", "--nearest-k", "3", "--bootstrap", "20",
            "--fid-infinity", "--fid-infinity-points", "4", "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "e.json"), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == [
        "FD-dsprites", "FD-dsprites-infinity", "precision", "recall", "density", "coverage"
    ]  # fmt: skip
    assert "95% CI" in lines[0] and "95% CI" in lines[2]
    saved = json.loads((tmp_path / "e.json").read_text())["metrics"]
    assert saved["coverage"]["k"] == 3 and 0 <= saved["coverage"]["value"] <= 1


def test_eval_defaults_to_eval_json_next_to_the_checkpoint(vae_run, tmp_path):
    argv = ["eval", "--ckpt", str(vae_run / "checkpoint.pt"), "--num-samples", "20", "--metrics", "fid",
            "--domain-steps", "5", "--cache-dir", str(tmp_path / "cache"), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((vae_run / "eval.json").read_text())["metrics"]["FD-dsprites"]["num_generated"] == 20


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--features", "inception"], "Inception weights not found"),
        (["--features", "inception", "--inception-weights", "nope.pth"], "--inception-weights: no such file"),
        (["--metrics", "is"], "--metrics"),
        (["--metrics", "fid,bogus"], "--metrics"),
        (["--num-samples", "1"], "--num-samples"),
    ],
)
def test_eval_user_errors_are_one_line(vae_run, tmp_path, monkeypatch, capsys, extra, needle):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    monkeypatch.delenv("PROBGEN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--ckpt", str(vae_run), "--out", str(tmp_path / "e.json"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("probgen: error:") and needle in err[0], err


def test_eval_needs_a_checkpoint(capsys):
    assert main(["eval"]) == 2
    assert "--ckpt" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["fit", "gan", "--help"], ["eval", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "usage" in text and ("--g-norm" in text or "--features" in text)
