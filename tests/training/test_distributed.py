"""torchrun + DDP on the CPU (gloo, 2 processes) against a single process with the same global batch."""

from __future__ import annotations

import json
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch

from probgen.checkpoint import load_checkpoint
from probgen.cli import main
from probgen.config import VAEConfig
from probgen.data.transforms import bernoulli_resample
from probgen.errors import UserError
from probgen.training.batches import batch_indices
from probgen.training.ddp import GlobalBatchNoise, global_batch_draw
from probgen.training.trainers.vae import VAETrainer, fit_vae
from probgen.utils.distributed import Dist, gather_rows, shard_range, to_host
from probgen.utils.io import read_csv
from tests.factories import TINY_FLAGS, tiny_vae_config
from tests.training.torchrun import torchrun

# 4 points in batches of 1: 2 batches per rank; every estimator, chains included
LOGLIK_FAST = [
    "--num-data", "4", "--points-per-batch", "1", "--chains", "2", "--warmup", "30", "--samples", "30",
    "--leapfrog-steps", "4", "-k", "100", "--ais-steps", "50", "--no-progress", "--device", "cpu",
]  # fmt: skip

# --- pure pieces ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, world", [(10, 3), (7, 2), (2, 4), (0, 2), (64, 1)])
def test_shard_range_partitions_the_points_in_order(n, world):
    shards = [shard_range(n, r, world) for r in range(world)]
    assert [i for s in shards for i in s] == list(range(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_rank_slices_of_a_step_are_the_single_process_batch():
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(3))
    for step in range(3):
        shards = [batch_indices(perm, step, 32, r, 4) for r in range(4)]
        assert torch.equal(torch.cat(shards), batch_indices(perm, step, 32))
        assert torch.equal(batch_indices(perm, step, 32), perm[step * 32 : (step + 1) * 32])


def test_gather_rows_in_one_process_is_identity():
    t = torch.arange(6.0).reshape(3, 2)
    assert torch.equal(gather_rows(t, Dist()), t)


def _toy_guide(x: torch.Tensor) -> None:
    """Elementwise in x (so batching cannot change its numbers); a global site and a local one."""
    pyro.sample("g", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0], dim=-1):
        pyro.sample("z", dist.Normal(x, x.exp()).to_event(1))


def test_global_batch_noise_gives_each_rank_the_single_process_draws():
    x = torch.randn(12, 3)
    pyro.set_rng_seed(5)
    full = pyro.poutine.trace(_toy_guide).get_trace(x)
    for rank in range(3):
        pyro.set_rng_seed(5)  # every rank follows the same stream
        with GlobalBatchNoise(rank, 3):
            tr = pyro.poutine.trace(_toy_guide).get_trace(x[rank * 4 : (rank + 1) * 4])
        assert torch.equal(tr.nodes["z"]["value"], full.nodes["z"]["value"][rank * 4 : (rank + 1) * 4])
        assert torch.equal(tr.nodes["g"]["value"], full.nodes["g"]["value"])  # global sites: same on all ranks
        assert tr.nodes["z"]["fn"].batch_shape == (4,)  # log-densities stay those of the rank's slice


def test_dynamic_binarisation_draws_each_rank_its_slice_of_the_global_draw():
    x = torch.rand(8, 1, 4, 4)
    torch.manual_seed(2)
    full = bernoulli_resample(x)
    for rank in range(2):
        torch.manual_seed(2)
        part = global_batch_draw(bernoulli_resample, x[rank * 4 : (rank + 1) * 4], Dist(rank=rank, world_size=2))
        assert torch.equal(part, full[rank * 4 : (rank + 1) * 4])


# --- torchrun end to end ---------------------------------------------------------------------------------


def _flags(out: Path, max_steps: int, *extra: str) -> list[str]:
    return [
        "fit", "vae", *TINY_FLAGS, "--lr", "2e-3", "--epochs", "3", "--checkpoint-every", "4",
        "--max-steps", str(max_steps), "--device", "cpu", "--out", str(out), *extra,
    ]  # fmt: skip


def test_torchrun_matches_one_process_writes_on_rank0_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBGEN_DATA", str(tmp_path / "no-data"))
    # 2 processes x 16 images = the global batch 32; 9 steps per epoch; stop mid-epoch 2, then resume
    part = torchrun(_flags(tmp_path / "ddp", 13))
    assert part.returncode == 0, part.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    assert ckpt["step"] == 13 and len(ckpt["rng_ranks"]) == 2
    resumed = torchrun(_flags(tmp_path / "ddp", 22, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    cfg = tiny_vae_config(tmp_path / "single", epochs=3, max_steps=22, checkpoint_every=4)
    cfg.data.data_root = None
    single = fit_vae(cfg)
    a, b = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt"), load_checkpoint(single / "checkpoint.pt")
    assert a["step"] == b["step"] == 22
    for name, value in b["state"]["model"].items():
        torch.testing.assert_close(a["state"]["model"][name], value, rtol=1e-4, atol=2e-6, msg=name)
    rows_a, rows_b = read_csv(tmp_path / "ddp" / "losses.csv"), read_csv(single / "losses.csv")
    assert [(r["epoch"], r["split"]) for r in rows_a] == [(r["epoch"], r["split"]) for r in rows_b]
    for ra, rb in zip(rows_a, rows_b):
        assert float(ra["elbo"]) == pytest.approx(float(rb["elbo"]), rel=1e-6)
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    log = (tmp_path / "ddp" / "log.txt").read_text()
    assert log.count("epoch 1/3") == 1 and log.count("(2 processes)") == 2  # one writer, two launches

    # one process resumes the 2-process checkpoint (another world size): 4 more steps as from the single run
    for out in (tmp_path / "ddp", single):
        cfg = tiny_vae_config(out, epochs=3, max_steps=26, checkpoint_every=4)
        cfg.data.data_root, cfg.run.resume = None, True  # as the torchrun runs (data root from $PROBGEN_DATA)
        fit_vae(cfg)
    c, d = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt"), load_checkpoint(single / "checkpoint.pt")
    assert c["step"] == d["step"] == 26
    for name, value in d["state"]["model"].items():
        torch.testing.assert_close(c["state"]["model"][name], value, rtol=1e-4, atol=2e-6, msg=name)


# 160 images at 32 px: 144 train / 32 per batch = 4 steps per epoch; no batch norm (per-rank statistics on the CPU)
GAN_DDP_FLAGS = [
    "fit", "gan", "--dataset", "dsprites", "--limit", "160", "--image-size", "32", "--g-channels", "4",
    "--d-channels", "4", "--latent-dim", "8", "--batch-size", "32", "--g-norm", "none", "--d-norm", "instance",
    "--epochs", "2", "--sample-epochs", "1", "--ema-decay", "0.9", "--eval-every", "1", "--num-samples", "32",
    "--domain-steps", "10", "--kid-subsets", "5", "--no-progress", "--device", "cpu",
]  # fmt: skip


@pytest.mark.slow  # 24 s; the VAE's torchrun test covers the same launcher, sharding and rank-0 writes
def test_torchrun_gan_matches_one_process(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBGEN_DATA", str(tmp_path / "no-data"))
    cache = ["--cache-dir", str(tmp_path / "cache")]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun worker: the same float sums
    try:  # first, so that the domain network of the evaluations is cached for both runs
        assert main([*GAN_DDP_FLAGS, *cache, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    two = torchrun([*GAN_DDP_FLAGS, *cache, "--out", str(tmp_path / "two")])  # rank 1 may not write there
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = load_checkpoint(tmp_path / "two" / "checkpoint.pt"), load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    assert a["step"] == b["step"] == 8 and len(a["rng_ranks"]) == 2
    for net in ("generator", "discriminator", "ema"):
        for name, value in b["state"][net].items():
            torch.testing.assert_close(a["state"][net][name], value, rtol=1e-4, atol=2e-6, msg=f"{net}.{name}")
    assert torch.equal(a["fixed_noise"], b["fixed_noise"])
    rows_a, rows_b = read_csv(tmp_path / "two" / "losses.csv"), read_csv(tmp_path / "one" / "losses.csv")
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b] == [str(i) for i in range(1, 9)]
    for ra, rb in zip(rows_a, rows_b):
        for key in ("loss_d", "loss_g", "d_real", "d_fake"):
            assert float(ra[key]) == pytest.approx(float(rb[key]), rel=1e-4), key
    assert [r["value"] for r in a["eval_history"]] == pytest.approx([r["value"] for r in b["eval_history"]], rel=1e-3)
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and (tmp_path / "two" / "best.pt").is_file()


@pytest.mark.slow  # ~25 s of process start-up on 2 cores
def test_torchrun_user_error_on_rank0_stops_every_rank(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBGEN_DATA", str(tmp_path / "no-data"))
    out = tmp_path / "taken"
    out.mkdir()
    (out / "something").write_text("x")
    res = torchrun(_flags(out, 2), timeout=120)  # rank 0 refuses the occupied --out; rank 1 must not hang
    assert res.returncode != 0
    assert res.stderr.count("probgen: error: --out") == 2, res.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["something"]


def test_global_batch_must_divide_by_processes(tmp_path):
    cfg = tiny_vae_config(tmp_path / "odd", batch_size=30)
    with pytest.raises(UserError, match="--batch-size: the global batch 30 must divide by 4 processes"):
        VAETrainer(cfg, tmp_path / "odd", False, Dist(rank=0, world_size=4))  # raises before any collective


def test_kinds_without_ddp_refuse_torchrun(tmp_path):
    from probgen.config import FitVAEGANConfig
    from probgen.training.trainers.vaegan import VAEGANTrainer

    base = tiny_vae_config(tmp_path / "gan")
    cfg = FitVAEGANConfig(data=base.data, model=base.model, train=base.train, run=base.run)
    with pytest.raises(UserError, match="torchrun: `fit vaegan` trains in one process only"):
        VAEGANTrainer(cfg, tmp_path / "gan", False, Dist(rank=0, world_size=2))


# --- sharded log-likelihood ---------------------------------------------------------------------------


def test_to_host_moves_tensors_in_nested_results():
    from probgen.inference.loglik.result import LoglikResult

    res = {"iwae": [LoglikResult("iwae", torch.ones(3, requires_grad=True), 4096, {"k": 5})]}
    out = to_host((res, [torch.zeros(2)]))
    assert isinstance(out, tuple) and out[0]["iwae"][0].info == {"k": 5}
    assert not out[0]["iwae"][0].log_px.requires_grad and torch.equal(out[0]["iwae"][0].log_px, torch.ones(3))


@pytest.fixture(scope="module")
def mlp_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MLP VAE (latent 2), 1 epoch on 320 procedural dSprites images."""
    root = tmp_path_factory.mktemp("vae")
    cfg = tiny_vae_config(root / "run", epochs=1)
    cfg.model = VAEConfig(arch="mlp", hidden_dims=(32,), latent_dim=2)
    return fit_vae(cfg) / "checkpoint.pt"


def test_torchrun_loglik_shards_points_and_matches_one_process(mlp_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBGEN_DATA", str(mlp_ckpt.parent.parent / "no-data"))  # where the VAE's data came from
    flags = ["loglik", "--ckpt", str(mlp_ckpt), *LOGLIK_FAST]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun worker (OMP_NUM_THREADS=1): the same float sums
    try:
        assert main([*flags, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    res = torchrun([*flags, "--out", str(tmp_path / "two")], timeout=240)  # rank 1 may not write there
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("bits/dim") == 1  # rank 0 prints the table
    one, two = read_csv(tmp_path / "one" / "loglik.csv"), read_csv(tmp_path / "two" / "loglik.csv")
    assert [r["datapoint"] for r in two] == [r["datapoint"] for r in one] and len(two) == 4
    for a, b in zip(one, two):
        for key in ("log_px_elbo", "log_px_iwae", "log_px_appendix-d", "log_px_ais", "rhat"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-6), key
    report = json.loads((tmp_path / "two" / "loglik.json").read_text())
    assert report["world_size"] == 2 and (tmp_path / "two" / "chains.nc").is_file()
