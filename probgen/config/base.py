"""What every config shares: the field helpers, the validation helpers and the settings that many
commands have (device, data root, progress), each declared once here.

A command's config uses ``device: str = device_field()`` rather than writing its own default, help
text and choices, so the CLI, config files and the Python API agree on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from probgen.config.fields import flag
from probgen.errors import UserError

DEVICES = ("auto", "cpu", "cuda")


def help_field(
    text: str,
    *,
    short: str | None = None,
    positional: bool = False,
    required: bool = False,
    nargs: str | None = None,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    group: str | None = None,
    **kw: Any,
) -> Any:
    """A dataclass field whose metadata carries its CLI form: help text, a short flag (``-n``), whether
    it is positional or a required flag, ``nargs`` (``"+"``: space-separated values), argparse choices,
    the metavar of its values and the ``--help`` group it is listed in (default: its section's).
    """
    cli = dict(
        short=short, positional=positional, required=required, nargs=nargs, choices=choices, metavar=metavar,
        group=group,
    )  # fmt: skip
    return field(metadata={"help": text, **{k: v for k, v in cli.items() if v}}, **kw)


_help = help_field  # the short name the config modules use


def check(cond: bool, name: str, msg: str) -> None:
    """Raise a UserError naming the flag of field ``name`` unless ``cond``."""
    if not cond:
        raise UserError(f"{flag(name)}: {msg}")


def choice(value: str, name: str, choices: tuple[str, ...]) -> None:
    """Raise a UserError naming the flag of field ``name`` unless ``value`` is one of ``choices``."""
    check(value in choices, name, f"invalid choice {value!r} (choose from {', '.join(choices)})")


def device_field() -> Any:
    """``device``: where the command computes (one of :data:`DEVICES`; checked by :func:`check_device`)."""
    return help_field("auto, cpu or cuda", default="auto")


def check_device(device: str) -> None:
    """Raise a UserError naming ``--device`` unless it is one of :data:`DEVICES`."""
    choice(device, "device", DEVICES)


def data_root_field(text: str = "folder holding the dataset files (default: the checkpoint's)") -> Any:
    """``data_root``: where the dataset files are; None means the usual place (or the checkpoint's)."""
    return help_field(text, default=None)


def progress_field(text: str = "show a progress bar (only on a terminal)") -> Any:
    """``progress``: a progress bar on a terminal, nothing off one (probgen.utils.progress)."""
    return help_field(text, default=True)


@dataclass
class RunConfig:
    """Where a run writes, and what it may do to an existing run directory."""

    out: str | None = _help("run directory (default: runs/<kind>-<dataset>-<time>)", default=None)
    resume: bool = _help("continue the run in --out from its checkpoint", default=False)
    overwrite: bool = _help("delete an existing run directory at --out and start again", default=False)
    progress: bool = progress_field()
    tensorboard: bool = _help(
        "also log losses and image grids to <out>/tensorboard (needs: pip install 'probgen[tensorboard]')",
        default=False,
    )
    bookkeeping_every: float = _help(
        "during training, redraw loss_curves.png and checkpoint an epoch's end at most every S seconds "
        "(always at the end, at Ctrl-C and every --checkpoint-every steps; 0: at every epoch's end)",
        default=30.0,
    )

    def __post_init__(self) -> None:
        check(not (self.resume and self.overwrite), "resume", "cannot be combined with --overwrite")
        check(self.bookkeeping_every >= 0, "bookkeeping_every", f"must be >= 0, got {self.bookkeeping_every}")
