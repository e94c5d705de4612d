"""What a command imports: ``--help`` of every command imports no heavy package, and a VAE fit imports none
that it does not use (torch._dynamo is not counted: torch.optim imports it when the optimiser is built)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.factories import SMALL_FIT_VAE

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "pyro", "matplotlib", "arviz", "scipy", "tensorboard", "torchmetrics", "pandas")


def _imported_after(code: str) -> list[str]:
    """The HEAVY packages imported once ``code`` has run in a fresh interpreter."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_help_of_every_command_imports_no_heavy_package():
    code = """
import contextlib, io
from probgen.cli import main
from probgen.cli.commands import all_commands
paths = [()] + [cmd.path for cmd in all_commands()]
for path in paths:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main([*path, "--help"])
        except SystemExit:
            pass
assert len(paths) > 5, paths
"""
    assert _imported_after(code) == []


def test_a_vae_fit_imports_only_what_it_uses(tmp_path):
    argv = ["fit", *SMALL_FIT_VAE, "--epochs", "1", "--out", str(tmp_path / "run")]
    code = f"from probgen.cli import main\nassert main({argv!r}) == 0"
    # torch and pyro train, torchvision reads the data and draws the grids, matplotlib the loss curves
    assert _imported_after(code) == ["matplotlib", "pyro", "torch", "torchvision"]
