"""One home per model kind: no module outside probgen/models/ names a kind, and a new kind
registers by touching the registry and its own files only (here: this test file)."""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from probgen.config import AEConfig, DataConfig, RunConfig, TrainConfig, VAEConfig
from probgen.errors import UserError
from probgen.models.registry import KINDS, ModelKind, kinds_where, load_model, register
from probgen.training.trainers.ae import AETrainer

PACKAGE = Path(__file__).resolve().parents[2] / "probgen"


def kind_names(tree: ast.AST, kinds: set[str]) -> list[tuple[int, str]]:
    """(line, name) of every string constant that is exactly a kind's name (docstrings are prose)."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in kinds and id(node) not in docstrings
    ]


def test_no_module_outside_models_names_a_kind():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("models/"):
            continue
        for line, name in kind_names(ast.parse(path.read_text()), set(KINDS)):
            bad.append(f"probgen/{rel}:{line} names the kind {name!r}: ask probgen.models.registry instead")
    assert not bad, "\n".join(bad)


def test_the_check_catches_a_kind_in_code_but_not_in_prose():
    code = '"""Trains a vae."""\nif kind == "vae":\n    pass\nmsg = "fit vae"\n'
    assert kind_names(ast.parse(code), {"vae"}) == [(2, "vae")]


# --- a toy kind: an autoencoder under another name, with its own config and trainer --------------


@dataclass
class FitToyConfig:
    """The whole config of `fit toy`: an autoencoder's sections."""

    data: DataConfig = field(default_factory=DataConfig)
    model: VAEConfig = field(default_factory=VAEConfig)
    ae: AEConfig = field(default_factory=AEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)


class ToyTrainer(AETrainer):
    config_cls = FitToyConfig


TOY = ModelKind(
    "toy",
    FitToyConfig,
    "a toy kind (an autoencoder)",
    "Registered by a test.",
    trainer=f"{__name__}:ToyTrainer",
    loader="probgen.models.autoencoder:autoencoder_from_checkpoint",
    latent="probgen.models.autoencoder:autoencoder_latent",
    unused_flags=("beta", "elbo"),
    figures=("reconstructions",),
    model_sections=("data", "model", "ae"),
)


@pytest.fixture
def toy_kind():
    register(TOY)
    try:
        yield TOY
    finally:
        del KINDS["toy"]


def _toy_config(out: Path, **train: object) -> FitToyConfig:
    return FitToyConfig(
        data=DataConfig(dataset="dsprites", limit=96, image_size=16, data_root=str(out.parent / "no-data")),
        model=VAEConfig(conv_channels=(8, 8), hidden_dims=(16,), latent_dim=3),
        ae=AEConfig(bottleneck=False),
        train=TrainConfig(epochs=1, batch_size=32, eval_batch_size=64, max_steps=2, **train),  # type: ignore[arg-type]
        run=RunConfig(out=str(out), progress=False),
    )


def test_a_toy_kind_trains_loads_and_plots_through_the_registry_alone(toy_kind, tmp_path):
    import probgen
    from probgen.config import PlotConfig
    from probgen.pipelines.plot import plot_checkpoint

    run = probgen.fit(_toy_config(tmp_path / "run"))  # the wiring finds ToyTrainer through the registry
    loaded = load_model(run)
    assert loaded.kind is toy_kind and loaded.checkpoint["kind"] == "toy"
    assert "toy" in kinds_where(lambda k: "reconstructions" in k.figures)
    png = plot_checkpoint("reconstructions", run, PlotConfig(device="cpu", num_images=4))
    assert png.exists()
    with pytest.raises(UserError, match="holds a 'toy' model, but this command needs vae"):
        plot_checkpoint("traversals", run, PlotConfig(device="cpu"))
    # a flag the kind declares unused is refused when set through the Python API
    with pytest.raises(UserError, match="--beta 2.0: only for"):
        probgen.fit(_toy_config(tmp_path / "beta", beta=2.0))


def test_the_toy_kind_gets_its_own_fit_command(toy_kind):
    from probgen.cli import build_parser

    fit = _subparser(_subparser(build_parser(), "fit"), "toy")
    flags = {s for a in fit._actions for s in a.option_strings}
    assert fit.description == "Registered by a test." and "--bottleneck" in flags
    assert "--beta" not in flags and "--elbo" not in flags  # its unused flags are not shown


def _subparser(parser, name: str):
    import argparse

    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[name]


def test_registering_a_name_twice_is_refused(toy_kind):
    with pytest.raises(ValueError, match="already registered"):
        register(dataclasses.replace(TOY))


def test_load_model_refuses_a_toy_checkpoint_once_unregistered(tmp_path):
    with pytest.raises(UserError, match="unknown model kind 'toy'"):
        load_model({"kind": "toy", "config": {}}, kinds=("toy",))
