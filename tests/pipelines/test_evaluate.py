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
        (["--features", "dinov2"], "DINOv2 vitl14 weights not found"),
        (["--resize", "clean"], "--resize"),
        (["--features", "inception", "--resize", "bicubic"], "--resize"),
        (["--metrics", "is"], "--metrics"),
        (["--metrics", "fid,bogus"], "--metrics"),
        (["--num-samples", "1"], "--num-samples"),
    ],
)
def test_eval_user_errors_are_one_line(vae_run, tmp_path, monkeypatch, capsys, extra, needle):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    monkeypatch.delenv("PROBGEN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.delenv("PROBGEN_DINOV2_WEIGHTS", raising=False)
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


def _per_sample_argv(ckpt, tmp_path, extra=()):
    return ["eval", "--ckpt", str(ckpt), "--num-samples", "40", "--num-real", "60", "--domain-steps", "5",
            "--metrics", "fid,realism,memorization", "--nearest-k", "3", "--bootstrap", "20",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "eval.json"), "--no-progress",
            *extra]  # fmt: skip


def test_eval_per_sample_scores_and_memorization_on_a_vae(vae_run, tmp_path, capsys):
    assert main(_per_sample_argv(vae_run, tmp_path)) == 0
    lines = capsys.readouterr().out.splitlines()
    mem = next(line for line in lines if line.startswith("memorization"))
    assert "closer to a training image than any test image" in mem and "95% CI" in mem
    saved = json.loads((tmp_path / "eval.json").read_text())
    m = saved["metrics"]["memorization"]
    assert 0 <= m["value"] <= 1 and m["num_test"] > 0 and isinstance(m["copying"], bool)
    assert saved["metrics"]["realism"]["k"] == 3
    assert saved["files"] == ["samples_scores.csv", "best_samples.png", "worst_samples.png", "nearest_train.png"]
    rows = (tmp_path / "samples_scores.csv").read_text().splitlines()
    assert rows[0] == "sample,realism,nn_train_distance,nn_train_index,closer_than_test" and len(rows) == 41
    for name in saved["files"][1:]:
        assert (tmp_path / name).stat().st_size > 100


def test_eval_per_sample_scores_on_a_gan(tmp_path_factory, tmp_path):
    from probgen.training.trainers.gan import fit_gan
    from tests.factories import tiny_gan_config

    run = fit_gan(tiny_gan_config(tmp_path_factory.mktemp("gan") / "run", tmp_path / "cache", max_steps=2))
    assert main(_per_sample_argv(run, tmp_path)) == 0
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["kind"] == "gan" and "memorization" in saved["metrics"] and "realism" in saved["metrics"]
    assert (tmp_path / "best_samples.png").exists() and (tmp_path / "nearest_train.png").exists()


def test_antialias_is_the_old_name_of_a_resize_mode():
    from probgen.config import MetricsConfig
    from probgen.errors import UserError

    assert MetricsConfig(features="inception", antialias=True).resize_mode() == "bilinear-antialias"
    assert MetricsConfig(features="inception").resize_mode() == "legacy-tf"
    assert MetricsConfig(features="dinov2").resize_mode() == "pil-bicubic"
    with pytest.raises(UserError, match="contradicts --resize clean"):
        MetricsConfig(features="inception", antialias=True, resize="clean")
    with pytest.raises(UserError, match="native size"):
        MetricsConfig(resize="clean")
    assert MetricsConfig(antialias=True).resize_mode() == "none"  # domain features: never resized, as before
