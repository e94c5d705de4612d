"""Data placement: device uint8, bit-packed and streamed batches are the same batches."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from probgen.checkpoint import load_checkpoint
from probgen.config import PerfConfig
from probgen.data import to_unit
from probgen.errors import UserError
from probgen.training.batches import (
    DeviceBatches,
    StreamBatches,
    make_batches,
    pack_bits,
    plan_placement,
    unpack_bits,
)
from probgen.training.trainers.vae import fit_vae
from tests.factories import tiny_vae_config

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
GB = 2**30


def _binary(n: int, shape=(1, 8, 8), seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((n, *shape), generator=g) > 0.5).to(torch.uint8) * 255


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 5, 3), (3, 4, 4)])
def test_pack_bits_is_numpy_packbits_and_unpacks_to_to_unit(shape):
    images = _binary(20, shape)
    packed = pack_bits(images)
    expected = np.packbits(images.reshape(20, -1).numpy() > 127, axis=1)
    assert torch.equal(packed, torch.from_numpy(expected))
    assert torch.equal(unpack_bits(packed[[3, 0, 7]], shape), to_unit(images[[3, 0, 7]]))


def test_pack_bits_in_chunks(monkeypatch):
    monkeypatch.setattr("probgen.training.batches._PACK_CHUNK", 7)
    images = _binary(30)
    assert torch.equal(unpack_bits(pack_bits(images), (1, 8, 8)), to_unit(images))


@pytest.mark.parametrize(
    "requested, nbytes, binary, device, budget, expected",
    [
        ("auto", 3 * GB, True, CPU, None, "device"),  # the CPU: already in host memory
        ("auto", 3 * GB, True, CUDA, 40 * GB, "device"),  # dSprites on an 80 GB GPU
        ("auto", 3 * GB, True, CUDA, 1 * GB, "packed"),  # 377 MB packed fits
        ("auto", 3 * GB, False, CUDA, 1 * GB, "stream"),  # not binary: cannot pack
        ("auto", 9 * GB, True, CUDA, 1 * GB, "stream"),  # not even packed
        ("stream", 1, True, CUDA, None, "stream"),
        ("device", 9 * GB, False, CUDA, None, "device"),  # asked for: no budget check
    ],
)
def test_plan_placement(requested, nbytes, binary, device, budget, expected):
    assert plan_placement(requested, nbytes, binary, device, budget) == expected


def test_packed_placement_needs_binary_images():
    with pytest.raises(UserError, match="--data-placement packed: needs binary images"):
        plan_placement("packed", 10, False, CPU)


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("workers", [0, 2])
def test_every_placement_yields_the_same_batches(world, workers):
    images = _binary(50)
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    for rank in range(world):
        sources = [
            DeviceBatches(images, CPU, 12, packed=False, rank=rank, world_size=world),
            DeviceBatches(images, CPU, 12, packed=True, rank=rank, world_size=world),
            StreamBatches(images, CPU, 12, num_workers=workers, pin_memory=True, rank=rank, world_size=world),
        ]
        for start in (0, 2):
            local = 12 // world
            want_idx = [perm[i * 12 + rank * local :][:local] for i in range(start, 4)]  # 50 // 12 = 4 batches
            for source in sources:
                got = [(idx, source.images(idx)) for idx in source.epoch(perm, start)]
                assert len(got) == len(want_idx)
                for (idx, x), w in zip(got, want_idx):
                    assert torch.equal(idx, w)
                    assert torch.equal(x, to_unit(images[w]))


def test_stream_images_of_other_indices_are_gathered():
    source = StreamBatches(_binary(20), CPU, 4, num_workers=0, pin_memory=False)
    idx = torch.tensor([5, 1, 7])
    assert torch.equal(source.images(idx), to_unit(source.images_u8[idx]))


def test_stream_loader_leaves_the_global_rng_alone():
    source = StreamBatches(_binary(20), CPU, 4, num_workers=1, pin_memory=False)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    list(source.epoch(torch.arange(20), 0))
    assert torch.equal(torch.get_rng_state(), before)


def test_make_batches_reports_its_placement(caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("probgen"), "propagate", True)  # the CLI, run by earlier tests, stops it
    caplog.set_level("INFO", logger="probgen")
    _, placement = make_batches(_binary(16), True, CPU, 4, PerfConfig(data_placement="packed"))
    assert placement == "packed" and "packed placement" in caplog.text


def test_training_is_bitwise_the_same_for_every_placement(tmp_path):
    ref = load_checkpoint(fit_vae(tiny_vae_config(tmp_path / "device", max_steps=3)) / "checkpoint.pt")
    for placement in ("stream", "packed"):
        cfg = tiny_vae_config(tmp_path / placement, max_steps=3)
        cfg.perf = PerfConfig(data_placement=placement, num_workers=1)
        other = load_checkpoint(fit_vae(cfg) / "checkpoint.pt")
        for name, value in ref["state"]["model"].items():
            assert torch.equal(value, other["state"]["model"][name]), (placement, name)
