"""SVI overhead: probgen's training step against a hand-written PyTorch ELBO step.

Both train the same network (the default Burgess et al. conv VAE) on the same batches of 64x64
binary dSprites images with Adam. The probgen step is the one `probgen fit vae` runs
(:func:`probgen.inference.svi.step.svi_step`: Pyro model/guide, Trace_ELBO, poutine.scale for beta);
the plain step computes the same one-sample ELBO by hand. Steps alternate in short blocks (the
order flips every round) so that machine noise hits both alike. Each round gives one paired ratio
(probgen block time / the adjacent plain block time); the reported ratio is the median of those
paired ratios, with its interquartile range. Pairing cancels slow drifts in machine load, which a
ratio of two separate medians does not.

    python experiments/benchmarks/svi_overhead.py [--batch-size 64] [--rounds 61] [--block 2] [--device cpu]

The last line is ``ratio: X.XX`` (probgen time / plain time). Goal: <= 1.05 on CPU.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from probgen.config import DataConfig, VAEConfig
from probgen.data import load_dataset, to_unit
from probgen.inference.svi.elbo import make_elbo
from probgen.inference.svi.step import hot_loop, svi_step
from probgen.models.vae import VAE
from probgen.utils.device import resolve_device

LOG_2PI = math.log(2 * math.pi)


def plain_step(vae: VAE, optim: torch.optim.Optimizer, x: torch.Tensor) -> torch.Tensor:
    """The same ELBO written by hand: reparameterised z, Bernoulli log-lik, one-sample KL."""
    loc, scale = vae.encoder(x)
    eps = torch.randn_like(loc)
    z = loc + scale * eps
    logits = vae.decoder(z)
    recon = -F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    log_q = (-0.5 * eps**2 - scale.log() - 0.5 * LOG_2PI).sum()
    log_p = (-0.5 * z**2 - 0.5 * LOG_2PI).sum()
    loss = -(recon + log_p - log_q)
    optim.zero_grad(set_to_none=True)
    loss.backward()
    optim.step()
    return loss.detach()


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=61)
    ap.add_argument("--block", type=int, default=2, help="steps per timed block")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    torch.manual_seed(0)

    data = load_dataset(DataConfig(limit=args.batch_size * 8))
    images = data.split("train").images.to(device)
    batches = [
        to_unit(images[i : i + args.batch_size]) for i in range(0, len(images) - args.batch_size + 1, args.batch_size)
    ]

    cfg = VAEConfig(likelihood="bernoulli")
    ours, plain = VAE(cfg, (1, 64, 64)).to(device), VAE(cfg, (1, 64, 64)).to(device)
    plain.load_state_dict(ours.state_dict())
    opt_ours = torch.optim.Adam(ours.parameters(), lr=5e-4)
    opt_plain = torch.optim.Adam(plain.parameters(), lr=5e-4)
    elbo = make_elbo("trace")
    loss_fn = elbo(ours.model, ours.guide)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def run_ours(x: torch.Tensor) -> None:
        with hot_loop():  # as in `probgen fit vae`
            svi_step(loss_fn, elbo, opt_ours, x, 1.0)

    def run_plain(x: torch.Tensor) -> None:
        plain_step(plain, opt_plain, x)

    def block(fn, k: int) -> float:  # noqa: ANN001
        sync()
        t0 = time.perf_counter()
        for j in range(args.block):
            fn(batches[(k + j) % len(batches)])
        sync()
        return (time.perf_counter() - t0) / args.block

    for fn in (run_ours, run_plain):  # warm-up (allocator, kernels, Pyro's first trace)
        block(fn, 0)
    t_ours, t_plain = [], []
    for r in range(args.rounds):
        first, second = (run_ours, run_plain) if r % 2 == 0 else (run_plain, run_ours)
        a, b = block(first, r), block(second, r)
        (t_ours, t_plain)[first is run_plain].append(a)
        (t_plain, t_ours)[first is run_plain].append(b)

    m_ours, m_plain = statistics.median(t_ours), statistics.median(t_plain)
    paired = [o / p for o, p in zip(t_ours, t_plain, strict=True)]
    q1, ratio, q3 = statistics.quantiles(paired, n=4) if len(paired) > 1 else (paired[0],) * 3
    print(f"device: {device}  batch: {args.batch_size}  rounds: {args.rounds} x {args.block} steps")
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"probgen step (Pyro Trace_ELBO): median {m_ours * 1e3:.2f} ms")
    print(f"plain torch ELBO step:          median {m_plain * 1e3:.2f} ms")
    print(f"overhead per step: {(m_ours - m_plain) * 1e3:.2f} ms")
    print(f"ratio of medians: {m_ours / m_plain:.3f}")
    print(f"paired ratios: median {ratio:.3f}, interquartile range {q1:.3f} - {q3:.3f}")
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
