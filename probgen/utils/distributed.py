"""The process group of a torchrun job, its collectives, and sharded work over data points.

:class:`Dist` is this process's place in the job (``world_size == 1``: an ordinary process, every
collective the identity); :func:`distributed_session` joins the job that torchrun describes for the
duration of a command. :func:`shard_range` splits points over ranks, :func:`to_host` and
:func:`gather_rows` bring per-point results back in order. Training (:mod:`probgen.training.distributed`)
and evaluation (`probgen loglik`) share it, so neither needs the other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyro
import torch
import torch.distributed as tdist

from probgen.errors import UserError

log = logging.getLogger("probgen")

STOP_POLL_STEPS = 20  # ranks agree on Ctrl-C/SIGTERM every this many steps (one tiny host all-reduce)


@dataclass
class Dist:
    """This process's place in the job; ``world_size == 1`` is an ordinary single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The CUDA device of this rank (``cuda:LOCAL_RANK``); other devices unchanged."""
        if self.enabled and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    # --- collectives (identity in a single process) ------------------------------------------------

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum of ``t`` over ranks (a new tensor; ``t`` itself in a single process)."""
        if not self.enabled:
            return t
        out = t.detach().clone()
        tdist.all_reduce(out)  # NCCL for a GPU tensor (stays on the device), gloo for a host one
        return out

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        tdist.all_gather_object(out, obj)  # through gloo: objects never touch the GPU
        return out

    def gather_to_main(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0, in rank order (None on the other ranks): for large results."""
        if not self.enabled:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        tdist.gather_object(obj, out, dst=0)
        return out

    def from_main(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on rank 0 only and give every rank its result.

        An exception on rank 0 is raised on every rank (a UserError as the same one-line UserError),
        so that no rank waits forever for a result that will never come.
        """
        if not self.enabled:
            return fn()
        box: list[Any] = [None]
        error: BaseException | None = None
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except UserError as exc:
                error, box[0] = exc, ("user", str(exc))
            except BaseException as exc:
                error, box[0] = exc, ("bug", f"rank 0 failed: {type(exc).__name__}: {exc}")
        tdist.broadcast_object_list(box, src=0)
        status, value = box[0]
        if error is not None:
            raise error
        if status == "user":
            raise UserError(value)
        if status == "bug":
            raise RuntimeError(value)
        return value

    def stop_requested(self, stop: Any, step: int) -> bool:
        """Whether to stop now: ``stop.requested``, agreed over ranks every STOP_POLL_STEPS steps.

        Ranks receive Ctrl-C or SIGTERM at slightly different steps; they must stop (and save) at
        the same one, or the next collective would wait forever.
        """
        if not self.enabled:
            return bool(stop.requested)
        if step % STOP_POLL_STEPS:
            return False
        flag = torch.tensor([int(stop.requested)])
        tdist.all_reduce(flag, op=tdist.ReduceOp.MAX)
        return bool(flag.item())  # host tensor: no device sync


# --- set-up --------------------------------------------------------------------------------------


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: torch.device, timeout_s: float = 1800.0) -> Dist:
    """Join the torchrun job described by RANK / WORLD_SIZE / LOCAL_RANK (a single process without them).

    For a CUDA run the process group routes GPU tensors through NCCL and host tensors (flags,
    pickled objects) through gloo (``cpu:gloo,cuda:nccl``), so host-side agreement never touches the
    GPU stream, and a run resumed on the CPU still finds a CPU backend. A CPU run uses gloo.
    """
    world = env_world_size()
    if world <= 1:
        return Dist()
    try:
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError):
        raise UserError("WORLD_SIZE is set but RANK is not: start distributed runs with torchrun") from None
    if not tdist.is_available():
        raise UserError("this torch build has no torch.distributed support")
    cuda = device.type == "cuda"
    if cuda:
        if local >= torch.cuda.device_count():
            raise UserError(
                f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPUs: "
                "--nproc-per-node must not exceed the GPUs per node"
            )
        torch.cuda.set_device(local)
    if not tdist.is_initialized():
        kw: dict[str, Any] = {"timeout": timedelta(seconds=timeout_s)}
        if cuda:
            kw["device_id"] = torch.device("cuda", local)
        tdist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", **kw)
    pyro.settings.set(module_local_params=True)  # PyroModule params stay in their module (DDP needs that)
    return Dist(rank=rank, world_size=world, local_rank=local)


@contextlib.contextmanager
def distributed_session(device: torch.device) -> Iterator[Dist]:
    """:func:`init_distributed` for the duration of a command; other ranks log warnings only.

    The process group (if this call created it) and Pyro's module_local_params setting are
    restored on exit.
    """
    created = env_world_size() > 1 and tdist.is_available() and not tdist.is_initialized()
    local_params = pyro.settings.get("module_local_params")
    dist = init_distributed(device)
    level = log.level
    if not dist.is_main:
        log.setLevel(logging.WARNING)
    try:
        yield dist
    finally:
        log.setLevel(level)
        pyro.settings.set(module_local_params=local_params)
        if created and tdist.is_initialized():
            tdist.destroy_process_group()


# --- sharded evaluation ----------------------------------------------------------------------------


def shard_range(n: int, rank: int, world_size: int) -> range:
    """Rank ``rank``'s contiguous share of ``range(n)``; the first ``n % W`` ranks get one more."""
    base, extra = divmod(n, world_size)
    lo = rank * base + min(rank, extra)
    return range(lo, lo + base + (rank < extra))


def to_host(obj: Any) -> Any:
    """``obj`` with every tensor moved to the CPU (in dicts, lists, tuples and dataclasses).

    Pickled GPU tensors would come back on the sender's GPU; results are gathered on the host.
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: to_host(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
        return dataclasses.replace(obj, **fields)
    if isinstance(obj, dict):
        return {k: to_host(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_host(v) for v in obj)
    return obj


def gather_rows(local: torch.Tensor, dist: Dist) -> torch.Tensor:
    """Concatenate every rank's per-point rows (dim 0) in rank order, on the host.

    With :func:`shard_range` shards the result is in the original order of the data points.
    """
    parts = dist.all_gather(local.detach().cpu())
    return torch.cat(parts, dim=0)
