"""The report of an experiment's output folder (``experiments/r1..r5*.py``, which write ``summary.json``):
its tables and figures in the order its page under docs/experiments/ gives them, then each run's
figures that page names (one thumbnail per run, linked to the run's own report), then anything else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from probgen.pipelines.report_page import Page, Table, Text, figure_from_file, read_json_file
from probgen.pipelines.report_run import is_run_dir, table_from_csv
from probgen.pipelines.report_sweep import run_gallery, run_image

#: per experiment (the name in its summary.json, up to the first "_"), the outputs in the order of its
#: docs page: top-level files (globs; a table as its .csv) and ``run:<name>`` for a figure of every run
#: (``samples_epoch_<last>.png``: the grid of the last epoch saved)
ORDER: dict[str, tuple[str, ...]] = {
    "r1": (
        "run:samples_epoch_5.png",
        "run:samples_epoch_<last>.png",
        "run:loss_curves.png",
        "combined_total_loss.png",
        "results.csv",
    ),  # fmt: skip
    "r2": ("run:loss_curves.png", "run:reconstructions_test32.png", "combined_loss.png", "results.csv"),
    "r3": ("loglik.csv", "*_best_samples_10x10.png", "gan_variants.csv", "vae_fits.csv"),
    "r4": (
        "run:eval_curve.png",
        "run:loss_curves.png",
        "run:samples_epoch_10.png",
        "run:samples_epoch_20.png",
        "run:samples.png",
        "fid_per_epoch.csv",
    ),  # fmt: skip
    "r5": ("vae_variants.csv", "combined_test_loss.png", "classifier.csv", "loglik.csv", "run:samples.png"),
}


def is_experiment_dir(folder: Path) -> bool:
    """Whether ``folder`` holds an experiment's ``summary.json``."""
    return (folder / "summary.json").is_file()


def run_dirs(folder: Path, depth: int = 3) -> list[Path]:
    """Run directories under ``folder`` (not ``folder`` itself), at most ``depth`` levels down, sorted."""
    found = []
    for path in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if is_run_dir(path):
            found.append(path)
        elif depth > 1:
            found += run_dirs(path, depth - 1)
    return found


def experiment_page(folder: Path, write_run: Callable[[Path], Path | None]) -> Page:
    """The page of experiment output folder ``folder``."""
    summary = read_json_file(Page("", folder), folder / "summary.json")
    name = summary.get("experiment", folder.name) if isinstance(summary, dict) else folder.name
    page = Page(f"Experiment {name}", folder)
    if not isinstance(summary, dict):
        read_json_file(page, folder / "summary.json")  # the problem, on this page
        summary = {}
    s = page.section("summary", "Summary")
    scalars = [[k, v] for k, v in summary.items() if not isinstance(v, (dict, list))]
    s.blocks.append(Table(["", "value"], scalars, caption="summary.json (seconds: wall time of the whole script)."))
    for key in ("skipped",):
        if summary.get(key):
            s.blocks.append(Text(f"{key}: {summary[key]}", "warn"))
    runs = run_dirs(folder)
    names = [r.relative_to(folder).as_posix() for r in runs]
    shown: set[Path] = {folder / "summary.json"}
    reports: dict[str, Path | None] = {}

    def write_once(run: Path) -> Path | None:
        key = str(run)
        if key not in reports:
            reports[key] = write_run(run)
        return reports[key]

    s = page.section("results", "Tables and figures")
    for entry in ORDER.get(str(name).split("_")[0], ()):
        if entry.startswith("run:"):
            image = entry.removeprefix("run:")
            having = [n for n in names if run_image(folder / n, image) is not None]
            if having:
                what = "the last epoch's samples_epoch_K.png" if "<last>" in image else image
                s.blocks.append(Text(f"{what} of every run that has it:"))
                run_gallery(page, s, folder, having, lambda n: n, image, write_once, max_side=440)
            continue
        for path in sorted(folder.glob(entry)):
            _show(page, s, path, shown)
    rest = sorted(p for p in folder.iterdir() if p.suffix in (".csv", ".png") and p not in shown)
    s = page.section("other", "Other tables and figures")
    for path in rest:
        _show(page, s, path, shown)
    s = page.section("runs", "Runs")
    run_gallery(page, s, folder, names, lambda n: n, "samples.png", write_once)
    return page


def _show(page: Page, s: Any, path: Path, shown: set[Path]) -> None:
    if path in shown:
        return
    shown.add(path)
    if path.suffix == ".csv":
        table_from_csv(page, s, path)
    elif path.suffix == ".png":
        fig = figure_from_file(page, path, _caption(path))
        if fig is not None:
            s.blocks.append(fig)


def _caption(path: Path) -> str:
    return re.sub(r"[_]+", " ", path.stem) + f" ({path.name})"
