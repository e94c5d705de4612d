"""Speed options change layout and precision, never parameter names or (beyond rounding) results."""

from __future__ import annotations

import pytest
import torch

from probgen.checkpoint import load_checkpoint
from probgen.cli import main
from probgen.config import PerfConfig, VAEConfig
from probgen.models.vae import VAE, load_vae
from probgen.training.perf import apply_speed_options
from tests.factories import TINY_FLAGS

CPU = torch.device("cpu")


def _pair() -> tuple[VAE, VAE]:
    cfg = VAEConfig(likelihood="bernoulli", conv_channels=(8, 8, 8, 8), hidden_dims=(32,), latent_dim=4)
    torch.manual_seed(0)
    a = VAE(cfg, (1, 64, 64))
    b = VAE(cfg, (1, 64, 64))
    b.load_state_dict(a.state_dict())
    return a, b


def _outputs(vae: VAE, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    loc, scale = vae.encode(x)
    return loc, scale, vae.decoder(loc)


def test_channels_last_keeps_names_and_values():
    ref, fast = _pair()
    apply_speed_options([fast.encoder, fast.decoder], PerfConfig(channels_last=True), CPU)
    assert list(fast.state_dict()) == list(ref.state_dict())
    conv = fast.encoder.body[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    x = (torch.rand(8, 1, 64, 64) > 0.5).float().contiguous(memory_format=torch.channels_last)
    for a, b in zip(_outputs(ref, x), _outputs(fast, x)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_bf16_autocast_runs_the_nets_in_bf16_and_returns_float32():
    ref, fast = _pair()
    apply_speed_options([fast.encoder, fast.decoder], PerfConfig(amp="bf16"), CPU)
    assert list(fast.state_dict()) == list(ref.state_dict())
    seen: list[torch.dtype] = []
    fast.decoder.body[-1].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x = (torch.rand(8, 1, 64, 64) > 0.5).float()
    for a, b in zip(_outputs(ref, x), _outputs(fast, x)):
        assert b.dtype == torch.float32  # the distributions built on them stay float32
        torch.testing.assert_close(b, a, rtol=0.05, atol=0.05)  # bf16 keeps 8 bits of mantissa
    assert seen == [torch.bfloat16]


def test_backend_flags_leave_the_cpu_alone():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark
    apply_speed_options([], PerfConfig(tf32=True, cudnn_benchmark=True), CPU)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark) == before


def test_cli_speed_flags_train_and_the_checkpoint_loads_without_them(tmp_path):
    out = tmp_path / "run"
    argv = ["fit", "vae", *TINY_FLAGS, "--max-steps", "3", "--channels-last", "--amp", "bf16"]
    assert main([*argv, "--data-placement", "packed", "--out", str(out)]) == 0
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["config"]["perf"] == {**ckpt["config"]["perf"], "channels_last": True, "amp": "bf16"}
    vae, _ = load_vae(ckpt)  # plain nets: the options are not part of the weights
    assert torch.isfinite(vae.sample(2)).all()


def test_bad_perf_flags_are_user_errors(capsys):
    assert main(["fit", "vae", "--amp", "fp8"]) == 2
    assert "--amp: invalid choice 'fp8'" in capsys.readouterr().err
    assert main(["fit", "vae", "--device-memory-fraction", "0"]) == 2
    assert "--device-memory-fraction: must be in (0, 1]" in capsys.readouterr().err


@pytest.mark.slow
def test_compile_keeps_names_and_values():
    ref, fast = _pair()
    apply_speed_options([fast.encoder, fast.decoder], PerfConfig(compile="default"), CPU)
    assert list(fast.state_dict()) == list(ref.state_dict())
    x = (torch.rand(8, 1, 64, 64) > 0.5).float()
    for a, b in zip(_outputs(ref, x), _outputs(fast, x)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
