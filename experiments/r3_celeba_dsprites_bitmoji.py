"""R3: VAEs on CelebA and dSprites with proper marginal likelihoods; DCGAN variants on Bitmoji
(docs/experiments/r3.md).

VAEs: CelebA 64x64 with 5 conv blocks [Conv, BatchNorm, LeakyReLU] (16..256 channels), latent 512, a
Gaussian likelihood with stated sigma (--obs-scale 0.1, summed over pixels), 20 epochs; sweeps beta in
{2.5e-1, 2.5e-2, 2.5e-3, 2.5e-4} and latent in {4, 16, 128, 512} at beta 2.5e-4. dSprites (binary,
Bernoulli likelihood; the official .npz when present, else probgen's procedural renderer) with a
2-layer MLP: latent 6 vs 32 and beta 2.5e-3 vs 2.5e-2. log p(x) and bits/dim per dataset and
configuration with `probgen loglik`: Appendix D (HMC) for small latents (<= 16), IWAE and AIS for all;
10x10 grids of 100 samples of the best model per dataset (highest IWAE log p(x)).

DCGAN on Bitmoji, 64x64x3, noise U[0, 1]^128, sigmoid output; normalisation on both / D only / G only /
none, batch vs instance, init N(0, 0.02) vs He; 25 epochs; FID (--inception) or FD-bitmoji between 1000
generated and 1000 real images. The first variant is trained half-way, then resumed with --resume to
the full length (both optimizers' states are in its checkpoint; checked and reported).

    python experiments/r3_celeba_dsprites_bitmoji.py --data-root DATA [--inception]
    python experiments/r3_celeba_dsprites_bitmoji.py --smoke --out /tmp/r3
    python experiments/r3_celeba_dsprites_bitmoji.py --only dsprites --dsprites-limit 20000 --epochs 5
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from common import (
    data_present,
    data_root,
    derived,
    eval_flags,
    fit,
    loglik_row,
    parse_args,
    probgen,
    read_eval,
    write_summary,
    write_table,
)

from probgen.checkpoint import load_checkpoint

NAME = "r3_celeba_dsprites_bitmoji"
CELEBA_BETAS = (2.5e-1, 2.5e-2, 2.5e-3, 2.5e-4)
CELEBA_LATENTS = (4, 16, 128, 512)
GAN_VARIANTS = {  # name: flags
    "bn_both_normal": ["--g-norm", "batch", "--d-norm", "batch", "--init", "normal"],
    "bn_d_only": ["--g-norm", "none", "--d-norm", "batch", "--init", "normal"],
    "bn_g_only": ["--g-norm", "batch", "--d-norm", "none", "--init", "normal"],
    "no_norm": ["--g-norm", "none", "--d-norm", "none", "--init", "normal"],
    "in_both_normal": ["--g-norm", "instance", "--d-norm", "instance", "--init", "normal"],
    "bn_both_he": ["--g-norm", "batch", "--d-norm", "batch", "--init", "he"],
}


def _extra(argv: Sequence[str] | None) -> tuple[list[str], dict]:
    """R3's own flags: --only (datasets), --dsprites-limit, --epochs (dSprites), --loglik-points."""
    import argparse

    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--only", default="dsprites,celeba,bitmoji")
    p.add_argument("--dsprites-limit", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--loglik-points", type=int, default=None)
    ns, rest = p.parse_known_args(argv)
    return rest, vars(ns)


def loglik_rows(args, run: Path, root: str, dataset: str, config: str, latent: int, points: int) -> list[dict]:
    """log p(x) and bits/dim of one VAE: appendix-d (latent <= 16), iwae and ais; one row per method."""
    methods = ["appendix-d", "iwae", "ais"] if latent <= 16 else ["iwae", "ais"]
    return [{"dataset": dataset, "config": config, **loglik_row(args, run, root, m, points)} for m in methods]


def run_vaes(args, opts, dataset: str, root: str, configs: dict[str, list], common: list) -> tuple[list, list]:
    """Fit each configuration, estimate its log p(x), grid 100 samples of the best; (fit rows, loglik rows)."""
    fits, ll = [], []
    points = opts["loglik_points"] or (2 if args.smoke else 100)
    for tag, flags in configs.items():
        run = args.out / dataset / tag
        fit(args, "vae", "--dataset", dataset, "--data-root", root, *common, *flags, "--out", run)
        m = json.loads((run / "metrics.json").read_text())
        latent = int(flags[flags.index("--latent-dim") + 1])
        rows = loglik_rows(args, run, root, dataset, tag, latent, points)
        ll += rows
        iwae = next(r["log_px_nats"] for r in rows if r["method"] == "iwae")
        fits.append({"dataset": dataset, "config": tag, "flags": " ".join(map(str, flags)),
                     "test_elbo_nats": m["final"].get("test", m["final"]["train"])["elbo"],
                     "iwae_log_px_nats": iwae, "seconds": m["train_seconds"]})  # fmt: skip
    best = max(fits, key=lambda r: r["iwae_log_px_nats"])
    grid = args.out / f"{dataset}_best_samples_10x10.png"
    probgen("sample", "--ckpt", args.out / dataset / best["config"], "--num", 100, "--nrow", 10, "--out", grid,
            "--device", args.device, "--overwrite")  # fmt: skip
    return fits, ll


def run_gans(args, root: str) -> list[dict]:
    epochs = 2 if args.smoke else 25
    size = ["--image-size", 16, "--g-channels", 8, "--d-channels", 8, "--batch-size", 8] if args.smoke else [
        "--image-size", 64, "--batch-size", 128]  # fmt: skip
    variants = dict(list(GAN_VARIANTS.items())[:2]) if args.smoke else GAN_VARIANTS
    rows = []
    for i, (tag, flags) in enumerate(variants.items()):
        run = args.out / "bitmoji" / tag
        base = ["gan", "--dataset", "bitmoji", "--data-root", root, "--latent-dim", 128, "--latent-dist",
                "uniform01", "--output", "sigmoid", *size, *flags, "--sample-epochs", epochs, "--out", run]  # fmt: skip
        resumed = None
        if i == 0:  # save, reload and resume: half the epochs, then --resume to the full length
            if args.overwrite or not (run / "checkpoint.pt").is_file():  # a re-run continues the checkpoint
                fit(args, *base, "--epochs", epochs // 2)
            resumed = sorted(load_checkpoint(run / "checkpoint.pt", kind="gan")["state"])
            fit(args, *base, "--epochs", epochs, overwrite=False)  # resumes (or skips once finished)
        else:
            fit(args, *base, "--epochs", epochs)
        derived(args, run / "eval.json", "eval", "--ckpt", run, "--data-root", root, "--device", args.device,
                "--no-progress", "--overwrite", *eval_flags(args, 1000, smoke_num=16))  # fmt: skip
        ev = read_eval(run / "eval.json")
        rec = ev["metrics"][ev["primary"]]
        m = json.loads((run / "metrics.json").read_text())
        rows.append({"variant": tag, "flags": " ".join(flags), "epochs": m["epochs_completed"],
                     "metric": ev["primary"], "value": rec["value"], "N_generated": rec["num_generated"],
                     "N_real": rec["num_real"], "features": rec["feature_network"], "resize": rec["resize"],
                     "loss_d": m["final_losses"]["loss_d"], "loss_g": m["final_losses"]["loss_g"],
                     "resumed_checkpoint_states": ",".join(resumed) if resumed else ""})  # fmt: skip
    return rows


def main(argv: Sequence[str] | None = None) -> dict:
    rest, opts = _extra(argv)
    args = parse_args(NAME, __doc__, rest)
    started = time.perf_counter()
    only = opts["only"].split(",")
    fits, ll, gans, skipped = [], [], [], {}
    if "dsprites" in only:
        root = data_root(args, "dsprites")
        if args.smoke:
            common = ["--limit", 200, "--image-size", 32, "--epochs", 1, "--batch-size", 50, "--hidden-dims", 32]
        else:
            limit = ["--limit", opts["dsprites_limit"]] if opts["dsprites_limit"] else []
            common = [*limit, "--epochs", opts["epochs"] or 20, "--batch-size", 128, "--hidden-dims", "1200,1200"]
        common += ["--arch", "mlp", "--likelihood", "bernoulli"]
        configs = {"mlp_L6_b2.5e-3": ["--latent-dim", 6, "--beta", 2.5e-3],
                   "mlp_L32_b2.5e-3": ["--latent-dim", 32, "--beta", 2.5e-3],
                   "mlp_L6_b2.5e-2": ["--latent-dim", 6, "--beta", 2.5e-2]}  # fmt: skip
        if args.smoke:
            configs.pop("mlp_L32_b2.5e-3")
        f, rows = run_vaes(args, opts, "dsprites", root, configs, common)
        fits, ll = fits + f, ll + rows
    if "celeba" in only:
        root = data_root(args, "celeba")
        if args.smoke or data_present("celeba", root):
            if args.smoke:
                common = ["--image-size", 16, "--conv-channels", "4,8", "--epochs", 1, "--batch-size", 4]
                configs = {"conv_L4_b2.5e-4": ["--latent-dim", 4, "--beta", 2.5e-4]}
            else:
                common = ["--image-size", 64, "--conv-channels", "16,32,64,128,256", "--epochs", 20,
                          "--batch-size", 128]  # fmt: skip
                configs = {f"conv_L512_b{b:g}": ["--latent-dim", 512, "--beta", b] for b in CELEBA_BETAS}
                configs |= {f"conv_L{d}_b2.5e-4": ["--latent-dim", d, "--beta", 2.5e-4] for d in CELEBA_LATENTS[:3]}
            common += ["--batch-norm", "--activation", "leaky_relu", "--likelihood", "gaussian", "--obs-scale", 0.1]
            f, rows = run_vaes(args, opts, "celeba", root, configs, common)
            fits, ll = fits + f, ll + rows
        else:
            skipped["celeba"] = f"real data absent under {root}"
    if "bitmoji" in only:
        root = data_root(args, "bitmoji")
        if args.smoke or data_present("bitmoji", root):
            gans = run_gans(args, root)
        else:
            skipped["bitmoji"] = f"real data absent under {root}"
    write_table(fits, args.out / "vae_fits")
    write_table(ll, args.out / "loglik")
    write_table(gans, args.out / "gan_variants")
    return write_summary(args.out, NAME, args, started, options=opts, vae_fits=fits, loglik=ll, gan_variants=gans,
                         skipped=skipped)  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
