"""Validation of `probgen loglik`'s estimators against exact log p(x) at latent 10 to 50, and the coverage of their
error bars (issue 21, items 2, 3 and 5).

For each exact model (:func:`probgen.inference.testing.exact_model`: ``mixture``, ``broad-narrow``, ``curved``,
``curved-2d``), latent size, seed and CPU ``--budget``: draw the model with that seed, simulate ``--num-data``
points from it, run the estimators exactly as `probgen loglik` runs them on a batch
(:func:`probgen.pipelines.loglik.estimate_points`, the command's own code path) and score them against the exact
log p(x) (:mod:`probgen.inference.testing.validation`), in three views:

- ``alone``: each estimator with its own flags only (ais-laplace alone is the recommended command);
- ``pair``: Appendix D and ais-laplace under :func:`probgen.inference.cross_check` (the trusted pair);
- ``all``: every estimator run, under the cross-check.

Coverage: one point of each ``--coverage-models`` model at latent 2 and at each ``--coverage-latents`` size,
repeated ``--repeats`` times in one batch (independent chains and draws per repeat), per budget: the
fraction of estimates within 2 se of exact and var(estimate) / mean(se^2), per estimator with an se.

Writes under ``--out``: ``cells/*.json`` (one per model, latent, seed and budget: per point exact value,
estimates, se and flags; a finished cell is skipped when re-run, so an interrupted run continues),
``validation.csv`` (per point), ``table.json`` and ``table.md`` (per budget, latent, view and estimator: errors,
worst unflagged, flag counts, the failed criteria), ``coverage/*.json``, ``coverage.json`` and ``coverage.md``.

    python experiments/loglik_exact_validation.py --out runs/exact-validation
    python experiments/loglik_exact_validation.py --out /tmp/v --smoke     # a smoke run (tests)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyro
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from probgen.config import LoglikConfig  # noqa: E402
from probgen.inference import LoglikResult, cross_check  # noqa: E402
from probgen.inference.testing import EXACT_MODELS, exact_model  # noqa: E402
from probgen.inference.testing.validation import (  # noqa: E402
    coverage,
    coverage_failures,
    failures,
    score,
)
from probgen.pipelines.loglik import estimate_points  # noqa: E402
from probgen.utils.io import write_csv  # noqa: E402

METHODS = ("elbo", "iwae", "appendix-d", "ais", "ais-laplace")
PAIR = ("appendix-d", "ais-laplace")
WITH_SE = ("iwae", "appendix-d", "ais", "ais-laplace")
#: --smoke: a smoke run's settings (a few seconds), in place of a budget's
SMOKE = {"chains": 2, "warmup": 20, "samples": 20, "ais_steps": 20, "leapfrog_steps": 3, "iwae_samples": 50}


def _config(budget: str, methods: Sequence[str], smoke: bool) -> LoglikConfig:
    cfg = LoglikConfig(ckpt="", method=",".join(methods), budget=budget, progress=False, seed=0)
    if smoke:
        cfg = dataclasses.replace(cfg, **SMOKE)
    return cfg.resolved("cpu")


def _to_json(res: dict[str, LoglikResult]) -> dict[str, Any]:
    return {
        m: {
            "log_px": r.log_px.double().tolist(),
            "se": None if r.se is None else r.se.double().tolist(),
            "flags": [list(f) for f in r.flags],
        }
        for m, r in res.items()
    }


def _from_json(d: dict[str, Any]) -> dict[str, LoglikResult]:
    out = {}
    for m, r in d.items():
        se = None if r["se"] is None else torch.tensor(r["se"], dtype=torch.float64)
        out[m] = LoglikResult(m, torch.tensor(r["log_px"], dtype=torch.float64), 1, se=se, flags=r["flags"])
    return out


def run_cell(out: Path, name: str, latent: int, seed: int, budget: str, num_data: int, smoke: bool) -> dict[str, Any]:
    """One model, latent size, seed and budget: per point exact value and each estimator's result
    (before any cross-check), kept in ``out/cells``."""
    path = out / "cells" / f"{name}-d{latent}-s{seed}-{budget}{'-smoke' if smoke else ''}.json"
    if path.is_file():
        return json.loads(path.read_text())
    m = exact_model(name, latent, seed=seed)
    x = m.simulate(num_data, seed=1000 + seed)
    cfg = _config(budget, METHODS, smoke)
    pyro.set_rng_seed(seed)
    start = time.perf_counter()
    res, _ = estimate_points(cfg, m.model, m.guide, x)
    cell = {
        "model": name, "latent": latent, "seed": seed, "budget": budget, "num_data": num_data,
        "seconds": time.perf_counter() - start, "exact": m.log_evidence(x).tolist(), "results": _to_json(res),
        "settings": {k: getattr(cfg, k) for k in ("chains", "warmup", "samples", "ais_steps", "leapfrog_steps",
                                                  "iwae_samples")},
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cell) + "\n")
    tmp.replace(path)
    return cell


def views(cell: dict[str, Any]) -> dict[str, dict[str, LoglikResult]]:
    """The cell's results alone, as the cross-checked pair, and all cross-checked (module docstring)."""
    alone = _from_json(cell["results"])
    pair = {m: copy.deepcopy(alone[m]) for m in PAIR if m in alone}
    cross_check(pair)
    every = copy.deepcopy(alone)
    cross_check(every)
    return {"alone": alone, "pair": pair, "all": every}


def table(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per budget, latent, view and estimator: the :func:`score` of the points of every model and seed
    pooled, the worst single cell, and the criteria that fail."""
    groups: dict[tuple, list[tuple[torch.Tensor, LoglikResult]]] = {}
    for cell in cells:
        exact = torch.tensor(cell["exact"], dtype=torch.float64)
        for view, res in views(cell).items():
            for m, r in res.items():
                groups.setdefault((cell["budget"], cell["latent"], view, m), []).append((exact, r))
    rows = []
    order = {v: i for i, v in enumerate(("alone", "pair", "all"))}
    for (budget, latent, view, m), parts in sorted(groups.items(), key=lambda kv: (*kv[0][:2], order[kv[0][2]])):
        pooled = LoglikResult(
            m,
            torch.cat([r.log_px for _, r in parts]),
            1,
            se=None if any(r.se is None for _, r in parts) else torch.cat([r.se for _, r in parts]),
            flags=[f for _, r in parts for f in r.flags],
        )
        row = score(pooled, torch.cat([e for e, _ in parts]))
        cell_fails = [f for e, r in parts for f in failures(score(r, e))]
        failing = sum(bool(failures(score(r, e))) for e, r in parts)
        row.update(budget=budget, latent=latent, view=view, cells=len(parts), failed=failures(row),
                   cells_failing=failing, cell_failures=cell_fails)  # fmt: skip
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    out = ["Errors in nats (estimate - exact), pooled over models and seeds; flagged: points with any flag.", "",
           f"    {command}", "",
           "| budget | latent | view | estimator | points | flagged | mean err, unflagged | worst unflagged | "
           "unflagged off > 0.5 | lower bound above exact > 3 se + 0.1 | cells failing a criterion |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        above = str(r["above_beyond_3se"]) if r["lower_bound"] else "-"
        out.append(
            f"| {r['budget']} | {r['latent']} | {r['view']} | {r['estimator']} | {r['points']} | {r['flagged']} | "
            f"{r['mean_error_unflagged']:+.3f} | {r['worst_unflagged']:+.3f} | {r['unflagged_off_by_0.5']} | "
            f"{above} | {r['cells_failing']}/{r['cells']} |"
        )
    return "\n".join(out) + "\n"


def run_coverage(out: Path, name: str, latent: int, budget: str, repeats: int, smoke: bool) -> dict[str, Any]:
    """One point of ``name`` at ``latent``, repeated ``repeats`` times in one batch: each estimator's coverage."""
    path = out / "coverage" / f"{name}-d{latent}-{budget}{'-smoke' if smoke else ''}.json"
    if path.is_file():
        return json.loads(path.read_text())
    m = exact_model(name, latent, seed=0)
    x = m.simulate(1, seed=1).expand(repeats, -1).contiguous()
    cfg = _config(budget, WITH_SE, smoke)
    pyro.set_rng_seed(0)
    start = time.perf_counter()
    res, _ = estimate_points(cfg, m.model, m.guide, x)
    exact = float(m.log_evidence(x[:1])[0])
    rows = {}
    for meth, r in res.items():
        cov = coverage(r.log_px, r.se, exact)
        cov.update(flagged=int((~r.trusted).sum()), failed=coverage_failures(meth, cov))
        rows[meth] = cov
    got = {"model": name, "latent": latent, "budget": budget, "exact": exact, "chains": cfg.chains,
           "seconds": time.perf_counter() - start, "estimators": rows}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(got, indent=2) + "\n")
    return got


def coverage_markdown(runs: list[dict[str, Any]]) -> str:
    out = ["| budget | model | latent | chains | estimator | repeats | within 2 se | var / mean se^2 | bias (nats) | "
           "mean se | flagged | passes |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for c in runs:
        for meth, r in c["estimators"].items():
            out.append(f"| {c['budget']} | {c['model']} | {c['latent']} | {c['chains']} | {meth} | {r['repeats']} | "
                       f"{r['within_2se']:.1%} | {r['variance_ratio']:.2f} | {r['bias']:+.4f} | {r['mean_se']:.4f} | "
                       f"{r['flagged']} | {'yes' if not r['failed'] else 'no'} |")  # fmt: skip
    return "\n".join(out) + "\n"


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for cells/, coverage/ and the tables")
    p.add_argument("--models", default=",".join(EXACT_MODELS), help="comma list of exact models")
    p.add_argument("--latents", default="10,20,50", help="comma list of latent sizes")
    p.add_argument("--seeds", default="0,1,2", help="comma list of seeds (model parameters, data and estimators)")
    p.add_argument("--budgets", default="quick,standard", help="comma list of CPU budgets")
    p.add_argument("--num-data", type=int, default=16, help="points per model")
    p.add_argument("--coverage-models", default="mixture,curved", help="comma list; empty: no coverage runs")
    p.add_argument("--coverage-latents", default="2,10", help="comma list of latent sizes for coverage")
    p.add_argument("--repeats", type=int, default=200, help="repeats of the coverage point")
    p.add_argument("--smoke", action="store_true", help="a smoke run: tiny settings instead of the budgets'")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(",") + [c for c in args.coverage_models.split(",") if c]:
        if name not in EXACT_MODELS:
            p.error(f"--models: unknown model {name!r}; choose from {', '.join(EXACT_MODELS)}")
    torch.set_num_threads(1)  # tiny tensors: threads only spin on a shared machine
    budgets = args.budgets.split(",")
    cells = [
        run_cell(out, name, latent, seed, budget, args.num_data, args.smoke)
        for budget in budgets
        for latent in _ints(args.latents)
        for name in args.models.split(",")
        for seed in _ints(args.seeds)
    ]
    rows = []
    for c in cells:
        for j, e in enumerate(c["exact"]):
            row = {"model": c["model"], "latent": c["latent"], "seed": c["seed"], "budget": c["budget"],
                   "point": j, "exact": e}  # fmt: skip
            for m, r in views(c)["alone"].items():
                row[f"log_px_{m}"] = float(r.log_px[j])
                row[f"se_{m}"] = "" if r.se is None else float(r.se[j])
                row[f"flag_{m}"] = "+".join(r.flags[j])
            rows.append(row)
    write_csv(out / "validation.csv", rows)
    tab = table(cells)
    (out / "table.json").write_text(json.dumps(tab, indent=2) + "\n")
    command = "python experiments/loglik_exact_validation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (out / "table.md").write_text(markdown(tab, command))
    print(markdown(tab, command))
    cov = [
        run_coverage(out, name, latent, budget, args.repeats, args.smoke)
        for budget in budgets
        for name in (c for c in args.coverage_models.split(",") if c)
        for latent in _ints(args.coverage_latents)
    ]
    (out / "coverage.json").write_text(json.dumps(cov, indent=2) + "\n")
    (out / "coverage.md").write_text(coverage_markdown(cov))
    if cov:
        print(coverage_markdown(cov))
    seconds = sum(c["seconds"] for c in cells) + sum(c["seconds"] for c in cov)
    summary = {"mode": "smoke" if args.smoke else "full", "cells": len(cells), "coverage_runs": len(cov),
               "estimator_seconds": seconds,
               "failing": [f"{r['budget']} d{r['latent']} {r['view']}: {f}" for r in tab for f in r["failed"]],
               "coverage_failing": [f"{c['budget']} {c['model']} d{c['latent']}: {f}" for c in cov
                                    for r in c["estimators"].values() for f in r["failed"]]}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
