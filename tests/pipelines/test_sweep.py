"""`probgen sweep`: grid parsing, one run per point, the table and plot, resumability, failures."""

import json

import pytest

from probgen.cli import main
from probgen.config import FitAEConfig, FitVAEConfig
from probgen.errors import UserError
from probgen.pipelines.sweep import grid_points, parse_grid, run_name, write_table
from probgen.utils.io import read_csv

BASE = [
    "--dataset", "dsprites", "--limit", "320", "--image-size", "16", "--conv-channels", "8,8", "--hidden-dims", "16",
    "--batch-size", "32", "--eval-batch-size", "64", "--no-progress",
]  # fmt: skip


def test_parse_grid_types_values_by_field():
    grid = parse_grid(
        ["beta=2.5e-1,2.5e-2", "latent-dim=4,16", "conv_channels=8,8/16,16,16", "batch_norm=true,no"], FitVAEConfig
    )
    assert grid == {
        "beta": [0.25, 0.025],
        "latent_dim": [4, 16],
        "conv_channels": [(8, 8), (16, 16, 16)],
        "batch_norm": [True, False],
    }
    assert parse_grid({"beta": [1, 0.5], "conv_channels": [[4, 4]]}, FitVAEConfig) == {
        "beta": [1.0, 0.5],
        "conv_channels": [(4, 4)],
    }
    points = grid_points({"beta": [1.0, 0.5], "latent_dim": [2, 3]})
    assert [run_name(p) for p in points] == [
        "beta=1_latent_dim=2", "beta=1_latent_dim=3", "beta=0.5_latent_dim=2", "beta=0.5_latent_dim=3"
    ]  # fmt: skip
    assert run_name({"conv_channels": (8, 16)}) == "conv_channels=8-16"


@pytest.mark.parametrize(
    "spec,match",
    [
        (["gan_weight=1,2"], "unknown setting 'gan_weight'"),  # not a setting of the VAE
        (["out=a,b"], "run setting"),
        (["latent_dim=four"], "cannot read 'four' as int"),
        (["beta=1", "beta=2"], "twice"),
        (["beta"], "FIELD=V1,V2"),
        ([], "at least one"),
    ],
)
def test_parse_grid_errors(spec, match):
    with pytest.raises(UserError, match=match):
        parse_grid(spec, FitVAEConfig)


def test_bottleneck_is_a_field_of_the_autoencoder_sweep():
    assert parse_grid(["bottleneck=true,false"], FitAEConfig) == {"bottleneck": [True, False]}


def test_sweep_runs_the_grid_then_skips_and_resumes(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "--grid", "beta=0.5,2", "latent_dim=2", *BASE, "--max-steps", "2", "--out", str(out)]
    assert main(argv) == 0
    rows = read_csv(out / "sweep.csv")
    assert [r["run"] for r in rows] == ["beta=0.5_latent_dim=2", "beta=2_latent_dim=2"]
    assert [r["status"] for r in rows] == ["done", "done"]
    assert [r["beta"] for r in rows] == ["0.5", "2"]
    for r in rows:
        assert float(r["test_elbo"]) == pytest.approx(float(r["test_recon"]) - float(r["test_kl"]), rel=1e-6)
        assert r["steps"] == "2"
    assert (out / "sweep.md").read_text().startswith("| run | beta | latent_dim | status |")
    assert (out / "sweep_losses.png").stat().st_size > 0
    assert json.loads((out / "sweep.json").read_text())["grid"] == {"beta": [0.5, 2.0], "latent_dim": [2]}
    ckpt = out / "beta=2_latent_dim=2" / "checkpoint.pt"
    before = ckpt.read_bytes()
    # again: both runs are finished and skipped
    assert main(argv) == 0
    assert [r["status"] for r in read_csv(out / "sweep.csv")] == ["done (skipped)"] * 2
    assert ckpt.read_bytes() == before
    # more steps: the runs resume from their checkpoints
    assert main([*argv[:-4], "--max-steps", "4", "--out", str(out)]) == 0
    assert [r["steps"] for r in read_csv(out / "sweep.csv")] == ["4", "4"]
    assert "resuming" in (out / "beta=2_latent_dim=2" / "log.txt").read_text()
    # a changed model is refused instead of mixing runs
    assert main([*argv[:-2], "--latent-dim", "5", "--out", str(out)]) == 2
    assert "holds a sweep with other model settings" in capsys.readouterr().err


def test_config_file_grid_and_failed_runs(tmp_path, capsys):
    cfg = tmp_path / "sweep.toml"
    cfg.write_text('kind = "ae"\nmax_steps = 1\n[grid]\nbatch_size = [32, 1000]\n')
    out = tmp_path / "s"
    assert main(["sweep", "--config", str(cfg), *BASE, "--out", str(out)]) == 2
    assert "1 of 2 runs failed (batch_size=1000)" in capsys.readouterr().err
    rows = read_csv(out / "sweep.csv")
    assert rows[0]["status"] == "done" and float(rows[0]["test_loss"]) > 0  # reconstruction NLL in nats
    assert rows[1]["status"].startswith("failed: --batch-size")


def test_table_reads_loglik_and_eval_results_when_present(tmp_path):
    run = tmp_path / "beta=1"
    run.mkdir()
    (run / "loglik").mkdir()
    results = {"iwae": {"log_px_mean": -52.5, "bits_per_dim_mean": 0.018}, "elbo": {"log_px_mean": -55.0}}
    (run / "loglik" / "loglik.json").write_text(json.dumps({"results": results}))
    metrics = {"FD-dsprites": {"value": 3.25, "num_generated": 1000}, "KD-dsprites": {"mean": 0.5, "std": 0.1}}
    (run / "eval.json").write_text(json.dumps({"metrics": metrics}))
    (run / "disentanglement.json").write_text(json.dumps({"scores": {"mig": 0.25, "beta_vae": 0.75}}))
    write_table(tmp_path, [{"beta": 1.0}], ["beta=1"], {"beta=1": "done"})
    (row,) = read_csv(tmp_path / "sweep.csv")
    assert float(row["loglik_iwae"]) == -52.5 and float(row["loglik_iwae_bpd"]) == 0.018
    assert float(row["loglik_elbo"]) == -55.0 and "loglik_elbo_bpd" not in row
    assert float(row["mig"]) == 0.25 and float(row["beta_vae"]) == 0.75
    assert float(row["FD-dsprites"]) == 3.25 and row["FD-dsprites_n"] == "1000" and float(row["KD-dsprites"]) == 0.5


def test_gan_sweep_takes_the_gans_flags_tabulates_its_losses_and_skips_finished_runs(tmp_path):
    out = tmp_path / "sweep"
    argv = ["sweep", "--kind", "gan", "--grid", "lr=1e-4,2e-4", "--dataset", "dsprites", "--limit", "160",
            "--image-size", "16", "--g-channels", "4", "--d-channels", "4", "--latent-dim", "4", "--batch-size", "32",
            "--max-steps", "2", "--sample-epochs", "1", "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    rows = read_csv(out / "sweep.csv")
    expected = [("lr=0.0001", "done", "2"), ("lr=0.0002", "done", "2")]
    assert [(r["run"], r["status"], r["steps"]) for r in rows] == expected
    assert all(float(r["train_loss_g"]) > 0 and 0 < float(r["train_d_real"]) < 1 for r in rows)
    assert (out / "sweep_losses.png").stat().st_size > 0
    cfg = json.loads((out / "lr=0.0001" / "config.json").read_text())
    assert cfg["train"]["lr"] == 1e-4 and cfg["train"]["beta1"] == 0.5 and cfg["model"]["g_channels"] == 4
    assert main(argv) == 0  # again: both finished
    assert [r["status"] for r in read_csv(out / "sweep.csv")] == ["done (skipped)"] * 2
