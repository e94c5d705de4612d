"""Ctrl-C (SIGINT) saves a checkpoint, says how to resume, and the resumed run is exact."""

import signal

import torch

from probgen.checkpoint import load_checkpoint
from tests.reliability.procs import FLAGS, STEPS, model_state, start, wait_for_new_checkpoint


def test_sigint_saves_and_resume_matches(tmp_path, reference_run):
    out = tmp_path / "run"
    args = ["fit", "vae", *FLAGS, "--out", str(out)]
    proc = start(args, tmp_path)
    assert wait_for_new_checkpoint(proc, out / "checkpoint.pt", 0.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert "interrupted" in last and "--resume" in last and str(out) in last
    stopped_at = load_checkpoint(out / "checkpoint.pt")["step"]
    assert 0 < stopped_at < STEPS
    proc = start([*args, "--resume"], tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    ref, got = model_state(reference_run("vae")), model_state(out)
    assert all(torch.equal(ref[k], got[k]) for k in ref)
