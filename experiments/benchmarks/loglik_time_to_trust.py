"""Minutes to a trusted log p(x): `probgen loglik --budget B` on 32 test points of the README's model.

Trains the README's main job (its first ``probgen fit vae`` command, read from README.md) into a temp
folder unless ``--ckpt`` is given, runs one long reference (``--reference`` flags), then each
``--budgets`` entry with ``--method`` (default ais-laplace), timing each run's wall clock. A run is
*trusted* for a method when every point is flagged by it or lies within its error bar of an
unflagged reference value (of the reference's column for the same estimator where it ran it, else of
the closest one it ran, ais-laplace first; ``--reference-method`` names one column for all):
|estimate - reference| <= 3 sqrt(se^2 + se_ref^2) + 0.05 nats (a point the reference flagged cannot
vouch for an unflagged estimate: it counts as not trusted), and, so that flagging everything does
not pass, at most ``--max-flagged`` (a quarter) of the points are flagged. Prints, per budget, the
minutes, the estimate printed before the work, the points within their error bar, the points
flagged and the largest unflagged se; then the minutes of the cheapest trusted budget. Everything
is also written to ``<out>/time_to_trust.json``.

    python experiments/benchmarks/loglik_time_to_trust.py                       # README model, 32 points
    python experiments/benchmarks/loglik_time_to_trust.py --ckpt runs/x/checkpoint.pt --budgets quick
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from probgen.cli import main as probgen  # noqa: E402
from probgen.utils.io import read_csv  # noqa: E402

NUM_SE, TOL = 3.0, 0.05
#: the reference: AIS from the Laplace fit with 4 times the chains and 5/3 the temperatures of --budget
#: quick on the CPU (its se is about a third of quick's); its own flags say where it cannot vouch
REFERENCE = "--method ais-laplace --chains 16 --ais-steps 500 --leapfrog-steps 5"
#: a method the reference did not run is compared with the first of these that it did
CLOSEST = ("ais-laplace", "ais", "appendix-d")


def readme_fit_command(readme: Path = REPO / "README.md") -> list[str]:
    """The arguments after ``probgen`` of the README's first ``probgen fit vae`` command."""
    match = re.search(r"probgen (fit vae[^\n&|;`]*)", readme.read_text())
    if match is None:
        raise SystemExit(f"no `probgen fit vae` command in {readme}")
    return shlex.split(match.group(1))


def _run(argv: list[str]) -> float:
    start = time.perf_counter()
    code = probgen(argv)
    if code != 0:
        raise SystemExit(f"probgen {' '.join(argv)} exited {code}")
    return time.perf_counter() - start


def trusted(
    rows: list[dict[str, str]], ref: list[dict[str, str]], method: str, ref_method: str | None = None
) -> dict[str, Any]:
    """Of ``method`` in ``rows`` against the reference rows' ``ref_method`` (default: the same):
    points trusted (flagged, or unflagged and within the error bar of an unflagged reference value),
    points flagged, all points, the largest unflagged se and the largest unflagged |estimate - reference|."""
    rm = ref_method or method
    ok = flagged = 0
    ses, gaps = [], []
    for r, q in zip(rows, ref):
        if r[f"flag_{method}"]:
            ok += 1
            flagged += 1
            continue
        ses.append(float(r[f"se_{method}"] or "inf"))
        if q[f"flag_{rm}"]:
            continue
        se = math.hypot(float(r[f"se_{method}"] or "inf"), float(q[f"se_{rm}"] or "inf"))
        gap = abs(float(r[f"log_px_{method}"]) - float(q[f"log_px_{rm}"]))
        gaps.append(gap)
        ok += gap <= NUM_SE * se + TOL
    # None (JSON null) where no unflagged point had a value to compare
    return {
        "trusted": ok,
        "flagged": flagged,
        "points": len(rows),
        "max_se": max(ses, default=None),
        "max_gap": max(gaps, default=None),
    }


def reference_columns(methods: Sequence[str], ref: list[dict[str, str]], named: str | None) -> dict[str, str]:
    """Which of the reference's estimators each of ``methods`` is compared with: ``named`` for all when
    given, else the same estimator where the reference ran it, else the closest estimator it ran
    (the first of ``CLOSEST`` it has)."""
    have = [k.removeprefix("log_px_") for k in (ref[0] if ref else {}) if k.startswith("log_px_")]
    closest = next((c for c in CLOSEST if c in have), CLOSEST[0])
    chosen = {m: named or (m if m in have else closest) for m in methods}
    missing = sorted({c for c in chosen.values() if c not in have})
    if missing:
        raise SystemExit(f"the reference run has no {', '.join(missing)} column (it has {', '.join(have) or 'none'})")
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", default=None, help="a VAE checkpoint (default: train the README's main job)")
    p.add_argument("--num-data", type=int, default=32)
    p.add_argument("--method", default="ais-laplace", help="the estimators whose answer must be trusted")
    p.add_argument("--budgets", default="quick,standard", help="comma list, cheapest first")
    p.add_argument("--reference", default=REFERENCE, help="flags of the long reference run (with its --method)")
    p.add_argument(
        "--reference-method",
        default=None,
        help="the reference's estimator every method is compared with (default: the same one where the reference "
        "ran it, else the closest it ran: ais-laplace, ais, appendix-d)",
    )
    p.add_argument("--max-flagged", type=float, default=0.25, help="at most this fraction of points flagged")
    p.add_argument("--extra", default="", help="flags added to every loglik run (e.g. --device cpu)")
    p.add_argument("--out", default=None, help="folder for the runs (default: a temp folder)")
    args = p.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="loglik-time-to-trust-"))
    ckpt = args.ckpt
    if ckpt is None:
        fit = readme_fit_command()
        print("training:", "probgen", " ".join(fit), flush=True)
        _run([*fit, "--no-progress", "--out", str(out / "model")])
        ckpt = str(out / "model" / "checkpoint.pt")
    methods = args.method.split(",")
    common = ["loglik", "--ckpt", ckpt, "--num-data", str(args.num_data), "--no-progress"]
    common += shlex.split(args.extra)
    ref_dir = out / "reference"
    if not (ref_dir / "loglik.json").is_file():
        minutes = _run([*common, *shlex.split(args.reference), "--out", str(ref_dir)]) / 60
        print(f"reference ({args.reference}): {minutes:.1f} min", flush=True)
    ref = read_csv(ref_dir / "loglik.csv")
    against = reference_columns(methods, ref, args.reference_method)
    results: list[dict[str, Any]] = []
    for budget in args.budgets.split(","):
        run_dir = out / budget
        seconds = _run([*common, "--method", args.method, "--budget", budget, "--out", str(run_dir), "--overwrite"])
        rows = read_csv(run_dir / "loglik.csv")
        estimate = json.loads((run_dir / "loglik.json").read_text()).get("estimate") or {}
        counts = {m: trusted(rows, ref, m, against[m]) for m in methods}
        ok = all(
            c["trusted"] == c["points"] and c["flagged"] <= args.max_flagged * c["points"] for c in counts.values()
        )
        est = estimate.get("seconds", math.nan)
        results.append({"budget": budget, "minutes": seconds / 60, "estimated_minutes": est / 60, "trusted": ok,
                        "counts": counts})  # fmt: skip
        print(
            f"--budget {budget}: {seconds / 60:.1f} min (estimated {est / 60:.1f} min), "
            + ", ".join(
                f"{m} {c['trusted'] - c['flagged']}/{c['points'] - c['flagged']} unflagged points within their error "
                f"bar, {c['flagged']} flagged, largest unflagged se "
                + ("-" if c["max_se"] is None else f"{c['max_se']:.3f}")
                for m, c in counts.items()
            )
            + f" -> {'trusted' if ok else 'NOT trusted'}",
            flush=True,
        )
    good = [r for r in results if r["trusted"]]
    if good:
        best = good[0]
        minutes, name = best["minutes"], best["budget"]
        print(f"minutes to a trusted log p(x) on {args.num_data} points: {minutes:.1f} (--budget {name})")
    else:
        print(f"no budget among {args.budgets} gave a trusted answer on {args.num_data} points")
    summary = {"reference": args.reference, "compared_with": against, "num_data": args.num_data, "checkpoint": ckpt,
               "budgets": results}  # fmt: skip
    (out / "time_to_trust.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
