"""Evaluation throughput: probgen's feature extraction against torchmetrics' own FID update loop.

Both sides see the same uint8 dSprites images (64x64, procedural when the official file is absent)
in the same batches, and both end with FID's float64 statistics of the batch (sum and covariance):

- harness: :func:`probgen.metrics.features.extract` through probgen's feature network (one pass gives
  Inception's pool features and logits), then torchmetrics' ``FrechetInceptionDistance`` update on the
  features (:class:`~probgen.metrics.scores.Precomputed`), as ``probgen eval`` does;
- torchmetrics: ``FrechetInceptionDistance(feature=...).update(images, real=True)`` per batch, its own
  Inception (``feature=2048``, ``antialias=False``, weights from the same file) or, for the domain
  network, the same weights passed as a custom feature extractor (in PyTorch's default memory layout).

Inception uses the weights file when one is found (``--inception-weights``, $PROBGEN_INCEPTION_WEIGHTS,
the torch hub cache), else random weights of the same architecture (speed does not depend on them).
Timed passes alternate between the two sides so that machine noise hits both alike; rates are the
medians over rounds. CPU always (unless ``--skip-cpu`` on a GPU machine); the GPU too when there is one.

    python experiments/benchmarks/eval_throughput.py [--num-images 64] [--batch-size 32] [--rounds 3]

With timm installed, DINOv2 ViT-L/14 (FD_DINOv2's network; random weights unless ``--dinov2-weights``
or the usual places hold the official file) is timed through the same harness pass on the same images,
against Inception's harness pass, alternating (``dinov2 vs inception`` is the ratio of images/s).

The last line is ``vs_torchmetrics: X.XX``: harness images/s over torchmetrics' images/s for Inception
on the GPU when there is one, else on the CPU. Goal: >= 1.00 (the harness is not slower).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from probgen.config import DataConfig
from probgen.data import ImageData, load_dataset
from probgen.errors import UserError
from probgen.metrics.domain import load_or_train_domain_net
from probgen.metrics.features import FeatureNet, batches_of, extract, find_inception_weights, load_inception
from probgen.metrics.scores import Precomputed


class _FeaturesOnly(nn.Module):
    """A probgen feature network as torchmetrics expects a custom extractor: images -> (N, D)."""

    def __init__(self, net: FeatureNet):
        super().__init__()
        self.net = net
        self.num_features = net.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def harness_pass(net: FeatureNet, images: torch.Tensor, batch: int, device: torch.device) -> None:
    from torchmetrics.image.fid import FrechetInceptionDistance

    feats, _ = extract(net, batches_of(images, batch), len(images), device, show_progress=False)
    fid = FrechetInceptionDistance(feature=Precomputed(feats.shape[1])).to(device)
    fid.update(feats, real=True)


def torchmetrics_pass(fid: nn.Module, images: torch.Tensor, batch: int, device: torch.device) -> None:
    fid.reset()
    for x in batches_of(images, batch):
        fid.update(x.to(device, non_blocking=True), real=True)


def measure(
    name: str, ours: Callable[[], None], theirs: Callable[[], None], n: int, rounds: int, device: torch.device
) -> float:
    """Median images/s of both sides over alternating rounds; prints them and returns the ratio."""
    times: dict[str, list[float]] = {"harness": [], "torchmetrics": []}
    fns = {"harness": ours, "torchmetrics": theirs}
    for r in range(rounds):
        order = ("harness", "torchmetrics") if r % 2 == 0 else ("torchmetrics", "harness")
        for side in order:
            _sync(device)
            t0 = time.perf_counter()
            fns[side]()
            _sync(device)
            times[side].append(time.perf_counter() - t0)
    rate = {side: n / statistics.median(ts) for side, ts in times.items()}
    ratio = rate["harness"] / rate["torchmetrics"]
    print(
        f"{name:<28s} {device.type:<4s} harness {rate['harness']:9.1f} img/s   "
        f"torchmetrics {rate['torchmetrics']:9.1f} img/s   ratio {ratio:.2f}"
    )
    return ratio


def bench_device(
    device: torch.device, data: ImageData, weights: Path | None, tmp: Path, args: argparse.Namespace
) -> dict[str, float]:
    from torchmetrics.image.fid import FrechetInceptionDistance

    n = args.num_images if device.type == "cpu" else args.gpu_num_images
    images = data.split("train").images[:n]  # (n, 1, 64, 64) uint8
    rgb = images.expand(-1, 3, -1, -1)  # torchmetrics' Inception needs 3 channels
    b = args.batch_size if device.type == "cpu" else args.gpu_batch_size
    ratios = {}

    torch.manual_seed(0)
    ours = load_inception(weights, random_weights=weights is None).to(device).eval()
    path = weights
    if path is None:  # torchmetrics reads weights only from a file: give it the same random ones
        path = tmp / "random-inception.pth"
        torch.save(ours.net.state_dict(), path)
    theirs = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(path), antialias=False)
    theirs = theirs.to(device)
    harness_pass(ours, images[: 2 * b], b, device)  # warm-up: allocator, kernels, lazy imports
    torchmetrics_pass(theirs, rgb[: 2 * b], b, device)
    label = "inception (file)" if weights is not None else "inception (random weights)"
    ratios["inception"] = measure(
        label,
        lambda: harness_pass(ours, images, b, device),
        lambda: torchmetrics_pass(theirs, rgb, b, device),
        n,
        args.rounds,
        device,
    )

    if args.dinov2_images:
        ratios["dinov2_vs_inception"] = bench_dinov2(ours, images, device, args)

    dn = args.domain_images if device.type == "cpu" else args.gpu_num_images
    dimages = data.split("train").images[:dn]
    domain = load_or_train_domain_net(data, args.domain_steps, tmp, device, show_progress=False)  # as the harness
    plain = copy.deepcopy(domain).to(memory_format=torch.contiguous_format)  # the same weights, default layout
    domain_tm = FrechetInceptionDistance(feature=_FeaturesOnly(plain)).to(device)
    db = args.domain_batch_size
    harness_pass(domain, dimages[:db], db, device)
    torchmetrics_pass(domain_tm, dimages[:db], db, device)
    ratios["domain"] = measure(
        "domain (dsprites, 64 px)",
        lambda: harness_pass(domain, dimages, db, device),
        lambda: torchmetrics_pass(domain_tm, dimages, db, device),
        dn,
        args.domain_rounds,
        device,
    )
    return ratios


def bench_dinov2(inception: FeatureNet, images: torch.Tensor, device: torch.device, args: argparse.Namespace) -> float:
    """DINOv2 ViT-L/14 (224 px, pil-bicubic) against Inception (299 px, legacy-tf), both through the harness pass."""
    try:
        from probgen.metrics.dinov2 import find_dinov2_weights, load_dinov2

        try:
            weights = find_dinov2_weights(args.dinov2_weights)
        except UserError:
            weights = None
        torch.manual_seed(0)
        dino = load_dinov2(weights, random_weights=weights is None).to(device).eval()
    except UserError as exc:  # timm missing
        print(f"dinov2: skipped ({exc})")
        return float("nan")
    n = args.dinov2_images if device.type == "cpu" else args.gpu_num_images
    b = args.dinov2_batch_size if device.type == "cpu" else args.gpu_batch_size
    sub = images[:n]
    harness_pass(dino, sub[:b], b, device)  # warm-up
    times: dict[str, list[float]] = {"dinov2": [], "inception": []}
    nets = {"dinov2": dino, "inception": inception}
    for r in range(args.rounds):
        for side in ("dinov2", "inception") if r % 2 == 0 else ("inception", "dinov2"):
            _sync(device)
            t0 = time.perf_counter()
            harness_pass(nets[side], sub, b, device)
            _sync(device)
            times[side].append(time.perf_counter() - t0)
    rate = {side: n / statistics.median(ts) for side, ts in times.items()}
    label = "file" if weights is not None else "random weights"
    print(
        f"{'dinov2 vit-l/14 (' + label + ')':<28s} {device.type:<4s} harness {rate['dinov2']:9.3g} img/s   "
        f"inception {rate['inception']:9.3g} img/s   dinov2 vs inception {rate['dinov2'] / rate['inception']:.2f}"
    )
    return rate["dinov2"] / rate["inception"]


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-images", type=int, default=64, help="images per timed pass through Inception on CPU")
    ap.add_argument("--batch-size", type=int, default=32, help="Inception batch on CPU")
    ap.add_argument("--domain-images", type=int, default=2000, help="images per timed pass, domain network, CPU")
    ap.add_argument("--domain-batch-size", type=int, default=500)
    ap.add_argument("--gpu-num-images", type=int, default=5000)
    ap.add_argument("--gpu-batch-size", type=int, default=250)
    ap.add_argument("--domain-steps", type=int, default=20, help="training steps of the domain net (speed only)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per side, Inception")
    ap.add_argument("--domain-rounds", type=int, default=9, help="timed rounds per side, domain network")
    ap.add_argument("--inception-weights", default=None)
    ap.add_argument("--dinov2-weights", default=None)
    ap.add_argument("--dinov2-images", type=int, default=16, help="images per timed pass, DINOv2 on CPU (0: skip)")
    ap.add_argument("--dinov2-batch-size", type=int, default=8)
    ap.add_argument("--skip-cpu", action="store_true", help="with a GPU, time the GPU only (the GPU suite's budget)")
    args = ap.parse_args(argv)

    try:
        weights = find_inception_weights(args.inception_weights)
    except UserError:
        weights = None
    data = load_dataset(DataConfig(limit=max(args.num_images, args.domain_images, args.gpu_num_images) + 100))
    print(f"data: {data.source}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    if args.skip_cpu and len(devices) > 1:
        devices = devices[1:]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            if device.type == "cuda":
                print(f"gpu: {torch.cuda.get_device_name(device)}")
            results[device.type] = bench_device(device, data, weights, Path(tmp), args)
    headline = results["cuda" if "cuda" in results else "cpu"]["inception"]
    print(f"vs_torchmetrics: {headline:.2f}")


if __name__ == "__main__":
    main()
