"""Plumbing shared by the five report experiments (R1-R5): arguments, in-process `probgen` calls,
tiny on-disk smoke fixtures, CSV/Markdown tables, combined loss plots and ``summary.json``.

Every experiment drives probgen only through its CLI (:func:`probgen`) and reads back the files the
CLI writes (``losses.csv``, ``metrics.json``, ``eval.json``, ``loglik.json``). Re-running an experiment
continues where it stopped: every fit goes through :func:`fit` (finished runs are skipped, interrupted
ones resumed) and every loglik/eval through :func:`derived` (skipped while its output is up to date);
``--overwrite`` starts over."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python experiments/rX.py` from anywhere
    sys.path.insert(0, str(REPO))

from probgen.cli import fit_config  # noqa: E402
from probgen.cli import main as _probgen_main  # noqa: E402
from probgen.config import DataConfig  # noqa: E402
from probgen.data import fixtures, load_dataset  # noqa: E402
from probgen.errors import UserError  # noqa: E402
from probgen.training.rundir import CHECKPOINT, run_state  # noqa: E402
from probgen.utils.io import write_json  # noqa: E402

# --- arguments and CLI calls -------------------------------------------------------------------------


def parse_args(name: str, doc: str, argv: Sequence[str] | None) -> argparse.Namespace:
    """The flags every experiment takes: --data-root, --out, --smoke, --overwrite, --device."""
    p = argparse.ArgumentParser(prog=name, description=doc)
    p.add_argument("--data-root", default=None, help="dataset folder (default: $PROBGEN_DATA, then ./data)")
    p.add_argument("--out", default=None, help=f"output folder (default: runs/{name})")
    p.add_argument("--smoke", action="store_true", help="tiny fixtures/procedural data, tiny nets, 1-2 epochs")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over: replace existing run directories (default: skip finished runs, resume interrupted ones)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (smoke: cpu)")
    p.add_argument("--inception", action="store_true", help="Inception FID/IS (needs local weights); else FD-<dataset>")
    args = p.parse_args(argv)
    args.out = Path(args.out or Path("runs") / name)
    if args.smoke:
        args.device = "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def probgen(*argv: Any) -> None:
    """Run ``probgen <argv>`` in-process (quiet); raise if it exits non-zero."""
    args = ["-q", *[str(a) for a in argv]]
    rc = _probgen_main(args)
    if rc != 0:
        raise RuntimeError(f"probgen {' '.join(args)} exited with {rc}")


def _fit_config(argv: Sequence[Any]) -> Any:
    cfg = fit_config([str(a) for a in argv])
    if cfg.run.out is None:
        raise ValueError("an experiment's fit needs --out")
    return cfg


def fit(args: argparse.Namespace, *argv: Any, overwrite: bool | None = None) -> None:
    """``probgen fit <argv>`` (the model, its flags and ``--out``) on the experiment's device, no progress bar.

    Without ``--overwrite`` a finished run is skipped, a started one (interrupted, or shorter than
    asked) continues with ``--resume`` (probgen refuses changed model or data flags), a new one
    starts: :func:`probgen.training.rundir.run_state` decides, as for `probgen sweep`. With
    ``--overwrite`` (``overwrite`` overrides the experiment's flag) it starts over.
    """
    flags = ["--device", args.device, "--no-progress"]
    if args.overwrite if overwrite is None else overwrite:
        probgen("fit", *argv, *flags, "--overwrite")
        return
    cfg = _fit_config(argv)
    state = run_state(cfg.run.out, cfg)
    if state == "finished":
        print(f"skipping finished run {cfg.run.out}", flush=True)
    else:
        probgen("fit", *argv, *flags, *(["--resume"] if state == "started" else []))


def derived(args: argparse.Namespace, output: Path, *argv: Any) -> None:
    """``probgen <argv>`` computed from a run's checkpoint (``--ckpt``; loglik, eval) that writes ``output``.

    Without ``--overwrite`` it is skipped while ``output`` is newer than the checkpoint (a resumed or
    replaced run rewrites it) and was written by the same command (``<out>/derived.json`` records each
    output's command line).
    """
    cmd = [str(a) for a in argv]
    ckpt = Path(cmd[cmd.index("--ckpt") + 1])
    ckpt = ckpt / CHECKPOINT if ckpt.is_dir() else ckpt
    ledger = args.out / "derived.json"
    done = json.loads(ledger.read_text()) if ledger.is_file() else {}
    key = str(output)
    fresh = output.is_file() and ckpt.is_file() and output.stat().st_mtime_ns > ckpt.stat().st_mtime_ns
    if not args.overwrite and fresh and done.get(key) == cmd:
        print(f"skipping up-to-date {output}", flush=True)
        return
    probgen(*argv)
    write_json(ledger, {**done, key: cmd})


def loglik_row(args: argparse.Namespace, run: Path, root: str, method: str, points: int) -> dict[str, Any]:
    """``probgen loglik --method method`` of one VAE run on ``points`` test points (smoke: tiny chains),
    into ``run/loglik_<method>`` (skipped while up to date); its row: log p(x), stderr, bits/dim, N, split."""
    if args.smoke:
        hmc = ["--chains", 2, "--warmup", 10, "--samples", 10, "--ais-steps", 10, "-k", 10]
    else:
        hmc = ["--chains", 4, "--warmup", 200, "--samples", 200, "--ais-steps", 500, "-k", 1000]
    out = run / f"loglik_{method}"
    derived(args, out / "loglik.json", "loglik", "--ckpt", run, "--method", method, "--num-data", points, *hmc,
            "--data-root", root, "--device", args.device, "--no-progress", "--overwrite", "--out", out)  # fmt: skip
    rep = json.loads((out / "loglik.json").read_text())
    r = rep["results"][method]
    return {"method": method, "likelihood": rep["likelihood"], "log_px_nats": r["log_px_mean"],
            "log_px_stderr": r["log_px_stderr"], "bits_per_dim": r["bits_per_dim_mean"], "N": r["num_data"],
            "split": rep["split"], "trusted": r.get("num_trusted"), "flagged": r.get("num_flagged")}  # fmt: skip


def eval_flags(args: argparse.Namespace, num: int, smoke_num: int = 32) -> list[str]:
    """`probgen eval` scoring flags: Inception FID/IS with --inception, else domain FD-<dataset>."""
    if args.smoke:
        return ["--features", "domain", "--num-samples", smoke_num, "--domain-steps", 20]
    if args.inception:
        return ["--features", "inception", "--metrics", "fid,is,kid", "--num-samples", num]
    return ["--features", "domain", "--num-samples", num]


def read_eval(path: Path) -> dict[str, Any]:
    """The metrics of an eval.json, each with its N, features and resize (never a bare FID)."""
    rec = json.loads(Path(path).read_text())
    return {"primary": rec.get("primary"), "metrics": rec["metrics"]}


def data_present(dataset: str, root: str | None) -> bool:
    """Whether the real files of ``dataset`` are under ``root`` (probgen's own locator decides)."""
    try:
        load_dataset(DataConfig(dataset=dataset, data_root=root, limit=2))
    except UserError:
        return False
    return True


# --- smoke fixtures in the real on-disk formats ------------------------------------------------------


def smoke_data(dataset: str, root: Path) -> Path:
    """Write a tiny copy of ``dataset`` in its real on-disk layout under ``root`` (probgen.data.fixtures);
    dSprites needs none (procedural renderer)."""
    root.mkdir(parents=True, exist_ok=True)
    if dataset == "chest-xray" and not (root / "chest_xray").exists():
        fixtures.write_chest(root)
    elif dataset == "celeba" and not (root / "celeba").exists():
        fixtures.write_celeba(root)  # 11 images (train 6, val 2, test 3): its colours allow at most 11
    elif dataset == "mnist" and not (root / "MNIST").exists():
        fixtures.write_mnist(root, n_train=120, n_test=40)
    elif dataset == "cifar10":
        if not (root / "cifar-10-batches-py").exists():
            fixtures.write_cifar(root, per_batch=8, n_test=16)
        from torchvision.datasets import CIFAR10

        for attr, value in fixtures.cifar_md5s(root).items():  # torchvision checks md5s (smoke only)
            setattr(CIFAR10, attr, value)
    elif dataset == "bitmoji" and not (root / "bitmojis").exists():
        fixtures.write_bitmoji(root / "bitmojis", 32)
    return root


def data_root(args: argparse.Namespace, dataset: str) -> str:
    """The --data-root to pass: the smoke fixture folder, else --data-root / $PROBGEN_DATA / ./data."""
    if args.smoke:
        return str(smoke_data(dataset, args.out / "smoke-data"))
    return args.data_root or os.environ.get("PROBGEN_DATA") or "data"


# --- tables, plots, summary ----------------------------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_table(rows: list[dict[str, Any]], stem: Path) -> None:
    """``stem``.csv and ``stem``.md with the same rows (floats with 4 significant decimals in Markdown)."""
    if not rows:
        return
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)

    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def plot_runs(curves: dict[str, tuple[list[float], list[float]]], path: Path, ylabel: str, title: str) -> None:
    """One PNG with one line per run: ``curves[name] = (epochs, values)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (xs, ys) in curves.items():
        ax.plot(xs, ys, marker="o", ms=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def vae_curve(run: Path, split: str = "train", column: str = "loss") -> tuple[list[float], list[float]]:
    """(epochs, values) of one column of a fit's losses.csv."""
    rows = [r for r in read_csv(run / "losses.csv") if r["split"] == split]
    return [float(r["epoch"]) for r in rows], [float(r[column]) for r in rows]


def write_summary(out: Path, name: str, args: argparse.Namespace, started: float, **results: Any) -> dict:
    """``out/summary.json``: the experiment, its mode (smoke or real), wall time and its results."""
    summary = {
        "experiment": name,
        "mode": "smoke" if args.smoke else "full",
        "device": args.device,
        "seconds": round(time.perf_counter() - started, 1),
        **results,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary
