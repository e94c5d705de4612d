"""Every model kind: Ctrl-C mid-epoch, resume, and the run ends bitwise equal to an uninterrupted one (CPU)."""

from __future__ import annotations

import signal
from typing import Any

import pytest
import torch

from probgen.checkpoint import load_checkpoint
from probgen.models.registry import KINDS
from probgen.pipelines.fit import fit
from probgen.training.guards import Interrupted
from probgen.utils.distributed import Dist
from probgen.utils.io import read_csv
from tests.factories import every_kind_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 160 dSprites images at 16 px: 144 train / 16 per batch = 9 steps per epoch, 2 epochs.
STEPS, STOP_AT = 18, 5  # Ctrl-C during step 5 (mid-epoch 1); the resumed run crosses the epoch's end


# every registered kind (a new one fails until tests/factories.py's every_kind_config has a tiny
# config for it), and objectives with their own state
CASES = [*KINDS, "vae-factor"]


def _tensors(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if isinstance(obj, dict):
        return {k: v for key, value in obj.items() for k, v in _tensors(value, f"{prefix}.{key}").items()}
    if isinstance(obj, (list, tuple)):
        return {k: v for i, value in enumerate(obj) for k, v in _tensors(value, f"{prefix}.{i}").items()}
    return {}


def _ctrl_c_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """A SIGINT during step ``step`` of the next fit, whatever the model (the loop polls after each step)."""
    poll = Dist.stop_requested

    def stop_requested(self: Dist, stop: Any, at: int) -> bool:
        if at == step:
            signal.raise_signal(signal.SIGINT)
        return poll(self, stop, at)

    monkeypatch.setattr(Dist, "stop_requested", stop_requested)


@pytest.mark.parametrize("kind", CASES)
def test_interrupted_and_resumed_run_is_bitwise_equal_to_an_uninterrupted_one(kind, tmp_path, monkeypatch):
    full = fit(every_kind_config(kind, tmp_path / "full"))
    with monkeypatch.context() as m:
        _ctrl_c_at(m, STOP_AT)
        with pytest.raises(Interrupted):
            fit(every_kind_config(kind, tmp_path / "part"))
    assert load_checkpoint(tmp_path / "part" / "checkpoint.pt")["step"] == STOP_AT
    cfg = every_kind_config(kind, tmp_path / "part")
    cfg.run.resume = True
    part = fit(cfg)
    a, b = load_checkpoint(full / "checkpoint.pt"), load_checkpoint(part / "checkpoint.pt")
    assert a["step"] == b["step"] == STEPS
    sa, sb = _tensors(a["state"]), _tensors(b["state"])  # every module, optimizer (and EMA) state
    assert sa.keys() == sb.keys() and len(sa) > 10
    for name, value in sa.items():
        assert torch.equal(value, sb[name]), name
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])  # the streams continue identically too
    assert read_csv(full / "losses.csv") == read_csv(part / "losses.csv")
