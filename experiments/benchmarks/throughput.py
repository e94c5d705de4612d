"""Throughput of probgen's hot paths, each measured side by side with its reference in one run.

Sections (``--sections``, default all, in this order): ``train``, ``loglik``, ``fid``.

Section ``train``: training images per second of the default dSprites VAE (Burgess et al. conv
nets, latent 10, batch 64, Bernoulli, Adam). Candidates, timed in interleaved blocks so that machine
noise hits all alike (medians of the per-block step times):

- ``probgen``: the step `probgen fit vae` runs: a batch indexed from the uint8 images on the
  device, Pyro model/guide through ``Trace_ELBO`` (``svi_step``, validation off as in the trainer),
  the device-side NaN guard and the on-device epoch sums;
- ``plain``: a hand-written PyTorch loop of the same nets on the same batches (no Pyro);
- ``probgen+OPTION`` for each ``--options`` entry (channels_last, bf16, tf32, cudnn_benchmark,
  compile, reduce_overhead, cuda_graph, packed, stream): the probgen step with that speed option
  (``PerfConfig``).

It prints images/s, ms/step, the projected time of one dSprites epoch (737,280 images) and, on a
GPU, the distance to the goals (epoch < 15 s, probgen step <= 1.05x plain).

Section ``loglik``: data points per second of IWAE (k = 5000, chunks of 4096 decoder calls) and
AIS (8 chains, 10 leapfrog steps; 1000 temperatures on a GPU, 20 on the CPU), run as `probgen
loglik` runs them (``elbo_iwae``/``ais`` on the Pyro model's log joint and the encoder proposal),
against a hand-written IWAE of the same chunking and, for AIS, the bare cost of its decoder
forward+backward passes (the gradient-evaluation ceiling). Prints the projected time of IWAE
k = 5000 on 10,000 points (goal on a GPU: under 2 minutes).

Section ``fid``: images per second into FID statistics through Inception (299 px), probgen's
harness against torchmetrics' own ``FrechetInceptionDistance.update`` loop (the passes of
``eval_throughput.py``, which also covers the domain networks), interleaved rounds.

The last line is ``ratio: X.XX``, the train section's probgen / plain step time.

    python experiments/benchmarks/throughput.py [--sections train] [--device cpu|cuda]
        [--options channels_last,bf16] [--rounds 15] [--block 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from probgen.config import DataConfig, PerfConfig, VAEConfig
from probgen.data import load_dataset
from probgen.inference.svi.elbo import make_elbo
from probgen.inference.svi.step import hot_loop
from probgen.models.vae import VAE
from probgen.training.batches import epoch_permutation, make_batches
from probgen.training.guards import NonFiniteGuard
from probgen.training.perf import adam_kwargs, apply_speed_options, make_train_step
from probgen.utils.device import resolve_device
from probgen.utils.io import environment_info

DSPRITES_EPOCH = 737_280
LOG_2PI = math.log(2 * math.pi)
GOALS = {"epoch_s": 15.0, "step_ratio": 1.05}
OPTIONS = {
    "channels_last": {"channels_last": True},
    "bf16": {"amp": "bf16"},
    "tf32": {"tf32": True},
    "cudnn_benchmark": {"cudnn_benchmark": True},
    "compile": {"compile": "default"},
    "cuda_graph": {"cuda_graph": True},
    "reduce_overhead": {"compile": "reduce-overhead"},
    "packed": {"data_placement": "packed"},
    "stream": {"data_placement": "stream"},
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    candidates: dict[str, Callable[[], None]], rounds: int, block: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per call of each candidate, one value per block; the block order rotates every round."""
    names = list(candidates)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            sync(device)
            t0 = time.perf_counter()
            for _ in range(block):
                candidates[n]()
            sync(device)
            times[n].append((time.perf_counter() - t0) / block)
    return times


def spread(times: list[float]) -> float:
    """Interquartile range relative to the median: how far apart two runs of one candidate fall."""
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return (q[2] - q[0]) / q[1]


# --- section: training ------------------------------------------------------------------------------


def plain_elbo_step(vae: VAE, optim: torch.optim.Optimizer, x: torch.Tensor) -> torch.Tensor:
    """The same one-sample ELBO by hand: reparameterised z, Bernoulli log-lik, log q - log p."""
    loc, scale = vae.encoder(x)
    eps = torch.randn_like(loc)
    z = loc + scale * eps
    logits = vae.decoder(z)
    recon = -F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    log_q = (-0.5 * eps**2 - scale.log() - 0.5 * LOG_2PI).sum()
    log_p = (-0.5 * z**2 - 0.5 * LOG_2PI).sum()
    loss = -(recon + log_p - log_q)
    optim.zero_grad(set_to_none=True)
    loss.backward()
    optim.step()
    return loss.detach()


class _Looper:
    """Endless batches of one placement, restarting the epoch permutation as needed."""

    def __init__(self, source: Any, n: int, batch_size: int):
        self.source, self.n, self.batch_size, self.epoch = source, n, batch_size, 0
        self.it = iter(())

    def __call__(self) -> torch.Tensor:
        idx = next(self.it, None)
        if idx is None:
            self.it = self.source.epoch(epoch_permutation(self.n, 0, self.epoch), 0)
            self.epoch += 1
            idx = next(self.it)
        return self.source.images(idx)


def train_section(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    data = load_dataset(DataConfig(dataset="dsprites", limit=args.limit, test_fraction=0.0))
    images = data.split("train").images
    B = args.batch_size
    cfg = VAEConfig(likelihood="bernoulli")
    torch.manual_seed(0)
    init = VAE(cfg, data.image_shape).state_dict()
    candidates: dict[str, Callable[[], None]] = {}
    keep: list[Any] = []

    def build(perf: PerfConfig) -> tuple[VAE, torch.optim.Optimizer, _Looper]:
        vae = VAE(cfg, data.image_shape).to(device)
        vae.load_state_dict(init)
        apply_speed_options([vae.encoder, vae.decoder], perf, device)
        optim = torch.optim.Adam(vae.parameters(), lr=5e-4, **adam_kwargs(perf, device))
        source, _ = make_batches(images, data.binary, device, B, perf)
        keep.append(source)
        return vae, optim, _Looper(source, len(images), B)

    def probgen_candidate(perf: PerfConfig) -> Callable[[], None]:
        vae, optim, batches = build(perf)
        elbo = make_elbo("trace")
        step_fn = make_train_step(elbo(vae.model, vae.guide), elbo, optim, perf, device)
        guard = NonFiniteGuard(device)
        sums = torch.zeros(3, dtype=torch.float64, device=device)
        step = [0]

        def run() -> None:
            x = batches()
            check = functools.partial(guard.check, step=step[0])
            with hot_loop():
                sums.add_(step_fn(x, 1.0, check).double())
            step[0] += 1

        return run

    def plain_candidate() -> Callable[[], None]:
        vae, optim, batches = build(PerfConfig())
        return lambda: plain_elbo_step(vae, optim, batches())

    candidates["probgen"] = probgen_candidate(PerfConfig())
    candidates["plain"] = plain_candidate()
    for opt in args.options:
        candidates[f"probgen+{opt}"] = probgen_candidate(PerfConfig(**OPTIONS[opt]))
    for fn in candidates.values():  # warm-up: allocator, cuDNN, Pyro's first trace, compilation
        for _ in range(args.warmup):
            fn()
    sync(device)
    times = interleaved(candidates, args.rounds, args.block, device)
    med = {n: statistics.median(t) for n, t in times.items()}
    rows = {
        name: {
            "ms_per_step": t * 1e3,
            "images_per_s": B / t,
            "epoch_s": DSPRITES_EPOCH / (B / t),
            "iqr_rel": spread(times[name]),
        }
        for name, t in med.items()
    }
    result: dict[str, Any] = {
        "batch_size": B,
        "rows": rows,
        "ratio": med["probgen"] / med["plain"],
        "options_vs_probgen": {n: med["probgen"] / t for n, t in med.items() if n.startswith("probgen+")},
    }
    print(f"\n[train] default dSprites VAE, batch {B}, {args.rounds} rounds x {args.block} steps, medians")
    print(f"{'candidate':<26}{'ms/step':>10}{'IQR':>7}{'images/s':>12}{'epoch (737,280) s':>20}")
    for name, r in rows.items():
        iqr = f"{100 * r['iqr_rel']:.0f}%"
        print(f"{name:<26}{r['ms_per_step']:>10.2f}{iqr:>7}{r['images_per_s']:>12.0f}{r['epoch_s']:>20.1f}")
    for name, speedup in result["options_vs_probgen"].items():
        print(f"{name}: {speedup:.2f}x the speed of probgen without it")
    if device.type == "cuda":
        best = min(r["epoch_s"] for n, r in rows.items() if n.startswith("probgen"))
        verdict = "met" if best < GOALS["epoch_s"] else f"MISSED by {best / GOALS['epoch_s']:.2f}x"
        print(f"goal: an epoch in < {GOALS['epoch_s']:.0f} s: best probgen {best:.1f} s, {verdict}")
        ratio = result["ratio"]
        verdict = "met" if ratio <= GOALS["step_ratio"] else f"MISSED by {ratio / GOALS['step_ratio']:.2f}x"
        print(f"goal: probgen step <= {GOALS['step_ratio']}x plain: {ratio:.3f}x, {verdict}")
    else:
        print("goals (epoch < 15 s, step <= 1.05x plain) are for one H100/H200; on the CPU only the ratio applies")
    return result


# --- section: log-likelihood ------------------------------------------------------------------------


@torch.no_grad()
def plain_iwae(vae: VAE, x: torch.Tensor, k: int, max_batch: int) -> torch.Tensor:
    """IWAE_k by hand, chunked as probgen's: encoder q, k draws, Bernoulli decoder, log-mean-exp. (N,)"""
    loc, scale = vae.encoder(x)  # (N, D)
    n = x.shape[0]
    per_chunk = max(1, max_batch // n)
    log_w = []
    for start in range(0, k, per_chunk):
        eps = torch.randn((min(per_chunk, k - start), *loc.shape), device=x.device)
        z = loc + scale * eps  # (k', N, D)
        logits = vae.decoder(z)  # (k', N, C, H, W)
        ll = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").flatten(2).sum(-1)
        log_p = (-0.5 * z**2 - 0.5 * LOG_2PI).sum(-1)
        log_q = (-0.5 * eps**2 - scale.log() - 0.5 * LOG_2PI).sum(-1)
        log_w.append(ll + log_p - log_q)
    lw = torch.cat(log_w)
    return torch.logsumexp(lw, 0) - math.log(k)


def plain_grad_evals(vae: VAE, x: torch.Tensor, chains: int, evals: int) -> None:
    """The ceiling of AIS: ``evals`` decoder forward+backward passes over (chains, N) latents, nothing else."""
    z = torch.randn((chains, x.shape[0], vae.latent_dim), device=x.device, requires_grad=True)
    for _ in range(evals):
        logits = vae.decoder(z)
        ll = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="sum")
        (grad,) = torch.autograd.grad(ll - 0.5 * (z**2).sum(), z)
        z = (z.detach() + 1e-3 * grad).requires_grad_(True)


def loglik_section(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Data points/s of IWAE (k=5000) and AIS, as `probgen loglik` runs them, against plain-PyTorch references."""
    from probgen.inference.loglik.ais import ais
    from probgen.inference.loglik.iwae import elbo_iwae
    from probgen.inference.mcmc.potential import encoder_proposal, from_pyro_model

    cpu = device.type == "cpu"
    n = args.loglik_points or (4 if cpu else 128)  # points per batch (`--points-per-batch`, default 128)
    k, max_batch, chains, leapfrog = args.iwae_k, 4096, 8, 10
    ais_steps = args.ais_steps or (20 if cpu else 1000)
    data = load_dataset(DataConfig(dataset="dsprites", limit=n + 10, test_fraction=0.0))
    x = (data.split("train").images[:n].float() / 255).to(device)
    torch.manual_seed(0)
    vae = VAE(VAEConfig(likelihood="bernoulli"), data.image_shape).to(device).eval().requires_grad_(False)

    def ours_iwae() -> None:
        elbo_iwae(from_pyro_model(vae.model, x), encoder_proposal(vae.guide, x), k, max_batch)

    def ours_ais() -> None:
        ais(from_pyro_model(vae.model, x), chains, ais_steps, leapfrog)

    evals = (ais_steps - 1) * (leapfrog + 1)  # an HMC transition: leapfrog_steps + 1 gradients
    candidates = {
        "probgen IWAE": ours_iwae,
        "plain IWAE": lambda: plain_iwae(vae, x, k, max_batch),
        "probgen AIS": ours_ais,
        "plain AIS ceiling": lambda: plain_grad_evals(vae, x, chains, evals),
    }
    for fn in candidates.values():
        fn()  # warm-up
    times = interleaved(candidates, args.loglik_rounds, 1, device)
    rows = {name: {"points_per_s": n / statistics.median(t), "iqr_rel": spread(t)} for name, t in times.items()}
    iwae_ratio = rows["probgen IWAE"]["points_per_s"] / rows["plain IWAE"]["points_per_s"]
    ais_ratio = rows["probgen AIS"]["points_per_s"] / rows["plain AIS ceiling"]["points_per_s"]
    print(
        f"\n[loglik] default dSprites VAE, {n} points per batch, IWAE k={k} (chunks of {max_batch} decodes), "
        f"AIS {chains} chains x {ais_steps} temperatures x {leapfrog} leapfrog steps, "
        f"{args.loglik_rounds} rounds, medians"
    )
    for name, r in rows.items():
        print(f"{name:<26}{r['points_per_s']:>12.3f} points/s  (IQR {100 * r['iqr_rel']:.0f}%)")
    print(f"probgen / plain: IWAE {iwae_ratio:.2f}, AIS {ais_ratio:.2f} (of the gradient-evaluation ceiling)")
    iwae_10k = 10_000 / rows["probgen IWAE"]["points_per_s"]
    if device.type == "cuda":
        verdict = "met" if iwae_10k < 120 else f"MISSED by {iwae_10k / 120:.2f}x"
        print(f"goal: IWAE k=5000 on 10,000 points in < 2 min: k={k} takes {iwae_10k:.0f} s, {verdict}")
    else:
        print(f"IWAE k={k} on 10,000 points would take {iwae_10k / 3600:.1f} h here (the 2-min goal is for a GPU)")
    return {
        "points_per_batch": n,
        "iwae_k": k,
        "ais": {"chains": chains, "steps": ais_steps, "leapfrog_steps": leapfrog},
        "rows": rows,
        "iwae_vs_plain": iwae_ratio,
        "ais_vs_ceiling": ais_ratio,
        "iwae_10k_points_s": iwae_10k,
    }


# --- section: FID -------------------------------------------------------------------------------------


def fid_section(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Images/s into FID statistics: probgen's harness vs torchmetrics' own loop (eval_throughput.py's passes)."""
    import sys
    import tempfile

    from torchmetrics.image.fid import FrechetInceptionDistance

    from probgen.errors import UserError
    from probgen.metrics.features import find_inception_weights, load_inception

    sys.path.insert(0, str(Path(__file__).parent))
    from eval_throughput import harness_pass, torchmetrics_pass  # the same passes as the harness's benchmark

    n = args.fid_images or (64 if device.type == "cpu" else 5000)
    b = 32 if device.type == "cpu" else 250
    images = load_dataset(DataConfig(dataset="dsprites", limit=n + 10)).split("train").images[:n]  # (n, 1, 64, 64)
    rgb = images.expand(-1, 3, -1, -1)  # torchmetrics' Inception wants 3 channels
    try:
        weights = find_inception_weights(None)
    except UserError:
        weights = None  # random weights of the same architecture: the speed is the same
    torch.manual_seed(0)
    ours = load_inception(weights, random_weights=weights is None).to(device).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = weights or Path(tmp) / "random-inception.pth"
        if weights is None:
            torch.save(ours.net.state_dict(), path)
        theirs = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(path), antialias=False)
        theirs = theirs.to(device)
    harness_pass(ours, images[: 2 * b], b, device)  # warm-up
    torchmetrics_pass(theirs, rgb[: 2 * b], b, device)
    candidates = {
        "probgen harness": lambda: harness_pass(ours, images, b, device),
        "torchmetrics FID": lambda: torchmetrics_pass(theirs, rgb, b, device),
    }
    times = interleaved(candidates, args.fid_rounds, 1, device)
    rows = {k: {"images_per_s": n / statistics.median(t), "iqr_rel": spread(t)} for k, t in times.items()}
    ratio = rows["probgen harness"]["images_per_s"] / rows["torchmetrics FID"]["images_per_s"]
    label = "file" if weights else "random weights"
    print(f"\n[fid] Inception ({label}) at 299 px, {n} dSprites images, batch {b}, {args.fid_rounds} rounds, medians")
    for k, r in rows.items():
        print(f"{k:<26}{r['images_per_s']:>10.1f} images/s  (IQR {100 * r['iqr_rel']:.0f}%)")
    print(f"harness / torchmetrics: {ratio:.2f}")
    return {"num_images": n, "batch_size": b, "weights": label, "rows": rows, "harness_vs_torchmetrics": ratio}


SECTIONS = {"train": train_section, "loglik": loglik_section, "fid": fid_section}


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--limit", type=int, default=64 * 32, help="dSprites images to index into (train)")
    ap.add_argument("--options", default="", help=f"comma-separated speed options: {', '.join(OPTIONS)}")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--block", type=int, default=5, help="steps per timed block")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per candidate first")
    ap.add_argument("--loglik-points", type=int, default=None, help="loglik section: points per batch (CPU 4, GPU 128)")
    ap.add_argument("--iwae-k", type=int, default=5000)
    ap.add_argument("--ais-steps", type=int, default=None, help="AIS temperatures (CPU 20, GPU 1000 = the default)")
    ap.add_argument("--loglik-rounds", type=int, default=3)
    ap.add_argument("--fid-images", type=int, default=None, help="FID section: images per pass (CPU 64, GPU 5000)")
    ap.add_argument("--fid-rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    args.options = [o for o in args.options.split(",") if o]
    unknown = [o for o in args.options if o not in OPTIONS]
    if unknown:
        ap.error(f"unknown --options {unknown}; choose from {', '.join(OPTIONS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    env = environment_info(device)
    print(f"device: {env.get('device_name', device)}  torch {env['torch']}  threads: {torch.get_num_threads()}")
    results: dict[str, Any] = {"environment": env, "date": time.strftime("%Y-%m-%d"), "args": vars(args)}
    ratio = None
    for name in [s for s in args.sections.split(",") if s]:
        results[name] = SECTIONS[name](args, device)
        ratio = results[name].get("ratio", ratio)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if ratio is not None:
        print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
