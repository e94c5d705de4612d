"""Lazy package exports (PEP 562): a package lists its public names and the submodule of each, and
a name's submodule is imported the first time the name is used, so `import probgen` and
`import probgen.metrics` stay cheap (ArviZ, torchmetrics and matplotlib load only when needed)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, table: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` from ``table``: public name -> ``"submodule"`` or
    ``"submodule:attribute"`` (relative to ``package``; the attribute defaults to the name). A name
    equal to the whole submodule path is that submodule; otherwise it is the attribute, so
    ``"ais": "loglik.ais"`` makes ``probgen.inference.ais`` the function, never the module.
    """

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        where, _, attr = table[name].partition(":")
        module = importlib.import_module(f"{package}.{where}")
        value = module if not attr and name == where else getattr(module, attr or name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__
