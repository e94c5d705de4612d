"""A torchrun worker for the distributed tests: `probgen` main, with rank > 0 forbidden to write under --out.

An audit hook watches every file the process opens for writing, renames, creates or deletes; a
rank other than 0 touching the run directory exits with code 97 and says what it touched.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _inside(path: object, root: Path) -> bool:
    if isinstance(path, bytes):
        path = path.decode(errors="replace")
    if not isinstance(path, str | os.PathLike):
        return False
    try:
        return Path(path).resolve().is_relative_to(root)
    except OSError:
        return False


def _guard_writes(root: Path) -> None:
    def hook(event: str, args: tuple) -> None:
        touched = None
        if event == "open" and len(args) >= 3:
            path, mode, flags = args[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & WRITE_FLAGS
            )
            touched = path if writing else None
        elif event in ("os.rename", "os.replace", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree"):
            touched = next((a for a in args if _inside(a, root)), None)
        elif event == "tempfile.mkstemp":
            touched = args[0]
        if touched is not None and _inside(touched, root):
            sys.stderr.write(f"rank {os.environ['RANK']} wrote {touched} ({event})\n")
            sys.stderr.flush()
            os._exit(97)

    sys.addaudithook(hook)


def main() -> int:
    argv = sys.argv[1:]
    if os.environ.get("RANK", "0") != "0" and "--out" in argv:
        _guard_writes(Path(argv[argv.index("--out") + 1]).resolve())
    from probgen.cli import main as probgen_main

    return probgen_main(argv)


if __name__ == "__main__":
    sys.exit(main())
