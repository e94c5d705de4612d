"""The evaluation harness: FID / KID / IS (or FD / KD on domain features) of any sampler's images.

It never sees a model: callers hand it a sampler ``(n, generator) -> images (n, C, H, W)``, floats
in [0, 1] or uint8. Real features are computed once per (dataset, split, feature network, image
size, resize mode, N, seed) and cached on disk; each evaluation then costs one feature pass over the
generated images, which serves all metrics at once.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from probgen.config import MetricsConfig
from probgen.data import ImageData
from probgen.errors import UserError
from probgen.metrics import bootstrap, scores
from probgen.metrics.cache import data_fingerprint, default_cache_dir, key_hash, load_entry, save_entry
from probgen.metrics.domain import load_or_train_domain_net
from probgen.metrics.features import FeatureNet, Sampler, batches_of, extract, extract_resumable, load_inception
from probgen.metrics.fid_infinity import fid_infinity
from probgen.metrics.images import to_uint8
from probgen.metrics.memorization import memorization
from probgen.metrics.prdc import PRDC_METRICS, knn_radii, prdc_points, realism

if TYPE_CHECKING:
    from probgen.utils.partial import PartialStore

log = logging.getLogger("probgen")


def build_feature_net(
    data: ImageData, cfg: MetricsConfig, device: torch.device, show_progress: bool = True
) -> FeatureNet:
    """Inception or DINOv2 (from local weights), or the dataset's domain network (cached or trained now)."""
    if cfg.features == "inception":
        return load_inception(cfg.inception_weights, resize=cfg.resize_mode()).to(device).eval()
    if cfg.features == "dinov2":
        from probgen.metrics.dinov2 import load_dinov2  # imports timm: only when asked for

        return load_dinov2(cfg.dinov2_weights, resize=cfg.resize_mode()).to(device).eval()
    return load_or_train_domain_net(data, cfg.domain_steps, cache_dir(cfg), device, show_progress)


def cache_dir(cfg: MetricsConfig) -> Path:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()


def metric_labels(net: FeatureNet, dataset: str) -> dict[str, str]:
    """Names under which results are reported: FID/KID/IS for Inception, FD_DINOv2/KD_DINOv2 for DINOv2
    ViT-L/14, FD-<dataset>/KD-<dataset> else."""
    # named alike on any features; each entry names the network
    manifold = {m: m for m in (*PRDC_METRICS, "realism", "memorization")}
    if net.name.startswith("inception"):
        return {"fid": "FID", "kid": "KID", "is": "IS", **manifold}
    if net.name.startswith("dinov2"):
        tag = "DINOv2" if net.name == "dinov2-vitl14" else net.name  # FD_DINOv2 means ViT-L/14 only
        return {"fid": f"FD_{tag}", "kid": f"KD_{tag}", **manifold}
    return {"fid": f"FD-{dataset}", "kid": f"KD-{dataset}", **manifold}


class Harness:
    """Scores samplers against one split of one dataset with one feature network.

    Args:
        data: the dataset (real images come from ``cfg.ref_split``).
        cfg: feature network, metrics, sample counts, seeds, cache.
        device: where features are computed (the GPU when there is one).
        net: a ready feature network (tests, benchmarks); built from ``cfg`` when None.
        store: where the real images' feature batches are written as they are computed (and read
            back after a kill), when they are not in the cache yet; see :meth:`evaluate`.
    """

    def __init__(
        self,
        data: ImageData,
        cfg: MetricsConfig,
        device: torch.device,
        net: FeatureNet | None = None,
        show_progress: bool = True,
        store: PartialStore | None = None,
    ):
        self.data, self.cfg, self.device, self.show_progress = data, cfg, device, show_progress
        self.store = store
        if net is None:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                net = build_feature_net(data, cfg, device, show_progress)  # layer inits must not move the caller's RNG
        self.net = net
        self.labels = metric_labels(self.net, data.name)
        for m in cfg.metric_names():
            if m not in self.labels:
                raise UserError(f"--metrics: {m} is not defined for {self.net.name} features")
        t0 = time.perf_counter()
        self.real_features, self.real_indices = self.split_features(cfg.ref_split)  # (N_real, D) on device
        self.real_seconds = time.perf_counter() - t0
        self._real_radii: torch.Tensor | None = None  # k-NN radii of the real features, once needed
        #: per generated sample, after :meth:`evaluate`: realism, PRDC membership, nearest training image
        self.per_sample: dict[str, torch.Tensor] = {}
        self.train_indices: torch.Tensor | None = None  # rows of the train split behind nn_train_index

    # --- real images -----------------------------------------------------------------------------

    def split_features(self, split_name: str, flag: str = "--ref-split") -> tuple[torch.Tensor, torch.Tensor]:
        """Features (n, D) of ``cfg.num_real`` (default ``num_samples``) images of a split, on the device,
        and their indices (n,) into the split: a seeded random subset, sorted; cached on disk."""
        cfg, data = self.cfg, self.data
        split = data.split(split_name)
        wanted = cfg.num_real or cfg.num_samples
        n = min(wanted, len(split))
        if n < 2:
            raise UserError(f"{flag}: split {split_name!r} of {data.name} has {len(split)} images; need >= 2")
        if n < wanted:
            log.warning("eval: split %r has only %d images; using all of them", split_name, n)
        idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(cfg.eval_seed))[:n]
        idx, _ = idx.sort()  # contiguous reads
        key = {
            "dataset": data.name,
            "data_source": data.source,
            "split": split_name,
            "data_fingerprint": data_fingerprint(split.images),
            "image_shape": list(data.image_shape),
            "feature_network": self.net.name,
            "weights": self.net.fingerprint,
            "resize": self.net.resize,
            "num_real": n,
            "seed": cfg.eval_seed,
            "device": self.device.type,  # GPU convolutions (TF32) give slightly different features than the CPU
        }
        h = data.image_shape[1]
        tag = self.net.resize.split()[0]
        name = f"{data.name}-{split_name}-{self.net.name}-{h}px-{tag}-n{n}-{key_hash(key)}.pt"
        path = cache_dir(cfg) / "refstats" / name
        entry = load_entry(path, key)
        if entry is not None:
            log.info("eval: cached reference features (%s split) %s", split_name, path)
            return entry["features"].to(self.device), idx
        images = split.images[idx]
        bs = cfg.feature_batch_size
        desc = f"real features ({split_name})"
        if self.store is None:
            feats, _ = extract(self.net, batches_of(images, bs), n, self.device, desc, self.show_progress)
        else:
            prefix = "real" if split_name == cfg.ref_split else f"real-{split_name}"
            feats, _ = extract_resumable(
                self.net, lambda i, b: images[i : i + b], n, bs, self.device, self.store, prefix,
                desc=desc, show_progress=self.show_progress,
            )  # fmt: skip
        save_entry(path, key, features=feats.cpu())
        return feats, idx

    # --- generated images ------------------------------------------------------------------------

    def _generated(
        self, sampler: Sampler, n: int, store: PartialStore | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.eval_seed)
        bs = self.cfg.feature_batch_size
        shape = self.data.image_shape

        def draw(size: int) -> torch.Tensor:
            with torch.no_grad():
                imgs = to_uint8(sampler(size, gen))  # (B, C, H, W) uint8
            if tuple(imgs.shape[1:]) != shape:
                raise UserError(f"the model makes images of shape {tuple(imgs.shape[1:])}, the data {shape}")
            return imgs

        if store is not None:
            return extract_resumable(
                self.net, lambda i, b: draw(b), n, bs, self.device, store, "generated", gen,
                desc="generated features", show_progress=self.show_progress,
            )  # fmt: skip
        batches = (draw(min(bs, n - i)) for i in range(0, n, bs))
        return extract(self.net, batches, n, self.device, "generated features", self.show_progress)

    def redraw(self, sampler: Sampler, indices: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        """The generated images (len(indices), C, H, W) uint8 that :meth:`evaluate` scored at ``indices``.

        The sampler is replayed from the evaluation's seed, batch by batch, up to the last index wanted
        (sampling only, no feature network), so nothing had to be kept in memory while scoring.
        """
        n = num_samples or self.cfg.num_samples
        bs = self.cfg.feature_batch_size
        idx = indices.to("cpu", torch.long)
        if len(idx) == 0:
            return torch.empty(0, *self.data.image_shape, dtype=torch.uint8)
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.eval_seed)
        out: list[torch.Tensor] = []
        last = int(idx.max())
        start = 0
        while start <= last:
            size = min(bs, n - start)
            with torch.no_grad():
                out.append(to_uint8(sampler(size, gen)).cpu())
            start += size
        return torch.cat(out)[idx]

    def evaluate(
        self, sampler: Sampler, num_samples: int | None = None, store: PartialStore | None = None
    ) -> dict[str, Any]:
        """Generate ``num_samples`` (default ``cfg.num_samples``) images and score them.

        With a ``store`` (:class:`probgen.utils.partial.PartialStore`), each batch of generated
        features is written as it is computed, and a re-run after a kill reads back what was written
        and continues: its result equals an uninterrupted run's (same seed).

        Returns a JSON-ready dict: one entry per metric under ``metrics`` (each stating N generated,
        N real, the split, the feature network and the resize mode) plus timings.
        """
        cfg = self.cfg
        n = num_samples or cfg.num_samples
        t0 = time.perf_counter()
        fake, logits = self._generated(sampler, n, store)
        t_feat = time.perf_counter() - t0
        real = self.real_features
        common = {
            "num_generated": n,
            "num_real": len(real),
            "ref_split": cfg.ref_split,
            "feature_network": self.net.name,
            "resize": self.net.resize,
        }
        out: dict[str, dict[str, Any]] = {}
        names = cfg.metric_names()
        if "fid" in names:
            out[self.labels["fid"]] = {**self._fd(real, fake), **common}
            if cfg.fid_infinity:
                inf = fid_infinity(real, fake, cfg.fid_infinity_points, seed=cfg.eval_seed)
                out[self.labels["fid"] + "-infinity"] = {**inf, "method": "Chong & Forsyth 2020", **common}
        if "kid" in names:
            out[self.labels["kid"]] = {**self._kid(real, fake, n), **common}
        if "is" in names:
            if logits is None:
                raise UserError(f"--metrics: is needs Inception, not {self.net.name}")
            if cfg.is_splits > n:
                raise UserError(f"--is-splits: {cfg.is_splits} splits of {n} images")
            mean, std = scores.inception_score(logits, cfg.is_splits, seed=cfg.eval_seed)
            gen_only = {k: v for k, v in common.items() if k not in ("num_real", "ref_split")}
            out[self.labels["is"]] = {"mean": mean, "std": std, "splits": cfg.is_splits, **gen_only}
        wanted = [m for m in PRDC_METRICS if m in names]
        self.per_sample = {}
        if wanted:
            for m, entry in self._manifold(real, fake, wanted).items():
                out[self.labels[m]] = {**entry, **common}
        if "realism" in names:
            out[self.labels["realism"]] = {**self._realism(real, fake), **common}
        if "memorization" in names:
            out[self.labels["memorization"]] = {**self._memorization(fake), **common}
        total = time.perf_counter() - t0
        return {
            "dataset": self.data.name,
            "data_source": self.data.source,
            "metrics": out,
            "primary": self.labels["fid"] if "fid" in names else None,
            "feature_network": {"name": self.net.name, "resize": self.net.resize, **self.net.info},
            "seed": cfg.eval_seed,
            "seconds": {"real_features": self.real_seconds, "generated_features": t_feat, "total": total},
            "generated_images_per_second": n / max(t_feat, 1e-9),
        }

    # --- the metrics' extras: intervals, the KID statistic, manifold metrics ------------------------

    def _interval(self, replicates: torch.Tensor, estimate: float) -> dict[str, Any]:
        """A 95% interval: percentiles of the replicates re-centred on the estimate, and their raw mean."""
        info = {"replicates": len(replicates), "mean": float(replicates.mean()), "seed": self.cfg.eval_seed}
        return {"ci95": bootstrap.percentile_interval(replicates, estimate), "bootstrap": info}

    def _fd(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, Any]:
        value = scores.frechet_distance(real, fake)
        if not self.cfg.bootstrap:
            return {"value": value}
        reps = bootstrap.bootstrap_fd(real, fake, self.cfg.bootstrap, seed=self.cfg.eval_seed)
        return {"value": value, **self._interval(reps, value)}

    def _kid(self, real: torch.Tensor, fake: torch.Tensor, n: int) -> dict[str, Any]:
        cfg = self.cfg
        size = cfg.kid_subset_size or min(1000, min(n, len(real)) // 2)
        if size > min(n, len(real)):
            raise UserError(f"--kid-subset-size: {size} exceeds the number of images ({min(n, len(real))})")
        mean, std = scores.kernel_distance(real, fake, cfg.kid_subsets, max(size, 2), seed=cfg.eval_seed)
        entry: dict[str, Any] = {"mean": mean, "std": std, "subsets": cfg.kid_subsets, "subset_size": max(size, 2)}
        if cfg.bootstrap:
            # the interval is the bootstrap's of the all-pairs unbiased MMD^2, the value the subset mean estimates
            entry["u_statistic"] = u = bootstrap.kid_u_statistic(real, fake)
            entry.update(self._interval(bootstrap.bootstrap_kid(real, fake, cfg.bootstrap, seed=cfg.eval_seed), u))
        return entry

    def _manifold(self, real: torch.Tensor, fake: torch.Tensor, wanted: list[str]) -> dict[str, dict[str, Any]]:
        k = self.cfg.nearest_k
        if min(len(real), len(fake)) <= k:
            raise UserError(f"--nearest-k: {k} neighbours need more than {k} real and generated images")
        if self._real_radii is None:
            self._real_radii = knn_radii(real, k)
        points = prdc_points(real, fake, k, real_radii=self._real_radii)
        self.per_sample.update({m: points[m] for m in ("precision", "density") if m in wanted})
        out = {}
        for m in wanted:
            value = float(points[m].double().mean())
            entry: dict[str, Any] = {"value": value, "k": k}
            if self.cfg.bootstrap:
                # points resampled, the k-NN balls held fixed: resampling the balls' own sets would put
                # duplicates at distance 0 and shrink every radius
                reps = bootstrap.bootstrap_means(points[m], self.cfg.bootstrap, seed=self.cfg.eval_seed)
                entry.update(self._interval(reps, value), ci95_resamples="scored points, balls fixed")
            out[m] = entry
        return out

    def _realism(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, Any]:
        k = self.cfg.nearest_k
        if len(real) <= k:
            raise UserError(f"--nearest-k: {k} neighbours need more than {k} real images")
        if self._real_radii is None:
            self._real_radii = knn_radii(real, k)
        r = realism(real, fake, k, real_radii=self._real_radii)
        self.per_sample["realism"] = r
        return {
            "value": float(r.median()),
            "statistic": "median over samples of the per-sample realism score (Kynkäänniemi et al. 2019)",
            "fraction_at_least_1": float((r >= 1).double().mean()),
            "k": k,
        }

    def _memorization(self, fake: torch.Tensor) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.ref_split == "train":
            train, self.train_indices = self.real_features, self.real_indices
        else:
            train, self.train_indices = self.split_features("train", "--metrics memorization")
        if "test" not in self.data.splits:
            raise UserError(f"--metrics memorization: {self.data.name} has no test split to compare with")
        test, _ = self.split_features("test", "--metrics memorization")
        summary, points = memorization(fake, train, test, cfg.bootstrap, seed=cfg.eval_seed)
        self.per_sample.update(points)
        return {**summary, "method": "test-vs-train nearest-neighbour gap (Meehan et al. 2020; see docs)"}

    def primary_value(self, result: dict[str, Any]) -> float:
        """The number early stopping watches: FID / FD (lower is better)."""
        name = result["primary"]
        if name is None:
            raise UserError("--early-stop-patience needs fid in --metrics")
        return float(result["metrics"][name]["value"])
