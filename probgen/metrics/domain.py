"""Domain features: a small classifier trained on the dataset itself.

Inception's ImageNet features suit natural photographs; for binary sprites or X-rays a network that
has learnt the dataset's own structure gives more meaningful distances. The classifier learns

- the generative factors, when the dataset has them (dSprites: shape, scale, orientation, x, y),
- else the labels (MNIST digits, CIFAR-10 classes, ...),
- else which of four rotations was applied (a self-supervised task, Gidaris et al. 2018),

and the Fréchet distance on its penultimate features is reported as ``FD-<dataset>``, never "FID".
Trained networks are cached by dataset content, target and steps, so every run of a dataset
shares one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from probgen.checkpoint import load_checkpoint, save_checkpoint
from probgen.data import ImageData, Split
from probgen.errors import UserError
from probgen.metrics.cache import data_fingerprint, key_hash
from probgen.metrics.features import FeatureNet, state_fingerprint
from probgen.metrics.images import to_uint8
from probgen.utils.progress import progress

log = logging.getLogger("probgen")

DOMAIN_VERSION = 3  # bump when the network or its training changes: old cache entries are then ignored
KIND = "domain-features"
FEATURE_DIM = 128
BATCH_SIZE = 64
LR = 3e-3  # the peak of the one-cycle schedule
RECON_IMAGES = 500  # test images whose reconstructions reconstruction_accuracy classifies: +-2 % on a 90 % share


class DomainNet(FeatureNet):
    """Conv classifier on uint8 images (N, C, H, W): strided convs to <= 8 px, a 4x4 average pool,
    a 128-d standardised ReLU layer (the features), and one linear head per target.

    The convolutions carry no batch norm: on sparse binary sprites its running statistics lag the
    batch statistics, and in eval mode (version 2) a dSprites classifier whose training batches were
    94 % right on shape called every test image "ellipse"."""

    def __init__(self, image_shape: tuple[int, int, int], heads: dict[str, int], width: int = 16):
        super().__init__()
        c, h, w = image_shape
        layers: list[nn.Module] = []
        ch_in, ch, size = c, width, min(h, w)
        while size > 8:
            layers += [nn.Conv2d(ch_in, ch, 4, 2, 1), nn.ReLU(inplace=True)]
            ch_in, ch, size = ch, min(ch * 2, 256), size // 2
        layers += [
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(ch_in * 16, FEATURE_DIM, bias=False),
            nn.BatchNorm1d(FEATURE_DIM, affine=False),  # features of O(1) on real data, as KID's kernel assumes
            nn.ReLU(inplace=True),
        ]
        self.body = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({name: nn.Linear(FEATURE_DIM, k) for name, k in heads.items()})
        self.image_shape = tuple(image_shape)
        self.num_features = FEATURE_DIM
        self.resize = f"none (native {h}x{w})"
        self.name = "domain"
        self.fingerprint = ""
        self.info: dict[str, Any] = {}

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> penultimate features (N, 128)."""
        return self.body(images.float() / 255.0)

    def classify(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.features(images)
        return {name: head(f) for name, head in self.heads.items()}

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, None]:
        if tuple(images.shape[1:]) != self.image_shape:
            raise UserError(f"images of shape {tuple(images.shape[1:])} do not match the dataset's {self.image_shape}")
        return self.features(images), None


# --- targets ---------------------------------------------------------------------------------------


def _targets(data: ImageData, split: Split) -> tuple[str, dict[str, int], torch.Tensor | None]:
    """(kind, {head: classes}, targets (N, heads) or None for the rotation task)."""
    if split.factor_classes is not None:
        fc = split.factor_classes.long()
        counts = (fc.max(dim=0).values + 1).tolist()
        names = list(data.factor_names) or [f"factor{j}" for j in range(fc.shape[1])]
        keep = [j for j, k in enumerate(counts) if k > 1]  # constant factors (dSprites' color) teach nothing
        if keep:
            return "factors", {names[j]: counts[j] for j in keep}, fc[:, keep]
    if split.labels is not None and len(split.labels) and int(split.labels.max()) > 0:
        y = split.labels.long().reshape(len(split.labels), -1)  # (N, heads): one head per label column
        counts = (y.max(dim=0).values + 1).tolist()
        names = ["label"] if y.shape[1] == 1 else [f"label{j}" for j in range(y.shape[1])]
        return "labels", dict(zip(names, counts)), y
    square = split.images.shape[-1] == split.images.shape[-2]
    return "rotation", {"rotation": 4 if square else 2}, None


def _batch(images: torch.Tensor, targets: torch.Tensor | None, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """A training batch: images and target classes (B, heads). For the rotation task each image is
    rotated by k quarter turns (k drawn per image; half turns only for non-square images), k the target."""
    if targets is not None:
        return images, targets
    square = images.shape[-1] == images.shape[-2]
    k = torch.randint(4 if square else 2, (len(images),), generator=gen)
    rotated = images.clone()
    for r in range(1, 4 if square else 2):
        sel = (k == r).to(images.device)
        rotated[sel] = torch.rot90(images[sel], r if square else 2, dims=(-2, -1))
    return rotated, k[:, None]


# --- training and cache ---------------------------------------------------------------------------


def _cache_key(data: ImageData, steps: int, train_split: str) -> dict[str, Any]:
    split = data.split(train_split)
    kind, heads, _ = _targets(data, split)
    return {
        "version": DOMAIN_VERSION,
        "dataset": data.name,
        "data_source": data.source,
        "split": train_split,
        "data_fingerprint": data_fingerprint(split.images),
        "image_shape": list(data.image_shape),
        "target": kind,
        "heads": heads,
        "steps": steps,
    }


def train_domain_net(
    data: ImageData, steps: int, device: torch.device, seed: int = 0, show_progress: bool = True
) -> DomainNet:
    """Train a :class:`DomainNet` on the train split (Adam, batch 64, ``steps`` steps of a one-cycle
    learning rate peaking at 3e-3) and measure its accuracy per head on the test split (up to 2000
    images) when there is one.

    The loss is the sum over heads of each head's cross-entropy divided by log(classes), its value at
    chance, so that dSprites' 32-class positions and 40-class orientation (ambiguous for the symmetric
    shapes) do not drown its 3-class shape."""
    split = data.split("train")
    kind, heads, targets = _targets(data, split)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        net = DomainNet(data.image_shape, heads).to(device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=steps)
    weights = [1.0 / math.log(max(k, 2)) for k in heads.values()]  # a one-class label column: weight 1/log 2
    images = split.images
    n = len(images)
    net.train()
    with progress(steps, desc=f"domain net ({kind})", enabled=show_progress) as bar:
        for _ in range(steps):
            idx = torch.randint(n, (min(BATCH_SIZE, n),), generator=gen)
            x, y = _batch(images[idx], None if targets is None else targets[idx], gen)
            logits = net.classify(x.to(device, non_blocking=True))
            y = y.to(device, non_blocking=True)
            loss = sum(w * F.cross_entropy(lg, y[:, j]) for j, (w, lg) in enumerate(zip(weights, logits.values())))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
    net.eval()
    acc = _accuracy(net, data, device, seed)
    net.info = {"target": kind, "heads": heads, "steps": steps, "test_accuracy": acc, "trained_on": "train"}
    return net


@torch.inference_mode()
def _accuracy(net: DomainNet, data: ImageData, device: torch.device, seed: int) -> dict[str, float] | None:
    if "test" not in data.splits or len(data.splits["test"]) == 0:
        return None
    split = data.splits["test"]
    _, _, targets = _targets(data, split)
    gen = torch.Generator().manual_seed(seed + 1)
    idx = torch.randperm(len(split), generator=gen)[:2000]
    x, y = _batch(split.images[idx], None if targets is None else targets[idx], gen)
    correct = torch.zeros(len(net.heads), device=device)
    for i in range(0, len(x), 500):
        logits = net.classify(x[i : i + 500].to(device))
        yb = y[i : i + 500].to(device)
        correct += torch.stack([(lg.argmax(1) == yb[:, j]).sum() for j, lg in enumerate(logits.values())])
    return {name: float(c) / len(x) for name, c in zip(net.heads, correct.tolist())}


def load_or_train_domain_net(
    data: ImageData, steps: int, cache_dir: Path, device: torch.device, show_progress: bool = True
) -> DomainNet:
    """The dataset's domain network from ``cache_dir/domain/``, trained and cached on a miss."""
    key = _cache_key(data, steps, "train")
    path = cache_dir / "domain" / f"{data.name}-{key_hash(key)}.pt"
    net = None
    if path.is_file():
        try:
            ckpt = load_checkpoint(path, kind=KIND)
            if ckpt["config"] == key:
                net = DomainNet(data.image_shape, key["heads"])
                net.load_state_dict(ckpt["state"]["model"])
                net.info = ckpt["info"]
                log.info("domain features: cached network %s", path)
        except (UserError, KeyError, RuntimeError) as exc:  # a damaged cache entry is rebuilt, not fatal
            log.warning("domain features: ignoring unreadable cache entry %s (%s)", path, str(exc)[:120])
            net = None
    if net is None:
        log.info("domain features: training a %s classifier on %s (%d steps)", key["target"], data.name, steps)
        net = train_domain_net(data, steps, device, show_progress=show_progress)
        net = net.cpu()
        save_checkpoint(path, {"kind": KIND, "config": key, "state": {"model": net.state_dict()}, "info": net.info})
    net.name = f"domain-{data.name}"
    net.fingerprint = state_fingerprint(net)
    net.info = {**net.info, "cache_file": str(path), "fingerprint": net.fingerprint}
    return net.to(device, memory_format=torch.channels_last).eval()  # faster convolutions, as for Inception


@torch.inference_mode()
def reconstruction_accuracy(
    net: DomainNet,
    data: ImageData,
    reconstruct: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device,
    split: str = "test",
    batch_size: int = 500,
    max_images: int | None = RECON_IMAGES,
    seed: int = 0,
) -> dict[str, Any] | None:
    """How well reconstructions keep each generative factor: the fraction of ``split``'s images whose
    reconstruction the domain classifier ``net`` assigns the image's true class, per factor (dSprites:
    shape, scale, orientation, x, y), next to the same fraction on the images themselves (what the
    classifier can do at best).

    ``reconstruct(x, rows)``: reconstructions in [0, 1] of images ``x`` in [0, 1] (N, C, H, W) on
    ``device``, which are the split's images ``rows`` (an index tensor (N,)). At most ``max_images``
    images are classified (None: all), a seeded random subset: a split is stored in index order, which
    for dSprites is shape-major, so its first rows would all be squares. None when the split is absent
    or empty, or the dataset has no generative factors.
    """
    if split not in data.splits or len(data.splits[split]) == 0:
        return None
    s = data.splits[split]
    kind, heads, targets = _targets(data, s)
    if kind != "factors" or targets is None:
        return None
    n = len(s)
    chosen = torch.arange(n)
    if max_images is not None and max_images < n:
        chosen = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_images].sort().values
        n = max_images
    recon_hits = torch.zeros(len(heads), dtype=torch.long)
    real_hits = torch.zeros(len(heads), dtype=torch.long)
    for i in range(0, n, batch_size):
        rows = chosen[i : i + batch_size]
        x = s.images[rows].to(device)
        y = targets[rows].to(device)
        recon = to_uint8(reconstruct(x.float() / 255.0, rows))
        for hits, images in ((recon_hits, recon), (real_hits, x)):
            logits = net.classify(images)
            hits += torch.stack([(lg.argmax(1) == y[:, j]).sum() for j, lg in enumerate(logits.values())]).cpu()
    return {
        "split": split,
        "num_images": n,
        "classifier": {"steps": net.info.get("steps"), "cache_file": net.info.get("cache_file")},
        "reconstructions": {name: int(h) / n for name, h in zip(heads, recon_hits)},
        "images": {name: int(h) / n for name, h in zip(heads, real_hits)},
    }
