"""Several processes, one result: torchrun + DistributedDataParallel for SVI, sharded evaluation.

``torchrun --nproc-per-node N -m probgen fit vae ...`` starts N processes; each reads RANK,
WORLD_SIZE and LOCAL_RANK from its environment (:func:`init_distributed`) and joins a process group
(NCCL on GPUs, gloo on CPUs). A run with several processes computes what one process computes:

- **Batches.** ``--batch-size`` is the global batch B. Step i uses the images
  ``perm[i*B : (i+1)*B]`` of the epoch's permutation, as in one process; rank r takes the r-th of
  W equal slices of them (B must divide by W).
- **Noise.** Every rank keeps the same torch RNG stream as a single process would. Latents inside
  ``pyro.plate("data")`` are drawn for the whole global batch and each rank keeps its slice
  (:class:`GlobalBatchNoise`), so the reparameterised z of an image is the one a single process
  would draw. Every rank also runs the (unsharded) test evaluation, which keeps the streams in step.
- **Gradients.** Pyro's ``Trace_ELBO(...)(model, guide)`` is an ``nn.Module`` (``ELBOModule``);
  DDP wraps it and averages gradients over ranks. The ELBO is a sum over images, so each rank's
  loss is multiplied by W: the average of W * (sum over a slice) is the sum over the global batch.
- **Epoch sums** stay on each device and are all-reduced only when a row of losses.csv is written
  or a checkpoint is saved.
- **Writes.** Only rank 0 prepares the run directory and writes files; it also loads the
  checkpoint on resume and broadcasts it, so the other nodes need no shared file system (only the
  dataset). Each rank's RNG state is stored in the checkpoint, so a resumed run continues every
  stream; with another number of processes the common stream of rank 0 is used.

So parameters after N steps equal a single-process run's up to the order of floating-point sums
(tested with gloo and 2 processes on the CPU). The gradient side (DDP wrappers, the sharded noise)
is :mod:`probgen.training.ddp`; the process group itself and sharding over points are
:mod:`probgen.utils.distributed` (evaluation uses them too).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as tdist

from probgen.checkpoint import rng_state, set_rng_state
from probgen.training.guards import NonFiniteGuard
from probgen.utils.distributed import Dist


class DistributedGuard(NonFiniteGuard):
    """The NaN guard of a multi-process run: recorded on the device, checked by all ranks together.

    A rank that raised alone would leave the others waiting in the next collective, so every rank
    records the first bad step without a host sync and the check at checkpoint and epoch boundaries
    is an all-reduce: all ranks raise, before anything is saved.
    """

    def __init__(self, device: torch.device, dist: Dist):
        super().__init__(device)
        self.eager = False
        self.dist = dist

    def raise_if_bad(self) -> None:
        never = torch.iinfo(torch.long).max
        first = torch.where(self.first_bad >= 0, self.first_bad, torch.full_like(self.first_bad, never)).cpu()
        first = first.reshape(1)
        tdist.all_reduce(first, op=tdist.ReduceOp.MIN)
        if int(first) != never:
            self._raise(int(first))


def make_guard(device: torch.device, dist: Dist) -> NonFiniteGuard:
    """The NaN/Inf guard of this process: checked by all ranks together in a multi-process run."""
    return DistributedGuard(device, dist) if dist.enabled else NonFiniteGuard(device)


# --- checkpoint state across ranks ------------------------------------------------------------------


def rank_rng_state(device: torch.device) -> dict[str, Any]:
    """This rank's RNG states: torch CPU, numpy, python, and the CUDA generator of its own device."""
    state = rng_state()
    state.pop("cuda", None)
    if device.type == "cuda":
        state["cuda_device"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(ckpt: dict[str, Any], dist: Dist, device: torch.device) -> None:
    """Set this rank's RNG states from a checkpoint written with any number of processes.

    Same number of ranks: each rank gets its own states back. Otherwise every rank takes rank 0's
    (all ranks share one stream by construction, see the module docstring). A single process
    resuming needs nothing from here: the checkpoint's ``rng`` is rank 0's full state.
    """
    ranks = ckpt.get("rng_ranks")
    if ranks is None:  # written by a single process
        set_rng_state(ckpt["rng"])
        if device.type == "cuda" and "cuda" in ckpt["rng"]:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"][0], device)
        return
    own = ranks[dist.rank] if len(ranks) == dist.world_size else ranks[0]
    set_rng_state(own)  # torch CPU, numpy, python (no "cuda" key: see rank_rng_state)
    if device.type == "cuda" and own.get("cuda_device") is not None:
        torch.cuda.set_rng_state(own["cuda_device"], device)


def global_sums(sums: torch.Tensor, dist: Dist) -> torch.Tensor:
    """Epoch sums over all ranks, on the host: what a checkpoint stores (independent of W)."""
    return dist.all_reduce_sum(sums).cpu()


def local_sums(stored: torch.Tensor, dist: Dist, device: torch.device) -> torch.Tensor:
    """This rank's share of stored global sums: all on rank 0, zeros elsewhere, so they add up again."""
    return stored.to(device) if dist.is_main else torch.zeros_like(stored, device=device)
