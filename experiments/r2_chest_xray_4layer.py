"""R2: 4-layer conv VAE on chest X-rays vs. the same nets without the latent layer (docs/experiments/r2.md).

256x256 grey X-rays; encoder Conv(32, 64, 128, 256; k4 s2 p1) + ReLU, a linear bottleneck of 256,
mirrored ConvTranspose decoder; Adam 1e-3, batch 32, 15 epochs, KL weight 1e-4. The report's BCE is a
Bernoulli likelihood (summed over pixels). Variant 2: `probgen fit ae` without a bottleneck (a plain
conv autoencoder). Outputs: loss curves of both (one combined plot), reconstructions of one test
batch of 32 next to the originals, FID/IS (--inception) or FD-chest-xray with N, features, resize.

    python experiments/r2_chest_xray_4layer.py --data-root DATA [--inception]
    python experiments/r2_chest_xray_4layer.py --smoke --out /tmp/r2
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
    probgen,
    read_eval,
    vae_curve,
    write_summary,
    write_table,
)

NAME = "r2_chest_xray_4layer"


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(NAME, __doc__, argv)
    started = time.perf_counter()
    root = data_root(args, "chest-xray")
    if args.smoke:
        size, chans, latent, epochs, batch, nrec = 16, "4,8", 8, 2, 4, 3
    else:
        size, chans, latent, epochs, batch, nrec = 256, "32,64,128,256", 256, 15, 32, 32
    common = ["--dataset", "chest-xray", "--data-root", root, "--image-size", size, "--channels", 1,
              "--conv-channels", chans, "--kernel-size", 4, "--activation", "relu", "--latent-dim", latent,
              "--likelihood", "bernoulli", "--lr", 1e-3, "--batch-size", batch, "--epochs", epochs]  # fmt: skip
    vae, ae = args.out / "vae_bottleneck", args.out / "ae_no_bottleneck"
    fit(args, "vae", *common, "--beta", 1e-4, "--out", vae)
    fit(args, "ae", *common, "--no-bottleneck", "--out", ae)
    rows, curves = [], {}
    for name, run, column in ((f"VAE (bottleneck {latent})", vae, "loss"), ("conv AE (no bottleneck)", ae, None)):
        rec = run / "reconstructions_test32.png"
        probgen("plot", "reconstructions", "--ckpt", run, "--split", "test", "--num-images", nrec, "--nrow", 8,
                "--data-root", root, "--device", args.device, "--out", rec, "--overwrite")  # fmt: skip
        derived(args, run / "eval.json", "eval", "--ckpt", run, "--data-root", root, "--device", args.device,
                "--no-progress", "--overwrite", *eval_flags(args, 1000))  # fmt: skip
        ev = read_eval(run / "eval.json")
        losses = vae_curve(run, "train", column or _ae_column(run))
        curves[name] = losses
        row = {"model": name, "run": run.name, "final_train_loss_nats": losses[1][-1], "reconstructions": rec.name}
        for metric, r in ev["metrics"].items():
            row[metric] = r.get("value", r.get("mean"))
            row[f"{metric}_N"] = r["num_generated"]
            row[f"{metric}_features"] = r["feature_network"]
            row[f"{metric}_resize"] = r["resize"]
        rows.append(row)
    plot_runs(curves, args.out / "combined_loss.png", "training loss (nats/image)", "R2: VAE vs conv AE")
    write_table(rows, args.out / "results")
    return write_summary(args.out, NAME, args, started, data_root=root, runs=rows, combined_plot="combined_loss.png")


def _ae_column(run) -> str:
    """The autoencoder's loss column in its losses.csv (its negative reconstruction log-likelihood)."""
    from common import read_csv

    cols = read_csv(run / "losses.csv")[0].keys()
    return "loss" if "loss" in cols else next(c for c in cols if c not in ("epoch", "step", "split"))


if __name__ == "__main__":
    main(sys.argv[1:])
