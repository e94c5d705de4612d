"""Shared fixtures. Tiny configs and flags live in tests/factories.py (test modules import that, never this)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from probgen.config import DataConfig, FitVAEConfig, RunConfig, TrainConfig, VAEConfig
from tests.factories import SMALL_FIT_VAE, TINY_FLAGS, tiny_vae_config  # noqa: F401  (older imports)


@pytest.fixture(autouse=True)
def _no_real_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never see a developer's $PROBGEN_DATA: the procedural/fixture paths are what is tested."""
    monkeypatch.setenv("PROBGEN_DATA", str(tmp_path / "probgen-data"))


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny tensors: one thread avoids OpenMP spin-waits on a shared 2-core machine (20x slower under load).

    A module opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_vae_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dSprites VAE at 32 px trained for a few steps, shared by the plot and metric tests (read-only)."""
    from probgen.training.trainers.vae import fit_vae

    out = tmp_path_factory.mktemp("tiny-vae") / "run"
    cfg = FitVAEConfig(
        data=DataConfig(dataset="dsprites", limit=640, image_size=32, data_root=str(out.parent / "no-data")),
        model=VAEConfig(conv_channels=(8, 8, 8), hidden_dims=(32,), latent_dim=3),
        train=TrainConfig(epochs=1, batch_size=32, eval_batch_size=128, lr=2e-3, max_steps=12),
        run=RunConfig(out=str(out), progress=False),
    )
    return fit_vae(cfg) / "checkpoint.pt"


@pytest.fixture
def interrupt_fit(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """``interrupt_fit(k)``: the next `fit vae` gets a Ctrl-C (SIGINT) during step k, so it saves its
    checkpoint at step k and stops as an interrupted run does; later fits run normally."""
    from probgen.training.trainers.vae import VAETrainer

    def arm(step: int) -> None:
        train_step = VAETrainer.train_step
        fired = False

        def interrupted(self: VAETrainer, idx: object, check: object) -> object:
            nonlocal fired
            if not fired and self.step == step - 1:
                fired = True
                signal.raise_signal(signal.SIGINT)
            return train_step(self, idx, check)

        monkeypatch.setattr(VAETrainer, "train_step", interrupted)

    return arm
