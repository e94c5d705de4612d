"""The GPU suite: one call, one process tree, that measures every GPU goal of the project (issue 16).

Steps, in order (each a child process with its own time budget; its output goes to ``<out>/<step>.log``):

==============  ===========================================================  ==============================
step            what runs                                                    goal on one H100/H200
==============  ===========================================================  ==============================
install         the wheels in ``--wheels`` the image lacks (pip, no index)   (none)
pytest_gpu      ``python -m pytest -m gpu`` (on a CPU: ``--collect-only``)    every test passes
svi_overhead    experiments/benchmarks/svi_overhead.py                       probgen step <= 1.05x plain
epoch           ``probgen fit vae --dataset dsprites --epochs 1``: a full    an epoch in < 15 s
                epoch of 737,280 images with the default VAE
iwae            throughput.py ``--sections loglik``: IWAE k=5000 points/s    10,000 points in < 2 min
                projected to 10,000 points
hmc             experiments/benchmarks/hmc_throughput.py                     vs_ceiling >= 0.9, vs_floor >= 100
fid             experiments/benchmarks/eval_throughput.py: FID images/s,     harness >= torchmetrics (1.00x)
                the harness against torchmetrics' own update loop
loglik_trust    experiments/benchmarks/loglik_time_to_trust.py, if present:  (reported)
                `probgen loglik` time to a trusted answer on 100 points;
                called with ``--device D [--quick]``, every ``name: number``
                line it prints is recorded
==============  ===========================================================  ==============================

It prints one summary table and writes ``<out>/gpu_suite.json`` (every step's status, seconds,
measurements, goals and verdicts, the device name and the versions). Goals are judged on a GPU only;
on the CPU the table says so. ``--quick`` shrinks every step (the epoch becomes 2,048 images,
projected to 737,280) so that ``--device cpu --quick`` runs in a few minutes, as its test does.

The budget: the steps' own budgets sum to about 7.5 minutes on a GPU (``--budget``, default 450 s);
time a step leaves unused passes to the next, and a step past its time is killed with its process
group and marked ``timeout``, so the whole call ends within 8 minutes.

Wheels. The GPU image has torch, torchvision, torchmetrics, scipy, matplotlib, pandas, xarray and
pytest, but not pyro-ppl, pyro-api, arviz, h5netcdf, xarray-einstats or torch-fidelity. Fetch them
once, here, where PyPI is reachable (about 2.6 MB, kept out of git: the folder is ignored and
travels with the device tool's ``carry``)::

    python experiments/benchmarks/gpu_suite.py --fetch-wheels
    # = python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \\
    #     -d experiments/benchmarks/wheels pyro-ppl==1.9.2 pyro-api==0.1.2 arviz==0.23.4 \\
    #     h5netcdf==1.8.2 xarray-einstats==0.9.1 torch-fidelity==0.4.0

The install step then runs ``pip install --no-index --find-links <wheels> --no-deps --target
<site>`` (``--site``, default /tmp/probgen-gpu-site) for the packages that do not import, and puts
that folder first on every child's PYTHONPATH (after the repository, so that this checkout's
probgen is the one imported).

    python experiments/benchmarks/gpu_suite.py [--device auto|cuda|cpu] [--quick] [--out DIR]
        [--only a,b] [--skip a,b] [--budget SECONDS] [--wheels DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the parsers beside it, however this file is loaded
from gpu_suite_parse import (  # noqa: E402
    parse_epoch,
    parse_fid,
    parse_iwae,
    parse_key_values,
    parse_pytest,
)

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "experiments" / "benchmarks"
DEFAULT_WHEELS = BENCH / "wheels"

#: The distributions the GPU image lacks, pinned to the versions the CPU machines test with, and the
#: module each one provides (to tell whether it is missing).
WHEELS = {
    "pyro-ppl==1.9.2": "pyro",
    "pyro-api==0.1.2": "pyroapi",
    "arviz==0.23.4": "arviz",
    "h5netcdf==1.8.2": "h5netcdf",
    "xarray-einstats==0.9.1": "xarray_einstats",
    "torch-fidelity==0.4.0": "torch_fidelity",
}


@dataclasses.dataclass
class Goal:
    """A goal on one H100/H200: ``metric op threshold`` (op is "<", "<=" or ">=")."""

    metric: str
    op: str
    threshold: float

    def met(self, value: float) -> bool:
        return {"<": value < self.threshold, "<=": value <= self.threshold, ">=": value >= self.threshold}[self.op]

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"


@dataclasses.dataclass
class Step:
    """One row of the suite: the command (None: skipped, with ``note``), its budgets and its parser."""

    name: str
    what: str
    budget_gpu: float
    budget_quick: float
    command: Callable[[argparse.Namespace, Path], list[str] | None]
    parse: Callable[[str, Path], dict[str, float]]
    goals: list[Goal] = dataclasses.field(default_factory=list)
    note: Callable[[argparse.Namespace], str] = lambda args: ""


# --- the steps ---------------------------------------------------------------------------------------


def _py(script: str, *args: str) -> list[str]:
    return [sys.executable, str(BENCH / script), *args]


def _pytest(args: argparse.Namespace, work: Path) -> list[str]:
    # the gpu tests need CUDA (they fail, not skip, without it): on a CPU only their collection is checked
    collect = [] if args.device == "cuda" else ["--collect-only"]
    return [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *collect, str(ROOT / "tests")]


def _svi(args: argparse.Namespace, work: Path) -> list[str]:
    size = ["--rounds", "5", "--block", "1"] if args.quick else []
    return _py("svi_overhead.py", "--device", args.device, *size)


def _epoch(args: argparse.Namespace, work: Path) -> list[str]:
    size = ["--limit", "2048"] if args.quick else []  # the full 737,280 images otherwise
    run = ["--epochs", "1", "--device", args.device, "--out", str(work / "epoch"), "--overwrite", "--no-progress"]
    return [sys.executable, "-m", "probgen", "fit", "vae", "--dataset", "dsprites", *size, *run]


def _iwae(args: argparse.Namespace, work: Path) -> list[str]:
    if args.quick:
        size = ["--loglik-points", "2", "--iwae-k", "1000", "--ais-steps", "3", "--loglik-rounds", "1"]
    else:  # k = 5000 on 128 points per batch (the loglik default); AIS shortened, it is not this step's goal
        size = ["--ais-steps", "100", "--loglik-rounds", "3"]
    out = ["--json", str(work / "iwae.json")]
    return _py("throughput.py", "--sections", "loglik", "--device", args.device, *size, *out)


def _hmc(args: argparse.Namespace, work: Path) -> list[str]:
    size = ["--quick"] if args.quick else ["--floor-points", "1"]  # one per-point NUTS run sets the floor's rate
    return _py("hmc_throughput.py", "--device", args.device, *size)


def _fid(args: argparse.Namespace, work: Path) -> list[str]:
    if args.quick:
        size = ["--num-images", "8", "--batch-size", "8", "--rounds", "1", "--domain-images", "200",
                "--domain-batch-size", "100", "--domain-rounds", "1", "--domain-steps", "5"]  # fmt: skip
    else:
        size = ["--skip-cpu"] if args.device == "cuda" else []
    return _py("eval_throughput.py", *size)


def _trust(args: argparse.Namespace, work: Path) -> list[str] | None:
    script = BENCH / "loglik_time_to_trust.py"
    if args.quick or not script.is_file():  # quick: it trains the README's model and a long reference first
        return None
    return _py(script.name, "--num-data", "100", "--extra", f"--device {args.device}")


STEPS = [
    Step("pytest_gpu", "python -m pytest -m gpu", 50, 120, _pytest, parse_pytest, [Goal("not_passed", "<=", 0)]),
    Step(
        "svi_overhead",
        "probgen SVI step / plain torch step",
        35,
        90,
        _svi,
        parse_key_values,
        [Goal("ratio", "<=", 1.05)],
    ),
    Step(
        "epoch",
        "a full epoch of dSprites, default VAE (quick: 2,048 images, projected)",
        100,
        120,
        _epoch,
        parse_epoch,
        [Goal("epoch_seconds", "<", 15)],
    ),
    Step(
        "iwae",
        "IWAE k=5000 points/s, projected to 10,000 points (quick: k=1000)",
        55,
        90,
        _iwae,
        parse_iwae,
        [Goal("iwae_10k_seconds", "<", 120)],
    ),
    Step(
        "hmc",
        "HMC throughput: probgen vs ceiling and vs per-point NUTS",
        80,
        150,
        _hmc,
        parse_key_values,
        [Goal("vs_ceiling", ">=", 0.9), Goal("vs_floor", ">=", 100)],
    ),
    Step(
        "fid",
        "FID images/s: harness vs torchmetrics",
        50,
        120,
        _fid,
        parse_fid,
        [Goal("vs_torchmetrics", ">=", 1.0)],
    ),
    Step(
        "loglik_trust",
        "probgen loglik: time to a trusted answer on 100 points",
        50,
        90,
        _trust,
        parse_key_values,
        note=lambda args: (
            "not run with --quick (it trains the README's model and a long reference run first)"
            if args.quick
            else "experiments/benchmarks/loglik_time_to_trust.py is not in this checkout: row skipped"
        ),
    ),
]
STEP_NAMES = ["install", *(s.name for s in STEPS)]


# --- running -----------------------------------------------------------------------------------------


def _run(cmd: list[str], log: Path, timeout: float, env: dict[str, str]) -> tuple[str, int | None, str]:
    """Run ``cmd`` in its own process group with output to ``log``; (status, return code, output)."""
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
        try:
            rc = proc.wait(timeout=max(timeout, 1.0))
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole tree: DataLoader workers, torch compile workers
            proc.wait()
            rc, status = None, "timeout"
    return status, rc, log.read_text()


def missing_modules() -> list[str]:
    """The requirements in :data:`WHEELS` whose module does not import here."""
    return [req for req, module in WHEELS.items() if importlib.util.find_spec(module) is None]


def install(wheels: Path, site: Path, env: dict[str, str], log: Path) -> dict[str, Any]:
    """Install the missing packages from the wheel folder into ``site`` (no index, no dependencies)."""
    missing = missing_modules()
    if not missing:
        log.write_text("every package imports: nothing to install\n")
        return {"status": "ok", "metrics": {"installed": 0}, "note": "nothing missing"}
    names = [req.split("==")[0].replace("-", "_").lower() for req in missing]
    files = sorted(p for p in wheels.glob("*.whl") if p.name.split("-")[0].lower() in names) if wheels.is_dir() else []
    if len(files) < len(missing):
        log.write_text(f"missing: {missing}; wheels found in {wheels}: {[p.name for p in files]}\n")
        return {"status": "failed", "metrics": {}, "note": f"no wheels for some of {missing}: run --fetch-wheels"}
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels), "--no-deps",
           "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, files)]  # fmt: skip
    status, rc, _ = _run(cmd, log, 60, env)
    return {"status": status, "rc": rc, "metrics": {"installed": len(files)}, "note": ", ".join(missing)}


def fetch_wheels(wheels: Path) -> int:
    """Download the wheels the GPU image lacks (run here, where PyPI is reachable)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "-d", str(wheels), *WHEELS]  # fmt: skip
    print("$ " + " ".join(cmd))
    return subprocess.call(cmd)


def device_info(env: dict[str, str]) -> dict[str, Any]:
    code = (
        "import json, torch; c = torch.cuda.is_available(); "
        "print(json.dumps({'torch': torch.__version__, 'cuda': c, "
        "'device_name': torch.cuda.get_device_name() if c else 'cpu'}))"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        return {"torch": None, "cuda": False, "device_name": "unknown"}


def judge(step: Step, metrics: dict[str, float], on_gpu: bool) -> list[dict[str, Any]]:
    out = []
    for g in step.goals:
        value = metrics.get(g.metric)
        verdict = "n/a" if value is None else ("met" if g.met(value) else "missed")
        if not on_gpu:
            verdict = "n/a (GPU goal)" if value is not None else "n/a"
        out.append({"goal": str(g), "value": value, "verdict": verdict})
    return out


def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    site = Path(args.site)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    selected = [n for n in STEP_NAMES if (not args.only or n in args.only) and n not in args.skip]
    results: dict[str, Any] = {}
    t_start = time.perf_counter()
    if "install" in selected:
        t0 = time.perf_counter()
        results["install"] = {**install(Path(args.wheels), site, env, out / "install.log"), "log": "install.log"}
        results["install"]["seconds"] = time.perf_counter() - t0
        results["install"]["goals"] = []
    info = device_info(env)
    if args.device == "auto":
        args.device = "cuda" if info.get("cuda") else "cpu"
    on_gpu = args.device == "cuda"
    spare = 0.0  # budget the earlier steps left unused
    for step in STEPS:
        if step.name not in selected:
            continue
        budget = (step.budget_quick if args.quick else step.budget_gpu) * args.budget_scale + spare
        budget = min(budget, args.budget - (time.perf_counter() - t_start))
        cmd = step.command(args, out)
        row: dict[str, Any] = {"what": step.what, "log": f"{step.name}.log", "budget_s": round(budget, 1)}
        if cmd is None:
            row.update(status="skipped", seconds=0.0, metrics={}, note=step.note(args))
        elif budget < 5:
            row.update(status="skipped", seconds=0.0, metrics={}, note="the suite's budget is spent")
        else:
            t0 = time.perf_counter()
            status, rc, text = _run(cmd, out / f"{step.name}.log", budget, env)
            seconds = time.perf_counter() - t0
            spare = max(0.0, budget - seconds)
            metrics: dict[str, float] = {}
            note = ""
            try:
                metrics = step.parse(text, out)
            except (OSError, ValueError, KeyError) as exc:
                note = f"no measurement: {exc}"[:200]
            if "collected" in metrics:
                note = f"--collect-only on a CPU: {metrics['collected']:.0f} gpu tests collected, none run"
            elif status == "ok" and not metrics and step.goals:
                status = "failed"
            row.update(status=status, rc=rc, seconds=seconds, metrics=metrics, note=note)
        row["goals"] = judge(step, row["metrics"], on_gpu)
        results[step.name] = row
    total = time.perf_counter() - t_start
    verdicts = [g["verdict"] for r in results.values() for g in r.get("goals", [])]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": args.device,
        "device_name": info.get("device_name"),
        "torch": info.get("torch"),
        "quick": args.quick,
        "budget_s": args.budget,
        "seconds": total,
        "steps": results,
        "all_goals_met": bool(verdicts) and all(v == "met" for v in verdicts) if on_gpu else None,
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def summary_table(report: dict[str, Any]) -> str:
    """The suite's one table: a row per goal (or per step without goals)."""
    head = f"{'step':<14}{'status':<9}{'seconds':>8}  {'measured':<34}{'goal':<26}verdict"
    lines = [f"GPU suite on {report['device_name']} (torch {report['torch']}), {report['date']}"]
    lines += [head, "-" * len(head)]
    for name, r in report["steps"].items():
        goals = r.get("goals") or [{"goal": "", "value": None, "verdict": r.get("note", "")}]
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in list(r["metrics"].items())[:2]) if r["metrics"] else ""
        for i, g in enumerate(goals):
            measured = f"{g['goal'].split()[0]}={_fmt(g['value'])}" if g["goal"] else shown
            first = f"{name:<14}{r['status']:<9}{r['seconds']:>8.1f}" if i == 0 else " " * 31
            lines.append(f"{first}  {measured:<34}{g['goal']:<26}{g['verdict']}")
        if r.get("note") and r.get("goals"):
            lines.append(f"{'':<33}note: {r['note']}")
    met = report["all_goals_met"]
    tail = "goals are judged on a GPU only" if met is None else ("all goals met" if met else "some goals MISSED")
    lines.append(f"total {report['seconds']:.0f} s of a {report['budget_s']:.0f} s budget; {tail}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: every step runs, in minutes on a CPU")
    ap.add_argument("--out", default="gpu_suite_out", help="step logs, gpu_suite.json, the epoch's run")
    ap.add_argument("--only", default="", help=f"comma-separated steps to run, of: {', '.join(STEP_NAMES)}")
    ap.add_argument("--skip", default="", help="comma-separated steps to leave out")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for the whole suite (steps are cut to it)")
    ap.add_argument("--budget-scale", type=float, default=1.0, help="multiplies every step's own budget")
    ap.add_argument("--wheels", default=str(DEFAULT_WHEELS), help="folder of the wheels to install from")
    ap.add_argument("--site", default="/tmp/probgen-gpu-site", help="where the wheels are installed (--target)")
    ap.add_argument("--fetch-wheels", action="store_true", help="download the wheels into --wheels and exit")
    args = ap.parse_args(argv)
    args.only = [s for s in args.only.split(",") if s]
    args.skip = [s for s in args.skip.split(",") if s]
    for name in args.only + args.skip:
        if name not in STEP_NAMES:
            ap.error(f"unknown step {name!r}; steps: {', '.join(STEP_NAMES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.fetch_wheels:
        return fetch_wheels(Path(args.wheels))
    report = run_suite(args)
    path = Path(args.out) / "gpu_suite.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(summary_table(report))
    print(f"json: {path}")
    bad = [n for n, r in report["steps"].items() if r["status"] in ("failed", "timeout")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
