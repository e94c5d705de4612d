"""The SVI training step reads nothing back from the device (no per-step host sync)."""

from __future__ import annotations

import functools

import pytest
import torch

from probgen.config import VAEConfig
from probgen.inference.svi.elbo import make_elbo
from probgen.inference.svi.step import hot_loop, svi_step
from probgen.models.vae import VAE
from probgen.training.batches import DeviceBatches
from probgen.training.guards import NonFiniteGuard
from tests.host_reads import count_host_reads


def _setup(device: torch.device):
    torch.manual_seed(0)
    cfg = VAEConfig(likelihood="bernoulli", conv_channels=(8, 8, 8, 8), hidden_dims=(32,), latent_dim=4)
    vae = VAE(cfg, (1, 64, 64)).to(device)
    optim = torch.optim.Adam(vae.parameters(), lr=1e-3)
    elbo = make_elbo("trace")
    images = (torch.rand(64, 1, 64, 64) > 0.5).to(torch.uint8) * 255
    batches = DeviceBatches(images, device, 16)
    return vae, optim, elbo, elbo(vae.model, vae.guide), batches


def _train(steps: int, device: torch.device, optim, elbo, loss_fn, batches, guard, sums) -> None:  # noqa: ANN001
    it = batches.epoch(torch.randperm(64), 0)
    for step in range(steps):
        x = batches.images(next(it))
        terms = svi_step(loss_fn, elbo, optim, x, 1.0, functools.partial(guard.check, step=step))
        sums += terms.double()


def test_training_step_makes_no_host_reads():
    device = torch.device("cpu")
    vae, optim, elbo, loss_fn, batches = _setup(device)
    guard = NonFiniteGuard(device)
    guard.eager = False  # the GPU path: the CPU guard's immediate check is a host read by design
    sums = torch.zeros(3, dtype=torch.float64)
    with hot_loop():
        _train(1, device, optim, elbo, loss_fn, batches, guard, sums)  # Pyro's first call guesses plate nesting
        # Adam keeps its step counters on the host (unless capturable): reading them costs no sync
        steps = {id(s["step"]) for s in optim.state.values()}
        with count_host_reads(steps) as counts:
            _train(3, device, optim, elbo, loss_fn, batches, guard, sums)
    assert dict(counts) == {}
    assert torch.isfinite(sums).all()


def test_the_counter_sees_host_reads():  # the test above could not fail without this
    with count_host_reads(set()) as counts:
        t = torch.ones(3)
        t.sum().item()
        bool(t.all())
    assert counts == {"item": 1, "__bool__": 1}


@pytest.mark.gpu
def test_training_step_never_syncs_on_cuda():
    device = torch.device("cuda")
    vae, optim, elbo, loss_fn, batches = _setup(device)
    guard = NonFiniteGuard(device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    with hot_loop():
        _train(2, device, optim, elbo, loss_fn, batches, guard, sums)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            _train(3, device, optim, elbo, loss_fn, batches, guard, sums)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    guard.raise_if_bad()
