"""SIGKILL at random points, resume each time: the run ends bitwise equal to an uninterrupted one.

Each child stops at a randomly chosen checkpoint write, either just before its rename (a complete
temp file, not yet in place: what a kill mid-write leaves) or just after it (tests/reliability/
pause.py), and is killed there. The points are drawn from a seeded RNG, not from the clock, so every
kill lands, on a fast machine as on a loaded one."""

import random
import signal

import pytest
import torch

from probgen.checkpoint import load_checkpoint
from tests.reliability.procs import KINDS, Paused, model_state, start

KILLS = 10
MAX_WRITES = 3  # each child is killed at one of its first 3 checkpoint writes: 10 kills fit in the run


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.timeout(1500)  # eleven process starts; minutes on a shared 2-core machine
@pytest.mark.parametrize(
    ("kind", "kills"),
    [  # the default suite: 5 kills (the seeded draws hold both kinds of kill by the 5th); slow: 10, and the GAN
        ("vae", 5),
        pytest.param("vae", KILLS, marks=pytest.mark.slow),
        pytest.param("gan", KILLS, marks=pytest.mark.slow),
    ],
)
def test_training_survives_repeated_sigkills(tmp_path, reference_run, kind, kills):
    flags, steps = KINDS[kind]
    assert kills * MAX_WRITES < steps  # one write per step (--checkpoint-every 1): no child can finish
    reference = reference_run(kind)
    rng = random.Random(1234)
    out = tmp_path / "run"
    ckpt = out / "checkpoint.pt"
    args = ["fit", kind, *flags, "--out", str(out)]
    steps_seen, wheres = [], []
    for _ in range(kills):
        n, where = rng.randint(1, MAX_WRITES), rng.choice(["before-rename", "after"])
        child = Paused(args + (["--resume"] if out.exists() else []), tmp_path, "checkpoint.pt", n, where)
        assert child.wait(), child.finish()[1]
        child.signal(signal.SIGKILL)
        assert child.finish()[0] == -signal.SIGKILL
        wheres.append(where)
        if ckpt.exists():
            steps_seen.append(load_checkpoint(ckpt)["step"])  # never torn: the atomic write left a whole file
    assert set(wheres) == {"before-rename", "after"}  # both kinds of kill happened
    proc = start(args + ["--resume"], tmp_path)
    _, err = proc.communicate()  # no time limit of its own: pytest's timeout stops a hang
    assert proc.returncode == 0, err
    assert load_checkpoint(ckpt)["step"] == steps
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # stale temp files were swept
    _assert_same(model_state(out), model_state(reference))
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] > 0  # every resume went on from the last checkpoint
