"""An EMA copy of a network whose update never reads from the device.

``torch.optim.swa_utils.AveragedModel.update_parameters`` tests its ``n_averaged`` buffer with
``bool(n_averaged == 0)`` and ``if n_averaged > 0`` on every call: two host syncs per training step
on a GPU. :class:`DeviceEMA` is the same module (same state dict, same arithmetic: the EMA
``multi_avg_fn`` of ``get_ema_multi_avg_fn``) with that count mirrored on the host, read back once
after a ``load_state_dict``.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class DeviceEMA(AveragedModel):
    """``AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)`` without syncs."""

    def __init__(self, model: nn.Module, decay: float):
        super().__init__(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self._count: int | None = 0  # host mirror of n_averaged; None: read it at the next update

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        out = super().load_state_dict(*args, **kwargs)
        self._count = None
        return out

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        if self._count is None:
            self._count = int(self.n_averaged)  # once after a restore, not once per step
        ema = [p.detach() for p in itertools.chain(self.module.parameters(), self.module.buffers())]
        current = [p.detach().to(e.device) for p, e in zip(itertools.chain(model.parameters(), model.buffers()), ema)]
        if self._count == 0:
            for e, c in zip(ema, current, strict=True):
                e.copy_(c)
        else:
            groups: dict[tuple[torch.device, torch.dtype], tuple[list, list]] = {}
            for e, c in zip(ema, current, strict=True):  # foreach kernels want one device and dtype per call
                es, cs = groups.setdefault((e.device, e.dtype), ([], []))
                es.append(e)
                cs.append(c)
            for (device, _), (es, cs) in groups.items():
                self.multi_avg_fn(es, cs, self.n_averaged.to(device))  # type: ignore[misc]
        self.n_averaged += 1
        self._count += 1
