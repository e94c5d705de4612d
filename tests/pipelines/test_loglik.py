import json
import math

import pytest
import torch

from probgen.checkpoint import load_checkpoint, save_checkpoint
from probgen.cli import main
from probgen.config import DataConfig, FitVAEConfig, LoglikConfig, RunConfig, TrainConfig, VAEConfig
from probgen.errors import UserError
from probgen.pipelines.loglik import chosen_points, loglik
from probgen.training.trainers.vae import fit_vae
from probgen.utils.io import read_csv

pytestmark = pytest.mark.usefixtures("one_torch_thread")


FAST = [
    "--num-data", "4", "--points-per-batch", "3", "--chains", "2", "--warmup", "40", "--samples", "40",
    "--leapfrog-steps", "4", "-k", "200", "--ais-steps", "100", "--no-progress", "--device", "cpu",
]  # fmt: skip


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny MLP VAE (latent 2) trained for 3 epochs on 320 procedural dSprites images."""
    root = tmp_path_factory.mktemp("vae")
    cfg = FitVAEConfig(
        data=DataConfig(dataset="dsprites", limit=320, data_root=str(root / "no-data")),
        model=VAEConfig(arch="mlp", hidden_dims=(64,), latent_dim=2),
        train=TrainConfig(epochs=3, batch_size=32, lr=3e-3, seed=0),
        run=RunConfig(out=str(root / "run"), progress=False),
    )
    return fit_vae(cfg) / "checkpoint.pt"


def test_loglik_cli_writes_results_and_the_estimators_are_ordered(ckpt, tmp_path, capsys):
    out = tmp_path / "ll"
    assert main(["loglik", "--ckpt", str(ckpt), *FAST, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "appendix-d" in printed and "bits/dim" in printed
    assert "estimated" in captured.err and "ms per image gradient" in captured.err  # before the work
    # and once warm-up has chosen the leapfrog counts, how long the draws will take
    assert "appendix-d: warm-up chose" in captured.err and "draws per chain will take about" in captured.err
    assert {"loglik.json", "loglik.csv", "chains.nc"} <= {p.name for p in out.iterdir()}
    assert len(list(out.glob("trace_dp*.png"))) == 2 and len(list(out.glob("rank_dp*.png"))) == 2
    report = json.loads((out / "loglik.json").read_text())
    res = report["results"]
    assert list(res) == ["elbo", "iwae", "appendix-d", "ais"]
    for r in res.values():
        assert r["num_data"] == 4 and r["log_px_mean"] < 0  # binary pixels: p(x) <= 1
        assert r["bits_per_dim_mean"] == pytest.approx(-r["log_px_mean"] / (4096 * math.log(2)))
    # ELBO <= IWAE <= AIS (here IWAE with a 3-epoch encoder is tens of nats below AIS)
    assert res["elbo"]["log_px_mean"] < res["iwae"]["log_px_mean"] < res["ais"]["log_px_mean"]
    assert res["elbo"]["log_px_mean"] < res["appendix-d"]["log_px_mean"]
    assert not any("exceeds" in w for w in report["warnings"])
    diag = report["diagnostics"]
    assert diag["num_points"] == 4 and 0 <= diag["num_failed"] <= 4 and diag["rhat_max"] > 0.99
    assert report["data_dim"] == 4096 and report["latent_dim"] == 2 and report["config"]["chains"] == 2
    assert report["estimate"]["seconds"] > 0 and report["estimate"]["points"] == 4
    rows = read_csv(out / "loglik.csv")
    picked = [int(r["datapoint"]) for r in rows]  # --points random: a fixed random subset, in split order
    assert picked == chosen_points(32, 4).tolist() and picked != [0, 1, 2, 3] and picked == sorted(picked)
    assert report["points"] == "random"
    import arviz as az

    assert az.from_netcdf(str(out / "chains.nc")).posterior["datapoint"].values.tolist() == picked
    assert {p.name for p in out.glob("trace_dp*.png")} <= {f"trace_dp{i}.png" for i in picked}
    assert {"log_px_ais", "bits_per_dim_iwae", "rhat", "ess_bulk", "failed"} <= set(rows[0])
    for m, r in res.items():  # every method: a per-point error bar and flag, counted in loglik.json
        assert {f"se_{m}", f"flag_{m}"} <= set(rows[0])
        flagged = sum(bool(row[f"flag_{m}"]) for row in rows)
        assert r["num_flagged"] == flagged and r["num_trusted"] == 4 - flagged
        assert sum(r["flag_counts"].values()) >= flagged
    assert "flagged" in printed and "trusted mean" in printed
    # `probgen diagnose` reads the chains back
    assert main(["diagnose", str(out / "chains.nc")]) == 0
    text = capsys.readouterr().out
    assert "r_hat" in text and "ess_bulk" in text and "4 data points x 2 latents" in text
    assert main(["diagnose", str(out), "--json", "--rhat-max", "1.5"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["num_points"] == 4 and summary["rhat_threshold"] == 1.5


def test_existing_results_are_not_overwritten(ckpt, tmp_path, capsys):
    out = tmp_path / "ll"
    argv = ["loglik", "--ckpt", str(ckpt), *FAST, "--method", "elbo", "-k", "10", "--out", str(out)]
    assert main(argv) == 0
    before = (out / "loglik.json").read_bytes()
    capsys.readouterr()
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "loglik.json").read_bytes() == before
    assert main([*argv, "--overwrite", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"]["elbo"]["num_samples"] == 10


def test_a_gan_checkpoint_is_a_one_line_user_error(tmp_path, capsys):
    path = save_checkpoint(tmp_path / "gan.pt", {"kind": "gan", "config": {}, "state": {}})
    assert main(["loglik", "--ckpt", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'gan'" in err and "vae" in err


def test_nuts_reference_path(ckpt, tmp_path):
    cfg = LoglikConfig(
        ckpt=str(ckpt), num_data=1, method="appendix-d", sampler="nuts", chains=2, warmup=30, samples=30,
        out=str(tmp_path / "nuts"), progress=False, device="cpu",
    )  # fmt: skip
    report = loglik(cfg)
    r = report["results"]["appendix-d"]
    assert r["sampler"] == "nuts" and r["log_px_mean"] < 0
    assert report["diagnostics"]["num_points"] == 1


def test_bad_flags_name_themselves():
    with pytest.raises(UserError, match="--method"):
        LoglikConfig(method="elbo,hmc")
    with pytest.raises(UserError, match="--method"):
        LoglikConfig(method="")
    with pytest.raises(UserError, match="--shrink"):
        LoglikConfig(shrink=1.5)
    with pytest.raises(UserError, match="--ckpt"):
        loglik(LoglikConfig())


@pytest.mark.parametrize("argv", [["loglik", "--help"], ["diagnose", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage" in out and ("--iwae-samples" in out or "--rhat-max" in out)


def test_settings_from_a_config_file(ckpt, tmp_path, capsys):
    conf = tmp_path / "ll.toml"
    conf.write_text('method = "iwae"\niwae_samples = 7\nnum_data = 2\n[checks]\nrhat_max = 1.05\n')
    out = tmp_path / "ll"
    argv = ["loglik", "--ckpt", str(ckpt), "--config", str(conf), "--no-progress", "--out", str(out), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["results"]) == ["iwae"] and report["results"]["iwae"]["num_samples"] == 7
    assert report["num_data"] == 2 and report["config"]["checks"]["rhat_max"] == 1.05
    assert "chains.nc" not in {p.name for p in out.iterdir()}  # no HMC ran


def test_points_are_a_fixed_random_subset_or_the_first_ones():
    a, b = chosen_points(2000, 16), chosen_points(2000, 16, "random")
    assert torch.equal(a, b) and a.unique().numel() == 16 and int(a.max()) > 1000  # spread over the split
    assert chosen_points(2000, 16, "first").tolist() == list(range(16))
    assert chosen_points(5, 16).tolist() == list(range(5))  # all of a small split
    with pytest.raises(UserError, match="--points"):
        LoglikConfig(points="last")


def test_method_takes_a_comma_list_in_report_order():
    assert LoglikConfig(method="iwae,elbo").methods == ("elbo", "iwae")
    assert LoglikConfig(method="ais, elbo,ais").methods == ("elbo", "ais")
    assert LoglikConfig(method="all").methods == ("elbo", "iwae", "appendix-d", "ais")
    assert LoglikConfig(method=("ais", "iwae")).methods == ("iwae", "ais")  # a list in a config file


def test_an_interrupted_run_continues_and_ends_as_an_uninterrupted_one(ckpt, tmp_path, monkeypatch, capsys):
    """Ctrl-C after two of four batches keeps them; the same command computes only the other two and
    writes the same loglik.csv and results; other settings are refused; --overwrite starts over."""
    import probgen.pipelines.loglik as pipeline

    argv = ["loglik", "--ckpt", str(ckpt), *FAST, "--points-per-batch", "1", "--method", "elbo,ais"]
    assert main([*argv, "--out", str(tmp_path / "ref")]) == 0
    real, computed = pipeline._run_batch, []

    def counting(cfg, vae, x, **timing):
        if len(computed) == stop_after:
            raise KeyboardInterrupt
        computed.append(x.shape[0])
        return real(cfg, vae, x, **timing)

    monkeypatch.setattr(pipeline, "_run_batch", counting)
    out = tmp_path / "out"
    stop_after = 2
    capsys.readouterr()
    assert main([*argv, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "after 2 of 4 batches" in err and "same command again" in err
    assert len(list((out / ".partial").glob("batch-*.pt"))) == 2 and not (out / "loglik.json").exists()
    assert main([*argv, "--seed", "1", "--out", str(out)]) == 2  # another job's results are not mixed in
    assert "other settings (seed)" in capsys.readouterr().err
    stop_after, computed[:] = None, []
    assert main([*argv, "--out", str(out)]) == 0
    assert computed == [1, 1]  # only the two missing batches ran
    assert (out / "loglik.csv").read_bytes() == (tmp_path / "ref" / "loglik.csv").read_bytes()
    report, ref = (json.loads((d / "loglik.json").read_text()) for d in (out, tmp_path / "ref"))
    assert report["results"] == ref["results"] and not (out / ".partial").exists()
    assert main([*argv, "--out", str(out)]) == 2  # finished: kept unless --overwrite
    computed[:] = []
    assert main([*argv, "--out", str(out), "--overwrite"]) == 0
    assert computed == [1, 1, 1, 1]


def test_gaussian_likelihoods_give_bits_per_dim_of_the_8bit_images(ckpt, tmp_path, capsys):
    """The same decoder as a Gaussian (scale 0.05): discretised to 256 bins (the default) it gives a
    probability of the 8-bit image, so bits/dim >= 0 at every point; --no-discretise gives the density."""
    data = load_checkpoint(ckpt)
    data["config"]["model"].update(likelihood="gaussian", obs_scale=0.05)
    gauss = save_checkpoint(tmp_path / "gauss.pt", data)
    bpd = {}
    for flag in ("--discretise", "--no-discretise"):
        out = tmp_path / flag
        argv = ["loglik", "--ckpt", str(gauss), *FAST, "--method", "elbo,iwae", flag, "--out", str(out), "--json"]
        assert main(argv) == 0
        report = json.loads(capsys.readouterr().out)
        bpd[flag] = [float(r["bits_per_dim_iwae"]) for r in read_csv(out / "loglik.csv")]
        assert report["pixel_model"].startswith("discretised-gaussian-256" if flag == "--discretise" else "gaussian")
    assert all(b >= 0 for b in bpd["--discretise"])
    assert bpd["--discretise"] != bpd["--no-discretise"]


def test_bdmc_sandwiches_log_px_of_points_simulated_from_the_model(ckpt, tmp_path, capsys):
    out = tmp_path / "bdmc"
    argv = ["loglik", "--ckpt", str(ckpt), *FAST, "--method", "bdmc", "--ais-steps", "60", "--out", str(out)]
    assert main(argv) == 0
    assert "simulated from the model" in capsys.readouterr().out
    report = json.loads((out / "loglik.json").read_text())
    b = report["bdmc"]
    assert report["results"] == {} and not (out / "loglik.csv").exists()
    assert b["lower"]["num_data"] == 4 and "simulated" in b["data"]
    rows = read_csv(out / "bdmc.csv")
    gaps = [float(r["gap"]) for r in rows]
    assert len(rows) == 4 and b["gap_mean"] == pytest.approx(sum(gaps) / 4)
    for r, gap in zip(rows, gaps):  # lower <= upper up to their noise
        noise = 3 * (float(r["se_bdmc-lower"]) ** 2 + float(r["se_bdmc-upper"]) ** 2) ** 0.5 + 0.1
        assert gap > -noise


def test_budget_fills_in_the_settings_not_given():
    from probgen.config.loglik import BUDGETS

    quick = LoglikConfig(budget="quick").resolved("cpu")
    assert {k: getattr(quick, k) for k in BUDGETS["cpu"]["quick"]} == BUDGETS["cpu"]["quick"]
    mine = LoglikConfig(budget="thorough", chains=3, iwae_samples=7).resolved("cuda")
    assert mine.chains == 3 and mine.iwae_samples == 7 and mine.ais_steps == BUDGETS["cuda"]["thorough"]["ais_steps"]
    cpu, gpu = LoglikConfig().resolved("cpu"), LoglikConfig().resolved("cuda")  # standard, per device
    assert cpu.ais_steps < gpu.ais_steps and cpu.chains <= gpu.chains
    with pytest.raises(UserError, match="--budget"):
        LoglikConfig(budget="huge")


def test_evaluation_counts():
    from probgen.pipelines.loglik_plan import evaluation_counts, format_duration

    cfg = LoglikConfig(method="all,bdmc", chains=8, warmup=100, samples=200, ais_steps=50, leapfrog_steps=4,
                       iwae_samples=300, trajectory_length=3.0)  # fmt: skip
    counts = evaluation_counts(cfg, 10)
    assert counts["elbo+iwae"] == (0.0, 10 * 300)
    starts = 4 * 4 * 100 * 6  # 4 of 8 chains start from 4 annealed particles each
    assert counts["appendix-d"] == (10 * (8 * 500 * (5 + 1) + starts), 0.0)  # 3.0 / 0.6 = 5 leapfrog steps
    assert counts["ais"] == (10 * (8 + 2) * 50 * 5, 0.0)  # pilot: 8 // 4 = 2 chains
    assert counts["bdmc"] == (10 * (16 + 2) * 50 * 5, 0.0)
    cfg.method = "ais-laplace"
    # 16 starts x (200 Adam steps + a Hessian of 3 double-backward passes), up to 10 more Hessians at z*
    fit = 16 * (200 + 2 * 3) + 10 * 2 * 3
    counts = evaluation_counts(cfg, 10, latent_dim=3)
    assert counts == {"ais-laplace": (10 * ((8 + 2) * 50 * 5 + fit), 10 * 16 * 8)}  # 8 points on each segment
    assert [format_duration(s) for s in (3, 252, 5580)] == ["3 s", "4.2 min", "1.6 h"]


def test_target_se_adds_ais_chains_per_point_and_counts_them_over_batches(ckpt, tmp_path):
    out = tmp_path / "stop"
    argv = ["loglik", "--ckpt", str(ckpt), *FAST, "--method", "ais", "--ais-steps", "20", "--target-se", "0.05",
            "--max-chains", "6", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0  # 4 points in batches of 3 and 1
    rows = read_csv(out / "loglik.csv")
    chains = [int(float(r["chains_ais"])) for r in rows]
    assert all(c in (2, 4, 6) for c in chains) and max(chains) == 6, chains
    # an infinite se (log-normal se of a huge log-weight variance) is written as an empty cell
    above = [float(r["se_ais"] or "inf") > 0.05 for r in rows]
    assert ["se-above-target" in r["flag_ais"] for r in rows] == above
    res = json.loads((out / "loglik.json").read_text())["results"]["ais"]
    assert res["chains_total"] == sum(chains) and res["num_se_above_target"] == sum(above)
    assert res["target_se"] == 0.05 and res["max_chains"] == 6
    with pytest.raises(UserError, match="--max-chains"):
        LoglikConfig(chains=8, max_chains=4)
    with pytest.raises(UserError, match="--target-se"):
        LoglikConfig(target_se=-1.0)


def test_ais_mass_from_the_encoder(ckpt, tmp_path):
    out = tmp_path / "mass"
    argv = ["loglik", "--ckpt", str(ckpt), *FAST, "--method", "ais", "--ais-steps", "20", "--ais-mass", "encoder",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    res = json.loads((out / "loglik.json").read_text())["results"]["ais"]
    assert res["diagonal_mass"] is True and math.isfinite(res["log_px_mean"]) and res["log_px_mean"] < 0
    with pytest.raises(UserError, match="--ais-mass"):
        LoglikConfig(ais_mass="full")


def test_ais_laplace_runs_beside_ais_with_its_own_columns(ckpt, tmp_path, capsys):
    out = tmp_path / "lap"
    argv = ["loglik", "--ckpt", str(ckpt), *FAST, "--method", "ais,ais-laplace", "--out", str(out)]
    assert main(argv) == 0
    assert "ais-laplace" in capsys.readouterr().err  # in the time estimate
    rows = read_csv(out / "loglik.csv")
    for col in ("log_px_ais-laplace", "se_ais-laplace", "flag_ais-laplace", "other_optima_ais-laplace",
                "laplace_gap_ais-laplace", "log_weight_var_ais-laplace"):  # fmt: skip
        assert col in rows[0], col
    res = json.loads((out / "loglik.json").read_text())["results"]
    assert list(res) == ["ais", "ais-laplace"] and res["ais-laplace"]["laplace_starts"] == 16
    assert all(float(r["other_optima_ais-laplace"]) >= 0 and math.isfinite(float(r["laplace_gap_ais-laplace"]))
               for r in rows)  # fmt: skip
    assert LoglikConfig(method="all").methods == ("elbo", "iwae", "appendix-d", "ais")
