"""R1: VAE on chest X-rays, hyper-parameter study (docs/experiments/r1.md).

Six runs (M, latent, epochs, beta, lr) of a conv VAE with LeakyReLU(0.01), 3 channels, a Gaussian
likelihood with stated sigma (--obs-scale, summed over pixels, so beta means what it says), train batch
64, validation batch 4. Per run: samples at epoch 5 and the last, loss curves (recon, KL, -ELBO);
across runs: one combined total-loss plot; after training: FID/IS (Inception, with --inception) or
FD-chest-xray (domain features), each with N, features and resize. Outputs under --out.

    python experiments/r1_chest_xray_study.py --data-root DATA [--inception]
    python experiments/r1_chest_xray_study.py --smoke --out /tmp/r1
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from common import (
    data_root,
    derived,
    eval_flags,
    fit,
    parse_args,
    plot_runs,
    read_eval,
    vae_curve,
    write_summary,
    write_table,
)

NAME = "r1_chest_xray_study"
#: (M, latent, epochs, beta, lr) of the report's six runs
RUNS = [
    (64, 128, 100, 2.5e-4, 5e-3),
    (64, 256, 100, 2.5e-4, 5e-3),
    (128, 128, 100, 2.5e-4, 1e-2),
    (64, 128, 100, 2.5e-3, 5e-3),
    (64, 64, 50, 2.5e-3, 5e-3),
    (256, 64, 20, 2.5e-3, 5e-3),
]
OBS_SCALE = 0.1  # sigma of the Gaussian likelihood in [0, 1] pixel units


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(NAME, __doc__, argv)
    started = time.perf_counter()
    root = data_root(args, "chest-xray")
    if args.smoke:  # two runs, 16 px, 2 epochs, tiny nets: same protocol, seconds on a CPU
        runs = [(16, 8, 2, 2.5e-4, 5e-3), (16, 4, 2, 2.5e-3, 5e-3)]
        net, batch = ["--conv-channels", "8,8"], 4
    else:
        runs, net, batch = RUNS, ["--conv-channels", "32,64,128,256"], 64
    rows, curves = [], {}
    for m, dl, epochs, beta, lr in runs:
        tag = f"M{m}_L{dl}_E{epochs}_b{beta:g}_lr{lr:g}"
        run = args.out / tag
        last = epochs
        fit(args, "vae", "--dataset", "chest-xray", "--data-root", root, "--image-size", m, "--channels", 3,
                "--latent-dim", dl, "--epochs", epochs, "--beta", beta, "--lr", lr, "--batch-size", batch,
                "--eval-batch-size", 4, "--activation", "leaky_relu", "--negative-slope", 0.01,
                "--likelihood", "gaussian", "--obs-scale", OBS_SCALE, "--sample-epochs", f"{min(5, last)},{last}",
                *net, "--out", run)  # fmt: skip
        n = 1000 if not args.smoke else 32
        derived(args, run / "eval.json", "eval", "--ckpt", run, "--data-root", root, "--device", args.device,
                "--no-progress", "--overwrite", *eval_flags(args, n))  # fmt: skip
        ev = read_eval(run / "eval.json")
        curves[tag] = vae_curve(run, "train", "loss")
        ep, loss = curves[tag]
        row = {"run": tag, "M": m, "latent": dl, "epochs": epochs, "beta": beta, "lr": lr, "obs_scale": OBS_SCALE,
               "final_train_loss_nats": loss[-1]}  # fmt: skip
        for name, rec in ev["metrics"].items():
            row[name] = rec.get("value", rec.get("mean"))
            row[f"{name}_N"] = rec["num_generated"]
            row[f"{name}_features"] = rec["feature_network"]
            row[f"{name}_resize"] = rec["resize"]
        rows.append(row)
    plot_runs(curves, args.out / "combined_total_loss.png", "beta-weighted -ELBO (nats/image)", "R1: total loss")
    write_table(rows, args.out / "results")
    return write_summary(args.out, NAME, args, started, data_root=root, runs=rows,
                         combined_plot="combined_total_loss.png", table="results.csv")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
