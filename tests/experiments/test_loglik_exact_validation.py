"""experiments/loglik_exact_validation.py runs end to end with --smoke, writes its tables and continues a run."""

import json
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
ARGV = ["--smoke", "--models", "curved", "--latents", "10", "--seeds", "0", "--budgets", "quick",
        "--num-data", "3", "--coverage-models", "mixture", "--coverage-latents", "2", "--repeats", "12"]  # fmt: skip


@pytest.mark.slow  # ~20 s of CPU: Appendix D's overdispersed starts and the Laplace fits cost the same at any setting
def test_smoke_run_writes_the_tables_and_a_rerun_reuses_the_cells(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    from loglik_exact_validation import main

    assert main(["--out", str(tmp_path), *ARGV]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["mode"] == "smoke" and summary["cells"] == 1 and summary["coverage_runs"] == 1
    table = json.loads((tmp_path / "table.json").read_text())
    views = {(r["view"], r["estimator"]) for r in table}
    assert ("alone", "ais-laplace") in views and ("pair", "appendix-d") in views and ("all", "ais") in views
    assert all(r["points"] == 3 and r["latent"] == 10 for r in table)
    assert "| quick | 10 | pair | appendix-d |" in (tmp_path / "table.md").read_text()
    rows = (tmp_path / "validation.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 and "log_px_ais-laplace" in rows[0]
    cov = json.loads((tmp_path / "coverage.json").read_text())
    assert set(cov[0]["estimators"]) == {"iwae", "appendix-d", "ais", "ais-laplace"}
    assert all(r["repeats"] == 12 for r in cov[0]["estimators"].values())
    cells = sorted((tmp_path / "cells").glob("*.json"))
    stamps = [c.stat().st_mtime_ns for c in cells]
    assert main(["--out", str(tmp_path), *ARGV]) == 0  # a second run reuses every finished cell
    assert [c.stat().st_mtime_ns for c in cells] == stamps
    assert json.loads((tmp_path / "table.json").read_text()) == table
