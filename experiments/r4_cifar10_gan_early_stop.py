"""R4: DCGAN on CIFAR-10 with FID-based early stopping (docs/experiments/r4.md).

32x32x3 in [-1, 1], Gaussian latent of 100, Adam; FID (Inception, --inception) or FD-cifar10 (domain
features) computed every epoch; training stops when it has not improved for 5 epochs (max 200).
Outputs (written by `probgen fit gan` into the run dir and collected here): the FID-vs-epoch curve
(eval_curve.png, eval_history.csv), G and D loss curves (loss_curves.png), sample grids at epochs 10,
20 and the last, and summary.json with N, features and resize of every FID.

Probgen's DCGAN derives its depth from the image size (32 px: 3 stride-2 conv layers in D plus the
4x4 output conv), so "4 conv layers stride 2" of the report is 3 + 1 here.

    python experiments/r4_cifar10_gan_early_stop.py --data-root DATA [--inception]
    python experiments/r4_cifar10_gan_early_stop.py --smoke --out /tmp/r4
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence

from common import data_root, eval_flags, fit, parse_args, read_csv, write_summary, write_table

NAME = "r4_cifar10_gan_early_stop"


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(NAME, __doc__, argv)
    started = time.perf_counter()
    root = data_root(args, "cifar10")
    if args.smoke:  # 40 fixture images; patience 1 over at most 3 epochs
        sizes = ["--g-channels", 8, "--d-channels", 8, "--batch-size", 8, "--epochs", 3, "--early-stop-patience", 1]
        epochs_grid = "2,3"
    else:
        sizes = ["--batch-size", 128, "--epochs", 200, "--early-stop-patience", 5]
        epochs_grid = "10,20"
    run = args.out / "gan"
    fit(args, "gan", "--dataset", "cifar10", "--data-root", root, "--latent-dim", 100, "--latent-dist", "normal",
            "--output", "tanh", "--eval-every", 1, "--sample-epochs", epochs_grid, *sizes,
            *eval_flags(args, 10000, smoke_num=16), "--out", run)  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    history = read_csv(run / "eval_history.csv")
    ev = json.loads((run / "eval.json").read_text())
    name = ev["primary"]
    rec = ev["metrics"][name]
    rows = [{"epoch": int(float(r["epoch"])), name: float(r["value"])} for r in history]
    write_table(rows, args.out / "fid_per_epoch")
    return write_summary(
        args.out, NAME, args, started, data_root=root, run=str(run), metric=name,
        num_generated=rec["num_generated"], num_real=rec["num_real"], features=rec["feature_network"],
        resize=rec["resize"], best=ev["best"], early_stopping=metrics["early_stopping"],
        epochs_completed=metrics["epochs_completed"], history=rows,
        figures=sorted(p.name for p in run.glob("*.png")),
    )  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
