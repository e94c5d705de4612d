"""Every model kind: Ctrl-C mid-epoch, resume, and the run ends bitwise equal to an uninterrupted one (CPU)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from probgen.checkpoint import load_checkpoint
from probgen.config import (
    AEConfig,
    CVAEConfig,
    DataConfig,
    FitAEConfig,
    FitCVAEConfig,
    FitGANConfig,
    FitVAEConfig,
    FitVAEGANConfig,
    GANConfig,
    GANTrainConfig,
    ObjectiveConfig,
    RunConfig,
    TrainConfig,
    VAEConfig,
    VAEGANConfig,
)
from probgen.models.registry import KINDS
from probgen.pipelines.fit import fit
from probgen.training.distributed import Dist
from probgen.training.guards import Interrupted
from probgen.utils.io import read_csv

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 160 dSprites images at 16 px: 144 train / 16 per batch = 9 steps per epoch, 2 epochs.
STEPS, STOP_AT = 18, 5  # Ctrl-C during step 5 (mid-epoch 1); the resumed run crosses the epoch's end


def _config(kind: str, out: Path) -> Any:
    data = DataConfig(dataset="dsprites", limit=160, image_size=16, data_root=str(out.parent / "no-data"))
    run = RunConfig(out=str(out), progress=False)
    if kind == "gan":  # batch norm, EMA and the fixed noise: all checkpointed
        train = GANTrainConfig(epochs=2, batch_size=16, checkpoint_every=7, sample_epochs=(1,), ema_decay=0.9)
        return FitGANConfig(data=data, model=GANConfig(latent_dim=4, g_channels=4, d_channels=4), train=train, run=run)
    schedule = {"beta_schedule": "linear", "beta_warmup_steps": 10}  # beta is a function of the resumed step
    train = TrainConfig(epochs=2, batch_size=16, eval_batch_size=64, lr=2e-3, checkpoint_every=7, **schedule)
    common = {"data": data, "model": VAEConfig(conv_channels=(4, 4), hidden_dims=(8,), latent_dim=2), "train": train}
    if kind == "ae":
        return FitAEConfig(**common, run=run, ae=AEConfig())
    if kind == "cvae":
        return FitCVAEConfig(**common, run=run, cvae=CVAEConfig())
    if kind == "vaegan":
        return FitVAEGANConfig(**common, run=run, gan=VAEGANConfig(disc_channels=(4,)))
    if kind == "vae-factor":  # FactorVAE: its discriminator, its Adam and the permutations' RNG draws
        return FitVAEConfig(**common, run=run, objective=ObjectiveConfig("factor-vae", factor_disc_hidden=(8,)))
    if kind == "vae":
        return FitVAEConfig(**common, run=run)
    raise AssertionError(f"model kind {kind!r} is registered but has no tiny config here: add one to _config")


# every registered kind (a new one fails until it has a tiny config above), and objectives with their own state
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
    full = fit(_config(kind, tmp_path / "full"))
    with monkeypatch.context() as m:
        _ctrl_c_at(m, STOP_AT)
        with pytest.raises(Interrupted):
            fit(_config(kind, tmp_path / "part"))
    assert load_checkpoint(tmp_path / "part" / "checkpoint.pt")["step"] == STOP_AT
    cfg = _config(kind, tmp_path / "part")
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
