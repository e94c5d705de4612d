"""The one field walker: every consumer of config fields (the argparse bridge, dict round-trips,
config files, the sweep grid and resume) walks a config class through :func:`leaves`.

A config is a dataclass whose fields are either leaves (str, int, float, bool, tuples of those, each
possibly ``| None``) or nested configs ("sections"). A leaf's name is also its flag
(``latent_dim`` -> ``--latent-dim``), so leaf names are unique within a command's config.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from probgen.errors import UserError

T = TypeVar("T")


def flag(name: str) -> str:
    """The CLI flag of a config field: ``latent_dim`` -> ``--latent-dim``."""
    return "--" + name.replace("_", "-")


def strip_optional(tp: Any) -> Any:
    """``int | None`` -> ``int``; other types unchanged."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def is_config(tp: Any) -> bool:
    """Whether ``tp`` is a config class (a dataclass type), i.e. a section rather than a leaf."""
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


@dataclass(frozen=True)
class Leaf:
    """One settable field of a (nested) config class."""

    name: str  # the field's name, also its flag's dest
    path: tuple[str, ...]  # section names from the root config down to the class holding it
    owner: type  # the config class that declares the field
    hint: Any  # the annotated type, e.g. ``int | None``
    field: dataclasses.Field

    @property
    def type(self) -> Any:
        """The annotated type without ``| None``."""
        return strip_optional(self.hint)

    @property
    def optional(self) -> bool:
        return self.type is not self.hint

    @property
    def is_tuple(self) -> bool:
        return typing.get_origin(self.type) is tuple

    @property
    def default(self) -> Any:
        f = self.field
        return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]

    @property
    def help(self) -> str:
        return self.field.metadata.get("help", "")

    @property
    def section(self) -> str | None:
        """The top-level section holding the leaf (``"train"``), None for a top-level leaf."""
        return self.path[0] if self.path else None


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def sections(cls: type) -> dict[str, type]:
    """The nested config fields of ``cls``: name -> config class."""
    hints = _hints(cls)
    out: dict[str, type] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        tp = strip_optional(hints[f.name])
        if is_config(tp):
            out[f.name] = tp
    return out


@functools.cache
def leaves(cls: type, path: tuple[str, ...] = ()) -> tuple[Leaf, ...]:
    """Every leaf of config class ``cls`` in declaration order, nested sections flattened in place."""
    hints = _hints(cls)
    out: list[Leaf] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        tp = strip_optional(hints[f.name])
        if is_config(tp):
            out.extend(leaves(tp, (*path, f.name)))
        else:
            out.append(Leaf(f.name, path, cls, hints[f.name], f))
    return tuple(out)


def leaf_map(cls: type) -> dict[str, Leaf]:
    """Leaf name -> :class:`Leaf` of ``cls`` (names are flags, so they are unique)."""
    return {leaf.name: leaf for leaf in leaves(cls)}


# --- dicts ----------------------------------------------------------------------------------------


def json_ready(obj: Any) -> Any:
    """Tuples become lists, recursively (what JSON and TOML hold)."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config; tuples become lists."""
    return json_ready(dataclasses.asdict(cfg))


def _value(leaf: Leaf, value: Any) -> Any:
    return tuple(value) if leaf.is_tuple and isinstance(value, list) else value


def _construct(cls: type[T], kwargs: dict[str, Any]) -> T:
    try:
        return cls(**kwargs)
    except TypeError as exc:  # wrong value types surface here
        raise UserError(f"bad config for {cls.__name__}: {exc}") from None


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Rebuild a (nested) config from :func:`to_dict` output; unknown keys are a UserError.

    Missing keys take their defaults, so checkpoints written before a field existed still load.
    """
    if not isinstance(data, Mapping):
        raise UserError(f"config for {cls.__name__} must be a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"unknown config key(s) for {cls.__name__}: {', '.join(unknown)}")
    subs = sections(cls)
    own = {leaf.name: leaf for leaf in leaves(cls) if not leaf.path}
    kwargs = {
        name: from_dict(subs[name], value) if name in subs else _value(own[name], value) for name, value in data.items()
    }
    return _construct(cls, kwargs)


def from_flat(cls: type[T], values: Mapping[str, Any]) -> T:
    """Build ``cls`` from leaf name -> value (parsed flags); absent leaves keep their defaults.

    Each nested section is built (and validated) from the leaves it declares.
    """
    subs = sections(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in subs:
            kwargs[f.name] = from_flat(subs[f.name], values)
        elif f.name in values:
            kwargs[f.name] = values[f.name]
    return cls(**kwargs)


def flatten(cls: type, data: Mapping[str, Any], what: str = "--config") -> dict[str, Any]:
    """``{"model": {"latent_dim": 4}, "beta": 2}`` -> ``{"latent_dim": 4, "beta": 2}`` for ``cls``.

    Keys may use dashes; lists become tuples. An unknown key is a UserError naming ``what``.
    """
    subs = sections(cls)
    by_name = leaf_map(cls)
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name in subs and isinstance(value, Mapping):
            out.update(flatten(subs[name], value, what))
        elif name in by_name:
            out[name] = tuple(value) if isinstance(value, list) else value
        else:
            raise UserError(f"{what}: unknown setting {key!r}")
    return out


def replace_leaves(cfg: T, values: Mapping[str, Any]) -> T:
    """``cfg`` with the named leaves replaced wherever they sit (each changed section validated again)."""
    subs = sections(type(cfg))
    direct = {f.name for f in dataclasses.fields(cfg)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {k: v for k, v in values.items() if k in direct and k not in subs}
    for name, sub_cls in subs.items():
        mine = {k: v for k, v in values.items() if k in leaf_map(sub_cls)}
        if mine:
            changes[name] = replace_leaves(getattr(cfg, name), mine)
    return dataclasses.replace(cfg, **changes) if changes else cfg  # type: ignore[type-var]


# --- text ----------------------------------------------------------------------------------------


def parse_tuple(text: str, inner: type) -> tuple:
    """``"8, 16,32"`` -> ``(8, 16, 32)``; a ValueError names nothing (callers say which flag)."""
    return tuple(inner(p) for p in text.replace(" ", "").split(",") if p)


# --- resume --------------------------------------------------------------------------------------


def resume_config(stored: T, given: T, allowed: Mapping[str, tuple[str, ...]]) -> T:
    """The stored run's config, with only the ``allowed`` fields taken from ``given``.

    ``given`` comes from the resuming command; a field it sets away from its default that is not
    allowed to change (say --latent-dim) is a UserError, since the checkpoint could not hold it.
    ``allowed`` maps a section name to the leaves of it that may change; the ``run`` section's
    allowed leaves are always taken from ``given``.
    """
    updates: dict[str, Any] = {}
    for name, sec_cls in sections(type(stored)).items():
        old, new, default = getattr(stored, name), getattr(given, name), sec_cls()
        changes = {}
        for leaf in leaves(sec_cls):
            value, unset = _get(new, leaf), _get(default, leaf)
            if leaf.name in allowed.get(name, ()):
                if value != unset or name == "run":
                    changes[leaf.name] = value
            elif value != unset and value != _get(old, leaf):
                raise UserError(
                    f"{flag(leaf.name)}: cannot change on --resume (the run has "
                    f"{_get(old, leaf)!r}); start a new run instead"
                )
        updates[name] = replace_leaves(old, changes) if changes else old
    return dataclasses.replace(stored, **updates)  # type: ignore[type-var]


def _get(cfg: Any, leaf: Leaf) -> Any:
    """The value of ``leaf`` (found by its path below ``cfg``'s own section)."""
    obj = cfg
    for part in leaf.path:
        obj = getattr(obj, part)
    return getattr(obj, leaf.name)
