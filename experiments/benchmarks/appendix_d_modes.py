"""Appendix D on bimodal posteriors against 2-D quadrature, and ESS per gradient of per-point trajectories.

Run from the repository root (it uses the test suite's models, tests/inference/):

    python experiments/benchmarks/appendix_d_modes.py modes [--seeds 3] [--points 8] [--chains 8]
    python experiments/benchmarks/appendix_d_modes.py trajectories [--seeds 3]

``modes``: the bimodal-by-construction decoder of probgen/inference/testing/bimodal.py (latent 2, 12 observed,
scale 0.3; the decoder sees z1 through z1^2 and a small tilt, so each point has modes near +-z1* of
unequal mass), points made from z1* evenly spaced in [-2, 2]. Chains start either all from an
encoder that knows only the z1 > 0 mode, or overdispersed (:func:`overdispersed_init`: half encoder,
half annealed prior particles); each run is scored with q fitted per mode (the default), as a
mixture weighted by the chains' shares, and as one Gaussian (the classic estimator). One markdown row
per (start, q): mean and worst error against quadrature over points and seeds, the number of points
off by more than 0.5 nats, how many of those are flagged, and how many points are flagged in all.

``trajectories``: Gaussian posteriors of 8 points, two of them correlated (rho 0.995 and 0.95, which a
diagonal mass cannot undo), run with one leapfrog count for all points (trajectory length / median
step size) and with per-point counts; ESS of z (worst latent, ArviZ bulk) per 1000 batched gradient
evaluations per chain, for the hardest point and the median of the easy ones.
"""

from __future__ import annotations

import argparse
import time

import arviz as az
import numpy as np
import pyro
import torch

from probgen.inference.loglik.appendix_d import appendix_d_from_samples, overdispersed_init
from probgen.inference.mcmc.hmc import run_hmc
from probgen.inference.mcmc.potential import LatentTarget
from probgen.inference.testing.bimodal import Bimodal

Q_FITS = ("per-mode", "mixture", "single")


def modes(args: argparse.Namespace) -> None:
    rows: dict[tuple[str, str], list] = {}
    for seed in range(args.seeds):
        pyro.set_rng_seed(seed)
        m = Bimodal.random(obs_dim=12, s=0.3, tilt=0.15, seed=seed)
        z = torch.stack([torch.linspace(-2.0, 2.0, args.points), torch.randn(args.points)], -1).double()
        x = m.simulate(z, seed=seed + 1)
        target, quad, enc = m.target(x), m.quadrature(x), m.encoder(x)
        for start in ("encoder", "overdispersed"):
            t0 = time.perf_counter()
            z0 = enc.sample((args.chains,)) if start == "encoder" else overdispersed_init(target, enc, args.chains)
            run = run_hmc(target.potential(), z0, args.warmup, 2 * args.samples, trajectory_length=2.0)
            seconds = time.perf_counter() - t0
            for q in Q_FITS:
                r = appendix_d_from_samples(target, run, args.samples, q_fit=q)
                err = r.log_px - quad["log_px"]
                rows.setdefault((start, q), []).append((err, ~r.trusted, seconds, r.flag_counts()))
    print("| start | q | mean error | worst | off > 0.5 nats | of them flagged | flagged (reasons) | seconds/run |")
    print("|---|---|---|---|---|---|---|---|")
    for (start, q), parts in rows.items():
        err = torch.cat([p[0] for p in parts])
        flagged = torch.cat([p[1] for p in parts])
        off = err.abs() > 0.5
        worst = float(err[err.abs().argmax()])
        sec = np.mean([p[2] for p in parts])
        reasons: dict[str, int] = {}
        for p in parts:
            for k, v in p[3].items():
                reasons[k] = reasons.get(k, 0) + v
        why = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
        print(
            f"| {start} | {q} | {float(err.mean()):+.3f} | {worst:+.2f} | {int(off.sum())}/{err.numel()} | "
            f"{int((off & flagged).sum())} | {int(flagged.sum())} ({why}) | {sec:.0f} |"
        )


def trajectories(args: argparse.Namespace) -> None:
    rhos = torch.tensor([0.995, 0.95, 0.0, 0.0, 0.3, 0.0, 0.5, 0.0], dtype=torch.float64)
    scales = torch.tensor([1.0, 0.1, 0.01, 1.0, 0.3, 0.05, 2.0, 0.5], dtype=torch.float64)
    n, d = 8, 2
    eye = torch.eye(2, dtype=torch.float64)
    cov = (eye + rhos[:, None, None] * (1 - eye)) * scales[:, None, None] ** 2
    prec = torch.linalg.inv(cov)

    def log_joint(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lp = -0.5 * torch.einsum("cnd,nde,cne->cn", z, prec, z)
        return lp, torch.zeros_like(lp)

    target = LatentTarget(log_joint, lambda c: torch.randn(c, n, d, dtype=torch.float64), n, d, 1)
    print("| leapfrog steps | seed | steps per point | ESS/1000 grads, rho .995 | rho .95 | easy (median) | min ESS |")
    print("|---|---|---|---|---|---|---|")
    for per_point in (False, True):
        for seed in range(args.seeds):
            pyro.set_rng_seed(seed)
            z0 = torch.randn(4, n, d, dtype=torch.float64) * scales[:, None]
            run = run_hmc(target.potential(), z0, 500, 1000, trajectory_length=2.5, per_point_steps=per_point)
            x = run.samples.numpy()
            ess = np.array([min(az.ess(x[:, :, i, j]) for j in range(d)) for i in range(n)])
            per_grad = 1000 * ess / 4 / (1000 * run.num_steps)
            steps = run.steps_per_point.tolist() if run.steps_per_point is not None else [run.num_steps] * n
            print(
                f"| {'per point' if per_point else 'shared'} | {seed} | {steps} | {per_grad[0]:.1f} | "
                f"{per_grad[1]:.1f} | {np.median(per_grad[2:]):.0f} | {ess.min():.0f} |"
            )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    a = sub.add_parser("modes")
    a.add_argument("--seeds", type=int, default=3)
    a.add_argument("--points", type=int, default=8)
    a.add_argument("--chains", type=int, default=8)
    a.add_argument("--warmup", type=int, default=300)
    a.add_argument("--samples", type=int, default=500)
    b = sub.add_parser("trajectories")
    b.add_argument("--seeds", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    modes(args) if args.what == "modes" else trajectories(args)


if __name__ == "__main__":
    main()
