"""experiments/loglik_validation.py runs end to end on a tiny model and writes its table."""

import json
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


@pytest.mark.slow
def test_quick_validation_writes_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    monkeypatch.delenv("PROBGEN_DATA", raising=False)
    from loglik_validation import main

    assert main(["--out", str(tmp_path), "--quick", "--models", "dsprites", "--num-data", "3"]) == 0
    table = json.loads((tmp_path / "dsprites-table.json").read_text())
    assert [r["estimator"] for r in table] == ["elbo", "iwae", "appendix-d", "ais"]
    assert all(r["points"] == 3 for r in table)
    assert "| appendix-d |" in (tmp_path / "validation.md").read_text()
    exact = json.loads((tmp_path / "dsprites-exact.json").read_text())
    assert exact["points"] == "random" and exact["num_data"] == 3
    assert len(exact["rows"]) == 3 and all(e["quadrature_error"] < 0.01 for e in exact["rows"])
    rows = (tmp_path / "validation.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [e["datapoint"] for e in exact["rows"]]


@pytest.mark.slow
def test_validation_of_one_named_estimator(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    monkeypatch.delenv("PROBGEN_DATA", raising=False)
    from loglik_validation import main

    argv = ["--out", str(tmp_path), "--quick", "--models", "dsprites", "--num-data", "3", "--method", "ais-laplace"]
    assert main(argv) == 0
    table = json.loads((tmp_path / "dsprites-table.json").read_text())
    assert [r["estimator"] for r in table] == ["ais-laplace"] and "max_above_exact_unflagged" in table[0]
    assert "ais-laplace: unflagged within 0.5 nats" in (tmp_path / "validation.md").read_text()
