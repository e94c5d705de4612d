"""Run a probgen command that stops at a chosen file write and waits for a signal (not a test module).

The reliability tests kill and interrupt real processes. Killing after an amount of time races the
machine's speed (a fast machine finishes first, a loaded one has not started), so the child stops at
a point the test names and says so on stderr; the test then sends its signal to a process that is
known to be there::

    python -m tests.reliability.pause PATTERN N WHERE -- fit vae ...

The N-th file renamed into place (every atomic write ends with ``os.replace``) whose name matches
the glob PATTERN pauses the process ``before-rename`` (the temp file is complete and synced but not
in place: a kill leaves a stale temp file, as a kill mid-write does) or ``after`` the rename. On
pausing it prints :data:`MARK` on stderr and waits for SIGINT or SIGTERM, which it then hands to the
process's own handler (training's graceful stop, or Python's KeyboardInterrupt). SIGKILL ends it
where it stands.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import sys
from pathlib import Path

MARK = "paused at"
WHERE = ("before-rename", "after")
_WAITED = (signal.SIGINT, signal.SIGTERM)


def _wait_for_signal(name: str, n: int, where: str) -> None:
    # The signal may be delivered to any thread (torch's, tqdm's), so the main thread does not wait for it
    # with sigwait: it reads the byte that Python's C-level handler writes to the wakeup fd, in whichever
    # thread the signal lands, and Python then runs the recording handler here, in the main thread.
    got: list[int] = []
    old = {sig: signal.signal(sig, lambda signum, frame: got.append(signum)) for sig in _WAITED}
    r, w = os.pipe()
    os.set_blocking(w, False)
    old_fd = signal.set_wakeup_fd(w)
    try:
        print(f"{MARK} {name} {n} {where}", file=sys.stderr, flush=True)
        while not got:
            os.read(r, 1)  # blocks until a signal arrives (or returns at once if one already has)
    finally:
        signal.set_wakeup_fd(old_fd)
        os.close(r)
        os.close(w)
        for sig, handler in old.items():
            signal.signal(sig, handler)
    sig = got[0]
    handler = old[sig]
    if callable(handler):
        handler(sig, None)  # training's GracefulStop sets its flag; Python's default raises KeyboardInterrupt
    else:
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)


def install(pattern: str, n: int, where: str) -> None:
    """Make the ``n``-th ``os.replace`` onto a file matching ``pattern`` pause ``where``."""
    if where not in WHERE:
        raise SystemExit(f"WHERE must be one of {WHERE}, got {where!r}")
    real_replace = os.replace
    seen = 0

    def replace(src, dst, **kwargs):  # noqa: ANN001, ANN202 (os.replace's own signature)
        nonlocal seen
        name = Path(os.fsdecode(dst)).name
        hit = False
        if fnmatch.fnmatch(name, pattern):
            seen += 1
            hit = seen == n
        if hit and where == "before-rename":
            _wait_for_signal(name, n, where)
        real_replace(src, dst, **kwargs)
        if hit and where == "after":
            _wait_for_signal(name, n, where)

    os.replace = replace


def main(argv: list[str]) -> int:
    pattern, n, where, sep, *args = argv
    if sep != "--":
        raise SystemExit("usage: python -m tests.reliability.pause PATTERN N WHERE -- PROBGEN-ARGS")
    install(pattern, int(n), where)
    from probgen.cli import main as probgen_main

    return probgen_main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
