"""The whole SVI step as one CUDA graph: Pyro's tracing, the backward pass and Adam, replayed per step.

On a GPU a small VAE's step is bound by Python, not by the GPU: Pyro traces model and guide,
autograd and Adam launch a few hundred small kernels, each from Python. The step has fixed shapes
and no host sync (tests/inference/svi/test_step.py), so it can be captured once and replayed: a replay
launches every kernel of the step with no Python at all.

What the captured step reads and writes lives in static buffers: the batch is copied into ``x``,
``beta`` is a device scalar (so an annealing schedule keeps working), and the loss and the
(loss, recon, kl) terms come out in ``loss`` and ``terms``. Random draws come from the CUDA
generator, which a replay advances like an eager step, so every step gets fresh noise and the
generator state in a checkpoint continues the stream.

This follows the whole-network capture recipe of the PyTorch CUDA-graph notes: warm-up steps on a
side stream, gradients set to None before capture (the captured backward allocates them from the
graph's pool), Adam with ``capturable=True`` (its step counters on the device).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from probgen.inference.svi.step import svi_step


class GraphedSVIStep:
    """``step(x, beta, check) -> terms``: eager for ``warmup`` calls, then one capture and replays.

    Args:
        loss_fn: Pyro's ``elbo(model, guide)`` module; called as ``loss_fn(x, beta)``.
        elbo: the ELBO object whose ``last_terms`` hold (loss, recon, kl) after a call.
        optim: the optimiser; must be ``torch.optim.Adam(..., capturable=True)`` (or another
            capturable one) over CUDA parameters.
        warmup: eager steps before the capture (cuDNN autotuning, allocator, Pyro's first trace).

    The returned ``terms`` tensor is overwritten by the next replay: consume it before the next call.
    ``check`` (the NaN guard) runs after the replay, i.e. after the update; the GPU guard only
    records the step, and the trainer refuses to save once it has fired.
    """

    def __init__(
        self, loss_fn: Callable[..., torch.Tensor], elbo: object, optim: torch.optim.Optimizer, warmup: int = 3
    ):
        if not all(g.get("capturable", False) for g in optim.param_groups):
            raise ValueError("GraphedSVIStep needs an optimiser created with capturable=True")
        self.loss_fn, self.elbo, self.optim, self.warmup = loss_fn, elbo, optim, warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.x = self.beta = self.loss = self.terms = torch.empty(0)

    def __call__(
        self, x: torch.Tensor, beta: float, check: Callable[[torch.Tensor], None] | None = None
    ) -> torch.Tensor:
        if self.graph is None and self.calls < self.warmup:
            self.calls += 1
            side = torch.cuda.Stream(x.device)
            side.wait_stream(torch.cuda.current_stream(x.device))
            with torch.cuda.stream(side):
                terms = svi_step(self.loss_fn, self.elbo, self.optim, x, beta, check)
            torch.cuda.current_stream(x.device).wait_stream(side)
            return terms
        if self.graph is None:
            self._capture(x)
        self.x.copy_(x)
        self.beta.fill_(beta)
        self.graph.replay()  # type: ignore[union-attr]
        if check is not None:
            check(self.loss)
        return self.terms

    def _capture(self, x: torch.Tensor) -> None:
        self.x = x.clone()
        self.beta = torch.ones((), device=x.device)
        self.optim.zero_grad(set_to_none=True)  # the captured backward allocates the gradients
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss = self.loss_fn(self.x, self.beta)
            loss.backward()
            self.optim.step()
            t = self.elbo.last_terms  # type: ignore[attr-defined]
            self.loss = loss.detach()
            self.terms = torch.stack([t["loss"], t["recon"], t["kl"]])
        self.graph = graph
