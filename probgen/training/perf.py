"""Optional speed settings of a training run (``PerfConfig``): layout, precision, compilation.

Each is off by default unless measured to help; docs/scale.md lists what each one measured.
None of them changes the parameters' names, so checkpoints load with or without them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from probgen.config import PerfConfig, flag
from probgen.errors import UserError
from probgen.inference.svi.graphed import GraphedSVIStep
from probgen.inference.svi.step import svi_step

log = logging.getLogger("probgen")


def set_backend_flags(perf: PerfConfig, device: torch.device) -> None:
    """Process-wide CUDA switches (TF32, cuDNN autotuning); nothing happens on the CPU."""
    if device.type != "cuda":
        return
    if perf.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if perf.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True


def autocast_forward(module: nn.Module, device_type: str, dtype: torch.dtype) -> None:
    """Run ``module``'s forward under autocast and return float32 tensors.

    Only the networks run in low precision: the distributions built on their outputs (log-densities
    summed over 4096 pixels, the KL) stay float32. The forward is replaced on the instance, so
    parameter names and state dicts are unchanged.
    """
    forward = module.forward

    @functools.wraps(forward)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type, dtype=dtype, cache_enabled=False):  # no weight cache: CUDA-graph safe
            out = forward(*args, **kwargs)
        return _to_float(out)

    module.forward = wrapped  # type: ignore[method-assign]


def _to_float(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.float()
    if isinstance(out, tuple):
        return tuple(_to_float(o) for o in out)
    return out


def apply_speed_options(nets: list[nn.Module], perf: PerfConfig, device: torch.device) -> None:
    """Apply ``perf``'s channels_last / amp / compile settings to ``nets`` (in place) and the backend flags."""
    set_backend_flags(perf, device)
    if perf.amp == "bf16":
        if device.type == "cpu" and not torch.backends.mkldnn.is_available():
            raise UserError(f"{flag('amp')} bf16: this CPU build has no bf16 kernels (oneDNN); use --amp none")
        for net in nets:
            autocast_forward(net, device.type, torch.bfloat16)
    for net in nets:
        if perf.channels_last:
            net.to(memory_format=torch.channels_last)
        if perf.compile != "none":
            net.compile(mode=perf.compile)  # in place: keeps the parameter names of the checkpoint
    on = [
        name
        for name, active in (
            ("channels_last", perf.channels_last),
            ("tf32", perf.tf32 and device.type == "cuda"),
            ("cudnn_benchmark", perf.cudnn_benchmark and device.type == "cuda"),
            (f"amp {perf.amp}", perf.amp != "none"),
            (f"compile {perf.compile}", perf.compile != "none"),
            ("cuda_graph", perf.cuda_graph),
        )
        if active
    ]
    if on:
        log.info("speed options: %s", ", ".join(on))


def make_train_step(
    loss_fn: Callable[..., torch.Tensor],
    elbo: object,
    optim: torch.optim.Optimizer,
    perf: PerfConfig,
    device: torch.device,
    distributed: bool = False,
) -> Callable[..., torch.Tensor]:
    """``step(x, beta, check) -> (loss, recon, kl)``: :func:`svi_step`, or its CUDA-graph replay."""
    if not perf.cuda_graph:
        return functools.partial(svi_step, loss_fn, elbo, optim)
    if device.type != "cuda":
        raise UserError(f"{flag('cuda_graph')}: needs a CUDA device (got {device})")
    if distributed:
        raise UserError(f"{flag('cuda_graph')}: not available with torchrun (DDP's all-reduce is not captured)")
    return GraphedSVIStep(loss_fn, elbo, optim)


def adam_kwargs(perf: PerfConfig, device: torch.device) -> dict[str, Any]:
    """Extra Adam settings: a CUDA-graph step needs its step counters on the device (capturable)."""
    return {"capturable": True} if perf.cuda_graph and device.type == "cuda" else {}
