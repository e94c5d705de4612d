"""R5: VAE on MNIST: latent space, dropout, generated data for a classifier (EXPERIMENTS.md, R5).

Conv VAEs (Bernoulli likelihood) with a 2-D latent, a 5-D latent, more conv layers, learning rates
1e-2/1e-3/1e-4, dropout in the encoder only and in both networks; for the 2-D model the manifold plot
(decoded grid over the latent plane) and the encoder means of the test set coloured by digit. A
conditional VAE (`fit cvae`) generates chosen digits; a small CNN (digit_classifier.py) is trained on
cvae-generated labelled digits mixed with 20 / 50 / 100 % of the real training set, and its test
accuracy reported per fraction. A VAE-GAN (`fit vaegan`) makes the report's discussion item real.

    python experiments/r5_mnist_latent_study.py --data-root DATA
    python experiments/r5_mnist_latent_study.py --smoke --out /tmp/r5
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence

import torch
from common import data_root, fit, parse_args, plot_runs, probgen, vae_curve, write_summary, write_table
from digit_classifier import train_and_test

from probgen.config import DataConfig
from probgen.data import load_dataset, to_unit
from probgen.pipelines.fit_cvae import load_cvae

NAME = "r5_mnist_latent_study"
FRACTIONS = (0.2, 0.5, 1.0)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(NAME, __doc__, argv)
    started = time.perf_counter()
    root = data_root(args, "mnist")
    if args.smoke:
        base = ["--conv-channels", "8,8", "--epochs", 1, "--batch-size", 20]
        variants = {"latent2": ["--latent-dim", 2], "dropout_both": ["--latent-dim", 2, "--dropout", 0.2,
                                                                     "--dropout-in", "both"]}  # fmt: skip
        n_gen, clf_epochs, grid = 200, 1, 5
    else:
        base = ["--conv-channels", "32,64", "--epochs", 20, "--batch-size", 128]
        variants = {
            "latent2": ["--latent-dim", 2],
            "latent5": ["--latent-dim", 5],
            "latent2_deeper": ["--latent-dim", 2, "--conv-channels", "32,64,128"],
            "latent2_lr1e-2": ["--latent-dim", 2, "--lr", 1e-2],
            "latent2_lr1e-3": ["--latent-dim", 2, "--lr", 1e-3],
            "latent2_lr1e-4": ["--latent-dim", 2, "--lr", 1e-4],
            "latent2_dropout_encoder": ["--latent-dim", 2, "--dropout", 0.2, "--dropout-in", "encoder"],
            "latent2_dropout_both": ["--latent-dim", 2, "--dropout", 0.2, "--dropout-in", "both"],
        }
        n_gen, clf_epochs, grid = 60000, 5, 20
    data = ["--dataset", "mnist", "--data-root", root, "--likelihood", "bernoulli"]
    rows, curves = [], {}
    for tag, flags in variants.items():
        run = args.out / tag
        fit(args, "vae", *data, *base, *flags, "--out", run)
        m = json.loads((run / "metrics.json").read_text())["final"]
        rows.append({"run": tag, "flags": " ".join(map(str, flags)), "train_elbo_nats": m["train"]["elbo"],
                     "test_elbo_nats": m.get("test", {}).get("elbo")})  # fmt: skip
        curves[tag] = vae_curve(run, "test", "loss")
        if "--latent-dim" in flags and flags[flags.index("--latent-dim") + 1] == 2:
            dev = ["--data-root", root, "--device", args.device, "--overwrite"]
            probgen("plot", "manifold", "--ckpt", run, "--grid", grid, *dev)
            probgen("plot", "latents", "--ckpt", run, "--split", "test", *dev)
    write_table(rows, args.out / "vae_variants")
    plot_runs(curves, args.out / "combined_test_loss.png", "test -ELBO (nats/image)", "R5: VAE variants")

    # conditional VAE -> labelled generated digits -> classifier with 20/50/100 % of the real data
    cvae_run = args.out / "cvae"
    fit(args, "cvae", *data, *base, "--latent-dim", 2 if args.smoke else 5, "--out", cvae_run)
    cvae, _ = load_cvae(cvae_run / "checkpoint.pt", "cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        x_gen = torch.cat([cvae.sample(min(1000, n_gen - i), generator=gen) for i in range(0, n_gen, 1000)]).cpu()
    y_gen = torch.arange(len(x_gen)) % cvae.num_classes  # sample() cycles through the classes
    mnist = load_dataset(DataConfig(dataset="mnist", data_root=root))
    tr, te = mnist.split("train"), mnist.split("test")
    x_real, y_real = to_unit(tr.images), tr.labels.long()
    x_test, y_test = to_unit(te.images), te.labels.long()
    clf_rows = []
    for frac in FRACTIONS:
        k = int(round(frac * len(x_real)))
        idx = torch.randperm(len(x_real), generator=torch.Generator().manual_seed(1))[:k]
        x = torch.cat([x_gen, x_real[idx]])
        y = torch.cat([y_gen, y_real[idx]])
        acc = train_and_test(x, y, x_test, y_test, clf_epochs, width=8 if args.smoke else 32)
        clf_rows.append({"real_fraction": frac, "num_real": k, "num_generated": len(x_gen),
                         "test_accuracy": acc, "num_test": len(x_test)})  # fmt: skip
    write_table(clf_rows, args.out / "classifier")

    vaegan_run = args.out / "vaegan"
    fit(args, "vaegan", *data, *base, "--latent-dim", 2 if args.smoke else 5, "--out", vaegan_run)
    vg = json.loads((vaegan_run / "metrics.json").read_text())["final"]
    return write_summary(args.out, NAME, args, started, data_root=root, vae_variants=rows, classifier=clf_rows,
                         vaegan_final=vg, cvae_run=str(cvae_run))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
