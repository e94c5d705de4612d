"""The GPU suite's parsers (experiments/benchmarks/gpu_suite.py): a step's output -> its measurements.

Each parser takes the step's log text and its work folder and returns ``{name: number}``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

DSPRITES_IMAGES = 737_280  # one epoch of dSprites: the epoch step projects its rate to it

_KEY_VALUE = re.compile(r"^([a-z][a-z0-9_]*): ([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*$")
_PYTEST = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)")
_IWAE = re.compile(r"^probgen IWAE\s+([0-9.]+) points/s", re.M)
_FID = re.compile(r"^inception.*?\s(cpu|cuda)\s+harness\s+([0-9.]+) img/s\s+torchmetrics\s+([0-9.]+) img/s", re.M)


def key_values(text: str) -> dict[str, float]:
    """Lines ``name: number`` (the benchmarks' last lines, e.g. ``ratio: 1.03``, ``vs_floor: 120.5``)."""
    out = {}
    for line in text.splitlines():
        m = _KEY_VALUE.match(line.strip())
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def parse_pytest(text: str, _: Path) -> dict[str, float]:
    if (
        "--collect-only" in (text.splitlines() or [""])[0]
    ):  # on a CPU: "path.py: N" per file (-qq), or "N/M tests collected"
        per_file = re.findall(r"^\S+\.py: (\d+)$", text, re.M)
        total = re.search(r"(\d+)(?:/\d+)? tests? collected", text)
        return {"collected": float(sum(map(int, per_file)) if per_file else int(total.group(1)) if total else 0)}
    lines = [ln for ln in text.splitlines() if re.search(r"\d+ (passed|failed|skipped|deselected|errors?)", ln)]
    counts: dict[str, float] = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    for n, what in _PYTEST.findall(lines[-1] if lines else ""):
        key = "errors" if what.startswith("error") else what
        counts[key] = counts.get(key, 0) + int(n)
    counts["not_passed"] = counts["failed"] + counts["errors"]
    return counts


def parse_epoch(_: str, work: Path) -> dict[str, float]:
    m = json.loads((work / "epoch" / "metrics.json").read_text())
    per_s = float(m["images_per_second"])
    images = float(m.get("steps", 0)) * float(m.get("batch_size", 0)) or per_s * float(m["train_seconds"])
    return {
        "train_seconds": float(m["train_seconds"]),
        "images": images,
        "images_per_second": per_s,
        "epoch_seconds": DSPRITES_IMAGES / per_s,  # the full epoch itself on a GPU; projected with --quick
    }


def parse_iwae(text: str, _: Path) -> dict[str, float]:
    m = _IWAE.search(text)
    if not m:
        raise ValueError("no 'probgen IWAE ... points/s' line")
    per_s = float(m.group(1))
    return {"iwae_points_per_s": per_s, "iwae_10k_seconds": 10_000 / per_s}


def parse_fid(text: str, _: Path) -> dict[str, float]:
    rows = {dev: (float(h), float(t)) for dev, h, t in _FID.findall(text)}
    if not rows:
        raise ValueError("no Inception throughput line")
    dev = "cuda" if "cuda" in rows else "cpu"
    harness, theirs = rows[dev]
    return {"harness_images_per_s": harness, "torchmetrics_images_per_s": theirs, **key_values(text)}


def parse_key_values(text: str, _: Path) -> dict[str, float]:
    return key_values(text)
