"""The public API: curated ``__all__`` lists in probgen, probgen.inference, probgen.metrics and
probgen.models; every name resolves, is typed and documented, and is listed in docs/api.md.

``python tests/test_public_api.py`` prints the tables of docs/api.md.
"""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("probgen", "probgen.inference", "probgen.metrics", "probgen.models")


def public(package: str) -> list[tuple[str, object]]:
    """(name, object) for every name in ``package.__all__``; a module named like its function gives the function."""
    pkg = importlib.import_module(package)
    out = []
    for name in pkg.__all__:
        obj = getattr(pkg, name)
        out.append((name, getattr(obj, name) if inspect.ismodule(obj) else obj))
    return out


def test_import_probgen_is_light():
    code = "import sys, probgen; print(sorted(m for m in ('torch', 'pyro', 'arviz', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_function_is_typed_and_documented(package):
    for name, obj in public(package):
        if not callable(obj):
            continue
        assert (obj.__doc__ or "").strip(), f"{package}.{name} has no docstring"
        if inspect.isfunction(obj):
            sig = inspect.signature(obj)
            untyped = [p for p, v in sig.parameters.items() if v.annotation is inspect.Parameter.empty]
            assert not untyped, f"{package}.{name}: parameters without a type: {untyped}"
            assert sig.return_annotation is not inspect.Parameter.empty, f"{package}.{name} has no return type"


@pytest.mark.parametrize("package", PACKAGES)
def test_docs_api_lists_every_public_name(package):
    text = (ROOT / "docs" / "api.md").read_text()
    sections = dict(re.findall(r"^## `([\w.]+)`\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M))
    listed = set(re.findall(r"^\| `(\w+)` \|", sections.get(package, ""), flags=re.M))
    names = {name for name, _ in public(package)} - {"__version__"}
    missing, stale = sorted(names - listed), sorted(listed - names)
    assert names == listed, f"docs/api.md, section {package}: missing {missing}, stale {stale}"


def tables() -> str:
    """The name tables of docs/api.md, one per package."""
    lines = []
    for package in PACKAGES:
        lines += [f"## `{package}`", "", "| name | defined in | what it is |", "|---|---|---|"]
        for name, obj in public(package):
            if name == "__version__":
                continue
            if not callable(obj):
                where = importlib.import_module(package)._EXPORTS[name].split(":")[0]  # type: ignore[attr-defined]
                lines.append(f"| `{name}` | `{package}.{where}` | constant: `{obj!r}` |")
                continue
            doc = (inspect.getdoc(obj) or "").split("\n\n")[0].replace("\n", " ").replace("|", "\\|")
            kind = "class" if inspect.isclass(obj) else "function"
            lines.append(f"| `{name}` | `{obj.__module__}` | {kind}: {doc} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(tables())
