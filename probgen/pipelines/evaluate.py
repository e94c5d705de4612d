"""`probgen eval`: FID / IS / KID (or FD / KD on domain features) of a VAE's or a GAN's samples.

The checkpoint says which data the model was trained on; the harness compares the model's samples
with real images of that dataset and writes every number, with N, split, feature network and resize
mode, to eval.json.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from probgen.config import DataConfig, EvaluateConfig, from_dict, to_dict
from probgen.data import load_dataset
from probgen.errors import UserError
from probgen.metrics.features import find_inception_weights
from probgen.metrics.harness import Harness
from probgen.pipelines.sample import load_sampler
from probgen.utils.device import resolve_device
from probgen.utils.io import environment_info, write_json

log = logging.getLogger("probgen")


def _checkpoint_file(path: str) -> Path:
    p = Path(path)
    return p / "checkpoint.pt" if p.is_dir() else p


def evaluate_checkpoint(cfg: EvaluateConfig) -> tuple[dict[str, Any], Path]:
    """Score the model in ``cfg.target.ckpt``; returns the results and the JSON file written."""
    t = cfg.target
    if not t.ckpt:
        raise UserError("--ckpt: is required")
    ckpt_file = _checkpoint_file(t.ckpt)
    out = Path(t.out) if t.out else ckpt_file.parent / "eval.json"
    if out.exists() and not t.overwrite:  # checked before any expensive work
        raise UserError(f"--out: {out} exists; pass --overwrite to replace it or --out to write elsewhere")
    if cfg.eval.features == "inception":
        find_inception_weights(cfg.eval.inception_weights)  # fail in a second, not after loading the data
    device = resolve_device(t.device)
    sampler, ckpt = load_sampler(t.ckpt, device)
    data_cfg = from_dict(DataConfig, ckpt["config"]["data"])
    if t.data_root:
        data_cfg = dataclasses.replace(data_cfg, data_root=t.data_root)
    data = load_dataset(data_cfg)
    harness = Harness(data, cfg.eval, device, show_progress=t.progress)
    result = harness.evaluate(sampler)
    generator = None
    if ckpt["kind"] == "gan":
        generator = "ema" if "ema" in ckpt["state"] else "generator"
    record = {
        "checkpoint": str(ckpt_file),
        "kind": ckpt["kind"],
        "generator": generator,
        "step": ckpt.get("step"),
        "epoch": ckpt.get("epoch"),
        **result,
        "eval_config": to_dict(cfg.eval),
        "environment": environment_info(device),
    }
    write_json(out, record)
    return record, out


def summary_lines(record: dict[str, Any]) -> list[str]:
    """One human-readable line per metric, stating N, split, network and resize."""
    lines = []
    for name, m in record["metrics"].items():
        value = f"{m['value']:.4g}" if "value" in m else f"{m['mean']:.4g} +- {m['std']:.2g}"
        if "ci95" in m:
            value += f" (95% CI {m['ci95'][0]:.4g} to {m['ci95'][1]:.4g})"
        ref = f" vs {m['num_real']} real ({m['ref_split']} split)" if "num_real" in m else ""
        lines.append(f"{name} {value}  [{m['num_generated']} generated{ref}; {m['feature_network']}; {m['resize']}]")
    return lines
