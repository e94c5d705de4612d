"""probgen: deep generative models of images with Pyro and PyTorch.

VAEs as Pyro model/guide pairs trained by SVI, marginal log-likelihoods by HMC + importance
sampling (Kingma & Welling 2013, App. D), IWAE and AIS, DCGANs, and one FID/IS/KID harness.

The Python API mirrors the CLI (the same dataclass configs and defaults)::

    import probgen
    run = probgen.fit(probgen.FitVAEConfig(run=probgen.RunConfig(out="runs/a")))  # probgen fit vae
    report = probgen.loglik(probgen.LoglikConfig(ckpt=str(run)))                 # probgen loglik
    m = probgen.load_model(run)                                                   # any kind
    images = m.sampler()(16, torch.Generator().manual_seed(0))                    # (16, C, H, W) in [0, 1]

Names load lazily, so `import probgen` imports neither torch nor Pyro.
"""

from probgen.utils.lazy import lazy_exports
from probgen.version import __version__

_CONFIGS = (
    "FitVAEConfig FitAEConfig FitCVAEConfig FitVAEGANConfig FitGANConfig DataConfig VAEConfig AEConfig CVAEConfig "
    "VAEGANConfig GANConfig TrainConfig GANTrainConfig PerfConfig RunConfig ObjectiveConfig MetricsConfig "
    "EvalTargetConfig EvalCommandConfig LoglikConfig ChainCheckConfig DiagnoseConfig PlotConfig DisentangleConfig "
    "SampleConfig SweepConfig ReportConfig"
).split()

_EXPORTS = {
    "fit": "pipelines.fit:fit",
    "loglik": "pipelines.loglik:loglik",
    "evaluate": "pipelines.evaluate:evaluate_checkpoint",
    "sample_grid": "pipelines.sample",
    "plot_checkpoint": "pipelines.plot",
    "disentangle": "pipelines.disentangle:disentangle",
    "sweep": "pipelines.sweep:sweep",
    "report": "pipelines.report:report",
    "diagnose_chains": "pipelines.diagnose",
    "load_model": "models.registry",
    "UserError": "errors",
    **{name: "config" for name in _CONFIGS},
}
__all__ = ["__version__", *sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
