"""Same seed and config, same numbers (CPU); run files record versions and device."""

import json

import torch

from probgen.checkpoint import load_checkpoint
from probgen.training.trainers.vae import fit_vae
from tests.factories import tiny_vae_config


def test_same_seed_same_parameters_and_losses(tmp_path):
    a = fit_vae(tiny_vae_config(tmp_path / "a", max_steps=5))
    b = fit_vae(tiny_vae_config(tmp_path / "b", max_steps=5))
    sa, sb = (
        load_checkpoint(a / "checkpoint.pt")["state"]["model"],
        load_checkpoint(b / "checkpoint.pt")["state"]["model"],
    )
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert (a / "losses.csv").read_text() == (b / "losses.csv").read_text()
    c = fit_vae(tiny_vae_config(tmp_path / "c", max_steps=5, seed=1))
    sc = load_checkpoint(c / "checkpoint.pt")["state"]["model"]
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    for name in ("config.json", "metrics.json"):
        env = json.loads((a / name).read_text())["environment"]
        assert {"probgen", "torch", "pyro-ppl", "device"} <= set(env), name
