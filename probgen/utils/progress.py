"""Progress bars: tqdm on a terminal, silent otherwise, and always possible to switch off."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def progress(total: int | None = None, desc: str = "", enabled: bool = True, **kw: Any) -> tqdm:
    """A tqdm bar that is disabled when ``enabled`` is False or stderr is not a terminal."""
    show = enabled and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=not show, dynamic_ncols=True, leave=False, **kw)
