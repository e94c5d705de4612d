"""SVI overhead: probgen's training step against a hand-written PyTorch ELBO step (or against its other ELBO).

Both sides train the same network from the same initial weights on the same batches with Adam.
``--net conv`` (default): the default Burgess et al. conv VAE on 64x64 binary dSprites images.
``--net mlp``: issue 28's MLP VAE (784-400-50, ReLU, Bernoulli pixels) on 28x28 binary images
(random, 13% ink like binarised MNIST: a step's time does not depend on the pixel values).

A side is ``trace`` or ``tracemeanfield`` (the step `probgen fit vae --elbo ...` runs:
:func:`probgen.inference.svi.step.svi_step`, Pyro model/guide, the ELBO, poutine.scale for beta, the
networks registered once as the trainer does) or ``plain`` (the same one-sample ELBO as ``trace``,
written by hand). ``--sides A,B`` picks the two (default ``trace,plain``; ``trace,tracemeanfield``
gives the cost of the analytic KL at equal steps). Steps alternate in short blocks (the order flips
every round) so that machine noise hits both alike. Each round gives one paired ratio (A's block
time / the adjacent B block time); the reported ratio is the median of those paired ratios, with its
interquartile range. Pairing cancels slow drifts in machine load, which a ratio of two separate
medians does not.

    python experiments/benchmarks/svi_overhead.py [--net conv|mlp] [--sides trace,plain] [--batch-size 64]
        [--rounds 61] [--block 2] [--device cpu]

The last line is ``ratio: X.XX`` (A's time / B's time). Goal for ``trace,plain``: <= 1.05 on CPU.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence

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


SIDES = ("trace", "tracemeanfield", "plain")
MLP = VAEConfig(arch="mlp", hidden_dims=(400,), latent_dim=50, activation="relu", likelihood="bernoulli")


def make_side(name: str, vae: VAE, lr: float) -> Callable[[torch.Tensor], None]:
    """One training step of side ``name`` on ``vae`` (its own Adam): probgen's with that ELBO, or the plain one."""
    optim = torch.optim.Adam(vae.parameters(), lr=lr)
    if name == "plain":
        return lambda x: plain_step(vae, optim, x)
    vae.register_once()  # as the trainer does
    elbo = make_elbo(name)
    loss_fn = elbo(vae.model, vae.guide)

    def step(x: torch.Tensor) -> None:
        with hot_loop():  # as in `probgen fit vae`
            svi_step(loss_fn, elbo, optim, x, 1.0)

    return step


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", choices=("conv", "mlp"), default="conv", help="conv: dSprites conv VAE; mlp: 784-400-50")
    ap.add_argument("--sides", default="trace,plain", help=f"the two steps compared, A,B from {', '.join(SIDES)}")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=61)
    ap.add_argument("--block", type=int, default=2, help="steps per timed block")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    sides = args.sides.split(",")
    if len(sides) != 2 or not set(sides) <= set(SIDES):
        ap.error(f"--sides: two of {', '.join(SIDES)}, comma-separated, got {args.sides!r}")
    device = resolve_device(args.device)
    torch.manual_seed(0)

    n = args.batch_size * 8
    if args.net == "conv":
        cfg, shape, lr = VAEConfig(likelihood="bernoulli"), (1, 64, 64), 5e-4
        images = to_unit(load_dataset(DataConfig(limit=n)).split("train").images)
    else:
        cfg, shape, lr = MLP, (1, 28, 28), 1e-3
        images = (torch.rand(n, *shape) < 0.13).float()
    images = images.to(device)
    batches = [images[i : i + args.batch_size] for i in range(0, len(images) - args.batch_size + 1, args.batch_size)]

    first_net = VAE(cfg, shape).to(device)
    second_net = VAE(cfg, shape).to(device)
    second_net.load_state_dict(first_net.state_dict())
    run_a, run_b = make_side(sides[0], first_net, lr), make_side(sides[1], second_net, lr)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def block(fn, k: int) -> float:  # noqa: ANN001
        sync()
        t0 = time.perf_counter()
        for j in range(args.block):
            fn(batches[(k + j) % len(batches)])
        sync()
        return (time.perf_counter() - t0) / args.block

    for fn in (run_a, run_b):  # warm-up (allocator, kernels, Pyro's first trace)
        block(fn, 0)
    t_a, t_b = [], []
    for r in range(args.rounds):
        first, second = (run_a, run_b) if r % 2 == 0 else (run_b, run_a)
        a, b = block(first, r), block(second, r)
        (t_a, t_b)[first is run_b].append(a)
        (t_b, t_a)[first is run_b].append(b)

    m_a, m_b = statistics.median(t_a), statistics.median(t_b)
    paired = [o / p for o, p in zip(t_a, t_b, strict=True)]
    q1, ratio, q3 = statistics.quantiles(paired, n=4) if len(paired) > 1 else (paired[0],) * 3
    print(f"device: {device}  net: {args.net}  batch: {args.batch_size}  rounds: {args.rounds} x {args.block} steps")
    print(f"torch threads: {torch.get_num_threads()}  load average: {os.getloadavg()[0]:.1f}")
    print(f"A = {sides[0]:14s} step: median {m_a * 1e3:.2f} ms")
    print(f"B = {sides[1]:14s} step: median {m_b * 1e3:.2f} ms")
    print(f"A - B per step: {(m_a - m_b) * 1e3:.2f} ms")
    print(f"ratio of medians: {m_a / m_b:.3f}")
    print(f"paired ratios: median {ratio:.3f}, interquartile range {q1:.3f} - {q3:.3f}")
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
