"""Helpers for the reliability suite: training runs as real subprocesses that can be killed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from probgen.checkpoint import load_checkpoint
from tests.conftest import TINY_FLAGS

STEPS = 90
FLAGS = [*TINY_FLAGS, "--epochs", "10", "--max-steps", str(STEPS), "--checkpoint-every", "1"]


def probgen_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "probgen", *args]


def start(args: list[str], env_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PROBGEN_DATA": str(env_dir / "no-data"), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(probgen_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for_new_checkpoint(proc: subprocess.Popen, ckpt: Path, after: float, timeout: float = 120) -> bool:
    """Wait until ``ckpt`` is newer than ``after``; False if the process ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ckpt.exists() and ckpt.stat().st_mtime > after:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    raise TimeoutError("no checkpoint appeared")


def model_state(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoint.pt")["state"]["model"]


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of FLAGS, in a subprocess like the interrupted ones."""
    tmp = tmp_path_factory.mktemp("reference")
    proc = start(["fit", "vae", *FLAGS, "--out", str(tmp / "run")], tmp)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return tmp / "run"
