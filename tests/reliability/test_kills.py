"""SIGKILL at random moments, resume each time: the run ends bitwise equal to an uninterrupted one."""

import random
import signal
import time

import pytest
import torch

from probgen.checkpoint import load_checkpoint
from tests.reliability.procs import KINDS, model_state, start, wait_for_new_checkpoint

KILLS = 10


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.timeout(1500)  # eleven process starts; minutes on a shared 2-core machine
@pytest.mark.parametrize("kind", ["vae", "gan"])
def test_training_survives_ten_sigkills(tmp_path, reference_run, kind):
    flags, steps = KINDS[kind]
    reference = reference_run(kind)
    rng = random.Random(1234)
    out = tmp_path / "run"
    ckpt = out / "checkpoint.pt"
    kills, steps_seen = 0, []
    args = ["fit", kind, *flags, "--out", str(out)]
    while kills < KILLS:
        proc = start(args + (["--resume"] if out.exists() else []), tmp_path)
        last = ckpt.stat().st_mtime if ckpt.exists() else 0.0
        if not wait_for_new_checkpoint(proc, ckpt, last):
            break  # it finished before we could kill it
        time.sleep(rng.uniform(0.0, 0.25))  # a random moment: mid-step, mid-write or between
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        kills += 1
        data = load_checkpoint(ckpt)  # never torn: the atomic write left a whole file
        steps_seen.append(data["step"])
        if data["step"] >= steps:
            break
    assert kills == KILLS, f"only {kills} kills landed before the run finished"
    proc = start(args + ["--resume"], tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert load_checkpoint(ckpt)["step"] == steps
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # stale temp files were swept
    _assert_same(model_state(out), model_state(reference))
    assert steps_seen == sorted(steps_seen)  # every resume made progress from the last checkpoint
