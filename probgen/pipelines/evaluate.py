"""`probgen eval`: FID / IS / KID, PRDC (or FD / KD on domain features) of a VAE's or a GAN's samples.

The checkpoint says which data the model was trained on; the harness compares the model's samples
with real images of that dataset and writes every number, with N, split, feature network and resize
mode, to eval.json.

Resume: every batch of features is written atomically to ``.<out>.partial/`` as it is computed. The
same command run again after a kill or Ctrl-C reads those batches back and continues where it
stopped (its eval.json equals an uninterrupted run's, timings aside); the folder is removed once
eval.json is written. ``--overwrite`` starts over.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from probgen.config import DataConfig, EvalCommandConfig, from_dict, to_dict
from probgen.data import load_dataset
from probgen.errors import UserError
from probgen.metrics.dinov2 import find_dinov2_weights
from probgen.metrics.features import find_inception_weights
from probgen.metrics.harness import Harness
from probgen.metrics.sample_report import write_sample_report
from probgen.models.registry import model_kind
from probgen.pipelines.sample import load_sampler
from probgen.utils.device import resolve_device
from probgen.utils.io import environment_info, write_json
from probgen.utils.partial import PartialStore

log = logging.getLogger("probgen")


def _checkpoint_file(path: str) -> Path:
    p = Path(path)
    return p / "checkpoint.pt" if p.is_dir() else p


def partial_folder(out: Path) -> Path:
    """Where `probgen eval` keeps the feature batches of an unfinished run writing ``out``."""
    return out.parent / f".{out.name}.partial"


def _store_settings(cfg: EvalCommandConfig, ckpt_file: Path, ckpt: dict[str, Any], device: Any) -> dict[str, Any]:
    """What the stored batches depend on: a re-run with other settings must not reuse them."""
    ev = {k: v for k, v in to_dict(cfg.eval).items() if k != "cache_dir"}  # a moved cache changes nothing
    return {
        "checkpoint": str(ckpt_file.resolve()),
        "checkpoint_bytes": ckpt_file.stat().st_size,
        "step": ckpt.get("step"),
        "eval": ev,
        "device": device.type,
    }


def evaluate_checkpoint(cfg: EvalCommandConfig) -> tuple[dict[str, Any], Path]:
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
    elif cfg.eval.features == "dinov2":
        find_dinov2_weights(cfg.eval.dinov2_weights)
    device = resolve_device(t.device)
    sampler, ckpt = load_sampler(t.ckpt, device)
    data_cfg = from_dict(DataConfig, ckpt["config"]["data"])
    if t.data_root:
        data_cfg = dataclasses.replace(data_cfg, data_root=t.data_root)
    folder = partial_folder(out)  # opened before the data load: another job's batches fail fast
    store = PartialStore.open(folder, _store_settings(cfg, ckpt_file, ckpt, device), overwrite=t.overwrite)
    if len(store):
        log.info("eval: continuing from %d stored batches in %s", len(store), folder)
    data = load_dataset(data_cfg)
    harness = Harness(data, cfg.eval, device, show_progress=t.progress, store=store)
    result = harness.evaluate(sampler, store=store)
    files = write_sample_report(
        out.parent,
        harness.per_sample,
        redraw=lambda idx: harness.redraw(sampler, idx),
        train_images=lambda rows: data.split("train").images[rows],
        train_indices=harness.train_indices,
        prefix="" if out.name == "eval.json" else f"{out.stem}_",  # files of other --out names do not collide
    )
    sampled_from = model_kind(ckpt["kind"]).sampled_from  # which weights drew the samples (a GAN's EMA copy?)
    generator = next((w for w in sampled_from if w in ckpt["state"]), None)
    record = {
        "checkpoint": str(ckpt_file),
        "kind": ckpt["kind"],
        "generator": generator,
        "step": ckpt.get("step"),
        "epoch": ckpt.get("epoch"),
        **result,
        "files": [p.name for p in files],
        "eval_config": to_dict(cfg.eval),
        "environment": environment_info(device),
    }
    write_json(out, record)
    store.remove()  # eval.json is whole: the batches are no longer needed
    return record, out


def summary_lines(record: dict[str, Any]) -> list[str]:
    """One human-readable line per metric, stating N, split, network and resize."""
    lines = []
    for name, m in record["metrics"].items():
        value = f"{m['value']:.4g}" if "value" in m else f"{m['mean']:.4g} +- {m['std']:.2g}"
        if "ci95" in m:
            value += f" (95% CI {m['ci95'][0]:.4g} to {m['ci95'][1]:.4g})"
        if "copying" in m:
            value += (
                f", {m['fraction_closer_than_test']:.3g} of samples closer to a training image than any test image "
                f"(test images: {m['fraction_closer_than_test_baseline']:.3g}){'; COPYING' if m['copying'] else ''}"
            )
        ref = f" vs {m['num_real']} real ({m['ref_split']} split)" if "num_real" in m else ""
        lines.append(f"{name} {value}  [{m['num_generated']} generated{ref}; {m['feature_network']}; {m['resize']}]")
    return lines
