"""probgen.metrics: the evaluation harness (feature extractors, FID / IS / KID / PRDC, FID-infinity,
bootstrap intervals, domain features) and the disentanglement metrics. Metrics never import models.

Names load lazily. ``fid_infinity`` is a module whose function has the same name
(``probgen.metrics.fid_infinity.fid_infinity``), as with ``torch.fft.fft``.
"""

from probgen.utils.lazy import lazy_exports

_EXPORTS = {
    "Harness": "harness",
    "frechet_distance": "scores",
    "kernel_distance": "scores",
    "inception_score": "scores",
    "prdc": "prdc",
    "prdc_points": "prdc",
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
