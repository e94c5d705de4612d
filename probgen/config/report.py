"""`probgen report`: one self-contained page per run, sweep or experiment folder."""

from __future__ import annotations

from dataclasses import dataclass

from probgen.config.base import _help, choice

#: what `probgen report --format` writes: html (report.html) or md (report.html and report.md)
REPORT_FORMATS = ("html", "md")


@dataclass
class ReportConfig:
    """Which folder `probgen report` describes and in which formats.

    The page is derived output: ``report.html`` (and ``report.md``) in the folder are replaced
    every time, like a redrawn figure.
    """

    path: str = _help(
        "a run directory, a sweep directory or an experiment's output folder", default="", positional=True
    )
    format: str = _help(
        "html: report.html only; md: also report.md with its images beside it (in report_files/)",
        default="html",
        choices=REPORT_FORMATS,
    )
    runs: bool = _help("sweeps and experiments: also write each run's own report (linked from the page)", default=True)

    def __post_init__(self) -> None:
        choice(self.format, "format", REPORT_FORMATS)
