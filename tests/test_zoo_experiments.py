"""experiments/zoo_disentanglement.py and zoo_objectives.py run end to end with --smoke; re-runs skip finished work."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from probgen.utils.io import read_csv

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture
def experiment(monkeypatch):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    monkeypatch.delenv("PROBGEN_DATA", raising=False)
    yield importlib.import_module
    for name in ("zoo_disentanglement", "zoo_objectives", "common"):
        sys.modules.pop(name, None)


@pytest.mark.slow  # about a minute on 2 shared cores: 8 tiny fits and 8 scorings
def test_zoo_disentanglement_smoke(tmp_path, experiment):
    module = experiment("zoo_disentanglement")
    out = tmp_path / "zoo"
    summary = module.main(["--smoke", "--out", str(out)])
    rows = read_csv(out / "scores.csv")
    assert [(r["method"], r["seed"]) for r in rows] == [(m, str(s)) for m in module.METHODS for s in (0, 1)]
    for r in rows:
        assert 0.0 <= float(r["mig"]) <= 1.0 and 0.0 <= float(r["beta_vae"]) <= 1.0
    assert {r["method"] for r in read_csv(out / "distribution.csv")} == set(module.METHODS)
    assert (out / "scores_by_seed.png").stat().st_size > 0 and summary["mode"] == "smoke"
    stamp = (out / "beta-vae" / "seed=0" / "checkpoint.pt").stat().st_mtime_ns
    module.main(["--smoke", "--out", str(out)])  # finished runs and scores are skipped
    assert (out / "beta-vae" / "seed=0" / "checkpoint.pt").stat().st_mtime_ns == stamp
    assert json.loads((out / "summary.json").read_text())["runs"] == summary["runs"]


@pytest.mark.slow  # about 30 s: 4 tiny fits and 3 loglik runs
def test_zoo_objectives_smoke(tmp_path, experiment):
    module = experiment("zoo_objectives")
    out = tmp_path / "obj"
    summary = module.main(["--smoke", "--out", str(out)])
    assert [r["run"] for r in read_csv(out / "runs.csv")] == list(module.RUNS)
    assert {r["run"] for r in read_csv(out / "covariance.csv")} == set(module.RUNS)
    rows = read_csv(out / "loglik.csv")
    iwae = {(r["run"], r["k"]): float(r["log_px"]) for r in rows if r["method"] == "iwae"}
    elbo = {r["run"]: float(r["log_px"]) for r in rows if r["method"] == "elbo"}
    assert all(iwae[(run, "10")] >= elbo[run] for run in elbo)  # same draws: IWAE_k >= their mean
    assert summary["steps"] == 4
