"""Training under DDP: gradients averaged over ranks, and the noise of each rank's slice of the global batch.

A rank's images are its slice of the global batch (:mod:`probgen.training.distributed`); every random
draw that has a row per image (Pyro latents, a GAN's z, a Bernoulli resample) is drawn for the whole
global batch from the common RNG stream and sliced, so each image gets the value a single process
would give it. Gradients of a loss that is a sum over images are scaled by W (DDP averages);
gradients of a per-batch mean need no scaling.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from pyro.poutine.messenger import Messenger
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from probgen.utils.distributed import Dist

log = logging.getLogger("probgen")


class GlobalBatchNoise(Messenger):
    """Draw each latent in ``plate`` for the whole global batch and keep this rank's slice.

    A site with batch shape (b, ...) whose leftmost batch dim is the data plate is sampled from the
    same distribution expanded to (W, b, ...); rank r keeps row r. The RNG produces the W*b draws
    in the order a single process would for its (W*b, ...) batch, so rank r's values are exactly the
    single process's values for global rows r*b .. (r+1)*b - 1.
    """

    def __init__(self, rank: int, world_size: int, plate: str = "data"):
        super().__init__()
        self.rank, self.world_size, self.plate = rank, world_size, plate

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        if msg["is_observed"] or msg["value"] is not None:
            return
        frame = next((f for f in msg["cond_indep_stack"] if f.name == self.plate), None)
        if frame is None:
            return  # a global latent: every rank draws the same value from the common stream
        fn = msg["fn"]
        if len(fn.batch_shape) != -frame.dim:
            raise NotImplementedError(
                f"site {msg['name']!r}: the {self.plate!r} plate must be the leftmost batch dim to shard its noise"
            )
        big = fn.expand(torch.Size([self.world_size]) + fn.batch_shape)
        msg["value"] = (big.rsample() if fn.has_rsample else big.sample())[self.rank]


def global_batch_draw(draw: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, dist: Dist) -> torch.Tensor:
    """``draw(x)`` for this rank's slice ``x`` of the global batch, as a single process would draw it.

    ``draw`` is an elementwise random op (``torch.bernoulli``); it runs on ``x`` repeated W times, so
    the RNG produces the whole global batch's draws in a single process's order, and row ``rank``
    is kept. In a single process this is ``draw(x)``.
    """
    if not dist.enabled:
        return draw(x)
    return draw(x.expand(dist.world_size, *x.shape))[dist.rank]


class MethodModule(nn.Module):
    """``owner.<method>`` as an ``nn.Module``, so that Pyro's ELBOModule (and DDP) see owner's parameters."""

    def __init__(self, owner: nn.Module, method: str, noise: tuple[int, int] | None = None):
        super().__init__()
        self.owner = owner
        self.method = method
        self.noise = noise

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(self.owner, self.method)
        if self.noise is None:
            return fn(*args, **kwargs)
        with GlobalBatchNoise(*self.noise):
            return fn(*args, **kwargs)


def distributed_loss(
    elbo: Any, owner: nn.Module, dist: Dist, device: torch.device, model: str = "model", guide: str = "guide"
) -> Callable[..., torch.Tensor]:
    """The DDP-wrapped ``elbo(model, guide)`` loss of ``owner``, scaled so gradients equal one process's.

    Returns ``loss_fn(*args)``: W times this rank's ELBO loss (its batch slice); DDP's gradient
    average over the W ranks is then the gradient of the loss summed over the global batch.
    """
    module = elbo(MethodModule(owner, model), MethodModule(owner, guide, noise=(dist.rank, dist.world_size)))
    ddp = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    scale = float(dist.world_size)

    def loss_fn(*args: Any, **kwargs: Any) -> torch.Tensor:
        return ddp(*args, **kwargs) * scale

    loss_fn.ddp = ddp  # type: ignore[attr-defined]
    return loss_fn


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm statistics over the global batch (SyncBatchNorm) on GPUs.

    torch's SyncBatchNorm runs on GPUs only; on the CPU each rank normalises with its own slice,
    so a run with --batch-norm is not identical to a single process there (it warns).
    """
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
    if not has_bn:
        return module
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    log.warning("batch norm on CPU ranks: statistics are per rank slice, not over the global batch")
    return module


def ddp_module(module: nn.Module, dist: Dist, device: torch.device) -> nn.Module:
    """``module`` wrapped in DistributedDataParallel under torchrun (gradients averaged over ranks); else itself."""
    if not dist.enabled:
        return module
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def global_batch_rows(draw: Callable[[int], torch.Tensor], n: int, dist: Dist) -> torch.Tensor:
    """``draw(n)`` for this rank's ``n`` rows of the global batch, as a single process would draw them.

    ``draw(m)`` returns m rows from the global RNG (e.g. a GAN's noise z); it is called for all W * n
    rows, and rows ``rank * n .. (rank + 1) * n - 1`` are kept.
    """
    if not dist.enabled:
        return draw(n)
    return draw(n * dist.world_size)[dist.rank * n : (dist.rank + 1) * n]
