"""`probgen loglik` killed (SIGKILL) and interrupted (Ctrl-C) continues when re-run, and ends with the
files of an uninterrupted run."""

import json
import random
import signal
import time

import pytest

from tests.reliability.procs import start

FLAGS = [
    "--num-data", "5", "--points-per-batch", "1", "--method", "elbo,ais", "--chains", "2", "--ais-steps", "80",
    "--leapfrog-steps", "4", "-k", "50", "--no-progress", "--device", "cpu",
]  # fmt: skip


def _wait_for_batches(proc, folder, count, timeout=120):
    """Wait until ``folder`` holds ``count`` stored batches; False if the process ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(list(folder.glob("batch-*.pt"))) >= count:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    raise TimeoutError(f"no {count} batches in {folder}")


def _finish(args, tmp_path):
    proc = start(args, tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return err


@pytest.mark.timeout(900)  # four process starts; minutes on a shared 2-core machine
def test_loglik_continues_after_sigkill_and_ctrl_c(tmp_path, tiny_vae_ckpt):
    base = ["loglik", "--ckpt", str(tiny_vae_ckpt), *FLAGS, "--out"]
    ref, out = tmp_path / "ref", tmp_path / "out"
    _finish([*base, str(ref)], tmp_path)
    partial = out / ".partial"
    proc = start([*base, str(out)], tmp_path)
    assert _wait_for_batches(proc, partial, 1)
    time.sleep(random.Random(0).uniform(0.0, 0.3))  # mid-batch or mid-write
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    done = len(list(partial.glob("batch-*.pt")))
    assert 1 <= done < 5 and not (out / "loglik.json").exists()
    proc = start([*base, str(out)], tmp_path)
    assert _wait_for_batches(proc, partial, done + 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "same command again" in err.strip().splitlines()[-1]
    err = _finish([*base, str(out)], tmp_path)
    assert "already done" in err
    assert (out / "loglik.csv").read_bytes() == (ref / "loglik.csv").read_bytes()
    got, want = (json.loads((d / "loglik.json").read_text()) for d in (out, ref))
    assert got["results"] == want["results"]
    assert not partial.exists() and not list(out.glob(".*.tmp"))
