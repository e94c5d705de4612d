"""Imports flow one way: cli -> pipelines -> training -> {models, inference, metrics} -> {data, config, utils}.

Every module under probgen/ is parsed with ``ast`` (imports inside functions included) and each
``probgen.X`` import is checked against the layer of the importing module. See docs/architecture.md.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "probgen"

# The first component under probgen/ -> its layer; a module may import its own layer and those below.
LAYERS: dict[str, int] = {
    "__main__": 6,
    "cli": 5,
    "pipelines": 4,
    "training": 3,
    "models": 2,
    "inference": 2,
    "metrics": 2,
    # the foundations: anything above may use them
    "data": 1,
    "config": 1,
    "utils": 1,
    "checkpoint": 1,
    "figures": 1,
    "plots": 1,
    "errors": 1,
    "version": 1,  # __version__, read by checkpoint, utils/io and cli
    "__version__": 1,  # `from probgen import __version__` (the public API re-exports probgen.version's)
}
API = "__init__"  # probgen/__init__.py: the public API sits on top of everything and nothing imports it
# Pairs inside one layer that must not import each other: inference receives callables, never a
# concrete model; metrics never depends on a model class either.
FORBIDDEN: set[tuple[str, str]] = {("inference", "models"), ("metrics", "models")}
# utils/ is the floor of the foundations: run directories and TensorBoard live in training/,
# atomic_write in utils/io, so nothing in utils/ needs a config, a checkpoint or a figure.
FORBIDDEN |= {("utils", "config"), ("utils", "checkpoint"), ("utils", "plots")}
# Modules (by path prefix under probgen/) that must not import a component their layer allows:
# evaluation shards its work with utils/distributed, and never needs the training loop.
FORBIDDEN_PATHS: set[tuple[str, str]] = {("pipelines/loglik", "training")}
# A module path in a string, resolved only when it is used, that may point up: the model registry
# names each kind's trainer ("probgen.training.trainers.vae:VAETrainer"), which only a command that
# trains resolves; importing the registry still imports no training code (tests/models/test_registry.py).
LAZY_UP: set[tuple[str, str]] = {("models/registry.py", "probgen.training.trainers.")}
NEVER_IMPORTED = ("experiments", "tests")  # nothing under probgen/ imports these


# "probgen.models.vae:vae_from_checkpoint" or "probgen.pipelines.fit_vae": a module named for importlib
LAZY = re.compile(r"probgen(\.\w+)+(:\w+)?")


def imported_modules(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """(line, dotted module, lazy) for every import in ``tree``; ``from probgen import X`` gives ``probgen.X``.

    A string constant that is a module path (``"probgen.x.y"`` or ``"probgen.x.y:attr"``, what
    ``importlib.import_module`` or a registry of lazy loaders takes) counts as an import too.
    """
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and LAZY.fullmatch(node.value):
            found.append((node.lineno, node.value.partition(":")[0], True))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, False) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "probgen":
                found += [(node.lineno, f"probgen.{a.name}", False) for a in node.names]
            else:
                found.append((node.lineno, node.module, False))
    return found


def component(module: str, root: Path) -> str | None:
    """``probgen.training.loop`` -> ``training``; a name re-exported by the package root -> ``__init__``."""
    parts = module.split(".")
    if parts[0] != "probgen":
        return None
    if len(parts) == 1:
        return API
    known = parts[1] in LAYERS or (root / parts[1]).is_dir() or (root / f"{parts[1]}.py").exists()
    return parts[1] if known else API


def violations(root: Path) -> list[str]:
    """Every import under ``root`` (a probgen/ tree) that runs up the layers, or that breaks a rule."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        src = rel.parts[0].removesuffix(".py")
        for line, module, lazy in imported_modules(ast.parse(path.read_text(), filename=str(path))):
            where = f"probgen/{rel.as_posix()}:{line} imports {module}"
            if module.split(".")[0] in NEVER_IMPORTED:
                bad.append(f"{where}: nothing under probgen/ imports {module.split('.')[0]}/")
                continue
            tgt = component(module, root)
            if tgt is None or tgt == src or src == API:
                continue
            if lazy and any(rel.as_posix() == p and module.startswith(m) for p, m in LAZY_UP):
                continue
            if tgt == API:
                bad.append(f"{where}: the public API (probgen/__init__.py) is for users; import the module itself")
            elif src not in LAYERS or tgt not in LAYERS:
                unknown = src if src not in LAYERS else tgt
                bad.append(f"{where}: probgen/{unknown} has no layer; add it to LAYERS in {Path(__file__).name}")
            elif LAYERS[tgt] > LAYERS[src]:
                bad.append(f"{where}: {src} (layer {LAYERS[src]}) must not import {tgt} (layer {LAYERS[tgt]})")
            elif (src, tgt) in FORBIDDEN:
                bad.append(f"{where}: {src} must not import {tgt}")
            elif any(rel.as_posix().startswith(p) and tgt == t for p, t in FORBIDDEN_PATHS):
                bad.append(f"{where}: {rel.as_posix().removesuffix('.py')} must not import {tgt}")
    return bad


def test_probgen_imports_flow_down_the_layers():
    bad = violations(PACKAGE)
    assert not bad, "imports that run back up:\n" + "\n".join(bad)


def test_every_top_level_module_has_a_layer():
    names = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert names - {API} <= set(LAYERS), f"no layer for {sorted(names - {API} - set(LAYERS))}"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    "path, source, reason",
    [
        (
            "training/loop.py",
            "from probgen.pipelines.fit_vae import load_vae\n",
            "training (layer 3) must not import pipelines",
        ),
        ("models/vae.py", "def f():\n    import probgen.training.loop\n", "models (layer 2) must not import training"),
        ("inference/hmc.py", "from probgen.models.vae import VAE\n", "inference must not import models"),
        ("metrics/fid.py", "from probgen.models import dcgan\n", "metrics must not import models"),
        ("data/base.py", "from probgen import pipelines\n", "data (layer 1) must not import pipelines"),
        ("utils/io.py", "import experiments.r5\n", "nothing under probgen/ imports experiments"),
        ("pipelines/sample.py", "from probgen import fit\n", "the public API"),
        ("cli.py", "from probgen.newpkg import x\n", "probgen/newpkg has no layer"),
        ("models/registry.py", 'LOADERS = {"vae": "probgen.pipelines.fit_vae:load_vae"}\n', "models (layer 2)"),
        ("utils/io.py", "from probgen.checkpoint import atomic_write\n", "utils must not import checkpoint"),
        ("models/registry.py", "from probgen.training.trainers.vae import VAETrainer\n", "models (layer 2)"),
        ("models/vae.py", 'T = "probgen.training.trainers.vae:VAETrainer"\n', "models (layer 2)"),
        ("utils/rundir.py", "from probgen.config import RunConfig\n", "utils must not import config"),
        ("utils/tb.py", "from probgen.plots import grid_tensor\n", "utils must not import plots"),
        ("pipelines/loglik.py", "from probgen.training.distributed import Dist\n", "pipelines/loglik must not import"),
        ("pipelines/loglik_plan.py", "import probgen.training.loop\n", "pipelines/loglik_plan must not import"),
    ],
)
def test_an_import_running_up_is_reported(tmp_path, path, source, reason):
    bad = violations(_tree(tmp_path, {path: source, "newpkg/__init__.py": ""}))
    assert len(bad) == 1 and reason in bad[0], bad


def test_imports_down_or_sideways_are_allowed(tmp_path):
    files = {
        "pipelines/fit.py": "from probgen.training.loop import fit\nfrom probgen.models.vae import VAE\n",
        "training/loop.py": "from probgen.inference.svi.step import svi_step\nfrom probgen.checkpoint import save\n",
        "models/vae.py": "from probgen.inference import elbo\nfrom probgen.config import VAEConfig\n",
        "checkpoint.py": "from probgen import __version__\nimport torch\n",
        "__init__.py": "from probgen.pipelines.fit import fit\n",
    }
    assert violations(_tree(tmp_path, files)) == []


EXPERIMENTS = PACKAGE.parent / "experiments"


def private_probgen_imports(root: Path) -> list[str]:
    """``from probgen... import _name`` (or from a private module) in the scripts under ``root``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.ImportFrom) or node.level:
                continue
            module = node.module or ""
            if module != "probgen" and not module.startswith("probgen."):
                continue
            private_module = any(part.startswith("_") for part in module.split("."))
            for alias in node.names:
                if private_module or alias.name.startswith("_"):
                    found.append(f"{path.relative_to(root)}:{node.lineno} {module}.{alias.name}")
    return found


def test_experiments_import_no_private_probgen_name():
    assert private_probgen_imports(EXPERIMENTS) == []


def test_a_private_import_in_an_experiment_is_reported(tmp_path):
    (tmp_path / "bench.py").write_text(
        "from probgen import fit\nfrom probgen.inference.loglik.ais import _private, ais\n"
    )
    assert private_probgen_imports(tmp_path) == ["bench.py:2 probgen.inference.loglik.ais._private"]
