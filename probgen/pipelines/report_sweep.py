"""The report of a `probgen sweep` directory: its table (sortable), one plot of every run's test loss
curve, a grid of each run's final samples labelled by its settings, and links to each run's report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from probgen.pipelines.report_page import (
    Gallery,
    Link,
    Page,
    Section,
    Table,
    Text,
    figure_from_file,
    figure_from_plot,
    read_csv_file,
    read_json_file,
)
from probgen.pipelines.report_run import is_run_dir


def sweep_page(folder: Path, write_run: Callable[[Path], Path | None]) -> Page:
    """The page of sweep directory ``folder``; ``write_run(run_dir)`` writes a run's own report (or
    returns None when run reports are not wanted)."""
    page = Page(f"Sweep {folder.name}", folder)
    record = read_json_file(page, folder / "sweep.json")
    record = record if isinstance(record, dict) else {}
    grid = record.get("grid") if isinstance(record.get("grid"), dict) else {}
    s = page.section("overview", "Overview")
    if record:
        s.blocks.append(Text(f"model kind: {record.get('kind')}; grid: " + "; ".join(
            f"{k} in {{{', '.join(map(str, v))}}}" for k, v in grid.items())))  # fmt: skip
        s.blocks.append(
            Text(json.dumps(record.get("base", {}), indent=2), "pre", "Base settings of every run (sweep.json)")
        )
    rows = read_csv_file(page, folder / "sweep.csv") if (folder / "sweep.csv").exists() else None
    if rows is None and not (folder / "sweep.csv").exists():
        page.problem("sweep.csv: missing (written when the sweep ends or is interrupted)")
    names = [r["run"] for r in rows or [] if r.get("run")]
    names += sorted(p.name for p in folder.iterdir() if p.is_dir() and is_run_dir(p) and p.name not in names)
    if rows:
        s = page.section("table", "Sweep table")
        cols = list(rows[0])
        s.blocks.append(Table(cols, [[r.get(c, "") for c in cols] for r in rows], sortable=True,
                              caption="sweep.csv; click a column's header to sort by it."))  # fmt: skip
        note = _units_note(folder / "sweep.md")
        if note:
            s.blocks.append(Text(note))
    _combined_curves(page, folder, names)
    settings = {r["run"]: ", ".join(f"{k}={r.get(k, '')}" for k in grid) or r["run"] for r in rows or []}
    run_gallery(page, page.section("samples", "Final samples of each run"), folder, names,
                lambda name: settings.get(name, name), "samples.png", write_run)  # fmt: skip
    return page


def _units_note(path: Path) -> str:
    """The paragraph under sweep.md's table (what its columns are and their units)."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    return " ".join(line for line in text.splitlines() if line.strip() and not line.startswith("|"))


def _combined_curves(page: Page, folder: Path, names: list[str]) -> None:
    from probgen.pipelines.sweep import run_loss_curves
    from probgen.plots import plot_runs

    curves, ylabel = {}, ""
    for name in names:
        try:
            got, ylabel = run_loss_curves(folder, [name])
        except (OSError, ValueError, KeyError) as exc:
            page.problem(f"{name}/losses.csv: cannot read its loss curve ({type(exc).__name__}: {exc})")
            continue
        for run, by_split in got.items():
            split = "test" if "test" in by_split else "train"
            curves[run] = {split: by_split[split]}
    if not curves:
        return
    which = sorted({s for c in curves.values() for s in c})
    s = page.section("curves", "Loss curves of every run")
    caption = f"{ylabel} per epoch, {' and '.join(which)} split, from each run's losses.csv (drawn by the report)."
    draw = lambda p: plot_runs(curves, p, ylabel=ylabel, title=folder.name)  # noqa: E731
    s.blocks.append(figure_from_plot(draw, caption, "combined_curves.png"))


def run_gallery(
    page: Page,
    s: Section,
    folder: Path,
    runs: list[str],
    label: Callable[[str], str],
    image: str,
    write_run: Callable[[Path], Path | None],
    max_side: int = 240,
) -> None:
    """One thumbnail (at most ``max_side`` pixels) of ``<run>/<image>`` per run (labelled by ``label(run)``),
    linked to the run's own report written by ``write_run``; runs without the image are listed by name and link."""
    figures, bare = [], []
    for name in runs:
        run = folder / name
        if not run.is_dir():
            page.problem(f"{name}: listed but missing")
            continue
        report = write_run(run)
        link = report.relative_to(folder).as_posix() if report is not None else None
        path = run_image(run, image)
        fig = figure_from_file(page, path, f"{label(name)}", max_side=max_side) if path is not None else None
        if fig is None:
            bare.append((name, link))
            continue
        fig.link = link
        fig.name = f"{name}__{path.name}".replace("/", "__")
        figures.append(fig)
    if figures:
        s.blocks.append(Gallery(figures))
    for name, link in bare:
        text = f"{label(name)}: no {image}"
        s.blocks.append(Link(f"{text}; its report", link) if link else Text(text))
    if any(f.link for f in figures):
        s.blocks.append(Text("Each image links to its run's own report."))


def run_image(run: Path, image: str) -> Path | None:
    """``run/image`` if it exists; ``samples_epoch_<last>.png`` names the grid of the last epoch saved."""
    if image == "samples_epoch_<last>.png":
        grids = [(int(p.stem.rpartition("_")[2]), p) for p in run.glob("samples_epoch_*.png") if p.stem[-1].isdigit()]
        return max(grids)[1] if grids else None
    return run / image if (run / image).is_file() else None
