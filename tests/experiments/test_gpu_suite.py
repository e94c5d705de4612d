"""experiments/benchmarks/gpu_suite.py: its parsers (gpu_suite_parse.py) on real benchmark output lines, its budget and
install logic, one real step in-process (fast), and the whole suite with --device cpu --quick (slow)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "benchmarks" / "gpu_suite.py"


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_suite"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_suite", None)


@pytest.fixture(scope="module")
def parsers(suite):
    """experiments/benchmarks/gpu_suite_parse.py, as gpu_suite imported it."""
    return sys.modules["gpu_suite_parse"]


def test_parsers_read_the_benchmarks_last_lines(parsers, tmp_path):
    assert parsers.key_values("paired ratios: median 1.031\nratio: 1.03\nvs_floor: 120.5\nnot: a number x") == {
        "ratio": 1.03,
        "vs_floor": 120.5,
    }
    assert parsers.parse_pytest("....\n3 passed, 1 skipped, 250 deselected in 9.1s\n", tmp_path)["not_passed"] == 0
    collect = "$ python -m pytest -m gpu --collect-only tests\n"
    assert parsers.parse_pytest(collect + "tests/a.py: 2\ntests/b.py: 1\n", tmp_path) == {"collected": 3}
    assert parsers.parse_pytest(collect + "4/612 tests collected in 8.1s\n", tmp_path) == {"collected": 4}
    failed = parsers.parse_pytest("F.\n1 failed, 1 passed, 2 errors in 3s\n", tmp_path)
    assert failed["failed"] == 1 and failed["errors"] == 2 and failed["not_passed"] == 3
    iwae = parsers.parse_iwae("probgen IWAE                    50.000 points/s  (IQR 3%)\n", tmp_path)
    assert iwae == {"iwae_points_per_s": 50.0, "iwae_10k_seconds": 200.0}
    fid = parsers.parse_fid(
        "inception (random weights)   cpu  harness       1.4 img/s   torchmetrics       1.3 img/s   ratio 1.12\n"
        "inception (file)             cuda harness    2400.0 img/s   torchmetrics    2000.0 img/s   ratio 1.20\n"
        "vs_torchmetrics: 1.20\n",
        tmp_path,
    )
    assert fid["harness_images_per_s"] == 2400.0 and fid["vs_torchmetrics"] == 1.2  # the GPU row wins
    (tmp_path / "epoch").mkdir()
    (tmp_path / "epoch" / "metrics.json").write_text(json.dumps({"train_seconds": 2.0, "images_per_second": 1024.0}))
    assert parsers.parse_epoch("", tmp_path)["epoch_seconds"] == pytest.approx(737_280 / 1024)


def test_goals_are_judged_on_a_gpu_only(suite):
    step = next(s for s in suite.STEPS if s.name == "hmc")
    on_gpu = suite.judge(step, {"vs_ceiling": 0.95, "vs_floor": 80.0}, on_gpu=True)
    assert [g["verdict"] for g in on_gpu] == ["met", "missed"]
    assert {g["verdict"] for g in suite.judge(step, {"vs_ceiling": 0.5}, on_gpu=False)} == {"n/a (GPU goal)", "n/a"}


def test_budgets_fit_eight_minutes(suite):
    assert sum(s.budget_gpu for s in suite.STEPS) + 60 <= 480  # + install and start-up
    assert suite.parse_args([]).budget <= 450


def test_install_reports_missing_wheels(suite, tmp_path, monkeypatch):
    monkeypatch.setattr(suite, "missing_modules", lambda: ["pyro-ppl==1.9.2"])
    res = suite.install(tmp_path / "no-wheels", tmp_path / "site", {}, tmp_path / "install.log")
    assert res["status"] == "failed" and "--fetch-wheels" in res["note"]
    monkeypatch.setattr(suite, "missing_modules", lambda: [])
    assert suite.install(tmp_path, tmp_path / "site", {}, tmp_path / "i.log")["metrics"] == {"installed": 0}


def test_a_step_past_its_budget_is_killed(suite, tmp_path):
    cmd = [sys.executable, "-c", "import signal; signal.pause()"]  # never ends by itself, however fast the machine
    status, rc, text = suite._run(cmd, tmp_path / "x.log", 1.5, {})
    assert status == "timeout" and rc is None and text.startswith("$ ")  # the log (its command line) comes back


def test_unknown_steps_are_refused(suite):
    with pytest.raises(SystemExit):
        suite.parse_args(["--only", "bogus"])


def test_quick_suite_with_one_real_step(suite, tmp_path, capsys):
    """All but the SVI step skipped: it runs as a child process, is parsed, tabled and written."""
    rc = suite.main(["--device", "cpu", "--quick", "--only", "svi_overhead,loglik_trust", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert rc == 0, (tmp_path / "svi_overhead.log").read_text()
    report = json.loads((tmp_path / "gpu_suite.json").read_text())
    svi = report["steps"]["svi_overhead"]
    assert svi["status"] == "ok" and 0.5 < svi["metrics"]["ratio"] < 3
    assert svi["goals"][0]["verdict"] == "n/a (GPU goal)" and report["all_goals_met"] is None
    trust = report["steps"]["loglik_trust"]
    assert trust["status"] in ("skipped", "ok")
    assert "svi_overhead" in printed and "ratio <= 1.05" in printed


@pytest.mark.slow  # every step on a shared 2-core CPU: minutes
def test_whole_quick_suite_on_the_cpu(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    report = json.loads((tmp_path / "gpu_suite.json").read_text())
    bad = {n: r["note"] for n, r in report["steps"].items() if r["status"] not in ("ok", "skipped")}
    assert proc.returncode == 0 and not bad, (bad, proc.stdout[-3000:])
    assert report["steps"]["epoch"]["metrics"]["epoch_seconds"] > 0
    assert report["steps"]["iwae"]["metrics"]["iwae_10k_seconds"] > 0
    assert {"vs_ceiling", "vs_floor"} <= set(report["steps"]["hmc"]["metrics"])
    assert report["steps"]["fid"]["metrics"]["harness_images_per_s"] > 0
