"""The whole config of each `probgen fit <kind>`: its sections, stored in config.json and the checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field

from probgen.config.base import RunConfig
from probgen.config.data import DataConfig
from probgen.config.eval import MetricsConfig
from probgen.config.models import AEConfig, CVAEConfig, GANConfig, VAEConfig, VAEGANConfig
from probgen.config.objective import ObjectiveConfig
from probgen.config.train import GANTrainConfig, PerfConfig, TrainConfig


@dataclass
class FitVAEConfig:
    """Everything `probgen fit vae` needs; stored in config.json and in the checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    model: VAEConfig = field(default_factory=VAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    run: RunConfig = field(default_factory=RunConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)


@dataclass
class FitAEConfig:
    """Everything `probgen fit ae` needs (the train section's beta settings are unused)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: VAEConfig = field(default_factory=VAEConfig)
    ae: AEConfig = field(default_factory=AEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)


@dataclass
class FitCVAEConfig:
    """Everything `probgen fit cvae` needs."""

    data: DataConfig = field(default_factory=DataConfig)
    model: VAEConfig = field(default_factory=VAEConfig)
    cvae: CVAEConfig = field(default_factory=CVAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)


@dataclass
class FitVAEGANConfig(FitVAEConfig):
    """Everything `probgen fit vaegan` needs: a VAE's settings plus the discriminator's."""

    gan: VAEGANConfig = field(default_factory=VAEGANConfig)


@dataclass
class FitGANConfig:
    """Everything `probgen fit gan` needs; stored in config.json and in the checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    model: GANConfig = field(default_factory=GANConfig)
    train: GANTrainConfig = field(default_factory=GANTrainConfig)
    eval: MetricsConfig = field(default_factory=MetricsConfig)
    run: RunConfig = field(default_factory=RunConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)
