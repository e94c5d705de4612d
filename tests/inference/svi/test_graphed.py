"""The CUDA-graph SVI step: refused where it cannot work, equal to the eager step where it can."""

from __future__ import annotations

import pytest
import torch

from probgen.checkpoint import load_checkpoint
from probgen.cli import main
from probgen.config import PerfConfig
from probgen.errors import UserError
from probgen.inference.svi.elbo import make_elbo
from probgen.inference.svi.graphed import GraphedSVIStep
from probgen.inference.svi.step import hot_loop, svi_step
from probgen.models.vae import VAE
from probgen.training.perf import make_train_step
from probgen.training.trainers.vae import fit_vae
from tests.factories import TINY_FLAGS, tiny_vae, tiny_vae_config


def _vae(device: str) -> VAE:
    return tiny_vae(seed=0, latent_dim=4).to(device)


def test_graphed_step_needs_a_capturable_optimiser():
    vae = _vae("cpu")
    elbo = make_elbo("trace")
    with pytest.raises(ValueError, match="capturable=True"):
        GraphedSVIStep(elbo(vae.model, vae.guide), elbo, torch.optim.Adam(vae.parameters()))


def test_cuda_graph_is_refused_without_cuda_or_with_ddp():
    vae = _vae("cpu")
    elbo = make_elbo("trace")
    optim = torch.optim.Adam(vae.parameters())
    perf = PerfConfig(cuda_graph=True)
    with pytest.raises(UserError, match="--cuda-graph: needs a CUDA device"):
        make_train_step(elbo(vae.model, vae.guide), elbo, optim, perf, torch.device("cpu"))
    with pytest.raises(UserError, match="--cuda-graph: not available with torchrun"):
        make_train_step(elbo(vae.model, vae.guide), elbo, optim, perf, torch.device("cuda"), distributed=True)


def test_cuda_graph_flag_errors_are_one_line(capsys):
    assert main(["fit", "vae", "--cuda-graph", "--compile", "default"]) == 2
    assert "--cuda-graph: cannot be combined with --compile" in capsys.readouterr().err


@pytest.mark.gpu
def test_graphed_steps_equal_eager_steps_on_cuda():
    x = [(torch.rand(16, 1, 64, 64, device="cuda") > 0.5).float() for _ in range(8)]
    params = []
    for graphed in (False, True):
        vae = _vae("cuda")
        optim = torch.optim.Adam(vae.parameters(), lr=1e-3, capturable=True)
        elbo = make_elbo("trace")
        loss_fn = elbo(vae.model, vae.guide)
        step = GraphedSVIStep(loss_fn, elbo, optim, warmup=2) if graphed else None
        torch.manual_seed(1)
        with hot_loop():
            for i, xi in enumerate(x):
                beta = 0.5 + 0.05 * i  # a schedule: beta is a device scalar inside the graph
                terms = step(xi, beta) if step else svi_step(loss_fn, elbo, optim, xi, beta)
        assert torch.isfinite(terms).all()
        params.append([p.detach().clone() for p in vae.parameters()])
    for a, b in zip(*params):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_fit_with_cuda_graph_matches_eager(tmp_path):
    eager = fit_vae(tiny_vae_config(tmp_path / "eager", max_steps=12, device="cuda"))
    argv = ["fit", "vae", *TINY_FLAGS, "--device", "cuda", "--lr", "2e-3", "--max-steps", "12", "--cuda-graph"]
    assert main([*argv, "--data-root", str(tmp_path / "no-data"), "--out", str(tmp_path / "graph")]) == 0
    a, b = load_checkpoint(eager / "checkpoint.pt"), load_checkpoint(tmp_path / "graph" / "checkpoint.pt")
    for name, value in a["state"]["model"].items():
        torch.testing.assert_close(b["state"]["model"][name], value, rtol=1e-3, atol=1e-4, msg=name)


def test_cuda_graph_is_only_for_fit_vae(tmp_path):
    from probgen.config import CVAEConfig, FitCVAEConfig, PerfConfig
    from probgen.training.trainers.cvae import CVAETrainer

    base = tiny_vae_config(tmp_path / "cvae")
    cfg = FitCVAEConfig(data=base.data, model=base.model, cvae=CVAEConfig(), train=base.train, run=base.run)
    cfg.perf = PerfConfig(cuda_graph=True)
    with pytest.raises(UserError, match="--cuda-graph: only for `fit vae`"):
        CVAETrainer(cfg, tmp_path / "cvae", False)
