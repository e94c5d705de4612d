"""Dataclass configs: the one home of probgen's defaults, split by concern.

The CLI builds its flags from these dataclasses (`--latent-dim` is `VAEConfig.latent_dim`) and the
Python API takes them directly, so both see the same defaults and the same validation. Every check
raises :class:`~probgen.errors.UserError` naming the flag. One field walker
(:mod:`probgen.config.fields`) serves the CLI, dict round-trips, config files, the sweep grid and resume.

Defaults are full training settings for a GPU; the README shows the flags for a quick CPU run.

    base.py         shared field helpers, device / data root / progress, RunConfig
    data.py         DataConfig, DataInfoConfig, DataExtractConfig
    models.py       VAEConfig, AEConfig, CVAEConfig, VAEGANConfig, GANConfig
    train.py        TrainConfig, GANTrainConfig, PerfConfig
    objective.py    ObjectiveConfig (the VAE objective: beta-TCVAE, FactorVAE, DIP-VAE-II, capacity)
    fit.py          FitVAEConfig, FitAEConfig, FitCVAEConfig, FitVAEGANConfig, FitGANConfig
    eval.py         MetricsConfig, EvalTargetConfig, EvalCommandConfig
    loglik.py       LoglikConfig, ChainCheckConfig, DiagnoseConfig
    plot.py         PlotConfig, PlotTargetConfig, SampleConfig
    report.py       ReportConfig (`probgen report`)
    disentangle.py, sweep.py   the configs of those commands
    fields.py       the field walker
"""

from probgen.config.base import DEVICES, RunConfig, check, choice
from probgen.config.data import DataConfig, DataExtractConfig, DataInfoConfig
from probgen.config.disentangle import DisentangleConfig, DisentangleTargetConfig
from probgen.config.eval import EvalCommandConfig, EvalTargetConfig, MetricsConfig
from probgen.config.fields import (
    Leaf,
    flag,
    flatten,
    from_dict,
    from_flat,
    json_ready,
    leaf_map,
    leaves,
    replace_leaves,
    resume_config,
    sections,
    strip_optional,
    to_dict,
)
from probgen.config.fit import FitAEConfig, FitCVAEConfig, FitGANConfig, FitVAEConfig, FitVAEGANConfig
from probgen.config.loglik import LOGLIK_METHODS, ChainCheckConfig, DiagnoseConfig, LoglikConfig
from probgen.config.models import AEConfig, CVAEConfig, GANConfig, VAEConfig, VAEGANConfig
from probgen.config.objective import OBJECTIVES, ObjectiveConfig
from probgen.config.plot import FIGURES, PlotConfig, PlotTargetConfig, SampleConfig
from probgen.config.report import REPORT_FORMATS, ReportConfig
from probgen.config.sweep import SweepConfig, sweep_flags
from probgen.config.train import GANTrainConfig, PerfConfig, TrainConfig

__all__ = [
    "AEConfig",
    "CVAEConfig",
    "ChainCheckConfig",
    "DEVICES",
    "DataConfig",
    "DataExtractConfig",
    "DataInfoConfig",
    "DiagnoseConfig",
    "DisentangleConfig",
    "DisentangleTargetConfig",
    "MetricsConfig",
    "EvalTargetConfig",
    "EvalCommandConfig",
    "FIGURES",
    "FitAEConfig",
    "FitCVAEConfig",
    "FitGANConfig",
    "FitVAEConfig",
    "FitVAEGANConfig",
    "GANConfig",
    "GANTrainConfig",
    "LOGLIK_METHODS",
    "Leaf",
    "LoglikConfig",
    "OBJECTIVES",
    "ObjectiveConfig",
    "PerfConfig",
    "PlotConfig",
    "PlotTargetConfig",
    "REPORT_FORMATS",
    "ReportConfig",
    "RunConfig",
    "SampleConfig",
    "SweepConfig",
    "sweep_flags",
    "TrainConfig",
    "VAEConfig",
    "VAEGANConfig",
    "check",
    "choice",
    "flag",
    "flatten",
    "from_dict",
    "from_flat",
    "json_ready",
    "leaf_map",
    "leaves",
    "replace_leaves",
    "resume_config",
    "sections",
    "strip_optional",
    "to_dict",
]
