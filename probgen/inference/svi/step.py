"""One SVI step: Pyro's ELBO as a torch module, a torch optimiser, no host sync.

``Trace_ELBO()(model, guide)`` is Pyro's ``ELBOModule``: calling it returns the differentiable loss,
so SVI is ``loss.backward(); optimizer.step()`` over the module's parameters. This is the same path
DistributedDataParallel wraps, and it keeps optimiser state in a plain ``state_dict``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pyro
import torch


@contextlib.contextmanager
def hot_loop() -> Iterator[None]:
    """Pyro's argument validation off while training.

    Validation re-checks distribution arguments and model/guide sites on every step (about 4 ms
    of Python per step on a 2-core CPU, more than the whole rest of Pyro's overhead). probgen's
    models are fixed and their sites are checked by the test suite with validation on, and the
    NaN guard of the trainer replaces Pyro's NaN warnings.
    """
    with pyro.validation_enabled(False):
        yield


def svi_step(
    loss_fn: Callable[..., torch.Tensor],
    elbo: object,
    optim: torch.optim.Optimizer,
    x: torch.Tensor,
    beta: float,
    check: Callable[[torch.Tensor], None] | None = None,
    terms: tuple[str, ...] = ("loss", "recon", "kl"),
) -> torch.Tensor:
    """Take one optimiser step on ``x``; returns the detached batch sums ``terms`` of ``elbo.last_terms``.

    ``check`` sees the loss after the backward pass and before the update (the NaN guard), so a
    bad step never reaches the parameters.
    """
    loss = loss_fn(x, beta)
    optim.zero_grad(set_to_none=True)
    loss.backward()
    if check is not None:
        check(loss)
    optim.step()
    t = elbo.last_terms  # type: ignore[attr-defined]
    return torch.stack([t[name] for name in terms])
