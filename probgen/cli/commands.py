"""The command table: every `probgen` command, its flags (the leaves of its config dataclasses)
and its handler (parsed flags -> config -> pipeline call -> exit code).

Handlers import their pipeline when they run, so `probgen --help` stays fast. The `fit <kind>`
commands come from the model registry (probgen.models.registry).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probgen.cli.flags import config_from_args
from probgen.config import (
    DataConfig,
    DataExtractConfig,
    DataInfoConfig,
    DiagnoseConfig,
    DisentangleConfig,
    DisentangleTargetConfig,
    EvalCommandConfig,
    LoglikConfig,
    PlotConfig,
    PlotTargetConfig,
    ReportConfig,
    SampleConfig,
    SweepConfig,
    sweep_flags,
)
from probgen.errors import UserError
from probgen.models.registry import DEFAULT_KIND, KINDS, model_kind


@dataclass(frozen=True)
class Command:
    """One command: ``probgen <path...> [flags]``."""

    path: tuple[str, ...]  # ("loglik",) or ("fit", "vae")
    help: str
    run: Callable[[argparse.Namespace], int]
    configs: tuple[type, ...] = ()  # each one's leaves become flags
    description: str | None = None
    skip: tuple[str, ...] = ()  # leaves left off the command line
    config_file: bool = False  # --config FILE holds defaults for configs[-1]
    defaults: dict[str, Any] = field(default_factory=dict)  # extra namespace values for the handler


# the command groups: name -> (help, description, metavar of the sub-command)
GROUPS = {
    "fit": ("train a model", "Train a model and write a run directory.", "MODEL"),
    "data": ("list datasets or describe one", "Datasets and their files.", "ACTION"),
}


def _fit(args: argparse.Namespace) -> int:
    from probgen.pipelines.fit import fit

    fit(config_from_args(model_kind(args._kind).config, args))
    return 0


def _sample(args: argparse.Namespace) -> int:
    from probgen.pipelines.sample import sample_grid

    cfg = config_from_args(SampleConfig, args)
    out = Path(cfg.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out: must be a .png file, got {out}")
    if out.exists() and not cfg.overwrite:
        raise UserError(f"--out: {out} exists; pass --overwrite to replace it")
    sample_grid(cfg.ckpt, cfg.num, out, nrow=cfg.nrow, seed=cfg.seed, device=cfg.device)
    print(out)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from probgen.pipelines.evaluate import evaluate_checkpoint, summary_lines

    cfg = config_from_args(EvalCommandConfig, args)
    record, out = evaluate_checkpoint(cfg)
    if cfg.target.json:
        print(json.dumps(record, indent=2, default=str))
    else:
        print("\n".join(summary_lines(record)))
        print(out)
    return 0


def _data_list(args: argparse.Namespace) -> int:
    from probgen.pipelines.data_info import dataset_list

    for name, text in dataset_list():
        print(f"{name:<12} {text}")
    return 0


def _data_info(args: argparse.Namespace) -> int:
    from probgen.pipelines.data_info import data_info

    cfg = config_from_args(DataInfoConfig, args)
    out = Path(cfg.out) if cfg.out else None
    print(data_info(cfg.data, out, overwrite=cfg.overwrite, num=cfg.num))
    return 0


def _data_extract(args: argparse.Namespace) -> int:
    from probgen.data import data_root
    from probgen.utils.archive import safe_extract

    cfg = config_from_args(DataExtractConfig, args)
    archive = Path(cfg.archive)
    if not archive.is_file():
        raise UserError(f"archive: no such file: {archive}")
    target = data_root(DataConfig(data_root=cfg.data_root))
    files = safe_extract(archive, target)
    print(f"extracted {len(files)} files into {target}")
    return 0


def _disentangle(args: argparse.Namespace) -> int:
    from probgen.pipelines.disentangle import disentangle

    target, cfg = config_from_args(DisentangleTargetConfig, args), config_from_args(DisentangleConfig, args)
    print(disentangle(target.ckpt, cfg, out=target.out, overwrite=target.overwrite))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from probgen.pipelines.plot import plot_checkpoint

    target, cfg = config_from_args(PlotTargetConfig, args), config_from_args(PlotConfig, args)
    for figure in target.figures:
        print(plot_checkpoint(figure, target.ckpt, cfg, out=target.out, overwrite=target.overwrite))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from probgen.pipelines.sweep import parse_grid, sweep, sweep_config_class
    from probgen.training.rundir import default_run_dir

    # the grid may be a config file's [grid] table (a dict), so only the kind is validated here
    kind = config_from_args(SweepConfig, argparse.Namespace(kind=args.kind)).kind or DEFAULT_KIND
    cls = sweep_config_class(kind)
    base = config_from_args(cls, args)
    grid = parse_grid(args.grid, cls)
    out = base.run.out or str(default_run_dir(f"sweep-{kind}", base.data.dataset))
    print(sweep(kind, base, grid, out))
    return 0


def _loglik(args: argparse.Namespace) -> int:
    from probgen.pipelines.loglik import loglik

    cfg = config_from_args(LoglikConfig, args)
    report = loglik(cfg)
    if not report:  # another rank of a torchrun job: rank 0 prints
        return 0
    if cfg.json:
        print((Path(report["out"]) / "loglik.json").read_text(), end="")
    else:
        print(report["table"])
        print(f"results: {report['out']}")
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from probgen.pipelines.diagnose import diagnose_chains

    print(diagnose_chains(config_from_args(DiagnoseConfig, args)))
    return 0


def _report(args: argparse.Namespace) -> int:
    from probgen.pipelines.report import report

    for page in report(config_from_args(ReportConfig, args)):
        print(page)
    return 0


def fit_commands() -> list[Command]:
    """`probgen fit <kind>` for every kind registered now (its flags: its config's, less its unused ones)."""
    return [
        Command(("fit", k.name), k.summary, _fit, (k.config,), k.description, k.unused_flags, True, {"_kind": k.name})
        for k in KINDS.values()
    ]


#: every command but `fit <kind>` (:func:`fit_commands`); :func:`all_commands` gives both
COMMANDS: list[Command] = [
    Command(("sample",), "write a grid of samples from a checkpoint", _sample, (SampleConfig,)),
    Command(
        ("eval",),
        "FID / IS / KID (or FD / KD on domain features) of a checkpoint's samples",
        _eval,
        (EvalCommandConfig,),
        "Score a VAE's or a GAN's samples against real images of its dataset. Every number is "
        "written to eval.json with N generated, N real, the split, the feature network and the resize mode.",
        config_file=True,
    ),
    Command(("data", "list"), "every dataset name with a one-line description", _data_list),
    Command(
        ("data", "info"),
        "source, images per split, shape and range (and, with --out, a grid of samples)",
        _data_info,
        (DataInfoConfig,),
        "Load a dataset as training would and describe it; writes nothing unless --out is given "
        "(then a PNG grid of training images).",
    ),
    Command(
        ("data", "extract"),
        "unpack a downloaded dataset archive (zip/tar) into the data root, safely",
        _data_extract,
        (DataExtractConfig,),
        "Unpack a .zip or .tar(.gz) into --data-root (default: $PROBGEN_DATA, then ./data). "
        "Members that would land outside it (../, absolute paths, outward links) are refused.",
    ),
    Command(
        ("disentangle",),
        "disentanglement metrics (BetaVAE, FactorVAE, MIG, DCI, SAP) of a VAE trained on dSprites",
        _disentangle,
        (DisentangleTargetConfig, DisentangleConfig),
        "Score a VAE's encoder means against the known generative factors of its dataset; "
        "writes disentanglement.json next to the checkpoint (or into --out).",
    ),
    Command(
        ("plot",),
        "latent-space figures of a checkpoint: traversals, manifold, latents, reconstructions",
        _plot,
        (PlotTargetConfig, PlotConfig),
        "Write one figure of a VAE, VAE-GAN or conditional-VAE checkpoint (reconstructions also "
        "of an autoencoder) as a PNG, by default into the checkpoint's run directory.",
    ),
    Command(
        ("sweep",),
        "train a grid of runs and tabulate them (resumable)",
        _sweep,
        (sweep_flags(KINDS[DEFAULT_KIND].config),),  # `--kind K` takes K's (probgen.cli.build_parser)
        "Train one run per point of --grid (FIELD=V1,V2 ...; tuple fields V1/V2) over the base "
        "settings given by the other flags or --config (a JSON/TOML file whose [grid] table is the grid). "
        "Writes one run directory per point under --out, sweep.csv, sweep.md and sweep_losses.png. Running "
        "it again skips finished runs and resumes interrupted ones.",
        skip=("resume", "overwrite", *KINDS[DEFAULT_KIND].unused_flags),
        config_file=True,
    ),
    Command(
        ("loglik",),
        "marginal log-likelihood of a VAE: Appendix D (HMC), IWAE, AIS, ELBO",
        _loglik,
        (LoglikConfig,),
        "Estimate log p(x) of a VAE checkpoint on a dataset split (nats and bits/dim), with "
        "batched HMC + importance sampling (Kingma & Welling 2013, App. D), IWAE and AIS, and ArviZ "
        "diagnostics of the chains. Writes loglik.json, loglik.csv, chains.nc and trace/rank PNGs.",
        config_file=True,
    ),
    Command(
        ("diagnose",),
        "ArviZ diagnostics (R-hat, ESS, divergences) of the HMC chains in a chains.nc",
        _diagnose,
        (DiagnoseConfig,),
        "Print the ArviZ summary of chains written by `probgen loglik` and flag data points "
        "whose chains did not mix (R-hat above --rhat-max or ESS below --min-ess-per-chain x chains).",
    ),
    Command(
        ("report",),
        "one self-contained HTML page of a run, a sweep or an experiment's output folder",
        _report,
        (ReportConfig,),
        "Write PATH/report.html: configuration, training curves, samples, reconstructions, latent figures, "
        "log-likelihood and evaluation results and the environment of a run; the sortable table, combined "
        "loss curves and final samples of a sweep (and each run's own report, linked); an experiment's tables "
        "and figures in the order of its docs page. Images are embedded and nothing is fetched: the page opens "
        "from disk. report.html (and report.md) are derived output and are replaced on every run.",
    ),
]


def all_commands() -> list[Command]:
    """Every command of `probgen`, the fit commands of the kinds registered now first."""
    return [*fit_commands(), *COMMANDS]
