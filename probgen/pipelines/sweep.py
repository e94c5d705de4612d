"""`probgen sweep`: a grid of fits, one run directory each, one table and one combined loss plot.

    probgen sweep --grid beta=0.25,0.025 latent_dim=4,16 --dataset dsprites --epochs 3 --out runs/sweep

The grid ranges over config fields by name (any field of the fit config except the run section);
every other setting is the base run's. Each grid point trains in ``<out>/<field=value_...>/`` with
`probgen fit <kind>`. The sweep is resumable: a finished run is skipped, an interrupted one is resumed
from its checkpoint (both decided by :func:`probgen.training.rundir.run_state`), and a grid can be extended.

Outputs in ``<out>``: ``sweep.json`` (kind, grid, base config), ``sweep.csv`` and ``sweep.md`` (one
row per run: the grid values, status, the final train/test ELBO terms from ``metrics.json`` (a GAN's
mean losses over its last epoch, ``train_loss_d`` ...; with ``--eval-every`` its ``eval.json``), and the
log-likelihood / FID-FD columns when `probgen loglik` / `probgen eval` have written
``loglik/loglik.json`` / ``eval.json`` in the run directory: ``loglik_<method>`` and
``loglik_<method>_bpd`` per estimator, and one column per metric of ``eval.json``, e.g. ``FID`` or
``FD-dsprites``, with its number of generated images), and ``sweep_losses.png`` (the -ELBO, or the loss for
an autoencoder, or a GAN's generator loss, per epoch of every run, train and test panels).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import re
import typing
from pathlib import Path
from typing import Any

from probgen.config import (
    Leaf,
    leaf_map,
    replace_leaves,
    to_dict,
)
from probgen.config.fields import parse_tuple
from probgen.errors import UserError
from probgen.models.registry import KINDS, model_kind
from probgen.pipelines.fit import fit
from probgen.plots import plot_runs
from probgen.training.guards import Interrupted
from probgen.training.rundir import run_state
from probgen.training.tensorboard import require_tensorboard
from probgen.utils.io import read_csv, write_csv, write_json

log = logging.getLogger("probgen")


def sweep_config_class(kind: str) -> type:
    """The fit config class of model kind ``kind`` (from the registry); an unknown kind names ``--kind``."""
    if kind not in KINDS:
        raise UserError(f"--kind: invalid choice {kind!r} (choose from {', '.join(KINDS)})")
    return KINDS[kind].config


# --- the grid ---------------------------------------------------------------------------------------


def _parse_value(text: str, leaf: Leaf, key: str) -> Any:
    if leaf.optional and text.lower() == "none":
        return None
    tp = leaf.type
    try:
        if tp is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if leaf.is_tuple:
            return parse_tuple(text, typing.get_args(tp)[0])
        return tp(text)
    except ValueError:
        raise UserError(f"--grid: {key}: cannot read {text!r} as {getattr(tp, '__name__', tp)}") from None


def _coerce(value: Any, leaf: Leaf, key: str) -> Any:
    """A value from a JSON/TOML file -> the field's type (lists become tuples)."""
    base = leaf.type
    if value is None:
        if not leaf.optional:
            raise UserError(f"--grid: {key}: None is not allowed")
        return None
    if leaf.is_tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"--grid: {key}: each value must be a list, got {value!r}")
        return tuple(value)
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, base) or (base is int and isinstance(value, bool)):
        raise UserError(f"--grid: {key}: expected {getattr(base, '__name__', base)} values, got {value!r}")
    return value


def parse_grid(spec: dict[str, Any] | list[str] | tuple[str, ...], cls: type) -> dict[str, list[Any]]:
    """``["beta=0.25,0.025", "latent_dim=4,16"]`` or ``{"beta": [0.25, 0.025], ...}`` -> typed values per field.

    On the command line values are separated by commas; for tuple fields (``conv_channels``) grid
    values are separated by ``/`` and the tuple's elements by commas: ``conv_channels=8,8/16,16``.
    """
    fields = leaf_map(cls)
    items: list[tuple[str, Any]] = []
    if isinstance(spec, dict):
        items = list(spec.items())
    else:
        for part in spec:
            if "=" not in part:
                raise UserError(f"--grid: expected FIELD=V1,V2,..., got {part!r}")
            key, _, text = part.partition("=")
            items.append((key, text))
    grid: dict[str, list[Any]] = {}
    for key, raw in items:
        name = key.strip().replace("-", "_")
        if name not in fields:
            raise UserError(f"--grid: unknown setting {key!r} for this model (see `probgen fit ... --help`)")
        leaf = fields[name]
        if leaf.section == "run":
            raise UserError(f"--grid: {key} is a run setting, which the sweep sets itself")
        if name in grid:
            raise UserError(f"--grid: {key} appears twice")
        if isinstance(raw, str):
            sep = "/" if leaf.is_tuple else ","
            values = [_parse_value(t.strip(), leaf, key) for t in raw.split(sep) if t.strip()]
        else:
            values = [_coerce(v, leaf, key) for v in (raw if isinstance(raw, list) else [raw])]
        if not values:
            raise UserError(f"--grid: {key} has no values")
        grid[name] = values
    if not grid:
        raise UserError("--grid: give at least one FIELD=V1,V2,... (or a config file with a [grid] table)")
    return grid


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, the last field varying fastest."""
    return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]


def _fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return "-".join(_fmt(x) for x in v)
    if isinstance(v, float):
        return format(v, "g")
    return str(v)


def run_name(point: dict[str, Any]) -> str:
    """``{"beta": 0.25, "latent_dim": 4}`` -> ``beta=0.25_latent_dim=4`` (a safe folder name)."""
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", "_".join(f"{k}={_fmt(v)}" for k, v in point.items()))


def with_point(base: Any, point: dict[str, Any]) -> Any:
    """``base`` with the grid point's fields replaced (each section validated again)."""
    return replace_leaves(base, point)


# --- running ----------------------------------------------------------------------------------------


def _comparable(cfg: Any) -> dict[str, Any]:
    d = to_dict(cfg)
    d.pop("run", None)
    return d


def _check_sweep_dir(out: Path, kind: str, base: Any, grid: dict[str, list[Any]]) -> None:
    record = out / "sweep.json"
    if record.is_file():
        old = json.loads(record.read_text())
        same_kind = old.get("kind") == kind
        new_base = _comparable(base)
        old_base = old.get("base", {})
        changed = [s for s in model_kind(kind).model_sections if old_base.get(s) != new_base.get(s)]
        if not same_kind or changed:
            what = f"model kind {old.get('kind')!r}" if not same_kind else f"other {', '.join(changed)} settings"
            raise UserError(f"--out: {out} holds a sweep with {what}; use another --out")
    write_json(record, {"kind": kind, "grid": grid, "base": _comparable(base)})


def _run_one(kind: str, cfg: Any, run_dir: Path) -> str:
    state = run_state(run_dir, cfg)
    if state == "finished":
        log.info("sweep: %s is finished; skipped", run_dir.name)
        return "done (skipped)"
    started = state == "started"
    run = dataclasses.replace(cfg.run, out=str(run_dir), resume=started, overwrite=False)
    log.info("sweep: %s %s", "resuming" if started else "starting", run_dir.name)
    fit(dataclasses.replace(cfg, run=run))
    return "done"


def sweep(kind: str, base: Any, grid: dict[str, list[Any]], out: str | Path) -> Path:
    """Train every grid point of ``grid`` over ``base`` (a fit config of ``kind``) under ``out``.

    Returns ``out``. Runs that fail with a user-level error (a NaN loss, a config a resumed run
    cannot change) are recorded in the table and the sweep goes on; the sweep then ends with a
    UserError naming them. Ctrl-C stops the sweep after the current run's checkpoint.
    """
    sweep_config_class(kind)
    require_tensorboard(base.run.tensorboard)  # not once per run
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} exists and is not a directory")
    points = grid_points(grid)
    names = [run_name(p) for p in points]
    if len(set(names)) != len(names):
        raise UserError("--grid: two grid points give the same run name; make the values distinct")
    cfgs = [with_point(base, p) for p in points]  # validates every point before anything runs
    out.mkdir(parents=True, exist_ok=True)
    _check_sweep_dir(out, kind, base, grid)
    log.info("sweep: %d runs of %s in %s", len(points), kind, out)
    status: dict[str, str] = {}
    for i, (name, cfg) in enumerate(zip(names, cfgs)):
        log.info("sweep: run %d/%d", i + 1, len(points))
        try:
            status[name] = _run_one(kind, cfg, out / name)
        except Interrupted:
            write_table(out, points, names, {**status, name: "interrupted"})
            raise
        except UserError as exc:
            status[name] = f"failed: {' '.join(str(exc).split())}"
            log.warning("sweep: %s failed: %s", name, exc)
    write_table(out, points, names, status)
    failed = [n for n, s in status.items() if s.startswith("failed")]
    if failed:
        raise UserError(f"sweep: {len(failed)} of {len(points)} runs failed ({', '.join(failed)}); see {out}/sweep.md")
    return out


# --- the table and the plot ----------------------------------------------------------------------------

_TERM_KEYS = ("elbo", "recon", "kl", "loss", "neg_elbo_bits_per_dim", "nll_bits_per_dim", "g_loss", "d_loss")
_GAN_KEYS = ("loss_d", "loss_g", "d_real", "d_fake")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _run_row(run_dir: Path) -> dict[str, Any]:
    row: dict[str, Any] = {}
    metrics = _read_json(run_dir / "metrics.json") or {}
    final = metrics.get("final", {})
    for split in ("train", "test"):
        for key in _TERM_KEYS:
            if key in final.get(split, {}):
                row[f"{split}_{key}"] = final[split][key]
    for key, value in metrics.get("final_losses", {}).items():  # a GAN: means over the last epoch's steps
        if key in _GAN_KEYS:
            row[f"train_{key}"] = value
    if metrics:
        row["steps"] = metrics.get("steps")
    # `probgen loglik` writes <run>/loglik/loglik.json by default: {"results": {method: {"log_px_mean", ...}}}
    loglik = _read_json(run_dir / "loglik" / "loglik.json") or _read_json(run_dir / "loglik.json")
    results = loglik.get("results") if isinstance(loglik, dict) else None
    if isinstance(results, dict):
        for method, r in results.items():
            if isinstance(r, dict) and isinstance(r.get("log_px_mean"), (int, float)):
                row[f"loglik_{method}"] = float(r["log_px_mean"])
                if isinstance(r.get("bits_per_dim_mean"), (int, float)):
                    row[f"loglik_{method}_bpd"] = float(r["bits_per_dim_mean"])
    dis = _read_json(run_dir / "disentanglement.json")  # `probgen disentangle`: {"scores": {"mig": ...}}
    scores = dis.get("scores") if isinstance(dis, dict) else None
    if isinstance(scores, dict):
        row.update({k: float(v) for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    ev = _read_json(run_dir / "eval.json")  # `probgen eval`: {"metrics": {"FID": {"value"}, "KID": {"mean"}, ...}}
    metrics_ev = ev.get("metrics") if isinstance(ev, dict) else None
    if isinstance(metrics_ev, dict):
        for name, m in metrics_ev.items():
            if isinstance(m, dict):
                value = m.get("value", m.get("mean"))
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    row[name] = float(value)
                    if "num_generated" in m:
                        row[f"{name}_n"] = m["num_generated"]
    return row


def _md_cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v).replace("|", "/")


def write_table(out: Path, points: list[dict[str, Any]], names: list[str], status: dict[str, str]) -> None:
    """sweep.csv and sweep.md (one row per run) and sweep_losses.png."""
    rows = []
    for point, name in zip(points, names):
        row: dict[str, Any] = {"run": name, **{k: _fmt(v) for k, v in point.items()}}
        row["status"] = status.get(name, "not run")
        row.update(_run_row(out / name))
        rows.append(row)
    write_csv(out / "sweep.csv", rows)
    cols = list(rows[0]) if rows else []
    for r in rows[1:]:
        cols += [k for k in r if k not in cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_md_cell(r.get(c)) for c in cols) + " |" for r in rows]
    units = (
        "\n\nELBO terms are per-image averages in nats (recon = E_q log p(x|z), elbo = recon - kl) from each "
        "run's metrics.json; loglik_<method> (log p(x) in nats per image, mean over the evaluated split) and "
        "loglik_<method>_bpd from loglik/loglik.json, and FID / FD-<dataset> / KD / IS (with N) from eval.json, "
        "when present.\n"
    )
    from probgen.utils.io import atomic_write

    text = "\n".join(lines) + units
    atomic_write(out / "sweep.md", lambda f: f.write(text.encode()))
    curves, ylabel = run_loss_curves(out, names)
    if curves:
        plot_runs(curves, out / "sweep_losses.png", ylabel=ylabel, title=f"sweep: {out.name}")


def run_loss_curves(out: Path, names: list[str]) -> tuple[dict[str, dict[str, tuple[list[float], list[float]]]], str]:
    """Per run under ``out``, from its losses.csv: ``curves[run][split] = (epochs, losses)`` and the y label.

    The loss is -ELBO (or, for an autoencoder, the reconstruction NLL; for a GAN, the generator loss
    averaged over each epoch's steps). Runs without a losses.csv are left out.
    """
    curves: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    ylabel = "-ELBO (nats per image)"
    for name in names:
        path = out / name / "losses.csv"
        if not path.is_file():
            continue
        by_split: dict[str, tuple[list[float], list[float]]] = {}
        rows = read_csv(path)
        if rows and "split" not in rows[0]:  # a GAN's rows are per step: the generator loss, per epoch
            ylabel = "generator loss (mean per epoch)"
            by_epoch: dict[float, list[float]] = {}
            for r in rows:
                by_epoch.setdefault(float(r["epoch"]), []).append(float(r["loss_g"]))
            curves[name] = {"train": (list(by_epoch), [sum(v) / len(v) for v in by_epoch.values()])}
            continue
        for r in rows:
            key = "elbo" if r.get("elbo") not in (None, "") else "loss"
            if key == "loss":
                ylabel = "-ELBO or reconstruction NLL (nats per image)"
            y = -float(r["elbo"]) if key == "elbo" else float(r["loss"])
            xs, ys = by_split.setdefault(r["split"], ([], []))
            xs.append(float(r["epoch"]))
            ys.append(y)
        curves[name] = by_split
    return curves, ylabel
