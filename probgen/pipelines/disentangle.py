"""`probgen disentangle`: BetaVAE, FactorVAE, MIG, DCI and SAP scores of a VAE trained on dSprites.

The representation is the encoder mean E_q[z | x] of images of one split; the known generative
factors are the split's ``factor_classes`` (constant factors, like dSprites' colour, are dropped).
The metrics themselves are in :mod:`probgen.metrics.disentanglement`. Output: ``disentanglement.json``
next to the checkpoint, or in ``--out``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probgen.config import DisentangleConfig, to_dict
from probgen.data import load_dataset, to_unit
from probgen.errors import UserError
from probgen.metrics.disentanglement import disentanglement_scores, varying_factors
from probgen.models.vae import load_vae
from probgen.utils.device import resolve_device
from probgen.utils.io import environment_info, write_json

log = logging.getLogger("probgen")
OUTPUT = "disentanglement.json"


@torch.no_grad()
def encoder_means(encode: Any, images: torch.Tensor, device: torch.device, batch_size: int = 512) -> np.ndarray:
    """Encoder means (N, D) of uint8 images (N, C, H, W), in batches, as float64 numpy."""
    out = [
        encode(to_unit(images[i : i + batch_size].to(device)))[0].double().cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out).numpy()


def _checkpoint_file(ckpt: str | Path) -> Path:
    path = Path(ckpt)
    return path / "checkpoint.pt" if path.is_dir() else path


def disentangle(
    ckpt: str | Path, cfg: DisentangleConfig, out: str | Path | None = None, overwrite: bool = False
) -> Path:
    """Score the checkpoint's encoder means against the known factors; returns the JSON path written."""
    ckpt_file = _checkpoint_file(ckpt)
    target = (Path(out) if out is not None else ckpt_file.parent) / OUTPUT
    if target.exists() and not overwrite:
        raise UserError(f"--out: {target} exists; pass --overwrite to replace it")
    device = resolve_device(cfg.device)
    vae, fit_cfg = load_vae(ckpt_file, device)
    data_cfg = fit_cfg.data if cfg.data_root is None else dataclasses.replace(fit_cfg.data, data_root=cfg.data_root)
    data = load_dataset(data_cfg)
    split = data.split(cfg.split)
    if split.factor_classes is None:
        raise UserError(
            f"--ckpt: dataset {data.name!r} has no known generative factors; disentanglement metrics need one "
            "that has them (dsprites)"
        )
    rng = np.random.default_rng(cfg.seed)
    n = min(cfg.num_points, len(split))
    idx = np.sort(rng.permutation(len(split))[:n])
    factors = split.factor_classes[torch.from_numpy(idx)].numpy()
    if len(varying_factors(factors)) == 0:
        raise UserError(f"--num-points: no generative factor varies among the {n} images of split {cfg.split!r}")
    started = time.perf_counter()
    codes = encoder_means(vae.encode, split.images[torch.from_numpy(idx)], device)
    log.info("encoded %d %s images of %s; computing the metrics", n, cfg.split, data.name)
    res = disentanglement_scores(
        codes,
        factors,
        seed=cfg.seed,
        holdout_fraction=cfg.holdout_fraction,
        num_bins=cfg.num_bins,
        group_size=cfg.group_size,
        num_train=cfg.num_train,
        num_eval=cfg.num_eval,
    )
    names = list(data.factor_names) or [f"factor{j}" for j in range(factors.shape[1])]
    used = [names[j] for j in res["mig"]["factors"]]
    report = {
        "checkpoint": str(ckpt_file),
        "dataset": data.name,
        "data_source": data.source,
        "split": cfg.split,
        "num_points": n,
        "latent_dim": int(codes.shape[1]),
        "representation": "encoder mean E_q[z|x]",
        "factors": used,
        "scores": res["scores"],
        "details": {k: v for k, v in res.items() if k != "scores"},
        "settings": to_dict(cfg),
        "notes": "dci uses L1-logistic importances (not gradient-boosted trees) and sap a histogram "
        "majority-vote classifier; see probgen.metrics.disentanglement",
        "seconds": time.perf_counter() - started,
        "environment": environment_info(device),
    }
    write_json(target, report)
    log.info(
        "disentanglement of %s: %s",
        ckpt_file,
        ", ".join(f"{k} {v:.3f}" for k, v in res["scores"].items()),
    )
    return target
