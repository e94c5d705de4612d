"""The model registry: every kind is known once, and loading a model imports no training pipeline."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from probgen.config import from_dict, to_dict
from probgen.errors import UserError
from probgen.models.registry import KINDS, kind_of_config, load_model, model_kind

TRAINING_MODULES = ("probgen.training",)


def _imported_after(statement: str) -> list[str]:
    """The probgen modules a fresh interpreter holds after running ``statement``."""
    code = (
        f"import sys, json\n{statement}\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith('probgen'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


@pytest.mark.parametrize("module", ["probgen.pipelines.sample", "probgen.pipelines.plot", "probgen.models.registry"])
def test_sampling_and_plotting_import_no_training_module(module):
    loaded = _imported_after(f"import {module}")
    assert module in loaded
    bad = [m for m in loaded if m.startswith(TRAINING_MODULES)]
    assert not bad, f"{module} imports training code: {bad}"


def test_every_kind_round_trips_its_config_and_finds_its_loader():
    for name, kind in KINDS.items():
        assert model_kind(name) is kind and kind_of_config(kind.config()) is kind
        cfg = kind.config()
        assert from_dict(kind.config, to_dict(cfg)) == cfg
        module, _, attr = kind.loader.partition(":")
        assert callable(getattr(__import__(module, fromlist=[attr]), attr)), kind.loader


def test_unknown_kind_and_wrong_kind_are_user_errors():
    with pytest.raises(UserError, match="unknown model kind 'nope'"):
        model_kind("nope")
    with pytest.raises(UserError, match="'gan' model, but this command needs a VAE"):
        load_model({"kind": "gan", "config": {}}, kinds=("vae",), need="a VAE")


def _fresh(name: str) -> tuple[object, object, dict]:
    """A tiny untrained model of kind ``name``, its fit config and its checkpoint ``state``."""
    from probgen.config import AEConfig, CVAEConfig, VAEConfig
    from probgen.models.autoencoder import Autoencoder
    from probgen.models.cvae import CVAE
    from probgen.models.dcgan import build_gan
    from probgen.models.vae import build_vae

    net = VAEConfig(arch="mlp", latent_dim=2, hidden_dims=(8,), likelihood="bernoulli")
    if name == "gan":
        cfg = KINDS[name].config()
        g, _ = build_gan(cfg.model, SHAPE)
        return g, cfg, {"generator": g.state_dict()}
    if name == "cvae":
        cfg = KINDS[name].config(model=net, cvae=CVAEConfig(num_classes=3))
        model = CVAE(net, SHAPE, 3)
    elif name == "ae":
        cfg = KINDS[name].config(model=net, ae=AEConfig(bottleneck=True))
        model = Autoencoder(net, SHAPE, bottleneck=True)
    else:
        cfg = KINDS[name].config(model=net)
        model = build_vae(cfg, SHAPE)
    return model, cfg, {"model": model.state_dict()}


SHAPE = (1, 32, 32)


@pytest.mark.parametrize("name", ["vae", "vaegan", "cvae", "ae", "gan"])
def test_load_model_rebuilds_each_kind_from_a_checkpoint_dict(name):
    """A checkpoint dict holding a fresh model of each kind loads back to the same weights and samples."""
    import torch

    torch.manual_seed(0)
    ref, cfg, state = _fresh(name)
    ckpt = {"kind": name, "config": to_dict(cfg), "image_shape": list(SHAPE), "state": state}
    m = load_model(ckpt)
    assert m.kind.name == name and m.config == cfg and not m.model.training
    for (k, a), b in zip(ref.state_dict().items(), m.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    if name != "ae":  # an autoencoder samples only once its code density was fitted at the run's end
        images = m.sampler()(3, torch.Generator().manual_seed(0))
        assert images.shape == (3, *SHAPE) and 0 <= images.min() and images.max() <= 1
    if name != "gan":
        assert m.latent().kind == name
