"""R5: VAE on MNIST: latent space, dropout, generated data for a classifier (docs/experiments/r5.md).

Conv VAEs (Bernoulli likelihood) with a 2-D latent, a 5-D latent, more conv layers, learning rates
1e-2/1e-3/1e-4, dropout in the encoder only and in both networks; for the 2-D model the manifold plot
(decoded grid over the latent plane) and the encoder means of the test set coloured by digit. A
conditional VAE (`fit cvae`) generates chosen digits; a small CNN (digit_classifier.py) is trained on
cvae-generated labelled digits mixed with 20 / 50 / 100 % of the real training set, and its test
accuracy reported per fraction. A VAE-GAN (`fit vaegan`) makes the report's discussion item real.

A binarised (static) latent-5 VAE gets `probgen loglik`: Appendix D (HMC), IWAE and AIS on the test set.

    python experiments/r5_mnist_latent_study.py --data-root DATA
    python experiments/r5_mnist_latent_study.py --data-root DATA --epochs 30 --loglik-points 16    # CPU-sized
    python experiments/r5_mnist_latent_study.py --smoke --out /tmp/r5

Own flags: --epochs (every VAE, cVAE and VAE-GAN; default 20), --num-generated (cVAE digits for the
classifier; default: as many as real training digits), --classifier-epochs (default 5),
--loglik-points (test points for loglik; default 1000).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import torch
from common import data_root, fit, loglik_row, parse_args, plot_runs, probgen, vae_curve, write_summary, write_table
from digit_classifier import train_and_test

from probgen.config import DataConfig
from probgen.data import load_dataset, to_unit
from probgen.models.cvae import load_cvae

NAME = "r5_mnist_latent_study"
FRACTIONS = (0.2, 0.5, 1.0)
LOGLIK_METHODS = ("appendix-d", "iwae", "ais")


def _extra(argv: Sequence[str] | None) -> tuple[list[str], dict]:
    """R5's own flags: --epochs, --num-generated, --classifier-epochs, --loglik-points."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--num-generated", type=int, default=None)
    p.add_argument("--classifier-epochs", type=int, default=None)
    p.add_argument("--loglik-points", type=int, default=None)
    ns, rest = p.parse_known_args(argv)
    return rest, vars(ns)


def main(argv: Sequence[str] | None = None) -> dict:
    rest, opts = _extra(argv)
    args = parse_args(NAME, __doc__, rest)
    started = time.perf_counter()
    root = data_root(args, "mnist")
    if args.smoke:
        base = ["--conv-channels", "8,8", "--epochs", 1, "--batch-size", 20]
        variants = {"latent2": ["--latent-dim", 2], "dropout_both": ["--latent-dim", 2, "--dropout", 0.2,
                                                                     "--dropout-in", "both"]}  # fmt: skip
        n_gen, clf_epochs, grid = 200, 1, 5
    else:
        base = ["--conv-channels", "32,64", "--epochs", opts["epochs"] or 20, "--batch-size", 128]
        variants = {
            "latent2": ["--latent-dim", 2],
            "latent5": ["--latent-dim", 5],
            "latent2_deeper": ["--latent-dim", 2, "--conv-channels", "32,64,128", "--image-size", 32],
            "latent2_lr1e-2": ["--latent-dim", 2, "--lr", 1e-2],
            "latent2_lr1e-3": ["--latent-dim", 2, "--lr", 1e-3],
            "latent2_lr1e-4": ["--latent-dim", 2, "--lr", 1e-4],
            "latent2_dropout_encoder": ["--latent-dim", 2, "--dropout", 0.2, "--dropout-in", "encoder"],
            "latent2_dropout_both": ["--latent-dim", 2, "--dropout", 0.2, "--dropout-in", "both"],
        }
        n_gen, clf_epochs, grid = None, 5, 20  # n_gen None: as many as real training digits
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
    mnist = load_dataset(DataConfig(dataset="mnist", data_root=root))
    tr, te = mnist.split("train"), mnist.split("test")
    n_gen = opts["num_generated"] or n_gen or len(tr)
    clf_epochs = opts["classifier_epochs"] or clf_epochs
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        x_gen = torch.cat([cvae.sample(min(1000, n_gen - i), generator=gen) for i in range(0, n_gen, 1000)]).cpu()
    y_gen = torch.arange(len(x_gen)) % cvae.num_classes  # sample() cycles through the classes
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

    # log p(x) needs a likelihood that is a density of the data: a binarised (static) MNIST model
    bin_run = args.out / "binarized_latent5"
    latent = 2 if args.smoke else 5
    fit(args, "vae", *data, "--binarize", "static", *base, "--latent-dim", latent, "--out", bin_run)
    points = opts["loglik_points"] or (4 if args.smoke else 1000)
    ll_rows = [loglik_row(args, bin_run, root, m, points) for m in LOGLIK_METHODS]
    bin_final = json.loads((bin_run / "metrics.json").read_text())["final"]
    for r in ll_rows:
        r["test_elbo_nats"] = bin_final.get("test", bin_final["train"])["elbo"]
    write_table(ll_rows, args.out / "loglik")
    return write_summary(args.out, NAME, args, started, data_root=root, options=opts, vae_variants=rows,
                         classifier=clf_rows, vaegan_final=vg, cvae_run=str(cvae_run), loglik=ll_rows)  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
