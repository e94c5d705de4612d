"""Feature networks for the metrics, and the batched extraction loop.

Inception v3 is torchmetrics' ``NoTrainInceptionV3`` (torch-fidelity's TF-ported network), built
only from a local weights file: ``--inception-weights``, ``$PROBGEN_INCEPTION_WEIGHTS``, or the file
torch-fidelity would have downloaded into the torch hub cache. Nothing is ever downloaded. The file
is read with ``torch.load(weights_only=True)``; torch-fidelity's own loader unpickles freely, so it
only ever sees an in-memory copy of the checked state dict.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from probgen.errors import UserError
from probgen.metrics.images import RESIZE_MODES, describe_resize, resize_images, to_rgb
from probgen.utils.progress import progress

if TYPE_CHECKING:
    from probgen.utils.partial import PartialStore

ENV_WEIGHTS = "PROBGEN_INCEPTION_WEIGHTS"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
INCEPTION_NAME = "inception-v3-compat"


class FeatureNet(nn.Module):
    """A feature network for the metrics: uint8 images (N, C, H, W) -> (features (N, D), logits or None).

    Attributes describe it in every result: ``name`` (e.g. ``inception-v3-compat``), ``num_features``,
    ``resize`` (what happens to the images before the network), ``fingerprint`` (identifies the
    weights, for the reference-statistics cache) and ``info`` (a JSON-ready description).
    """

    name: str
    num_features: int
    resize: str
    fingerprint: str
    info: dict[str, Any]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


def hub_weights_path(filename: str = INCEPTION_FILE) -> Path:
    """Where a download by ``torch.hub.load_state_dict_from_url`` would have cached ``filename``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def find_weights(path: str | os.PathLike[str] | None, flag: str, env: str, filename: str, url: str, what: str) -> Path:
    """A local weights file: ``path`` (from ``flag``), else ``$env``, else ``filename`` in the torch hub cache.

    Raises:
        UserError: the named file does not exist, or no file was found (the message names ``what``, its
            ``url`` and where to put it).
    """
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise UserError(f"{flag}: no such file: {p}")
        return p
    value = os.environ.get(env)
    if value:
        p = Path(value).expanduser()
        if not p.is_file():
            raise UserError(f"${env} names a missing file: {p}")
        return p
    hub = hub_weights_path(filename)
    if hub.is_file():
        return hub
    raise UserError(
        f"{what} not found (probgen never downloads): fetch {url} on a machine with internet and put it at "
        f"{hub}, or pass {flag} FILE, or set ${env}; or use --features domain"
    )


def find_inception_weights(path: str | os.PathLike[str] | None = None) -> Path:
    """The Inception weights file: ``path``, else ``$PROBGEN_INCEPTION_WEIGHTS``, else the hub cache.

    Raises:
        UserError: the named file does not exist, or no file was found (the message says where to put it).
    """
    return find_weights(path, "--inception-weights", ENV_WEIGHTS, INCEPTION_FILE, INCEPTION_URL, "Inception weights")


def _random_inception_state() -> dict[str, torch.Tensor]:
    """Random weights of the same architecture, for benchmarks and tests only: torchvision's Inception3
    has the same parameter names and shapes (with 1008 classes); He-normal convs keep activations O(1)
    through the eval-mode BatchNorms, so no value overflows or turns denormal (which is slow on CPUs)."""
    from torchvision.models import inception_v3

    net = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return net.state_dict()


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unsafe pickle, truncated or foreign file: all the user's to fix
        raise UserError(f"--inception-weights: cannot read {path} as plain weights: {str(exc)[:160]}") from None
    fc = state.get("fc.weight") if isinstance(state, dict) else None
    if not isinstance(fc, torch.Tensor) or tuple(fc.shape) != (1008, 2048):
        raise UserError(f"--inception-weights: {path} is not torch-fidelity's Inception state dict ({INCEPTION_FILE})")
    return state


class InceptionFeatures(FeatureNet):
    """Inception v3 pool features (N, 2048) and ``logits_unbiased`` (N, 1008) in one pass.

    Args:
        weights: a weights file, or None for random weights (``random_weights=True`` only).
        resize: how images reach 299 x 299 (:data:`probgen.metrics.images.RESIZE_MODES`); the default
            ``legacy-tf`` is torch-fidelity's TF1-compatible bilinear resize, the one behind published FIDs.
    """

    size = 299

    def __init__(self, weights: Path | None, resize: str = "legacy-tf", random_weights: bool = False):
        super().__init__()
        if weights is None and not random_weights:
            raise ValueError("pass a weights file, or random_weights=True")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
        state = _random_inception_state() if weights is None else _read_state(weights)
        from torchmetrics.image.fid import NoTrainInceptionV3  # a slow import: only once the weights are good

        buf = io.BytesIO()
        torch.save(state, buf)  # only tensors: torch-fidelity's unrestricted torch.load of it is safe
        buf.seek(0)
        self.net = NoTrainInceptionV3(INCEPTION_NAME, ["2048"], feature_extractor_weights_path=buf, antialias=False)
        # channels-last convolutions are faster on CPU and GPU (docs/benchmarks.md); features change by
        # ~1e-7 relative (another summation order), far below any FID digit that is reported
        self.net.to(memory_format=torch.channels_last)
        self.name = INCEPTION_NAME
        self.num_features = 2048
        self.resize_mode = resize
        self.resize = describe_resize(resize, self.size)
        self.fingerprint = f"{weights.name}:{weights.stat().st_size}" if weights is not None else "random-init"
        self.info = {"weights": str(weights) if weights is not None else "random (architecture only)"}

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        """torch-fidelity's forward after its resize, on float pixels (N, 3, 299, 299) in [0, 255] -> (N, 2048).

        torchmetrics' forward takes only uint8 and resizes inside; the modes that keep float pixels
        (``clean``, ``legacy-pytorch``) enter here (the same layers, in the same order; tested equal).
        """
        n = self.net
        x = (x - 128) / 128
        for layer in (n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, n.MaxPool_1, n.Conv2d_3b_1x1):
            x = layer(x)
        for layer in (n.Conv2d_4a_3x3, n.MaxPool_2, n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b):
            x = layer(x)
        for layer in (n.Mixed_6c, n.Mixed_6d, n.Mixed_6e, n.Mixed_7a, n.Mixed_7b, n.Mixed_7c, n.AvgPool):
            x = layer(x)
        return torch.flatten(x, 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rgb = to_rgb(images)
        if self.resize_mode == "legacy-tf":
            feats = self.net(rgb)  # (N, 2048), resized to 299 inside, as torch-fidelity does
        else:
            x = resize_images(rgb, self.size, self.resize_mode)  # (N, 3, 299, 299) float pixels
            feats = self._trunk(x.contiguous(memory_format=torch.channels_last))
        logits = feats @ self.net.fc.weight.T  # (N, 1008): torch-fidelity's "logits_unbiased"
        return feats, logits


def load_inception(
    weights: str | os.PathLike[str] | None = None, resize: str = "legacy-tf", random_weights: bool = False
) -> InceptionFeatures:
    """Inception from a local file (see :func:`find_inception_weights`), or random weights if asked."""
    path = None if random_weights and not weights else find_inception_weights(weights)
    return InceptionFeatures(path, resize=resize, random_weights=random_weights)


def state_fingerprint(module: nn.Module) -> str:
    """A short hash of a module's parameters and buffers (identifies small networks' weights)."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


Sampler = Callable[[int, torch.Generator], torch.Tensor]


def batches_of(images: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Consecutive batches of a uint8 tensor (N, C, H, W)."""
    for i in range(0, len(images), batch_size):
        yield images[i : i + batch_size]


@torch.inference_mode()
def extract(
    net: FeatureNet,
    batches: Iterator[torch.Tensor],
    total: int,
    device: torch.device,
    desc: str = "features",
    show_progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run uint8 batches through ``net`` on ``device``; features (N, D) and logits (N, K) stay there.

    The loop has no host sync: batches are copied asynchronously and outputs are concatenated once.
    """
    feats: list[torch.Tensor] = []
    logits: list[torch.Tensor] = []
    with progress(total, desc=desc, enabled=show_progress) as bar:
        for batch in batches:
            if batch.dtype != torch.uint8:
                raise ValueError(f"feature networks take uint8 images, got {batch.dtype}")
            f, lg = net(batch.to(device, non_blocking=True))
            feats.append(f.float())
            if lg is not None:
                logits.append(lg.float())
            bar.update(len(batch))
    if not feats:
        raise ValueError("no images to extract features from")
    return torch.cat(feats), (torch.cat(logits) if logits else None)


@torch.inference_mode()
def extract_resumable(
    net: FeatureNet,
    make_batch: Callable[[int, int], torch.Tensor],
    total: int,
    batch_size: int,
    device: torch.device,
    store: PartialStore,
    prefix: str,
    generator: torch.Generator | None = None,
    desc: str = "features",
    show_progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`extract`, writing each batch's outputs to ``store`` as it goes and reading back those a
    killed run already wrote.

    ``make_batch(start, size)`` returns uint8 images (size, C, H, W). When it draws from
    ``generator``, the generator's state after each batch is stored with it and restored when the
    batch is read back, so a resumed run draws exactly what an uninterrupted one would (the features
    are stored as computed, float32): its outputs are bitwise equal. Each batch costs one copy to
    the host, the price of resuming.
    """
    feats: list[torch.Tensor] = []
    logits: list[torch.Tensor] = []
    with progress(total, desc=desc, enabled=show_progress) as bar:
        for i, start in enumerate(range(0, total, batch_size)):
            size = min(batch_size, total - start)
            key = f"{prefix}-{i:06d}"
            rec = store.get(key)
            if rec is not None and rec["features"].shape[0] == size:
                f, lg = rec["features"].to(device), rec["logits"]
                lg = None if lg is None else lg.to(device)
                if generator is not None:
                    generator.set_state(rec["rng"])
            else:
                batch = make_batch(start, size)
                if batch.dtype != torch.uint8:
                    raise ValueError(f"feature networks take uint8 images, got {batch.dtype}")
                f, lg = net(batch.to(device, non_blocking=True))
                f, lg = f.float(), (None if lg is None else lg.float())
                rng = generator.get_state() if generator is not None else None
                store.put(key, {"features": f, "logits": lg, "rng": rng})
            feats.append(f)
            if lg is not None:
                logits.append(lg)
            bar.update(size)
    if not feats:
        raise ValueError("no images to extract features from")
    return torch.cat(feats), (torch.cat(logits) if logits else None)
