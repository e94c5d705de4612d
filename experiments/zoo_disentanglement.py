"""Disentanglement study: beta-VAE, beta-TCVAE and FactorVAE on dSprites over seeds (docs/zoo.md).

Follows disentanglement_lib's protocol (Locatello et al. 2019) at a reduced scale: the same data
(dSprites, the 5 varying factors), latent size (10), Bernoulli decoder, batch (64), optimiser
(Adam), one hyper-parameter per method from their grids, several random seeds per method, and the
scores of `probgen disentangle` on 10,000 encoded training images (disentanglement_lib scores on the
dataset it trains on). What is reduced is stated in ``summary.json`` and docs/zoo.md: images at
32 px instead of 64, a 12,000-image random subset, --steps optimiser steps instead of 300,000
(so a larger learning rate), a smaller conv net and FactorVAE discriminator.

Each method is one `probgen sweep` over ``seed`` into ``<out>/<method>/``; every run is scored with
`probgen disentangle`. Re-running continues: finished runs and scores are skipped, interrupted runs resume.

    nice -n 5 python experiments/zoo_disentanglement.py --steps 600 --out runs/zoo   # ~1 h on 2 shared cores
    python experiments/zoo_disentanglement.py --smoke --out /tmp/zoo

Outputs in ``--out``: ``scores.csv`` / ``scores.md`` (one row per run), ``distribution.md`` (per
method: median and [min, max] over seeds of each score), ``scores_by_seed.png`` (every run's score,
per metric and method) and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from common import parse_args, probgen, write_summary, write_table

NAME = "zoo_disentanglement"
SCORES = ("beta_vae", "factor_vae", "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "sap")
#: one setting per method, from the middle of Locatello et al.'s grids
FACTOR = ["--objective", "factor-vae", "--factor-gamma", "30", "--factor-disc-hidden", "256,256,256,256"]
METHODS: dict[str, list[str]] = {
    "beta-vae": ["--beta", "4"],
    "beta-tcvae": ["--objective", "beta-tcvae", "--tc-beta", "6"],
    "factor-vae": FACTOR,
    # the discriminator's learning rate scaled like the VAE's (1e-4 -> 1e-3) for the short schedule: with
    # the paper's 1e-4 it stays at chance (d_loss ~ ln 2) for 600 steps and the TC penalty is ~0
    "factor-vae-dlr": [*FACTOR, "--factor-disc-lr", "1e-3"],
}
FULL = ["--limit", "12000", "--image-size", "32", "--conv-channels", "32,32,64", "--kernel-size", "4",
        "--hidden-dims", "256", "--latent-dim", "10", "--batch-size", "64", "--lr", "1e-3"]  # fmt: skip
SMOKE = ["--limit", "320", "--image-size", "16", "--conv-channels", "4,4", "--hidden-dims", "16",
         "--latent-dim", "4", "--batch-size", "32"]  # fmt: skip


def _extra(argv: Sequence[str] | None) -> tuple[list[str], dict]:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--steps", type=int, default=None, help="optimiser steps per run (default 800; smoke 6)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per method (default 3; smoke 2)")
    p.add_argument("--report-only", action="store_true", help="only tabulate the runs already trained and scored")
    ns, rest = p.parse_known_args(argv)
    return rest, vars(ns)


def _score(run: Path, smoke: bool, device: str) -> dict:
    out = run / "disentanglement.json"
    if not out.is_file():
        sizes = ["--num-points", 300, "--num-train", 200, "--num-eval", 100, "--group-size", 8] if smoke else []
        probgen("disentangle", "--ckpt", run, "--split", "train", "--device", device, *sizes)
    return json.loads(out.read_text())["scores"]


def _distribution(rows: list[dict]) -> list[dict]:
    table = []
    for method in METHODS:
        runs = [r for r in rows if r["method"] == method]
        if not runs:
            continue
        line: dict = {"method": method, "seeds": len(runs)}
        for s in SCORES:
            v = sorted(r[s] for r in runs)
            line[s] = f"{statistics.median(v):.3f} [{v[0]:.3f}, {v[-1]:.3f}]"
        table.append(line)
    return table


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SCORES), figsize=(2.4 * len(SCORES), 3.2), sharey=False)
    for ax, s in zip(axes, SCORES):
        for i, method in enumerate(METHODS):
            v = [r[s] for r in rows if r["method"] == method]
            ax.scatter([i] * len(v), v, s=18, alpha=0.8)
            if v:
                ax.hlines(statistics.median(v), i - 0.3, i + 0.3, color="k", lw=1)
        ax.set_xticks(range(len(METHODS)), list(METHODS), rotation=45, ha="right", fontsize=8)
        ax.set_title(s, fontsize=9)
    fig.suptitle("disentanglement scores per seed (line: median)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict:
    rest, opts = _extra(argv)
    args = parse_args(NAME, __doc__, rest)
    started = time.perf_counter()
    steps = opts["steps"] or (6 if args.smoke else 800)
    seeds = opts["seeds"] or (2 if args.smoke else 3)
    base = ["--dataset", "dsprites", *(SMOKE if args.smoke else FULL), "--max-steps", steps, "--epochs", 1000,
            "--checkpoint-every", 200, "--device", args.device, "--no-progress"]  # fmt: skip
    if args.data_root:
        base += ["--data-root", args.data_root]
    grid = ["--grid", "seed=" + ",".join(str(s) for s in range(seeds))]
    rows = []
    for method, flags in METHODS.items():
        out = args.out / method
        if not opts["report_only"]:
            probgen("sweep", *grid, *base, *flags, "--out", out)
        for s in range(seeds):
            run = out / f"seed={s}"
            if opts["report_only"] and not (run / "disentanglement.json").is_file():
                continue
            metrics = json.loads((run / "metrics.json").read_text())
            test = metrics["final"].get("test", {})
            rows.append({"method": method, "seed": s, **_score(run, args.smoke, args.device),
                         "test_elbo": test.get("elbo"), "test_kl": test.get("kl"),
                         "train_seconds": metrics.get("train_seconds")})  # fmt: skip
    write_table(rows, args.out / "scores")
    write_table(_distribution(rows), args.out / "distribution")
    _plot(rows, args.out / "scores_by_seed.png")
    reduced = {"image_size": 16 if args.smoke else 32, "images": 320 if args.smoke else 12000, "steps": steps}
    return write_summary(args.out, NAME, args, started, seeds=seeds, methods=METHODS, reduced=reduced, runs=rows)


if __name__ == "__main__":
    main()
