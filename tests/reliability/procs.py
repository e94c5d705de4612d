"""Helpers of the reliability suite (not a test module): training runs as real subprocesses that can be killed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from probgen.checkpoint import load_checkpoint
from tests.factories import GAN_FLAGS as TINY_GAN_FLAGS
from tests.factories import TINY_FLAGS

STEPS = 90
FLAGS = [*TINY_FLAGS, "--epochs", "10", "--max-steps", str(STEPS), "--checkpoint-every", "1"]
GAN_STEPS = 40  # 4 steps per epoch with the tiny GAN flags
GAN_FLAGS = [*TINY_GAN_FLAGS, "--epochs", "10", "--max-steps", str(GAN_STEPS), "--checkpoint-every", "1"]
KINDS = {"vae": (FLAGS, STEPS), "gan": (GAN_FLAGS, GAN_STEPS)}


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
