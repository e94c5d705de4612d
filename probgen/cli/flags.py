"""The argparse side of the config dataclasses: one flag per leaf (from the field walker), config
files (JSON or TOML) as defaults under the flags, and the parsed flags back into a config."""

from __future__ import annotations

import argparse
import json
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from probgen.config import flag, flatten, from_flat, leaves
from probgen.config.fields import parse_tuple
from probgen.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

T = TypeVar("T")


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (`probgen: error: ...`) and exit 2."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog.split()[-1] if ' ' in self.prog else ''} {message}".strip())


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
    """Add one flag per leaf of dataclass ``cls``; each nested section gets an argument group, and a leaf
    whose metadata names a ``group`` goes to the group of that title.

    A leaf's metadata may make it positional, required, give it a short flag (``-n``), ``nargs`` or
    argparse choices (see :func:`probgen.config.base.help_field`).
    """
    groups: dict[tuple[str, ...], Any] = {(): parser}
    for leaf in leaves(cls):
        if leaf.name in skip:
            continue
        meta, tp, default = leaf.field.metadata, leaf.type, leaf.default
        key = ("--group", meta["group"]) if meta.get("group") else leaf.path
        if key not in groups:
            title = meta.get("group") or leaf.owner.__name__.replace("Config", "").lower()
            groups[key] = parser.add_argument_group(title)
        kw: dict[str, Any] = {"help": leaf.help}
        if meta.get("choices"):
            kw["choices"] = meta["choices"]
        if meta.get("positional"):
            groups[key].add_argument(leaf.name, **kw)
            continue
        kw.update(dest=leaf.name, default=default)
        if tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif meta.get("nargs"):
            kw.update(nargs=meta["nargs"], type=typing.get_args(tp)[0])
        elif leaf.is_tuple:
            kw.update(type=_tuple_of(typing.get_args(tp)[0]), metavar="A,B,...")
        else:
            kw["type"] = tp
        if meta.get("metavar"):
            kw["metavar"] = meta["metavar"]
        if meta.get("required"):
            kw["required"] = True
        elif default not in (None, ()) and tp is not bool:
            kw["help"] += f" (default: {','.join(map(str, default)) if isinstance(default, tuple) else default})"
        names = [meta["short"], flag(leaf.name)] if meta.get("short") else [flag(leaf.name)]
        groups[key].add_argument(*names, **kw)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A JSON or TOML config file, parsed as data (never evaluated)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"--config: cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except ValueError as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise UserError(f"--config: {path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"--config: {path} must hold a table/object of settings")
    return data


def add_config_file_flag(parser: argparse.ArgumentParser, cls: type) -> None:
    """``--config FILE`` (JSON or TOML): its settings become defaults; flags on the command line win."""
    parser.add_argument("--config", default=None, help="JSON or TOML file of settings (flags override it)")
    parser.set_defaults(_config_parser=parser, _config_cls=cls)


def config_file_defaults(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Flatten ``{"model": {"latent_dim": 4}, "beta": 2}`` into flag defaults of dataclass ``cls``."""
    return flatten(cls, data, "--config")


def config_from_args(cls: type[T], ns: argparse.Namespace) -> T:
    """Build dataclass ``cls`` (and its nested configs) from parsed flags; validation runs here."""
    return from_flat(cls, vars(ns))
