"""The `probgen` command line: argparse only (argv -> config -> pipeline call -> exit code).

Flags are generated from the dataclass configs in :mod:`probgen.config` (:mod:`probgen.cli.flags`),
and every command is one row of :func:`probgen.cli.commands.all_commands`. A
:class:`~probgen.errors.UserError` becomes one line on stderr and exit code 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from typing import Any

from probgen.cli.commands import GROUPS, all_commands
from probgen.cli.flags import (
    Parser,
    add_config_args,
    add_config_file_flag,
    config_file_defaults,
    config_from_args,
    read_config_file,
)
from probgen.config import sweep_flags
from probgen.errors import UserError
from probgen.models.registry import KINDS
from probgen.version import __version__

__all__ = [
    "add_config_args",
    "build_parser",
    "config_from_args",
    "fit_config",
    "main",
    "parse_args",
    "read_config_file",
]

log = logging.getLogger("probgen")


def build_parser(sweep_kind: str | None = None) -> argparse.ArgumentParser:
    """The `probgen` parser with every command of :func:`~probgen.cli.commands.all_commands`.

    ``sweep_kind``: `probgen sweep` takes the flags of that model kind (see :func:`_sweep_kind`).
    """
    parser = Parser(prog="probgen", description="Deep generative models of images with Pyro and PyTorch.")
    parser.add_argument("--version", action="version", version=f"probgen {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    groups: dict[str, Any] = {}
    for cmd in all_commands():
        if cmd.path == ("sweep",) and sweep_kind is not None:
            kind = KINDS[sweep_kind]
            skip = ("resume", "overwrite", *kind.unused_flags)
            cmd = dataclasses.replace(cmd, configs=(sweep_flags(kind.config),), skip=skip)
        where = sub
        if len(cmd.path) == 2:
            if cmd.path[0] not in groups:
                short, long, metavar = GROUPS[cmd.path[0]]
                g = sub.add_parser(cmd.path[0], help=short, description=long)
                dest = "model" if cmd.path[0] == "fit" else f"{cmd.path[0]}_command"
                groups[cmd.path[0]] = g.add_subparsers(dest=dest, required=True, metavar=metavar, parser_class=Parser)
            where = groups[cmd.path[0]]
        p = where.add_parser(cmd.path[-1], help=cmd.help, description=cmd.description or cmd.help)
        for cls in cmd.configs:
            add_config_args(p, cls, skip=cmd.skip)
        if cmd.config_file:
            add_config_file_flag(p, cmd.configs[-1])
        p.set_defaults(handler=cmd.run, **cmd.defaults)
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
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_sweep_kind(argv))
    args = parser.parse_args(argv)
    if getattr(args, "config", None):  # re-parse with the file's settings as defaults
        values = config_file_defaults(args._config_cls, read_config_file(args.config))
        args._config_parser.set_defaults(**values)
        args = parser.parse_args(argv)
    return args


def _sweep_kind(argv: Sequence[str]) -> str | None:
    """The model kind of a `probgen sweep` command line: ``--kind K``, else its ``--config`` file's ``kind``.

    None for other commands and unknown kinds (the sweep then reports them).
    """
    words = [a for a in argv if not a.startswith("-")]
    if not words or words[0] != "sweep":
        return None
    kind: Any = None
    for i, arg in enumerate(argv):
        if arg == "--kind" and i + 1 < len(argv):
            kind = argv[i + 1]
        elif arg.startswith("--kind="):
            kind = arg.partition("=")[2]
    if kind is None and "--config" in argv[:-1]:
        try:
            data = read_config_file(argv[argv.index("--config") + 1])
        except UserError:
            return None  # the full parse reports it
        kind = data.get("kind", data.get("sweep", {}).get("kind") if isinstance(data.get("sweep"), dict) else None)
    return kind if isinstance(kind, str) and kind in KINDS else None


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
