"""The `probgen` command line: argparse subcommands only (argv -> config -> pipeline -> exit code).

Flags are generated from the dataclass configs in :mod:`probgen.config`, so the CLI and the Python
API share defaults and validation. A :class:`~probgen.errors.UserError` becomes one line on stderr
and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from probgen import __version__
from probgen.config import (
    DataConfig,
    DisentangleConfig,
    EvaluateConfig,
    FitGANConfig,
    FitVAEConfig,
    PlotConfig,
    SweepFlags,
    flag,
    flatten,
    from_flat,
    leaves,
)
from probgen.config.fields import parse_tuple
from probgen.errors import UserError

T = TypeVar("T")
log = logging.getLogger("probgen")


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (`probgen: error: ...`) and exit 2."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog.split()[-1] if ' ' in self.prog else ''} {message}".strip())


# --- dataclass <-> argparse ------------------------------------------------------------------------


def _tuple_of(inner: type) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        try:
            return parse_tuple(text, inner)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {inner.__name__} values, got {text!r}"
            ) from None

    parse.__name__ = f"list of {inner.__name__}"
    return parse


def add_config_args(parser: argparse.ArgumentParser, cls: type, skip: Sequence[str] = ()) -> None:
    """Add one flag per leaf of dataclass ``cls``; each nested section gets an argument group."""
    groups: dict[tuple[str, ...], Any] = {(): parser}
    for leaf in leaves(cls):
        if leaf.name in skip:
            continue
        if leaf.path not in groups:
            groups[leaf.path] = parser.add_argument_group(leaf.owner.__name__.replace("Config", "").lower())
        tp, default = leaf.type, leaf.default
        kw: dict[str, Any] = {"dest": leaf.name, "default": default, "help": leaf.help}
        if tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif leaf.is_tuple:
            kw["type"] = _tuple_of(typing.get_args(tp)[0])
            kw["metavar"] = "A,B,..."
        else:
            kw["type"] = tp
        if default is not None and tp is not bool:
            kw["help"] += f" (default: {','.join(map(str, default)) if isinstance(default, tuple) else default})"
        groups[leaf.path].add_argument(flag(leaf.name), **kw)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A JSON or TOML config file, parsed as data (never evaluated)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"--config: cannot read {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise UserError(f"--config: {path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"--config: {path} must hold a table/object of settings")
    return data


def config_file_defaults(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Flatten ``{"model": {"latent_dim": 4}, "beta": 2}`` into flag defaults of dataclass ``cls``."""
    return flatten(cls, data, "--config")


def config_from_args(cls: type[T], ns: argparse.Namespace) -> T:
    """Build dataclass ``cls`` (and its nested configs) from parsed flags; validation runs here."""
    return from_flat(cls, vars(ns))


# --- subcommands -------------------------------------------------------------------------------------


def _add_fit(sub: argparse._SubParsersAction) -> None:
    fit = sub.add_parser("fit", help="train a model", description="Train a model and write a run directory.")
    models = fit.add_subparsers(dest="model", required=True, metavar="MODEL", parser_class=_Parser)
    vae = models.add_parser(
        "vae",
        help="a VAE as a Pyro model/guide pair, trained by SVI",
        description="Train a VAE (Pyro model/guide, SVI with Trace_ELBO, beta via poutine.scale). "
        "Defaults are full training settings for a GPU.",
    )
    add_config_args(vae, FitVAEConfig)
    _add_config_file_flag(vae, FitVAEConfig)
    vae.set_defaults(handler=_run_fit_vae)
    _add_fit_gan(models)
    _add_fit_zoo(models)


def _add_config_file_flag(parser: argparse.ArgumentParser, cls: type) -> None:
    """``--config FILE`` (JSON or TOML): its settings become defaults; flags on the command line win."""
    parser.add_argument("--config", default=None, help="JSON or TOML file of settings (flags override it)")
    parser.set_defaults(_config_parser=parser, _config_cls=cls)


def _run_fit_vae(args: argparse.Namespace) -> int:
    from probgen.pipelines.fit_vae import fit_vae

    fit_vae(config_from_args(FitVAEConfig, args))
    return 0


def _add_fit_gan(models: argparse._SubParsersAction) -> None:
    gan = models.add_parser(
        "gan",
        help="a DCGAN (Radford et al. 2015) in plain PyTorch",
        description="Train a DCGAN (non-saturating loss, Adam) with optional EMA generator, FID/FD evaluation "
        "every K epochs and early stopping. Defaults are full training settings for a GPU.",
    )
    add_config_args(gan, FitGANConfig)
    _add_config_file_flag(gan, FitGANConfig)
    gan.set_defaults(handler=_run_fit_gan)


def _run_fit_gan(args: argparse.Namespace) -> int:
    from probgen.pipelines.fit_gan import fit_gan

    fit_gan(config_from_args(FitGANConfig, args))
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="FID / IS / KID (or FD / KD on domain features) of a checkpoint's samples",
        description="Score a VAE's or a GAN's samples against real images of its dataset. Every number is "
        "written to eval.json with N generated, N real, the split, the feature network and the resize mode.",
    )
    add_config_args(p, EvaluateConfig)
    _add_config_file_flag(p, EvaluateConfig)
    p.set_defaults(handler=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    import json

    from probgen.pipelines.evaluate import evaluate_checkpoint, summary_lines

    record, out = evaluate_checkpoint(config_from_args(EvaluateConfig, args))
    if args.json:
        print(json.dumps(record, indent=2, default=str))
    else:
        print("\n".join(summary_lines(record)))
        print(out)
    return 0


def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="write a grid of samples from a checkpoint")
    p.add_argument("--ckpt", required=True, help="checkpoint file (or its run directory)")
    p.add_argument("-n", "--num", type=int, default=100, help="number of samples (default: 100)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--nrow", type=int, default=10, help="images per row (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(handler=_run_sample)


def _run_sample(args: argparse.Namespace) -> int:
    from probgen.pipelines.sample import sample_grid

    if args.num < 1:
        raise UserError(f"-n: must be >= 1, got {args.num}")
    if args.nrow < 1:
        raise UserError(f"--nrow: must be >= 1, got {args.nrow}")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out: must be a .png file, got {out}")
    if out.exists() and not args.overwrite:
        raise UserError(f"--out: {out} exists; pass --overwrite to replace it")
    sample_grid(args.ckpt, args.num, out, nrow=args.nrow, seed=args.seed, device=args.device)
    print(out)
    return 0


def _add_loglik(sub: argparse._SubParsersAction) -> None:
    from probgen.config import LoglikConfig

    p = sub.add_parser(
        "loglik",
        help="marginal log-likelihood of a VAE: Appendix D (HMC), IWAE, AIS, ELBO",
        description="Estimate log p(x) of a VAE checkpoint on a dataset split (nats and bits/dim), with "
        "batched HMC + importance sampling (Kingma & Welling 2013, App. D), IWAE and AIS, and ArviZ "
        "diagnostics of the chains. Writes loglik.json, loglik.csv, chains.nc and trace/rank PNGs.",
    )
    p.add_argument("--ckpt", required=True, help="VAE checkpoint file (or its run directory)")
    p.add_argument(
        "-k",
        "--iwae-samples",
        dest="iwae_samples",
        type=int,
        default=None,
        help="importance samples per data point for IWAE and the ELBO (default: from --budget)",
    )
    add_config_args(p, LoglikConfig, skip=("ckpt", "iwae_samples"))
    _add_config_file_flag(p, LoglikConfig)
    p.set_defaults(handler=_run_loglik)


def _run_loglik(args: argparse.Namespace) -> int:
    from probgen.config import LoglikConfig
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


def _add_diagnose(sub: argparse._SubParsersAction) -> None:
    from probgen.config import DiagnoseConfig

    p = sub.add_parser(
        "diagnose",
        help="ArviZ diagnostics (R-hat, ESS, divergences) of the HMC chains in a chains.nc",
        description="Print the ArviZ summary of chains written by `probgen loglik` and flag data points "
        "whose chains did not mix (R-hat above --rhat-max or ESS below --min-ess-per-chain x chains).",
    )
    p.add_argument("chains_file", help="chains.nc written by `probgen loglik` (or its folder)")
    add_config_args(p, DiagnoseConfig, skip=("chains_file",))
    p.set_defaults(handler=_run_diagnose)


def _run_diagnose(args: argparse.Namespace) -> int:
    from probgen.config import DiagnoseConfig
    from probgen.pipelines.diagnose import diagnose_chains

    cfg = config_from_args(DiagnoseConfig, args)
    print(diagnose_chains(cfg))
    return 0


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="list datasets or describe one", description="Datasets and their files.")
    cmds = p.add_subparsers(dest="data_command", required=True, metavar="ACTION", parser_class=_Parser)
    lst = cmds.add_parser("list", help="every dataset name with a one-line description")
    lst.set_defaults(handler=_run_data_list)
    info = cmds.add_parser(
        "info",
        help="source, images per split, shape and range (and, with --out, a grid of samples)",
        description="Load a dataset as training would and describe it; writes nothing unless --out is given "
        "(then a PNG grid of training images).",
    )
    add_config_args(info, DataConfig)
    info.add_argument("--out", default=None, help="PNG grid of training images to write (default: none)")
    info.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    info.add_argument("--num", type=int, default=64, help="images in the grid (default: 64)")
    info.set_defaults(handler=_run_data_info)
    ext = cmds.add_parser(
        "extract",
        help="unpack a downloaded dataset archive (zip/tar) into the data root, safely",
        description="Unpack a .zip or .tar(.gz) into --data-root (default: $PROBGEN_DATA, then ./data). "
        "Members that would land outside it (../, absolute paths, outward links) are refused.",
    )
    ext.add_argument("archive", help="the archive file, e.g. chest-xray-pneumonia.zip")
    ext.add_argument("--data-root", default=None, help="folder to unpack into")
    ext.set_defaults(handler=_run_data_extract)


def _run_data_list(args: argparse.Namespace) -> int:
    from probgen.pipelines.data_info import dataset_list

    for name, text in dataset_list():
        print(f"{name:<12} {text}")
    return 0


def _run_data_info(args: argparse.Namespace) -> int:
    from probgen.pipelines.data_info import data_info

    if args.num < 1:
        raise UserError(f"--num: must be >= 1, got {args.num}")
    out = Path(args.out) if args.out else None
    print(data_info(config_from_args(DataConfig, args), out, overwrite=args.overwrite, num=args.num))
    return 0


def _run_data_extract(args: argparse.Namespace) -> int:
    from probgen.data import data_root
    from probgen.utils.archive import safe_extract

    archive = Path(args.archive)
    if not archive.is_file():
        raise UserError(f"archive: no such file: {archive}")
    target = data_root(DataConfig(data_root=args.data_root))
    files = safe_extract(archive, target)
    print(f"extracted {len(files)} files into {target}")
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_fit, _add_sample, _add_eval, _add_data]


# --- the model zoo: fit ae | cvae | vaegan -------------------------------------------------------

_NO_BETA = ("beta", "beta_schedule", "beta_warmup_steps", "beta_cycle_steps", "elbo", "particles")


def _add_fit_zoo(models: argparse._SubParsersAction) -> None:
    from probgen.config import FitAEConfig, FitCVAEConfig, FitVAEGANConfig

    specs = [
        ("ae", FitAEConfig, _NO_BETA, "a plain (deterministic) convolutional autoencoder baseline",
         "Train an autoencoder on the reconstruction negative log-likelihood of the VAE's likelihood "
         "(no latent sampling, no KL); --bottleneck adds a linear layer of --latent-dim units."),
        ("cvae", FitCVAEConfig, (), "a conditional VAE (labels observed in the Pyro model and guide)",
         "Train a conditional VAE: p(x | z, y) p(z) p(y) with observed labels y, guide q(z | x, y). "
         "Datasets without labels use a generative factor (--label-factor, dSprites: shape)."),
        ("vaegan", FitVAEGANConfig, (), "a VAE-GAN: the Pyro VAE plus a discriminator (Larsen et al. 2016)",
         "Train a VAE whose objective adds --gan-weight times a non-saturating adversarial loss from a "
         "discriminator on reconstructions and prior samples."),
    ]  # fmt: skip
    for name, cls, skip, short, long in specs:
        p = models.add_parser(name, help=short, description=long)
        add_config_args(p, cls, skip=skip)
        _add_config_file_flag(p, cls)
        p.set_defaults(handler=_run_fit_zoo, _fit_kind=name, _fit_cls=cls)


def _run_fit_zoo(args: argparse.Namespace) -> int:
    from probgen.pipelines.fit_ae import fit_ae
    from probgen.pipelines.fit_cvae import fit_cvae
    from probgen.pipelines.fit_vaegan import fit_vaegan

    run = {"ae": fit_ae, "cvae": fit_cvae, "vaegan": fit_vaegan}[args._fit_kind]
    run(config_from_args(args._fit_cls, args))
    return 0


def _add_disentangle(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "disentangle",
        help="disentanglement metrics (BetaVAE, FactorVAE, MIG, DCI, SAP) of a VAE trained on dSprites",
        description="Score a VAE's encoder means against the known generative factors of its dataset; "
        "writes disentanglement.json next to the checkpoint (or into --out).",
    )
    p.add_argument("--ckpt", required=True, help="checkpoint file (or its run directory)")
    p.add_argument("--out", default=None, help="folder for disentanglement.json (default: the checkpoint's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing disentanglement.json")
    add_config_args(p, DisentangleConfig)
    p.set_defaults(handler=_run_disentangle)


def _run_disentangle(args: argparse.Namespace) -> int:
    from probgen.pipelines.disentangle import disentangle

    print(disentangle(args.ckpt, config_from_args(DisentangleConfig, args), out=args.out, overwrite=args.overwrite))
    return 0


def _add_plot(sub: argparse._SubParsersAction) -> None:
    from probgen.pipelines.plot import FIGURES

    p = sub.add_parser(
        "plot",
        help="latent-space figures of a checkpoint: traversals, manifold, latents, reconstructions",
        description="Write one figure of a VAE, VAE-GAN or conditional-VAE checkpoint (reconstructions also "
        "of an autoencoder) as a PNG, by default into the checkpoint's run directory.",
    )
    p.add_argument("figure", choices=FIGURES, help="which figure")
    p.add_argument("--ckpt", required=True, help="checkpoint file (or its run directory)")
    p.add_argument("--out", default=None, help="PNG file to write (default: <run dir>/<figure>.png)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    add_config_args(p, PlotConfig)
    p.set_defaults(handler=_run_plot)


def _run_plot(args: argparse.Namespace) -> int:
    from probgen.pipelines.plot import plot_checkpoint

    cfg = config_from_args(PlotConfig, args)
    print(plot_checkpoint(args.figure, args.ckpt, cfg, out=args.out, overwrite=args.overwrite))
    return 0


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="train a grid of runs and tabulate them (resumable)",
        description="Train one run per point of --grid (FIELD=V1,V2 ...; tuple fields V1/V2) over the base "
        "settings given by the other flags or --config (a JSON/TOML file whose [grid] table is the grid). "
        "Writes one run directory per point under --out, sweep.csv, sweep.md and sweep_losses.png. Running "
        "it again skips finished runs and resumes interrupted ones.",
    )
    p.add_argument("--grid", nargs="+", default=(), metavar="FIELD=V1,V2", help="the settings to vary")
    add_config_args(p, SweepFlags, skip=("grid", "resume", "overwrite"))
    _add_config_file_flag(p, SweepFlags)
    p.set_defaults(handler=_run_sweep)


def _run_sweep(args: argparse.Namespace) -> int:
    from probgen.config import SweepConfig
    from probgen.pipelines.sweep import CONFIGS, parse_grid, sweep
    from probgen.utils.rundir import default_run_dir

    kind = config_from_args(SweepConfig, argparse.Namespace(kind=args.kind)).kind
    cls = CONFIGS[kind]
    base = config_from_args(cls, args)
    grid = parse_grid(args.grid, cls)
    out = base.run.out or str(default_run_dir(f"sweep-{kind}", base.data.dataset))
    print(sweep(kind, base, grid, out))
    return 0


COMMANDS += [_add_disentangle, _add_plot, _add_sweep]  # zoo: metrics, figures, sweeps
COMMANDS += [_add_loglik, _add_diagnose]  # marginal log-likelihood and chain diagnostics


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="probgen", description="Deep generative models of images with Pyro and PyTorch.")
    parser.add_argument("--version", action="version", version=f"probgen {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (it may be replaced after set-up, as under pytest)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging(quiet: bool) -> None:
    # the logger passes INFO (log.txt keeps it); -q filters only what reaches stderr
    log.setLevel(logging.INFO)
    handler = next((h for h in log.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("probgen: %(message)s"))
        log.addHandler(handler)
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``probgen`` argv -> namespace; a ``--config`` file's settings become defaults under the flags."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "config", None):  # re-parse with the file's settings as defaults
        values = config_file_defaults(args._config_cls, read_config_file(args.config))
        args._config_parser.set_defaults(**values)
        args = parser.parse_args(argv)
    return args


def fit_config(argv: Sequence[str]) -> Any:
    """The config `probgen fit <argv>` is given (before ``--resume`` merges the run's own), e.g.
    ``fit_config(["vae", "--epochs", "2", "--out", "runs/a"])`` -> a :class:`FitVAEConfig`."""
    args = parse_args(["fit", *argv])
    return config_from_args(args._config_cls, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `probgen` console script; returns the exit code."""
    try:
        args = parse_args(argv)
        _setup_logging(args.quiet)
        return int(args.handler(args))
    except UserError as exc:
        msg = " ".join(str(exc).split())  # always one line
        print(f"probgen: error: {msg}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        print("probgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
