"""`probgen loglik` killed (SIGKILL) and interrupted (Ctrl-C) continues when re-run, and ends with the
files of an uninterrupted run.

The child processes stop at a named batch write (tests/reliability/pause.py) before the test sends
its signal, so the test does not depend on how fast the machine is."""

import json
import signal

import pytest

from tests.reliability.procs import Paused, start

FLAGS = [
    "--num-data", "5", "--points-per-batch", "1", "--method", "elbo,ais", "--chains", "2", "--ais-steps", "80",
    "--leapfrog-steps", "4", "-k", "50", "--no-progress", "--device", "cpu",
]  # fmt: skip


def _finish(args, tmp_path):
    proc = start(args, tmp_path)
    _, err = proc.communicate()  # no time limit of its own: the test's timeout mark stops a hang
    assert proc.returncode == 0, err
    return err


@pytest.mark.timeout(900)  # four process starts; minutes on a shared 2-core machine
def test_loglik_continues_after_sigkill_and_ctrl_c(tmp_path, tiny_vae_ckpt):
    base = ["loglik", "--ckpt", str(tiny_vae_ckpt), *FLAGS, "--out"]
    ref, out = tmp_path / "ref", tmp_path / "out"
    _finish([*base, str(ref)], tmp_path)
    partial = out / ".partial"
    # SIGKILL while the second batch is written: its temp file is complete, not yet renamed
    child = Paused([*base, str(out)], tmp_path, "batch-*.pt", 2, "before-rename")
    assert child.wait(), child.finish()[1]
    child.signal(signal.SIGKILL)
    assert child.finish()[0] == -signal.SIGKILL
    assert [p.name for p in partial.glob("batch-*.pt")] == ["batch-000000000.pt"]
    assert len(list(partial.glob(".batch-*.tmp"))) == 1  # the torn write, swept by the next run
    assert not (out / "loglik.json").exists()
    # Ctrl-C just after the re-run stored its first batch (the third of five)
    child = Paused([*base, str(out)], tmp_path, "batch-*.pt", 1, "after")
    assert child.wait(), child.finish()[1]
    child.signal(signal.SIGINT)
    rc, err = child.finish()
    assert rc == 130, err
    assert "same command again" in err.strip().splitlines()[-1]
    assert len(list(partial.glob("batch-*.pt"))) == 2 and not list(partial.glob(".*.tmp"))
    err = _finish([*base, str(out)], tmp_path)
    assert "already done" in err
    assert (out / "loglik.csv").read_bytes() == (ref / "loglik.csv").read_bytes()
    got, want = (json.loads((d / "loglik.json").read_text()) for d in (out, ref))
    assert got["results"] == want["results"]
    assert not partial.exists() and not list(out.glob(".*.tmp"))
