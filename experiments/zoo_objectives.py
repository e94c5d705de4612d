"""One measured example per VAE objective (docs/zoo.md): ELBO, DIP-VAE-II, capacity and IWAE training.

The same conv VAE as experiments/zoo_disentanglement.py (dSprites at 32 px, 12,000 images, latent 10)
trained for --steps steps under each objective; then, per model, what its objective acts on:

- ``covariance.csv``: the aggregate posterior's covariance on the test split (DIP-VAE-II's target):
  sum of squared off-diagonal entries and of (diagonal - 1)^2;
- the final test row of each run (``runs.csv``): ELBO terms, the objective's own column, C;
- ``probgen loglik --method elbo,iwae`` (``-k 1000``, 200 test images) of the ELBO- and IWAE-trained
  models, and ``-k K`` on the whole test split of the IWAE model: the estimator of the training bound.

    nice -n 5 python experiments/zoo_objectives.py --out runs/obj      # ~15 min on 2 shared cores
    python experiments/zoo_objectives.py --smoke --out /tmp/obj
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import torch
from common import derived, fit, parse_args, write_summary, write_table

from probgen.data import load_dataset, to_unit
from probgen.inference.svi.objectives import aggregate_covariance
from probgen.training.trainers.vae import load_vae

NAME = "zoo_objectives"
PARTICLES = 5
RUNS: dict[str, list[str]] = {
    "elbo": [],
    "dip-vae-ii": ["--objective", "dip-vae-ii"],
    "capacity": ["--objective", "capacity", "--capacity-max", "15", "--capacity-steps", "200"],
    "iwae5": ["--elbo", "iwae", "--particles", str(PARTICLES)],
}
FULL = ["--limit", "12000", "--image-size", "32", "--conv-channels", "32,32,64", "--kernel-size", "4",
        "--hidden-dims", "256", "--latent-dim", "10", "--batch-size", "64", "--lr", "1e-3"]  # fmt: skip
SMOKE = ["--limit", "320", "--image-size", "16", "--conv-channels", "4,4", "--hidden-dims", "16",
         "--latent-dim", "4", "--batch-size", "32"]  # fmt: skip


def covariance_row(run: str) -> dict:
    vae, cfg = load_vae(run)
    x = to_unit(load_dataset(cfg.data).split("test").images)
    with torch.no_grad():
        loc, scale = vae.encode(x)
    c = aggregate_covariance(loc.double(), scale.double())
    d = torch.diagonal(c)
    off = c - torch.diag(d)
    return {"off_diagonal_sq": float((off**2).sum()), "diagonal_minus_1_sq": float(((d - 1) ** 2).sum()),
            "diagonal_min": float(d.min()), "diagonal_max": float(d.max())}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--steps", type=int, default=None, help="optimiser steps per run (default 300; smoke 4)")
    ns, rest = p.parse_known_args(argv)
    args = parse_args(NAME, __doc__, rest)
    started = time.perf_counter()
    steps = ns.steps or (4 if args.smoke else 300)
    base = ["vae", "--dataset", "dsprites", *(SMOKE if args.smoke else FULL), "--max-steps", steps, "--epochs", 1000]
    if args.data_root:
        base += ["--data-root", args.data_root]
    rows, cov = [], []
    for name, flags in RUNS.items():
        run = args.out / name
        fit(args, *base, *flags, "--out", run)
        metrics = json.loads((run / "metrics.json").read_text())
        rows.append({"run": name, **metrics["final"]["test"], "train_seconds": metrics["train_seconds"]})
        cov.append({"run": name, **covariance_row(str(run))})
    k, points = (10, 16) if args.smoke else (1000, 200)
    loglik = []
    for name in ("elbo", "iwae5"):
        out = args.out / name / "loglik"
        derived(args, out / "loglik.json", "loglik", "--ckpt", args.out / name, "--method", "elbo,iwae",
                "-k", k, "--num-data", points, "--device", args.device, "--no-progress", "--overwrite",
                "--out", out)  # fmt: skip
        res = json.loads((out / "loglik.json").read_text())["results"]
        loglik += [{"run": name, "method": m, "k": k, "N": points, "log_px": res[m]["log_px_mean"],
                    "stderr": res[m]["log_px_stderr"]} for m in ("elbo", "iwae")]  # fmt: skip
    out = args.out / "iwae5" / f"loglik_k{PARTICLES}"  # the training bound's own estimator, whole test split
    derived(args, out / "loglik.json", "loglik", "--ckpt", args.out / "iwae5", "--method", "iwae", "-k", PARTICLES,
            "--num-data", 100000, "--device", args.device, "--no-progress", "--overwrite", "--out", out)  # fmt: skip
    r = json.loads((out / "loglik.json").read_text())["results"]["iwae"]
    loglik.append({"run": "iwae5", "method": "iwae", "k": PARTICLES, "N": r["num_data"], "log_px": r["log_px_mean"],
                   "stderr": r["log_px_stderr"]})  # fmt: skip
    write_table(rows, args.out / "runs")
    write_table(cov, args.out / "covariance")
    write_table(loglik, args.out / "loglik")
    return write_summary(args.out, NAME, args, started, steps=steps, runs=rows, covariance=cov, loglik=loglik)


if __name__ == "__main__":
    main()
