"""experiments/benchmarks/loglik_time_to_trust.py: its verdict per point, and a run end to end."""

import json
from pathlib import Path

import pytest

from probgen.training.trainers.vae import fit_vae
from tests.factories import tiny_vae_config

BENCH = Path(__file__).resolve().parents[2] / "experiments" / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import loglik_time_to_trust

    return loglik_time_to_trust


def _row(log_px: float, se: float, flag: str = "") -> dict[str, str]:
    return {"log_px_ais": str(log_px), "se_ais": str(se), "flag_ais": flag}


def test_a_point_is_trusted_when_flagged_or_within_its_error_bar(bench):
    ref = [_row(-100.0, 0.1), _row(-90.0, 0.1), _row(-80.0, 0.1, "ais-variance"), _row(-70.0, 0.1)]
    rows = [
        _row(-100.5, 0.1),  # 0.5 nats off, beyond 3 * hypot(0.1, 0.1) + 0.05 = 0.47
        _row(-90.3, 0.1),  # within
        _row(-80.0, 0.1),  # unflagged, but the reference cannot vouch for it
        _row(-75.0, 2.0, "ais-variance"),  # flagged: trusted, and counted as flagged
    ]
    c = bench.trusted(rows, ref, "ais")
    assert (c["trusted"], c["flagged"], c["points"]) == (2, 1, 4)
    assert c["max_se"] == pytest.approx(0.1) and c["max_gap"] == pytest.approx(0.5)
    none = bench.trusted([_row(-1.0, 0.1, "ais-variance")], [_row(-1.0, 0.1)], "ais")
    assert none["max_se"] is None and none["max_gap"] is None  # JSON null, not NaN
    other = [{k.replace("ais", "ais-laplace"): v for k, v in r.items()} for r in ref]
    assert bench.trusted(rows, other, "ais", "ais-laplace") == c  # against another method's reference


def test_each_method_is_compared_with_the_same_reference_column_or_the_closest(bench):
    ref = [{"log_px_ais": "-1", "log_px_iwae": "-2", "se_ais": "0.1"}]
    assert bench.reference_columns(["ais", "iwae", "ais-laplace"], ref, None) == {
        "ais": "ais",
        "iwae": "iwae",
        "ais-laplace": "ais",  # not run by the reference: its closest, ais
    }
    assert bench.reference_columns(["iwae"], ref, "ais") == {"iwae": "ais"}  # one named column for all
    with pytest.raises(SystemExit, match="no appendix-d column"):
        bench.reference_columns(["iwae"], ref, "appendix-d")


@pytest.mark.slow  # 66 s: the whole benchmark on a tiny VAE; its parts are tested above
def test_the_benchmark_runs_end_to_end_and_needs_few_flags(bench, tmp_path, capsys):
    ckpt = fit_vae(tiny_vae_config(tmp_path / "vae")) / "checkpoint.pt"
    tiny = "--device cpu --chains 2 --ais-steps 10 --leapfrog-steps 2 -k 20"
    ref = "--method ais-laplace --ais-steps 20 --target-se 0.5 --max-chains 4"
    argv = ["--ckpt", str(ckpt), "--num-data", "3", "--budgets", "quick", "--extra", tiny, "--out", str(tmp_path / "t"),
            "--method", "ais,ais-laplace", "--reference", ref]  # fmt: skip
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "--budget quick:" in out and "flagged" in out and "largest unflagged se" in out
    summary = json.loads((tmp_path / "t" / "time_to_trust.json").read_text())
    (row,) = summary["budgets"]
    assert row["budget"] == "quick" and row["minutes"] > 0 and row["estimated_minutes"] > 0
    counts = row["counts"]
    # the verdict: for every method, every point trusted, and no more than a quarter flagged
    assert row["trusted"] == all(c["trusted"] == 3 and c["flagged"] <= 0.75 for c in counts.values())
    assert set(counts) == {"ais", "ais-laplace"}
    assert summary["compared_with"] == {"ais": "ais-laplace", "ais-laplace": "ais-laplace"}  # the only column
    assert bench.main([*argv, "--max-flagged", "1.0"]) == 0  # the reference is kept and reused
    assert "reference (" not in capsys.readouterr().out
