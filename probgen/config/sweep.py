"""`probgen sweep`: the grid and the base settings of its runs."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from probgen.config.base import RunConfig, _check, _help
from probgen.config.data import DataConfig
from probgen.config.models import AEConfig, CVAEConfig, VAEConfig, VAEGANConfig
from probgen.config.objective import ObjectiveConfig
from probgen.config.train import TrainConfig


@dataclass
class SweepConfig:
    """`probgen sweep`: which model the grid trains; the grid itself is ``--grid`` or a config file's ``grid``."""

    kind: str = _help("model of every run: any kind of `probgen fit` (vae, ae, cvae, vaegan, gan)", default="vae")
    grid: tuple[str, ...] = _help(
        "the settings to vary: FIELD=V1,V2 ... (tuple fields: V1/V2 with commas inside)",
        default=(),
        nargs="+",
        metavar="FIELD=V1,V2",
    )

    def __post_init__(self) -> None:
        _check(bool(self.kind), "kind", "must not be empty")  # the model registry knows the kinds


@dataclass
class SweepFlags:
    """Every setting `probgen sweep` accepts: the sweep's own and the base settings of each run."""

    sweep: SweepConfig = field(default_factory=SweepConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: VAEConfig = field(default_factory=VAEConfig)
    ae: AEConfig = field(default_factory=AEConfig)
    cvae: CVAEConfig = field(default_factory=CVAEConfig)
    gan: VAEGANConfig = field(default_factory=VAEGANConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    run: RunConfig = field(default_factory=RunConfig)


def sweep_flags(fit_config: type) -> type:
    """The settings of `probgen sweep --kind K`: the sweep's own and K's whole fit config (``fit_config``).

    :class:`SweepFlags` serves a sweep of unknown kind; a GAN's settings (its model, train, eval and
    perf sections) differ from the VAEs', so a sweep of a known kind takes that kind's flags and defaults.
    """
    sections = [("sweep", SweepConfig, field(default_factory=SweepConfig))]
    for f in dataclasses.fields(fit_config):
        sections.append((f.name, typing.get_type_hints(fit_config)[f.name], field(default_factory=f.default_factory)))
    return dataclasses.make_dataclass(f"Sweep{fit_config.__name__}", sections)
