"""Ctrl-C (SIGINT) saves a checkpoint, says how to resume, and the resumed run is exact.

The child stops just after its first checkpoint (tests/reliability/pause.py) before the test sends
SIGINT, so the signal lands mid-run on a fast machine as on a loaded one."""

import signal

import pytest
import torch

from probgen.checkpoint import load_checkpoint
from tests.reliability.procs import FLAGS, STEPS, Paused, model_state, start


@pytest.mark.timeout(1500)  # three process starts (and the reference run); minutes on a loaded 2-core machine
def test_sigint_saves_and_resume_matches(tmp_path, reference_run):
    out = tmp_path / "run"
    args = ["fit", "vae", *FLAGS, "--out", str(out)]
    child = Paused(args, tmp_path, "checkpoint.pt", 1, "after")
    assert child.wait(), child.finish()[1]
    child.signal(signal.SIGINT)
    rc, err = child.finish()
    assert rc == 130, err
    last = err.strip().splitlines()[-1]
    assert "interrupted" in last and "--resume" in last and str(out) in last
    stopped_at = load_checkpoint(out / "checkpoint.pt")["step"]
    assert stopped_at == 2  # the first checkpoint is step 1's; the stop comes at the next step boundary
    assert stopped_at < STEPS
    proc = start([*args, "--resume"], tmp_path)
    _, err = proc.communicate()  # no time limit of its own: pytest's timeout stops a hang
    assert proc.returncode == 0, err
    ref, got = model_state(reference_run("vae")), model_state(out)
    assert all(torch.equal(ref[k], got[k]) for k in ref)
