"""DeviceEMA equals torch's AveragedModel EMA, and the GAN step (EMA included) reads nothing back."""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from probgen.training.ema import DeviceEMA
from probgen.training.guards import NonFiniteGuard
from probgen.training.trainers.gan import GANTrainer
from tests.factories import tiny_gan_config
from tests.host_reads import count_host_reads


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


def _perturb(net: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    net.train()(x)  # moves the BatchNorm buffers, including the integer num_batches_tracked


def test_device_ema_equals_averaged_model_and_survives_a_restore():
    net = _net()
    ours, ref = DeviceEMA(net, 0.9), AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    x = torch.randn(5, 1, 8, 8)
    for step in range(4):
        _perturb(net, x)
        ours.update_parameters(net)
        ref.update_parameters(net)
        if step == 1:  # a resumed run: state dict in, the host count read back once
            restored = DeviceEMA(_net(), 0.9)
            restored.load_state_dict(ours.state_dict())
            ours = restored
    assert list(ours.state_dict()) == list(ref.state_dict())
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), name


def test_gan_training_step_with_ema_makes_no_host_reads(tmp_path):
    cfg = tiny_gan_config(tmp_path / "run", tmp_path / "cache", ema_decay=0.99)
    trainer = GANTrainer(cfg, tmp_path / "run", False)
    guard = NonFiniteGuard(trainer.device)
    guard.eager = False  # the GPU path: the CPU guard's immediate check is a host read by design
    idx = torch.arange(32)
    check = functools.partial(guard.check, step=0)
    trainer.train_step(idx, check)  # first step: the EMA copies, Adam creates its state
    steps = {id(s["step"]) for opt in (trainer.opt_d, trainer.opt_g) for s in opt.state.values()}
    with count_host_reads(steps) as counts:
        for _ in range(2):
            values = trainer.train_step(idx, check)
            trainer.step_log.record(trainer.step, 1, values)
    assert dict(counts) == {}
