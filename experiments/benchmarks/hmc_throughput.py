"""HMC throughput on p(z | x) of a VAE: probgen's batched kernel against a ceiling, a floor and naive batching.

Four samplers on the same conv decoder, the same 64 binary 64x64 images and the same latent size:

- ``probgen``: :func:`probgen.inference.mcmc.hmc.run_hmc` on the Pyro model's traced potential, C chains x N
  points, per-(chain, point) accept test, per-point step size and diagonal mass adapted in warm-up.
- ``ceiling``: a minimal batched leapfrog in plain torch (hand-written density, per-(chain, point)
  accept), at the same batch size, with the step sizes and masses probgen adapted: the speed limit.
- ``floor``: stock ``pyro.infer.NUTS`` on the model, one data point (and one chain) at a time, on the
  first ``--floor-points`` points; its ESS/s summed over points is what per-point Pyro gives per second.
- ``naive``: stock ``pyro.infer.HMC`` on the model with all N points under its plate: one chain over
  N x D dimensions, one step size and one accept test (run with probgen's number of leapfrog steps,
  so that a collapsing step size shows as lost ESS, not as an exploding trajectory).

probgen sets its number of leapfrog steps from ``--trajectory-length`` and its adapted step sizes;
the ceiling and the naive sampler use the same number.

The VAE is trained by ``probgen fit vae`` for ``--train-steps`` steps on procedural dSprites (or loaded with ``--ckpt``)
and the data are held-out images, so that each posterior is much narrower than the prior (the
script prints the mean posterior sd).
Decoder-gradient evaluations are counted by a forward hook (rows of z through the decoder). probgen
and the ceiling are timed in alternating blocks after warm-up (machine noise hits both alike).

    python experiments/benchmarks/hmc_throughput.py [--points 64] [--chains 2] [--warmup 100] [--samples 50]
        [--trajectory-length 2.5] [--floor-points 2] [--device cpu] [--threads N] [--quick]

The last lines are ``vs_ceiling: X.XX`` (decoder-gradient evaluations/s, probgen / ceiling, after
warm-up) and ``vs_floor: Y.Y`` (bulk ESS/s summed over data points, probgen / floor, warm-up included).
Goals: vs_ceiling >= 0.9 on CPU and GPU; vs_floor >= 3 on a 2-core CPU, >= 100 on a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections.abc import Sequence

import arviz as az
import numpy as np
import pyro
import torch
import torch.nn.functional as F
from pyro.infer import HMC, MCMC, NUTS

import probgen
from probgen.config import DataConfig, FitVAEConfig, RunConfig, TrainConfig, VAEConfig
from probgen.data import load_dataset, to_unit
from probgen.inference.mcmc.hmc import BatchedHMC, run_hmc
from probgen.inference.mcmc.potential import encoder_proposal, from_pyro_model
from probgen.models.vae import VAE, load_vae
from probgen.utils.device import resolve_device

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class Counter:
    """Counts z rows through the decoder (one row = one decoder evaluation of one (chain, point))."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.rows = 0
        module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:  # noqa: ANN001
        self.rows += inputs[0].shape[0]  # the decoder body sees z flattened to (rows, D)


class FixedStepsHMC(HMC):
    """Stock Pyro HMC, but with ``num_steps`` leapfrog steps whatever the adapted step size."""

    def __init__(self, model, num_steps: int, **kw) -> None:  # noqa: ANN001
        super().__init__(model, num_steps=num_steps, **kw)
        self._fixed_steps = num_steps

    @property
    def num_steps(self) -> int:
        return self._fixed_steps


def min_bulk_ess(samples: np.ndarray) -> np.ndarray:
    """Bulk ESS of samples (C, S, N, D), minimum over latents: (N,)."""
    c, s, n, d = samples.shape
    return np.array([min(az.ess(samples[:, :, i, j], method="bulk") for j in range(d)) for i in range(n)])


def ceiling_transition(decoder, x, z, u, g, eps, inv_mass, num_steps, jitter):  # noqa: ANN001
    """One batched HMC transition written directly in torch; z (C, N, D), u (C, N), g (C, N, D)."""

    def potential_and_grad(zz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zz = zz.detach().requires_grad_(True)
        logits = decoder(zz)
        ll = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum((-3, -2, -1))
        pot = 0.5 * zz.square().sum(-1) + zz.shape[-1] * HALF_LOG_2PI - ll
        (grad,) = torch.autograd.grad(pot.sum(), zz)
        return pot.detach(), grad

    e = eps * (1 + jitter * (2 * torch.rand_like(u) - 1))
    e = e.unsqueeze(-1)
    r = torch.randn_like(z) * inv_mass.rsqrt()
    h0 = u + 0.5 * (r.square() * inv_mass).sum(-1)
    zn, rn, gn = z, r - 0.5 * e * g, g
    for i in range(num_steps):
        zn = zn + e * inv_mass * rn
        un, gn = potential_and_grad(zn)
        rn = rn - (e if i < num_steps - 1 else 0.5 * e) * gn
    delta = un + 0.5 * (rn.square() * inv_mass).sum(-1) - h0
    delta = torch.where(torch.isnan(delta), torch.full_like(delta, math.inf), delta)
    acc = torch.rand_like(delta) < torch.exp(-delta)
    a3 = acc.unsqueeze(-1)
    return torch.where(a3, zn, z), torch.where(acc, un, u), torch.where(a3, gn, g)


def data_config(args: argparse.Namespace) -> DataConfig:
    """Procedural dSprites: ``--train-images`` to train on, then the test points (16 x 16 with --quick)."""
    return DataConfig(
        dataset="dsprites",
        limit=args.train_images + 5 * args.points,
        test_fraction=0.2,
        image_size=16 if args.quick else None,
    )


def train_vae(args: argparse.Namespace, device: torch.device) -> VAE:
    """A conv VAE trained by `probgen fit vae` for ``--train-steps`` steps on procedural dSprites (its
    posteriors are informative).

    Adam 1e-3, batch 32, analytic KL: this small conv VAE leaves its posterior-collapsed start after ~700 steps.
    """
    cfg = VAEConfig(
        latent_dim=args.latent_dim,
        conv_channels=tuple(int(v) for v in args.conv_channels.split(",")),
        hidden_dims=(args.hidden,),
        likelihood="bernoulli",
    )
    train = TrainConfig(
        epochs=10**6,  # --train-steps stops it
        max_steps=args.train_steps,
        batch_size=32,
        lr=1e-3,
        elbo="tracemeanfield",
        seed=args.seed,
        device=str(device),
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run = probgen.fit(
            FitVAEConfig(
                data=data_config(args),
                model=cfg,
                train=train,
                run=RunConfig(out=f"{tmp}/run", progress=False, bookkeeping_every=1e9),
            )
        )
        vae, _ = load_vae(run / "checkpoint.pt", device)
        test = json.loads((run / "metrics.json").read_text())["final"]["test"]
    print(f"trained the VAE for {args.train_steps} steps in {time.perf_counter() - t0:.0f} s "
          f"(probgen fit vae): test -ELBO {-test['elbo']:.1f} nats")  # fmt: skip
    return vae


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=64)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--trajectory-length", type=float, default=2.5, help="probgen: leapfrog steps = this / step size")
    ap.add_argument("--naive-chains", type=int, default=1, help="chains of the plate-batched Pyro HMC")
    ap.add_argument("--floor-points", type=int, default=2, help="data points the per-point NUTS floor runs on")
    ap.add_argument("--latent-dim", type=int, default=10)
    ap.add_argument("--conv-channels", default="16,16,16,16")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--train-steps", type=int, default=1000, help="SVI steps (batch 32) that train the VAE")
    ap.add_argument("--train-images", type=int, default=4000, help="procedural dSprites images to train on")
    ap.add_argument("--ckpt", default=None, help="use this trained Bernoulli VAE checkpoint instead of training one")
    ap.add_argument("--init", choices=("encoder", "prior"), default="encoder", help="where all chains start")
    ap.add_argument("--speed-rounds", type=int, default=6, help="alternating timed blocks of probgen and ceiling")
    ap.add_argument("--block", type=int, default=2, help="transitions per timed block (probgen vs ceiling)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs")
    args = ap.parse_args(argv)
    if args.quick:
        args.points, args.chains, args.warmup, args.samples, args.trajectory_length = 4, 2, 10, 20, 1.0
        args.floor_points, args.latent_dim, args.conv_channels, args.hidden, args.block = 1, 3, "4,4", 16, 5
        args.train_steps, args.train_images = 20, 200
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    pyro.set_rng_seed(args.seed)
    c, n, d = args.chains, args.points, args.latent_dim

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    # --- decoder and data ---------------------------------------------------------------------------
    if args.ckpt:
        vae, _ = load_vae(args.ckpt, device)
        if vae.cfg.likelihood != "bernoulli":
            raise SystemExit("--ckpt: the ceiling's hand-written density is Bernoulli; give a binary-data VAE")
        d = vae.latent_dim
    else:
        vae = train_vae(args, device)
    vae = vae.eval().requires_grad_(False)
    cfg = vae.cfg
    images = load_dataset(data_config(args)).split("test").images[:n]
    x = to_unit(images).to(device)  # (N, 1, H, W) binary, held out from training
    size = x.shape[-1]
    counter = Counter(vae.decoder.body)
    target = from_pyro_model(vae.model, x)
    # every sampler starts from the same encoder draws, as `probgen loglik` does
    z0 = encoder_proposal(vae.guide, x).sample((c,)) if args.init == "encoder" else target.sample_prior(c)
    rows = {}

    def report(name: str, seconds: float, evals: int, ess: np.ndarray, extra: str = "") -> dict:
        r = {
            "seconds": seconds,
            "evals_per_s": evals / seconds,
            "min_ess_per_s": float(ess.min() / seconds),
            "sum_ess_per_s": float(ess.sum() / seconds),
            "points": len(ess),
        }
        rows[name] = r
        print(
            f"{name:<8} points {len(ess):>3}  {seconds:8.1f} s  grad evals/s {r['evals_per_s']:9.1f}  "
            f"min bulk ESS/s {r['min_ess_per_s']:8.3f}  summed ESS/s {r['sum_ess_per_s']:9.2f}  {extra}",
            flush=True,
        )
        return r

    print(f"device {device}, torch threads {torch.get_num_threads()}, decoder {cfg.conv_channels} / {cfg.hidden_dims}, "
          f"{size}x{size} binary, latent {d}; {n} points x {c} chains; warm-up {args.warmup}, draws {args.samples}, "
          f"trajectory length {args.trajectory_length}")  # fmt: skip

    # --- probgen kernel (warm-up included in its ESS/s) -----------------------------------------------
    sync()
    counter.rows, t0 = 0, time.perf_counter()
    run = run_hmc(target.potential(), z0, args.warmup, args.samples, trajectory_length=args.trajectory_length)
    L = run.num_steps  # the ceiling and the naive sampler take the same number of leapfrog steps
    sync()
    t_kernel, evals_kernel = time.perf_counter() - t0, counter.rows
    ess_kernel = min_bulk_ess(run.samples.cpu().numpy())
    post_sd = run.samples.reshape(-1, n, d).std(0).mean().item()
    report(
        "probgen",
        t_kernel,
        evals_kernel,
        ess_kernel,
        f"accept {run.accept_rate.mean():.2f}, step sizes {run.step_size.min():.3f}-{run.step_size.max():.3f}, "
        f"{L} leapfrog steps",
    )
    print(f"         posterior sd (mean over points and latents): {post_sd:.3f} (prior: 1)")

    # --- speed: probgen kernel vs hand-written ceiling, alternating blocks after warm-up ----------------
    kernel = BatchedHMC(potential_fn=target.potential(), num_steps=L, adapt_step_size=False, adapt_mass_matrix=False)
    kernel.initial_params = {"z": run.samples[:, -1].contiguous()}
    kernel.setup(0)
    kernel.step_size = run.step_size
    kernel.inverse_mass = run.inverse_mass
    params = kernel.initial_params
    eps, inv_mass = run.step_size, run.inverse_mass
    zc = run.samples[:, -1].contiguous()
    with torch.no_grad():
        uc = run.potential[:, -1].clone()
    zz = zc.detach().requires_grad_(True)
    logits = vae.decoder(zz)
    ll = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum((-3, -2, -1))
    (gc,) = torch.autograd.grad((0.5 * zz.square().sum(-1) - ll).sum(), zz)
    ceiling_draws = []

    def kernel_block() -> None:
        nonlocal params
        for _ in range(args.block):
            params = kernel.sample(params)

    def ceiling_block() -> None:
        nonlocal zc, uc, gc
        for _ in range(args.block):
            zc, uc, gc = ceiling_transition(vae.decoder, x, zc, uc, gc, eps, inv_mass, L, kernel.jitter)
            ceiling_draws.append(zc)

    times = {"probgen": [], "ceiling": []}
    rounds = max(2, args.speed_rounds)
    for r in range(rounds):
        order = (("probgen", kernel_block), ("ceiling", ceiling_block))
        for name, fn in order if r % 2 == 0 else order[::-1]:
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    per_block_evals = args.block * L * c * n
    speed = {k: per_block_evals / statistics.median(v) for k, v in times.items()}
    t_ceiling = sum(times["ceiling"])
    ess_ceiling = min_bulk_ess(torch.stack(ceiling_draws, 1).cpu().numpy())
    report("ceiling", t_ceiling, per_block_evals * rounds, ess_ceiling, "(probgen's adapted step sizes and masses)")
    print(
        f"         after warm-up, median over {rounds} blocks: probgen {speed['probgen']:.1f}, "
        f"ceiling {speed['ceiling']:.1f} grad evals/s"
    )

    # --- floor: stock Pyro NUTS, one point and one chain at a time --------------------------------------
    m = min(args.floor_points, n)
    draws = np.empty((c, args.samples, m, d))
    counter.rows, t0 = 0, time.perf_counter()
    accepts = []
    for i in range(m):
        for j in range(c):
            mcmc = MCMC(
                NUTS(vae.model, adapt_step_size=True, adapt_mass_matrix=True),
                num_samples=args.samples,
                warmup_steps=args.warmup,
                initial_params={"z": z0[j, i : i + 1]},
                disable_progbar=True,
            )
            mcmc.run(x[i : i + 1])
            draws[j, :, i] = mcmc.get_samples()["z"].reshape(args.samples, d).cpu().numpy()
            accepts.append(mcmc.diagnostics()["acceptance rate"]["chain 0"])
    sync()
    t_floor = time.perf_counter() - t0
    report("floor", t_floor, counter.rows, min_bulk_ess(draws), f"accept {np.mean(accepts):.2f} (first {m} points)")

    # --- naive: stock Pyro HMC, all points under one plate, one accept test ---------------------------
    cn = min(args.naive_chains, c)
    draws = np.empty((cn, args.samples, n, d))
    counter.rows, t0 = 0, time.perf_counter()
    steps, accepts = [], []
    for j in range(cn):
        kernel_naive = FixedStepsHMC(vae.model, num_steps=L, adapt_step_size=True, adapt_mass_matrix=True)
        mcmc = MCMC(
            kernel_naive,
            num_samples=args.samples,
            warmup_steps=args.warmup,
            initial_params={"z": z0[j]},
            disable_progbar=True,
        )
        mcmc.run(x)
        draws[j] = mcmc.get_samples()["z"].reshape(args.samples, n, d).cpu().numpy()
        steps.append(kernel_naive.step_size)
        accepts.append(mcmc.diagnostics()["acceptance rate"]["chain 0"])
    sync()
    t_naive = time.perf_counter() - t0
    report(
        "naive",
        t_naive,
        counter.rows,
        min_bulk_ess(draws),
        f"accept {np.mean(accepts):.2f}, one step size {np.mean(steps):.4f} for all points, {cn} chain(s)",
    )

    print(f"vs_ceiling: {speed['probgen'] / speed['ceiling']:.2f}")
    print(f"vs_floor: {rows['probgen']['sum_ess_per_s'] / rows['floor']['sum_ess_per_s']:.1f}")


if __name__ == "__main__":
    main()
