"""Helpers of the reliability suite (not a test module): training runs as real subprocesses that can be killed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from probgen.checkpoint import load_checkpoint
from tests.factories import GAN_FLAGS as TINY_GAN_FLAGS
from tests.factories import TINY_FLAGS
from tests.reliability.pause import MARK

ROOT = Path(__file__).resolve().parents[2]  # the child runs `python -m tests.reliability.pause` from here

STEPS = 90
FLAGS = [*TINY_FLAGS, "--epochs", "10", "--max-steps", str(STEPS), "--checkpoint-every", "1"]
GAN_STEPS = 40  # 4 steps per epoch with the tiny GAN flags
GAN_FLAGS = [*TINY_GAN_FLAGS, "--epochs", "10", "--max-steps", str(GAN_STEPS), "--checkpoint-every", "1"]
KINDS = {"vae": (FLAGS, STEPS), "gan": (GAN_FLAGS, GAN_STEPS)}


def probgen_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "probgen", *args]


def start(args: list[str], env_dir: Path) -> subprocess.Popen:
    """`probgen ARGS` in a subprocess (stdout and stderr piped), without dSprites' official file."""
    return _popen(probgen_cmd(*args), env_dir)


def _popen(cmd: list[str], env_dir: Path, stdout: int = subprocess.PIPE) -> subprocess.Popen:
    env = {**os.environ, "PROBGEN_DATA": str(env_dir / "no-data"), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


class Paused:
    """`probgen ARGS` in a subprocess that stops at the ``n``-th write of a file matching ``pattern``
    (``where``: ``"before-rename"`` or ``"after"``, see tests/reliability/pause.py) until a signal.

    :meth:`wait` blocks until the child says it has stopped there (or has ended); then a signal sent
    with :meth:`signal` finds it at that point, whatever the machine's speed.
    """

    def __init__(self, args: list[str], env_dir: Path, pattern: str, n: int, where: str = "after"):
        cmd = [sys.executable, "-m", "tests.reliability.pause", pattern, str(n), where, "--", *args]
        self.proc = _popen(cmd, env_dir, stdout=subprocess.DEVNULL)  # stderr is read line by line
        self.lines: list[str] = []

    def wait(self) -> bool:
        """True once the child is paused; False if it ended without reaching the point."""
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # ends at EOF: the child has exited
            self.lines.append(line)
            if line.startswith(MARK):
                return True
        return False

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def finish(self) -> tuple[int, str]:
        """Wait for the exit (read to the end of stderr); (return code, all of stderr)."""
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()  # through the same buffer as :meth:`wait`: nothing is skipped
        self.proc.wait()
        self.proc.stderr.close()
        return self.proc.returncode, "".join(self.lines) + err


def model_state(run: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every state dict in the checkpoint (models, optimisers, EMA)."""
    state = load_checkpoint(run / "checkpoint.pt")["state"]
    return {f"{name}.{k}": v for name, sd in state.items() for k, v in _tensors(sd)}


def _tensors(obj: object, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        return [(prefix, obj)]
    if isinstance(obj, dict):
        return [t for k, v in obj.items() for t in _tensors(v, f"{prefix}.{k}")]
    if isinstance(obj, (list, tuple)):
        return [t for i, v in enumerate(obj) for t in _tensors(v, f"{prefix}.{i}")]
    return []
