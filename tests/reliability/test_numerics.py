"""A NaN in the loss stops training at the step it happened, keeping the last good checkpoint."""

import pytest
import torch

from probgen.checkpoint import load_checkpoint
from probgen.errors import NumericalError
from probgen.inference.svi.elbo import TermsTrace_ELBO
from probgen.training.trainers.vae import fit_vae
from tests.factories import tiny_vae_config


def test_nan_loss_stops_with_step_and_keeps_good_checkpoint(tmp_path, monkeypatch):
    real = TermsTrace_ELBO.differentiable_loss
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        loss = real(self, *args, **kwargs)
        calls["n"] += 1
        return loss * float("nan") if calls["n"] == 6 else loss

    monkeypatch.setattr(TermsTrace_ELBO, "differentiable_loss", poisoned)
    out = tmp_path / "run"
    with pytest.raises(NumericalError, match="step 6.*--resume.*--lr"):
        fit_vae(tiny_vae_config(out, checkpoint_every=2, max_steps=8))
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == 4  # the last checkpoint before the bad step
    assert all(torch.isfinite(v).all() for v in ckpt["state"]["model"].values() if v.is_floating_point())

    monkeypatch.setattr(TermsTrace_ELBO, "differentiable_loss", real)
    cfg = tiny_vae_config(out, checkpoint_every=2, max_steps=8, lr=1e-4)
    cfg.run.resume = True
    fit_vae(cfg)
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == 8
    assert ckpt["state"]["optimizer"]["param_groups"][0]["lr"] == 1e-4
