"""Finding a dataset's files under the data root, and the one-line error when they are not there."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from probgen.errors import UserError

# A probe looks at one candidate folder and returns what is missing there ([] = found).
Probe = Callable[[Path], list[str]]


def find(name: str, candidates: Sequence[Path], probe: Probe, layout: str) -> Path:
    """The first candidate folder where ``probe`` finds nothing missing; else a UserError naming the
    dataset, every path tried with what it lacks, and the layout expected."""
    tried = []
    for cand in candidates:
        if not cand.is_dir():
            tried.append(f"{cand} (no such folder)")
            continue
        missing = probe(cand)
        if not missing:
            return cand.resolve()
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        tried.append(f"{cand} (missing {shown})")
    raise UserError(
        f"dataset {name!r} not found: tried {'; '.join(tried)}. Expected layout: {layout}. "
        "Set --data-root or $PROBGEN_DATA; probgen never downloads"
    )


def missing_files(folder: Path, names: Sequence[str]) -> list[str]:
    """The entries of ``names`` (files or, with a trailing '/', folders) absent from ``folder``."""
    out = []
    for n in names:
        p = folder / n.rstrip("/")
        if not (p.is_dir() if n.endswith("/") else p.is_file()):
            out.append(n)
    return out
