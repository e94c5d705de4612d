"""`probgen report PATH`: one self-contained page (report.html) per run, sweep or experiment folder.

PATH is recognised by its files: ``sweep.json`` or ``sweep.csv`` (a `probgen sweep`), ``summary.json``
(an experiment's ``--out``), or any of ``metrics.json``, ``losses.csv``, ``config.json``,
``checkpoint.pt`` (a `probgen fit` run). The page embeds its images as base64 data URIs and carries
its CSS and its one script (sorting tables) inline: it opens from disk with no network. A sweep's or
an experiment's page links to each run's own report, written next to it. Parts whose files are
absent are left out; a missing or unreadable file is one line on the page and one warning.

Numbers are copied from the files with their units and N; the report draws only what it can derive
exactly from them (the training curves from losses.csv, a sweep's combined curves, table sort order).
``report.html`` (and ``report.md`` + ``report_files/`` with ``--format md``) are derived output and
are replaced on every run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from probgen.config import ReportConfig
from probgen.errors import UserError
from probgen.pipelines.report_experiment import experiment_page, is_experiment_dir
from probgen.pipelines.report_page import Page, write_page
from probgen.pipelines.report_run import is_run_dir, run_page
from probgen.pipelines.report_sweep import sweep_page

log = logging.getLogger("probgen")


def folder_kind(folder: Path) -> str:
    """``"sweep"``, ``"experiment"`` or ``"run"``: what ``folder`` holds (a UserError if none of them)."""
    if not folder.exists():
        raise UserError(f"PATH: no such directory: {folder}")
    if not folder.is_dir():
        raise UserError(f"PATH: {folder} is a file; give the run, sweep or experiment directory that holds it")
    if (folder / "sweep.json").is_file() or (folder / "sweep.csv").is_file():
        return "sweep"
    if is_experiment_dir(folder):
        return "experiment"
    if is_run_dir(folder):
        return "run"
    raise UserError(
        f"PATH: {folder} is not a run, sweep or experiment directory (none of metrics.json, losses.csv, "
        "config.json, checkpoint.pt, sweep.json, sweep.csv, summary.json is in it)"
    )


def report(cfg: ReportConfig) -> list[Path]:
    """Write the report of ``cfg.path`` (and of each of its runs for a sweep or an experiment, unless
    ``cfg.runs`` is false); returns the pages written, the folder's own first."""
    if not cfg.path:
        raise UserError("report: give a run, sweep or experiment directory (probgen report PATH)")
    folder = Path(cfg.path)
    kind = folder_kind(folder)
    markdown = cfg.format == "md"
    written: list[Path] = []

    def write_run(run: Path) -> Path | None:
        if not cfg.runs:
            return None
        out = _write(run_page(run), markdown)
        written.append(out)
        return out

    if kind == "sweep":
        page = sweep_page(folder, write_run)
    elif kind == "experiment":
        page = experiment_page(folder, write_run)
    else:
        page = run_page(folder)
    return [_write(page, markdown), *written]


def _write(page: Page, markdown: bool) -> Path:
    out = write_page(page, markdown)
    log.info("wrote %s%s", out, " and report.md" if markdown else "")
    return out
