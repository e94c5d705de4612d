"""The run's log file: probgen's log lines also go to ``log.txt`` in the run directory."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("probgen")


@contextlib.contextmanager
def log_to_file(path: Path) -> Iterator[None]:
    """Also send probgen's log lines to ``path`` (appending, so a resumed run keeps its history)."""
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()
        sys.stderr.flush()
