"""FID / FD, KID and IS from extracted features, computed by torchmetrics in float64.

The harness extracts features once (one network pass serves all three metrics) and hands them to
torchmetrics' metrics through :class:`Precomputed`, a pass-through "feature extractor": the maths is
torchmetrics' own (``FrechetInceptionDistance``, ``KernelInceptionDistance``, ``InceptionScore``).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

# sync_on_compute=False: the features given are the whole sets; under torchrun torchmetrics would otherwise
# gather them from every rank (and wait forever for ranks that do not evaluate).
# torchmetrics' image metrics are imported inside the functions: importing torchmetrics.image pulls in
# every image metric (and torchvision's detection ops), seconds that a training run without evaluation
# should not pay.


class Precomputed(nn.Module):
    """Identity "feature extractor": lets torchmetrics' metrics take features (N, D) instead of images."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features  # torchmetrics reads this instead of probing with a dummy image

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _check(feats: torch.Tensor, name: str, min_n: int = 2) -> torch.Tensor:
    if feats.dim() != 2 or feats.shape[0] < min_n:
        raise ValueError(f"{name} features must be (N >= {min_n}, D), got {tuple(feats.shape)}")
    return feats.double()


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D) and (M, D).

    ``||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2))`` with unbiased covariances, in float64.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = _check(real, "real"), _check(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}")
    metric = FrechetInceptionDistance(feature=Precomputed(real.shape[1]), sync_on_compute=False).to(real.device)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def kernel_distance(
    real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): mean and std of the cubic-polynomial-kernel MMD^2 over random subsets.

    Each subset draws ``subset_size`` rows of each set without replacement (seeded, so the result is
    reproducible; the caller's RNG is left untouched). ``subset_size`` must not exceed either N.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = _check(real, "real"), _check(fake, "fake")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features", category=UserWarning)
        metric = KernelInceptionDistance(
            feature=Precomputed(real.shape[1]), subsets=subsets, subset_size=subset_size, sync_on_compute=False
        )
    metric = metric.to(real.device)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):  # subsets are drawn with torch.randperm on the CPU generator
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def inception_score(logits: torch.Tensor, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016): mean and std over ``splits`` of exp(E KL(p(y|x) || p(y))).

    Args:
        logits: (N, K) unnormalised class scores, e.g. Inception's ``logits_unbiased`` (K = 1008).
    """
    from torchmetrics.image.inception import InceptionScore

    logits = _check(logits, "logits", min_n=splits)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features", category=UserWarning)
        metric = InceptionScore(feature=Precomputed(logits.shape[1]), splits=splits, sync_on_compute=False)
    metric = metric.to(logits.device)
    metric.update(logits)
    with torch.random.fork_rng(devices=[]):  # torchmetrics shuffles before splitting
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)
