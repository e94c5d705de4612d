"""probgen.metrics: the evaluation harness (feature extractors: Inception, DINOv2, domain networks; FID /
IS / KID / PRDC, FD_DINOv2, FID-infinity, bootstrap intervals, resize modes, per-sample realism,
memorisation) and the disentanglement metrics. Metrics never import models.

Names load lazily. ``fid_infinity`` and ``memorization`` are modules whose functions have the same
names (``probgen.metrics.fid_infinity.fid_infinity``), as with ``torch.fft.fft``.
"""

from probgen.utils.lazy import lazy_exports

_EXPORTS = {
    "Harness": "harness",
    "frechet_distance": "scores",
    "kernel_distance": "scores",
    "inception_score": "scores",
    "prdc": "prdc",
    "prdc_points": "prdc",
    "realism": "prdc",
    "memorization": "memorization",
    "DINOv2Features": "dinov2",
    "load_dinov2": "dinov2",
    "find_dinov2_weights": "dinov2",
    "resize_images": "images",
    "write_sample_report": "sample_report",
    "expected_coverage": "prdc",
    "fid_infinity": "fid_infinity",
    "bootstrap_fd": "bootstrap",
    "bootstrap_kid": "bootstrap",
    "percentile_interval": "bootstrap",
    "FeatureNet": "features",
    "InceptionFeatures": "features",
    "load_inception": "features",
    "find_inception_weights": "features",
    "extract": "features",
    "DomainNet": "domain",
    "load_or_train_domain_net": "domain",
    "to_uint8": "images",
    "to_rgb": "images",
    "disentanglement_scores": "disentanglement",
    "mig": "disentanglement",
    "sap": "disentanglement",
    "dci": "disentanglement",
    "beta_vae_score": "disentanglement",
    "factor_vae_score": "disentanglement",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
