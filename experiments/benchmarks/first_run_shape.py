"""How long the README's first run must train to keep the shapes (issue 25): shape accuracy of the test
reconstructions and test -ELBO against the CPU time spent training.

The run is trained in chunks of ``--chunk-epochs`` (``probgen fit vae ... --resume``, which continues
exactly where it stopped), and after each chunk ``metrics.json``'s ``reconstruction_accuracy`` (the
dSprites domain classifier on 500 test reconstructions, ``--recon-accuracy-steps 2000``) and test
-ELBO are appended to ``curve.csv`` with the CPU seconds (user + system) of the fit processes so far.
The classifier is trained once before the first chunk, by a 1-step fit, and cached (``$PROBGEN_CACHE``),
so its cost is not in the curve; that fit's CPU seconds are ``classifier_cpu_seconds`` in ``summary.json``
(about 165 s of one thread when it trains the classifier, about 17 s when it is cached). CPU time,
not wall time, so that a shared machine gives the same curve. Re-run, the script continues its CSV.

    OMP_NUM_THREADS=1 python experiments/benchmarks/first_run_shape.py --out /tmp/shape-curve \\
        --chunk-epochs 3 --max-epochs 24 -- --lr 1e-3 --batch-size 32 --beta-schedule linear \\
        --beta-warmup-steps 500

Writes ``curve.csv``, ``curve.png`` and ``summary.json`` under ``--out`` (the run itself in ``--out/run``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt

FIELDS = ("epochs", "steps", "cpu_seconds", "shape_accuracy", "test_neg_elbo", "load1")
CLASSIFIER_STEPS = 2000


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _fit(run: Path, epochs: int, fit_args: list[str], resume: bool, log: Path) -> float:
    """One chunk: ``probgen fit vae`` up to ``epochs``; returns its CPU seconds."""
    cmd = ["probgen", "fit", "vae", "--dataset", "dsprites", "--limit", "20000", "--epochs", str(epochs)]
    cmd += [*fit_args, "--recon-accuracy-steps", str(CLASSIFIER_STEPS), "--out", str(run), "--no-progress"]
    cmd += ["--resume"] if resume else []
    before = _children_cpu()
    with log.open("w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True)
    return _children_cpu() - before


def _read(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def plot(rows: list[dict[str, float]], path: Path, title: str) -> None:
    """Shape accuracy (left axis) and test -ELBO (right axis) against CPU minutes."""
    minutes = [r["cpu_seconds"] / 60 for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(minutes, [100 * r["shape_accuracy"] for r in rows], "o-", color="C0", label="shape accuracy")
    ax.axhline(90, color="C0", ls=":", lw=1)
    ax.set_xlabel("CPU minutes of training (one thread)")
    ax.set_ylabel("test reconstructions with the right shape (%)", color="C0")
    ax2 = ax.twinx()
    ax2.plot(minutes, [r["test_neg_elbo"] for r in rows], "s--", color="C1", label="test -ELBO")
    ax2.set_ylabel("test -ELBO (nats)", color="C1")
    for r, m in zip(rows, minutes):
        ax.annotate(
            f"{int(r['epochs'])} ep",
            (m, 100 * r["shape_accuracy"]),
            fontsize=7,
            xytext=(3, -10),
            textcoords="offset points",
        )
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--chunk-epochs", type=int, default=3)
    p.add_argument("--max-epochs", type=int, default=24)
    p.add_argument("--target", type=float, default=0.9, help="stop once shape accuracy reaches this")
    p.add_argument("fit_args", nargs="*", help="further `probgen fit vae` flags, after --")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    run, table = args.out / "run", args.out / "curve.csv"
    rows = _read(table)
    summary_path = args.out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {"fit_args": args.fit_args}
    if "classifier_cpu_seconds" not in summary:  # train and cache the classifier apart: a 1-step fit
        summary["classifier_cpu_seconds"] = _fit(
            args.out / "classifier", 1, [*args.fit_args, "--max-steps", "1"], False, args.out / "classifier.log"
        )
        summary_path.write_text(json.dumps(summary, indent=1))
    cpu = rows[-1]["cpu_seconds"] if rows else 0.0
    epochs = int(rows[-1]["epochs"]) if rows else 0
    while epochs < args.max_epochs and not (rows and rows[-1]["shape_accuracy"] >= args.target):
        epochs += args.chunk_epochs
        cpu += _fit(run, epochs, args.fit_args, run.exists(), args.out / f"fit-{epochs}.log")
        m = json.loads((run / "metrics.json").read_text())
        rows.append(
            {
                "epochs": epochs,
                "steps": m["steps"],
                "cpu_seconds": round(cpu, 1),
                "shape_accuracy": m["reconstruction_accuracy"]["reconstructions"]["shape"],
                "test_neg_elbo": round(-m["final"]["test"]["elbo"], 2),
                "load1": round(os.getloadavg()[0], 1),
            }
        )
        with table.open("w", newline="") as f:
            w = csv.DictWriter(f, FIELDS)
            w.writeheader()
            w.writerows(rows)
        print(",".join(str(rows[-1][k]) for k in FIELDS), flush=True)
    plot(rows, args.out / "curve.png", "probgen fit vae --dataset dsprites --limit 20000 " + " ".join(args.fit_args))
    reached = next((r for r in rows if r["shape_accuracy"] >= args.target), None)
    summary.update(rows=len(rows), reached_target=reached, finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    summary_path.write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
