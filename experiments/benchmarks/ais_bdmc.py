"""AIS schedules on sharp and broad posteriors, and BDMC gaps as the number of AIS steps grows.

Both on probabilistic PCA, whose log p(x) is known in closed form (the model of the test suite,
probgen/inference/testing/ppca.py: run from the repository root).

    python experiments/benchmarks/ais_bdmc.py schedules [--steps 1000] [--seeds 2] [--points 16]
    python experiments/benchmarks/ais_bdmc.py bdmc [--steps 100,300,1000] [--seeds 2] [--points 16] [--scale 0.05]

``schedules`` runs AIS (16 chains, 5 leapfrog steps per temperature) with each schedule at the same
number of steps on two PPCA models: *sharp* (16 observed, latent 2, observation scale 0.05) and
*broad* (20 observed, latent 10, scale 1). ``sigmoid, online`` is the estimator before the pilot run
(step sizes adapted on the weighted chains themselves); the others use the pilot run. One markdown
row per (model, schedule): mean error against the exact value over points and seeds (with its
standard error), the most negative and most positive errors, the median variance of the log weights,
the number of points flagged ``ais-variance``, and seconds.

``bdmc`` simulates (z*, x) from a PPCA model (latent 2, 16 observed, ``--scale``) and runs BDMC at each
number of steps: one markdown row per step count with the mean lower and upper bounds' errors, the
mean and largest gap, and the fraction of points whose 3-se sandwich contains the exact value.
``--json PATH`` also writes the rows.

    python experiments/benchmarks/ais_bdmc.py laplace --ckpt runs/readme/checkpoint.pt [--points 64] [--budget quick]

``laplace`` is BDMC for ``--method ais-laplace`` on a trained VAE (``bdmc_laplace``): ``--points``
points simulated from the model (z* ~ p(z), x ~ p(x | z*)), the forward ais-laplace estimate and
the reverse run from z* back to the Laplace mixture, at the CPU ``--budget``'s chains and
temperatures, with the pipeline's optimiser starts. It prints the gap's distribution (quantiles,
the fraction of points below 0.5 nats, the largest) and, with ``--json``, writes every point's bounds.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence

import pyro
import torch

from probgen.config.loglik import BUDGETS
from probgen.inference.loglik.ais import ais
from probgen.inference.loglik.bdmc import bdmc_gap_table, bdmc_laplace, simulate
from probgen.inference.loglik.laplace_fit import laplace_starts
from probgen.inference.mcmc.potential import encoder_proposal, from_pyro_model
from probgen.inference.testing.ppca import PPCA
from probgen.models.vae import load_vae

SCHEDULES = (("sigmoid", 0), ("sigmoid", None), ("geometric-sigmoid", None), ("geometric", None), ("adaptive", None))
MODELS = {"sharp": dict(obs_dim=16, latent_dim=2, s=0.05), "broad": dict(obs_dim=20, latent_dim=10, s=1.0)}


def schedules(steps: int, seeds: int, points: int) -> list[dict]:
    rows = []
    print("| posterior | schedule | mean error | worst below | worst above | median var(log w) | flagged | s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, kw in MODELS.items():
        m = PPCA.random(seed=0, **kw)
        x = m.simulate(points)
        exact = m.log_evidence(x)
        for schedule, pilot in SCHEDULES:
            errs, lvar, flagged, t0 = [], [], 0, time.perf_counter()
            for seed in range(seeds):
                pyro.set_rng_seed(seed)
                r = ais(m.target(x), 16, steps, 5, schedule=schedule, pilot_chains=pilot)
                errs.append(r.log_px - exact)
                lvar.append(r.per_point["log_weight_var"])
                flagged += r.info["num_ais_variance"]
            e = torch.cat(errs)
            label = f"{schedule}, {'online' if pilot == 0 else 'pilot'}"
            row = {
                "posterior": name,
                "schedule": label,
                "ais_steps": steps,
                "mean_error": float(e.mean()),
                "mean_error_se": float(e.std() / math.sqrt(e.numel())),
                "min_error": float(e.min()),
                "max_error": float(e.max()),
                "median_log_weight_var": float(torch.cat(lvar).median()),
                "flagged": flagged,
                "points": e.numel(),
                "seconds": time.perf_counter() - t0,
            }
            rows.append(row)
            print(
                f"| {name} | {label} | {row['mean_error']:+.3f} +- {row['mean_error_se']:.3f} | {row['min_error']:+.2f}"
                f" | {row['max_error']:+.2f} | {row['median_log_weight_var']:.2f} | {flagged}/{e.numel()}"
                f" | {row['seconds']:.0f} |",
                flush=True,
            )
    return rows


def bdmc_rows(steps: list[int], seeds: int, points: int, scale: float) -> list[dict]:
    m = PPCA.random(obs_dim=16, latent_dim=2, s=scale, seed=0)

    def problem(seed: int):
        pyro.set_rng_seed(seed)
        z, x = simulate(m.model, torch.zeros(points, 16, dtype=torch.float64))
        return m.target(x), z, m.log_evidence(x)

    rows = []
    print("| --ais-steps | lower - exact | upper - exact | gap mean | gap max | sandwich contains exact | s |")
    print("|---|---|---|---|---|---|---|")
    for t in steps:
        t0 = time.perf_counter()
        (row,) = bdmc_gap_table(problem, [t], list(range(seeds)), leapfrog_steps=5)
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(
            f"| {t} | {row['lower_error_mean']:+.3f} | {row['upper_error_mean']:+.3f} | {row['gap_mean']:.3f}"
            f" +- {row['gap_se']:.3f} | {row['gap_max']:.2f} | {row['contains_exact']:.0%} | {row['seconds']:.0f} |",
            flush=True,
        )
    return rows


def laplace_gaps(ckpt: str, points: int, budget: str, seed: int) -> list[dict]:
    vae, _ = load_vae(ckpt)
    pyro.set_rng_seed(seed)
    z_star, x = simulate(vae.model, torch.zeros(points, *vae.image_shape))
    target = from_pyro_model(vae.model, x)
    proposal = encoder_proposal(vae.guide, x)
    enc, pri = laplace_starts(target.latent_dim)
    starts = torch.cat([proposal.mean.unsqueeze(0), proposal.sample((enc,)), target.sample_prior(pri)]).detach()
    b = BUDGETS["cpu"][budget]
    t0 = time.perf_counter()
    r = bdmc_laplace(target, z_star, starts, b["chains"], b["ais_steps"], b["leapfrog_steps"])
    seconds = time.perf_counter() - t0
    gap = r.gap
    q = torch.quantile(gap, torch.tensor([0.0, 0.5, 0.9, 1.0], dtype=gap.dtype)).tolist()
    below, above, flagged = float((gap < 0.5).double().mean()), int((gap > 2).sum()), sum(map(bool, r.lower.flags))
    print(
        f"| {budget} | {points} | {q[0]:+.3f} | {q[1]:.3f} | {q[2]:.3f} | {q[3]:.3f}"
        f" | {below:.0%} | {above} | {flagged} | {seconds:.0f} |",
        flush=True,
    )
    return [
        {"point": i, "lower": float(r.lower.log_px[i]), "upper": float(r.upper.log_px[i]), "gap": float(gap[i]),
         "se_lower": float(r.lower.se[i]), "se_upper": float(r.upper.se[i]), "flags_lower": r.lower.flags[i],
         "budget": budget, "seconds": seconds}
        for i in range(points)
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("schedules", "bdmc", "laplace"))
    p.add_argument("--ckpt", default=None, help="laplace: a VAE checkpoint")
    p.add_argument("--budget", default="quick", choices=tuple(BUDGETS["cpu"]), help="laplace: CPU budget")
    p.add_argument("--steps", default=None, help="AIS steps (bdmc: a comma list)")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--points", type=int, default=16)
    p.add_argument("--scale", type=float, default=0.05, help="bdmc: PPCA observation scale")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    if a.what == "schedules":
        rows = schedules(int(a.steps or 1000), a.seeds, a.points)
    elif a.what == "laplace":
        print("| budget | points | gap min | median | 90% | max | < 0.5 | > 2 | lower flagged | s |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        rows = laplace_gaps(a.ckpt, a.points, a.budget, a.seeds)
    else:
        rows = bdmc_rows([int(s) for s in (a.steps or "100,300,1000").split(",")], a.seeds, a.points, a.scale)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
