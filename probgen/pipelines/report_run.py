"""The report of one run directory (`probgen fit` and what `probgen loglik`, `eval`, `plot` and
`disentangle` add to it): every section its files support, in a fixed order.

Numbers are the files' own; the only figure drawn here is the training curves, from ``losses.csv``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from probgen.config import to_dict
from probgen.pipelines.report_page import (
    Page,
    Section,
    Table,
    Text,
    figure_from_file,
    figure_from_plot,
    read_csv_file,
    read_json_file,
)

#: files whose presence makes a folder a run directory
RUN_MARKERS = ("metrics.json", "losses.csv", "config.json", "checkpoint.pt")
LATENT_FIGURES = {
    "traversals.png": "latent traversals (each row varies one latent dimension)",
    "manifold.png": "images decoded on a grid over the 2-D latent space",
    "latents.png": "encoder means of the split, coloured by label",
}
_SAMPLES = re.compile(r"samples_epoch_(\d+)\.png")
_NOT_CURVES = {"epoch", "step", "split", "beta"}


def is_run_dir(folder: Path) -> bool:
    """Whether ``folder`` holds the files of a `probgen fit` run."""
    return any((folder / name).is_file() for name in RUN_MARKERS)


def run_page(folder: Path, title: str | None = None) -> Page:
    """The page of run directory ``folder``."""
    page = Page(title or f"Run {folder.name}", folder)
    metrics = _optional_json(page, folder / "metrics.json", "metrics.json (written when the fit finishes)")
    config = _optional_json(page, folder / "config.json", "")
    _overview(page, metrics)
    _config(page, config, metrics)
    _curves(page, folder)
    used = _images(page, folder)
    for ll in _loglik_dirs(folder):
        loglik_section(page, ll)
    _evaluation(page, folder)
    _disentanglement(page, folder)
    _other_files(page, folder, used)
    _environment(page, folder, config, metrics)
    return page


def _optional_json(page: Page, path: Path, missing: str) -> Any:
    if not path.exists():
        if missing:
            page.problem(f"{path.name}: missing ({missing})")
        return None
    return read_json_file(page, path)


# --- overview and configuration ---------------------------------------------------------------------------


def _overview(page: Page, metrics: Any) -> None:
    if not isinstance(metrics, dict):
        return
    s = page.section("overview", "Overview")
    keys = ("kind", "dataset", "data_source", "likelihood", "num_train", "num_test", "steps", "epochs_completed",
            "train_seconds", "images_per_second", "world_size", "data_placement")  # fmt: skip
    s.blocks.append(Table(["", "value"], [[k, metrics[k]] for k in keys if k in metrics]))
    final = metrics.get("final")
    if isinstance(final, dict) and final:
        terms = [k for k in next(iter(final.values())) if k not in ("split", "epoch", "step")]
        rows = [[split, metrics.get(f"num_{split}", ""), *(v.get(k) for k in terms)]
                for split, v in final.items() if isinstance(v, dict)]  # fmt: skip
        units = metrics.get("units", "")
        s.blocks.append(Table(["split", "N", *terms], rows, caption=f"Final values (metrics.json; {units})."))
    losses = metrics.get("final_losses")
    if isinstance(losses, dict):
        n = losses.get("over_last_steps")
        rows = [[k, v] for k, v in losses.items() if k != "over_last_steps"]
        s.blocks.append(Table(["loss", "mean"], rows, caption=f"Means over the last {n} training steps."))
    for key in ("early_stopping", "objective"):
        if isinstance(metrics.get(key), dict) and metrics[key]:
            s.blocks.append(Table([key, "value"], [[k, v] for k, v in metrics[key].items()]))


def _flat(cfg: dict[str, Any]) -> dict[str, Any]:
    return {f"{section}.{k}": v for section, values in cfg.items() if isinstance(values, dict)
            for k, v in values.items()}  # fmt: skip


def short_config(config: dict[str, Any], kind: str | None) -> list[list[Any]]:
    """The settings of ``config`` (a run's config.json) that differ from model kind ``kind``'s defaults,
    as (setting, value, default) rows; without a known kind, its data and model sections."""
    from probgen.models.registry import KINDS

    skip = ("run", "perf", "environment")
    given = {k: v for k, v in _flat(config).items() if k.split(".")[0] not in skip}
    if kind in KINDS:
        defaults = _flat(to_dict(KINDS[kind].config()))
        return [[k, v, defaults.get(k, "")] for k, v in given.items() if defaults.get(k, object()) != v]
    return [[k, v, ""] for k, v in given.items() if k.split(".")[0] in ("data", "model")]


def _config(page: Page, config: Any, metrics: Any) -> None:
    if not isinstance(config, dict):
        return
    import json

    s = page.section("config", "Configuration")
    kind = metrics.get("kind") if isinstance(metrics, dict) else None
    rows = short_config(config, kind)
    what = f"the settings that differ from `probgen fit {kind}`'s defaults" if kind else "data and model settings"
    s.blocks.append(Table(["setting", "value", "default"], rows, caption=f"In short: {what} (config.json)."))
    s.blocks.append(Text(json.dumps(config, indent=2), "pre", "In full: config.json"))


# --- training curves ---------------------------------------------------------------------------------------


def _numbers(rows: list[dict[str, str]], key: str) -> list[float] | None:
    try:
        return [float(r[key]) for r in rows]
    except (KeyError, TypeError, ValueError):
        return None


def curve_panels(rows: list[dict[str, str]]) -> tuple[dict[str, dict[str, list[float]]], dict[str, list[float]], str]:
    """Panels of ``losses.csv`` rows for :func:`probgen.plots.plot_curves`: (series, x values, x label).

    Per-epoch rows (a ``split`` column) give -ELBO, the objective when it is not -ELBO, reconstruction,
    KL and every other term, one line per split; per-step rows (a GAN's) give the G and D losses and the
    discriminator's outputs against the step.
    """
    cols = [c for c in rows[0] if c not in _NOT_CURVES]
    if "split" in rows[0]:
        series: dict[str, dict[str, list[float]]] = {}
        xs: dict[str, list[float]] = {}
        for split in dict.fromkeys(r["split"] for r in rows):
            sel = [r for r in rows if r["split"] == split]
            xs[split] = _numbers(sel, "epoch") or list(range(1, len(sel) + 1))
            elbo, loss = _numbers(sel, "elbo"), _numbers(sel, "loss")
            for col in cols:
                ys = _numbers(sel, col)
                if ys is None or col.endswith("bits_per_dim"):
                    continue
                if col == "elbo":
                    name, ys = "-ELBO (nats per image)", [-y for y in ys]
                elif col == "loss":
                    if elbo is not None and all(abs(a + b) <= 1e-6 * max(1.0, abs(a)) for a, b in zip(loss, elbo)):
                        continue  # the objective is -ELBO here (beta 1, plain ELBO)
                    name = "loss: the objective (nats per image)"
                elif col == "recon":
                    name = "reconstruction log-lik (nats per image)"
                elif col == "kl":
                    name = "KL (nats per image)"
                else:
                    name = col
                series.setdefault(name, {})[split] = ys
        return series, xs, "epoch"
    steps = _numbers(rows, "step") or list(range(1, len(rows) + 1))
    groups = {"loss_g": ("loss", "G"), "loss_d": ("loss", "D"), "d_real": ("discriminator output", "D(x)"),
              "d_fake": ("discriminator output", "D(G(z))")}  # fmt: skip
    series = {}
    xs = {}
    for col in cols:
        ys = _numbers(rows, col)
        if ys is None:
            continue
        panel, label = groups.get(col, (col, col))
        series.setdefault(panel, {})[label] = ys
        xs[label] = steps
    return series, xs, "step"


def _curves(page: Page, folder: Path) -> None:
    path = folder / "losses.csv"
    if not path.exists():
        return
    rows = read_csv_file(page, path)
    if not rows:
        if rows is not None:
            page.problem("losses.csv: no rows")
        return
    from probgen.plots import plot_curves

    series, xs, xlabel = curve_panels(rows)
    if not series:
        page.problem("losses.csv: no numeric loss columns")
        return
    s = page.section("curves", "Training curves")
    last = {k: v for k, v in rows[-1].items()}
    caption = f"From losses.csv ({len(rows)} rows; last row: {xlabel} {last.get(xlabel, '?')}), drawn by the report."
    s.blocks.append(figure_from_plot(lambda p: plot_curves(series, xs, p, xlabel=xlabel), caption, "curves.png"))


# --- images ------------------------------------------------------------------------------------------------


def _add_figure(page: Page, s: Section, path: Path, caption: str, used: set[Path]) -> None:
    used.add(path)
    fig = figure_from_file(page, path, caption)
    if fig is not None:
        s.blocks.append(fig)


def _images(page: Page, folder: Path) -> set[Path]:
    """Samples, reconstructions and latent figures; returns the files shown."""
    used: set[Path] = set()
    s = page.section("samples", "Samples")
    by_epoch = sorted(
        (int(m.group(1)), p) for p in folder.glob("samples_epoch_*.png") if (m := _SAMPLES.fullmatch(p.name))
    )
    for epoch, path in by_epoch:
        _add_figure(page, s, path, f"samples after epoch {epoch} ({path.name})", used)
    final = folder / "samples.png"
    if final.is_file():
        same = by_epoch and by_epoch[-1][1].read_bytes() == final.read_bytes()
        if same:
            used.add(final)  # the last epoch's grid, shown above
        else:
            _add_figure(page, s, final, "samples of the final model (samples.png)", used)
    s = page.section("reconstructions", "Reconstructions")
    for path in sorted(folder.glob("reconstructions*.png")):
        _add_figure(page, s, path, f"originals, each row followed by its reconstructions ({path.name})", used)
    s = page.section("latents", "Latent space")
    for name, caption in LATENT_FIGURES.items():
        if (folder / name).is_file():
            _add_figure(page, s, folder / name, f"{caption} ({name})", used)
    used.add(folder / "loss_curves.png")  # redrawn from losses.csv above
    return used


def _other_files(page: Page, folder: Path, used: set[Path]) -> None:
    s = page.section("other", "Other figures and tables")
    for path in sorted(folder.glob("*.png")):
        if path not in used:
            _add_figure(page, s, path, path.name, used)
    for path in sorted(folder.glob("*.csv")):
        if path.name != "losses.csv":
            table_from_csv(page, s, path)


def table_from_csv(page: Page, s: Section, path: Path, limit: int = 200, sortable: bool = True) -> None:
    """CSV file ``path`` as a (sortable) table of at most ``limit`` rows."""
    rows = read_csv_file(page, path)
    if rows is None:
        return
    if not rows:
        s.blocks.append(Text(f"{path.name}: no rows"))
        return
    cols = list(rows[0])
    note = f"{path.name}" + (f": the first {limit} of {len(rows)} rows" if len(rows) > limit else "")
    s.blocks.append(Table(cols, [[r[c] for c in cols] for r in rows[:limit]], sortable=sortable, caption=note))


# --- log-likelihood ----------------------------------------------------------------------------------------


def _loglik_dirs(folder: Path) -> list[Path]:
    """``loglik/`` (`probgen loglik`'s default), ``loglik_<method>/`` (the experiments') and the run itself."""
    found = [p.parent for p in sorted(folder.glob("loglik*/loglik.json"))]
    return found + ([folder] if (folder / "loglik.json").is_file() else [])


def _pm(mean: Any, se: Any) -> str:
    if not isinstance(mean, (int, float)):
        return ""
    return f"{mean:.4g}" + (f" ± {se:.2g}" if isinstance(se, (int, float)) else "")


def loglik_section(page: Page, folder: Path) -> None:
    """The results of `probgen loglik` in ``folder`` (loglik.json, loglik.csv, trace plots)."""
    rel = folder.relative_to(page.folder).as_posix() if folder != page.folder else "."
    report = read_json_file(page, folder / "loglik.json")
    if not isinstance(report, dict):
        return
    s = page.section(f"loglik-{rel}".replace("/", "-").replace(".", "run"), f"Log-likelihood ({rel}/loglik.json)")
    what = [f"{k}: {report[k]}" for k in ("dataset", "split", "num_data", "points", "latent_dim", "likelihood")
            if k in report]  # fmt: skip
    s.blocks.append(Text("; ".join(what) + (f". Units: {report['units']}." if "units" in report else "")))
    if report.get("pixel_model"):
        s.blocks.append(Text(str(report["pixel_model"])))
    _split_mean(s, report.get("split_mean"))
    results = report.get("results") or {}
    rows, flags = [], []
    for method, r in results.items():
        if not isinstance(r, dict):
            continue
        ci = next((v for k, v in r.items() if "ci95" in k and isinstance(v, list) and len(v) == 2), None)
        rows.append([method, _pm(r.get("log_px_mean"), r.get("log_px_stderr")),
                     "" if ci is None else f"{ci[0]:.4g} to {ci[1]:.4g}",
                     _pm(r.get("bits_per_dim_mean"), r.get("bits_per_dim_stderr")), r.get("num_data"),
                     r.get("log_px_mean_trusted"), r.get("num_trusted"), r.get("num_flagged")])  # fmt: skip
        flags += [[method, reason, count] for reason, count in (r.get("flag_counts") or {}).items()]
    cols = ["method", "log p(x) [nats], mean ± s.e.", "95% CI", "bits/dim ± s.e.", "N", "trusted mean [nats]",
            "N trusted", "N flagged"]  # fmt: skip
    s.blocks.append(Table(cols, rows, caption="Mean ± standard error over the N points (loglik.json)."))
    if flags:
        s.blocks.append(Table(["method", "flag reason", "points"], flags, caption="Flagged points by reason."))
    elif results:
        s.blocks.append(Text("No point is flagged by any method."))
    _flagged_points(page, s, folder / "loglik.csv")
    for key in ("diagnostics", "bdmc"):
        d = report.get(key)
        if isinstance(d, dict):
            scalars = [[k, v] for k, v in d.items() if not isinstance(v, (dict, list))]
            s.blocks.append(Table([f"{key} (loglik.json)", "value"], scalars))
    for w in report.get("warnings") or []:
        s.blocks.append(Text(str(w), "warn"))
    plots = report.get("plots") or [p.name for p in sorted(folder.glob("trace_dp*.png"))]
    for name in plots:
        path = folder / name
        if not path.is_file():
            page.problem(f"{rel}/{name}: missing (listed in loglik.json)")
            continue
        what = "rank plot" if name.startswith("rank") else "trace"
        caption = f"{name}: {what} of the HMC chains of a point `probgen loglik` chose (worst diagnostics)"
        fig = figure_from_file(page, path, caption)
        if fig is not None:
            s.blocks.append(fig)


def _split_mean(s: Section, sm: Any) -> None:
    """The default run's answer first: the split's mean log p(x) with its 95% interval (loglik.json)."""
    if not isinstance(sm, dict) or not isinstance(sm.get("ci95"), list):
        return
    (lo, hi), (blo, bhi) = sm["ci95"], sm.get("ci95_bits_per_dim") or [None, None]
    rows = [
        ["mean log p(x) [nats]", f"{sm.get('log_px'):.4g}", f"{lo:.4g} to {hi:.4g}"],
        ["bits/dim", f"{sm.get('bits_per_dim'):.5g}", "" if blo is None else f"{blo:.5g} to {bhi:.5g}"],
    ]
    s.blocks.append(Table(["split mean (loglik.json split_mean)", "estimate", "95% CI"], rows))
    counts = [[k, sm[k]] for k in ("population", "n_cheap", "cheap_estimator", "n_deep", "n_deep_untrusted",
                                    "flagged_widening") if k in sm]  # fmt: skip
    for method, reasons in (sm.get("flagged_by_reason") or {}).items():
        if isinstance(reasons, dict):
            counts += [[f"deep points flagged by {method}: {reason}", n] for reason, n in reasons.items()]
    s.blocks.append(Table(["split mean: points and flags", "value"], counts))
    for key in ("method", "flagged_points"):
        if sm.get(key):
            s.blocks.append(Text(f"{key.replace('_', ' ')}: {sm[key]}"))


def _flagged_points(page: Page, s: Section, path: Path, limit: int = 50) -> None:
    if not path.exists():
        return
    rows = read_csv_file(page, path)
    if not rows:
        return
    index = next(iter(rows[0]))
    methods = [c.removeprefix("flag_") for c in rows[0] if c.startswith("flag_")]
    flagged = [[r[index], m, r[f"flag_{m}"], r.get(f"log_px_{m}", ""), r.get(f"se_{m}", "")]
               for r in rows for m in methods if r.get(f"flag_{m}")]  # fmt: skip
    if flagged:
        more = f" (the first {limit} of {len(flagged)})" if len(flagged) > limit else ""
        cols = [index, "method", "reasons", "log p(x) [nats]", "s.e."]
        s.blocks.append(Table(cols, flagged[:limit], sortable=True, caption=f"Flagged points, loglik.csv{more}."))


# --- evaluation, disentanglement, environment -------------------------------------------------------------


def _evaluation(page: Page, folder: Path) -> None:
    for path in sorted(folder.glob("eval*.json")):
        record = read_json_file(page, path)
        if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
            if isinstance(record, dict):
                page.problem(f"{path.name}: no metrics")
            continue
        s = page.section(f"eval-{path.stem}", f"Evaluation ({path.name})")
        what = [f"{k}: {record[k]}" for k in ("dataset", "data_source", "kind", "generator", "step", "epoch")
                if record.get(k) is not None]  # fmt: skip
        s.blocks.append(Text("; ".join(what)))
        rows = []
        for name, m in record["metrics"].items():
            if not isinstance(m, dict):
                continue
            value = _pm(m["value"], None) if "value" in m else _pm(m.get("mean"), m.get("std")).replace("±", "± sd")
            ci = m.get("ci95")
            extra = {k: m[k] for k in ("subsets", "subset_size", "splits", "k") if k in m}
            interval = f"{ci[0]:.4g} to {ci[1]:.4g}" if isinstance(ci, list) and len(ci) == 2 else ""
            more = ", ".join(f"{k} {v}" for k, v in extra.items())
            rows.append([name, value, interval, m.get("num_generated"), m.get("num_real", ""), m.get("ref_split", ""),
                         m.get("feature_network"), m.get("resize"), more])  # fmt: skip
        cols = [
            "metric",
            "value",
            "95% CI",
            "N generated",
            "N real",
            "reference split",
            "feature network",
            "resize",
            "",
        ]
        s.blocks.append(Table(cols, rows, caption=f"From {path.name}; KID and IS as mean ± sd over subsets/splits."))


def _disentanglement(page: Page, folder: Path) -> None:
    path = folder / "disentanglement.json"
    if not path.exists():
        return
    record = read_json_file(page, path)
    if isinstance(record, dict) and isinstance(record.get("scores"), dict):
        s = page.section("disentanglement", "Disentanglement (disentanglement.json)")
        s.blocks.append(Table(["score", "value"], [[k, v] for k, v in record["scores"].items()]))


def _environment(page: Page, folder: Path, config: Any, metrics: Any) -> None:
    sources: dict[str, dict[str, Any]] = {}
    for name, record in (("config.json", config), ("metrics.json", metrics)):
        if isinstance(record, dict) and isinstance(record.get("environment"), dict):
            sources[name] = record["environment"]
    for path in [*sorted(folder.glob("eval*.json")), *(d / "loglik.json" for d in _loglik_dirs(folder))]:
        record = read_json_file(page, path) if path.is_file() else None
        if isinstance(record, dict) and isinstance(record.get("environment"), dict):
            sources[path.relative_to(folder).as_posix()] = record["environment"]
    if not sources:
        return
    keys = list(dict.fromkeys(k for env in sources.values() for k in env))
    s = page.section("environment", "Environment")
    s.blocks.append(Table(["", *sources], [[k, *(env.get(k, "") for env in sources.values())] for k in keys],
                          caption="As recorded by each command in its own file."))  # fmt: skip


__all__ = ["curve_panels", "is_run_dir", "loglik_section", "run_page", "short_config", "table_from_csv"]
