"""Training batches: kept on the device when the images fit, streamed through a DataLoader when not.

Where the images live is decided once per run (:func:`plan_placement`):

- ``device``: the uint8 images sit on the training device; a batch is one indexing op (no DataLoader,
  no worker processes, no host-to-device copy per step).
- ``packed``: binary images sit on the device at 1 bit per pixel (dSprites: 3.0 GB as uint8,
  377 MB packed); a batch is indexed and unpacked on the device.
- ``stream``: the uint8 images stay in host memory; a DataLoader with worker processes gathers each
  batch, copies it into page-locked memory and the copy to the GPU overlaps compute.

Every placement yields the same batches, bit for bit: batch ``i`` of epoch ``e`` holds the images
``perm[i * B : (i + 1) * B]`` of the epoch's permutation (``B`` the global batch), and with several
processes rank ``r`` of ``W`` takes the ``r``-th of the ``W`` equal slices of it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from probgen.config import PerfConfig, flag
from probgen.data import to_unit
from probgen.errors import UserError

log = logging.getLogger("probgen")

_PACK_CHUNK = 16384  # images packed per step on the host: bounds the temporary (chunk, pixels) bool tensor
_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8)  # bit 7 first, as numpy.packbits


# --- placement -------------------------------------------------------------------------------------


def plan_placement(
    requested: str,
    nbytes: int,
    binary: bool,
    device: torch.device,
    budget_bytes: int | None = None,
) -> str:
    """Decide where the training images live: ``device``, ``packed`` or ``stream``.

    Args:
        requested: ``--data-placement`` (auto, device, packed, stream).
        nbytes: size of the images as uint8 (training and test splits, which both go to the device).
        binary: pixels are exactly 0 or 255, so 1 bit per pixel loses nothing.
        device: the training device. On the CPU the images are already in host memory, so ``auto``
            is ``device`` (streaming through worker processes would only add copies).
        budget_bytes: how much of the device's memory the images may take (auto on a GPU).
    """
    if requested == "packed" and not binary:
        raise UserError(f"{flag('data_placement')} packed: needs binary images (pixels 0 or 255); use device or stream")
    if requested != "auto":
        return requested
    if device.type != "cuda" or budget_bytes is None:
        return "device"
    if nbytes <= budget_bytes:
        return "device"
    if binary and packed_nbytes(nbytes) <= budget_bytes:
        return "packed"
    return "stream"


def device_budget(device: torch.device, fraction: float) -> int | None:
    """``fraction`` of the free memory of a CUDA device in bytes; None elsewhere."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free * fraction)


def packed_nbytes(nbytes: int) -> int:
    return math.ceil(nbytes / 8)  # an upper bound: each image is padded to whole bytes


# --- bit packing -------------------------------------------------------------------------------------


def pack_bits(images: torch.Tensor) -> torch.Tensor:
    """uint8 binary images (N, C, H, W) with pixels 0 or 255 -> uint8 (N, ceil(C*H*W / 8)), 8 pixels a byte.

    The byte layout is numpy.packbits' (first pixel in the highest bit), written with torch ops so
    that it also runs on a GPU; packing goes in chunks to bound the temporary memory.
    """
    n = images.shape[0]
    pixels = images[0].numel() if n else math.prod(images.shape[1:])
    nbytes = math.ceil(pixels / 8)
    out = torch.empty((n, nbytes), dtype=torch.uint8, device=images.device)
    shifts = _SHIFTS.to(images.device)
    for lo in range(0, n, _PACK_CHUNK):
        flat = images[lo : lo + _PACK_CHUNK].reshape(-1, pixels).gt(127).to(torch.uint8)
        flat = torch.nn.functional.pad(flat, (0, nbytes * 8 - pixels))
        out[lo : lo + _PACK_CHUNK] = (flat.view(-1, nbytes, 8) << shifts).sum(-1, dtype=torch.uint8)
    return out


def unpack_bits(packed: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 (B, nbytes) -> float images (B, C, H, W) with pixels 0.0 or 1.0 (what ``to_unit`` gives)."""
    bits = packed.unsqueeze(-1) >> _SHIFTS.to(packed.device) & 1  # (B, nbytes, 8)
    pixels = math.prod(shape)
    return bits.view(packed.shape[0], -1)[:, :pixels].view(-1, *shape).float()


# --- batch sources -------------------------------------------------------------------------------------


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The data order of epoch ``epoch``: a function of (seed, epoch) only, so resume can rebuild it."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def batch_indices(perm: torch.Tensor, batch: int, batch_size: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """This rank's share of global batch ``batch`` of the epoch permutation ``perm``, shape (B / W,)."""
    local = batch_size // world_size
    lo = batch * batch_size + rank * local
    return perm[lo : lo + local]


class DeviceBatches:
    """Batches indexed out of images that live on the training device (uint8 or bit-packed).

    :meth:`epoch` yields index tensors; :meth:`images` turns them into float batches.
    """

    def __init__(
        self,
        images: torch.Tensor,
        device: torch.device,
        batch_size: int,
        packed: bool = False,
        rank: int = 0,
        world_size: int = 1,
        memory_format: torch.memory_format = torch.contiguous_format,
    ):
        self.shape = tuple(images.shape[1:])
        self.images_u8 = (pack_bits(images) if packed else images).to(device)
        self.packed = packed
        self.device = device
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.memory_format = memory_format

    def epoch(self, perm: torch.Tensor, start: int) -> Iterator[torch.Tensor]:
        """This rank's indices (B / W,) on the device for each batch of the epoch from ``start`` on."""
        perm = perm.to(self.device)
        for i in range(start, len(perm) // self.batch_size):
            yield batch_indices(perm, i, self.batch_size, self.rank, self.world_size)

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1], (len(idx), C, H, W), on the device."""
        rows = self.images_u8[idx]
        x = unpack_bits(rows, self.shape) if self.packed else to_unit(rows)
        return x.contiguous(memory_format=self.memory_format)


class _Rows(Dataset):
    """``dataset[idx]`` for a tensor of indices: one gather per batch in the worker, not one per image."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return idx, self.images[idx]


class _EpochBatches(Sampler):
    """Yields this rank's index tensor for each remaining batch of the current epoch."""

    def __init__(self, batch_size: int, rank: int, world_size: int):
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.perm = torch.empty(0, dtype=torch.long)
        self.start = 0

    def __len__(self) -> int:
        return max(len(self.perm) // self.batch_size - self.start, 0)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i in range(self.start, len(self.perm) // self.batch_size):
            yield batch_indices(self.perm, i, self.batch_size, self.rank, self.world_size)


class StreamBatches:
    """Batches gathered from host memory by DataLoader workers and copied to the device asynchronously.

    :meth:`epoch` yields the index tensor of each batch once its images are on their way to the
    device; :meth:`images` of those indices returns them (other indices are gathered on the spot).
    """

    def __init__(
        self,
        images: torch.Tensor,
        device: torch.device,
        batch_size: int,
        num_workers: int,
        pin_memory: bool,
        rank: int = 0,
        world_size: int = 1,
        memory_format: torch.memory_format = torch.contiguous_format,
    ):
        self.images_u8 = images.cpu()
        self.device = device
        self.memory_format = memory_format
        self.sampler = _EpochBatches(batch_size, rank, world_size)
        self.loader = DataLoader(
            _Rows(self.images_u8),
            sampler=self.sampler,
            batch_size=None,  # the sampler yields whole batches of indices
            num_workers=num_workers,
            pin_memory=pin_memory and device.type == "cuda",
            persistent_workers=num_workers > 0,
            generator=torch.Generator(),  # its seed draw must not advance the global RNG (exact resume)
        )
        self.held: tuple[torch.Tensor, torch.Tensor] | None = None

    def epoch(self, perm: torch.Tensor, start: int) -> Iterator[torch.Tensor]:
        self.sampler.perm, self.sampler.start = perm.cpu(), start
        for idx, rows in self.loader:
            idx = idx.to(self.device, non_blocking=True)
            self.held = (idx, to_unit(rows.to(self.device, non_blocking=True)))
            yield idx

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        if self.held is not None and idx is self.held[0]:
            x = self.held[1]
        else:
            x = to_unit(self.images_u8[idx.cpu()].to(self.device))
        return x.contiguous(memory_format=self.memory_format)


Batches = DeviceBatches | StreamBatches


def make_batches(
    images: torch.Tensor,
    binary: bool,
    device: torch.device,
    batch_size: int,
    perf: PerfConfig,
    rank: int = 0,
    world_size: int = 1,
    extra_nbytes: int = 0,
) -> tuple[Batches, str]:
    """The batch source for uint8 ``images`` (N, C, H, W) as ``perf`` asks; returns it and its placement.

    ``extra_nbytes``: other data that share the device budget (the test split).
    """
    nbytes = images.numel() + extra_nbytes
    budget = device_budget(device, perf.device_memory_fraction) if perf.data_placement == "auto" else None
    placement = plan_placement(perf.data_placement, nbytes, binary, device, budget)
    fmt = torch.channels_last if perf.channels_last else torch.contiguous_format
    if placement == "stream":
        source: Batches = StreamBatches(
            images, device, batch_size, perf.num_workers, perf.pin_memory, rank, world_size, fmt
        )
    else:
        source = DeviceBatches(images, device, batch_size, placement == "packed", rank, world_size, fmt)
    mib = (packed_nbytes(images.numel()) if placement == "packed" else images.numel()) / 2**20
    where = "host memory" if placement == "stream" else str(device)
    log.info("training images: %s placement, %.0f MiB in %s", placement, mib, where)
    return source, placement
