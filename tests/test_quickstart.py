"""The README's Python quickstart runs exactly as written (its code block, exec'd), on its tiny setting."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart_code() -> str:
    """The ```python block between <!-- quickstart --> and <!-- /quickstart --> in README.md."""
    text = README.read_text()
    section = text.split("<!-- quickstart -->", 1)[1].split("<!-- /quickstart -->", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the quickstart section holds one python block"
    return blocks[0]


def test_quickstart_is_short_and_uses_the_public_api():
    code = quickstart_code()
    lines = [line for line in code.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) <= 20
    assert "import probgen\n" in code and "from probgen" not in code  # only the curated names of probgen
    import probgen

    used = set(re.findall(r"probgen\.(\w+)", code))
    assert used and used <= set(probgen.__all__), used - set(probgen.__all__)


def test_quickstart_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROBGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PROBGEN_QUICKSTART", "tiny")
    exec(compile(quickstart_code(), str(README), "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    (run,) = (tmp_path / "runs").glob("vae-dsprites-*")
    assert (run / "checkpoint.pt").is_file() and (run / "samples.png").is_file()
    ll = json.loads((run / "loglik" / "loglik.json").read_text())
    iwae = ll["results"]["iwae"]["log_px_mean"]
    assert math.isfinite(iwae) and iwae < 0  # binary dSprites: log p(x) is never positive
    ev = json.loads((run / "eval.json").read_text())
    assert "FD-dsprites" in ev["metrics"]
    assert f"log p(x) >= {iwae:.1f} nats" in out and "FD-dsprites" in out
