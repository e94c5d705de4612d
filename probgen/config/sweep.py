"""`probgen sweep`: the grid and the base settings of its runs."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from probgen.config.base import _help, check


@dataclass
class SweepConfig:
    """`probgen sweep`: which model the grid trains; the grid itself is ``--grid`` or a config file's ``grid``."""

    kind: str | None = _help(
        "model of every run: any kind of `probgen fit` (default: the first one listed there)", default=None
    )
    grid: tuple[str, ...] = _help(
        "the settings to vary: FIELD=V1,V2 ... (tuple fields: V1/V2 with commas inside)",
        default=(),
        nargs="+",
        metavar="FIELD=V1,V2",
    )

    def __post_init__(self) -> None:
        check(self.kind is None or bool(self.kind), "kind", "must not be empty")  # the registry knows the kinds


def sweep_flags(fit_config: type) -> type:
    """The settings of `probgen sweep --kind K`: the sweep's own and K's whole fit config (``fit_config``).

    A GAN's settings (its model, train, eval and perf sections) differ from the VAEs', so a sweep
    takes its kind's flags and defaults (the CLI reads ``--kind`` before it builds the parser).
    """
    sections = [("sweep", SweepConfig, field(default_factory=SweepConfig))]
    for f in dataclasses.fields(fit_config):
        sections.append((f.name, typing.get_type_hints(fit_config)[f.name], field(default_factory=f.default_factory)))
    return dataclasses.make_dataclass(f"Sweep{fit_config.__name__}", sections)
