"""Helpers for the reliability suite: training runs as real subprocesses that can be killed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.procs import KINDS, start

_REFERENCES: dict[str, Path] = {}


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory):
    """reference_run(kind): an uninterrupted run, in a subprocess like the interrupted ones."""

    def get(kind: str = "vae") -> Path:
        if kind not in _REFERENCES:
            tmp = tmp_path_factory.mktemp(f"reference-{kind}")
            proc = start(["fit", kind, *KINDS[kind][0], "--out", str(tmp / "run")], tmp)
            _, err = proc.communicate()  # no limit of its own: the calling test's timeout mark stops a hang
            assert proc.returncode == 0, err
            _REFERENCES[kind] = tmp / "run"
        return _REFERENCES[kind]

    return get
