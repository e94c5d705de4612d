"""experiments/benchmarks/svi_overhead.py: issue 28's MLP and the ELBO-against-ELBO comparison run and print a ratio."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "experiments" / "benchmarks"


@pytest.fixture
def script(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    yield importlib.import_module("svi_overhead")
    sys.modules.pop("svi_overhead", None)


@pytest.mark.parametrize("sides", ["trace,plain", "trace,tracemeanfield"])
def test_mlp_sides_print_a_paired_ratio(script, capsys, sides):
    script.main(["--net", "mlp", "--sides", sides, "--batch-size", "8", "--rounds", "2", "--block", "1"])
    out = capsys.readouterr().out
    a, b = sides.split(",")
    assert f"A = {a}" in out and f"B = {b}" in out
    assert float(out.strip().splitlines()[-1].removeprefix("ratio: ")) > 0


def test_unknown_side_is_refused(script):
    with pytest.raises(SystemExit):
        script.main(["--sides", "trace,adam"])
