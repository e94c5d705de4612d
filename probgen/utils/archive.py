"""Safe extraction of dataset archives (zip and tar): nothing lands outside the target folder.

A member whose path is absolute, climbs out with ``..``, or is a link (symbolic or hard) pointing
outside the target is refused before anything is written (zip-slip / tar-slip).
"""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from probgen.errors import UserError


def _inside(target: Path, name: str) -> bool:
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or (pure.parts and pure.parts[0].endswith(":")):
        return False
    resolved = (target / pure).resolve()
    return resolved == target or target in resolved.parents


def safe_extract(archive: str | Path, target: str | Path) -> list[Path]:
    """Extract a .zip or .tar(.gz/.bz2/.xz) into ``target``; returns the extracted files.

    Raises UserError naming the first unsafe member, or when the file is not an archive.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    target = target.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for name in names:
                if not _inside(target, name):
                    raise UserError(f"{archive}: refused: member {name!r} would be written outside {target}")
            zf.extractall(target)
        return [target / n for n in names if not n.endswith("/")]
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                if not _inside(target, m.name):
                    raise UserError(f"{archive}: refused: member {m.name!r} would be written outside {target}")
                if m.issym() or m.islnk():
                    link_base = PurePosixPath(m.name).parent if m.issym() else PurePosixPath()
                    if not _inside(target, str(link_base / m.linkname)):
                        raise UserError(f"{archive}: refused: link {m.name!r} points outside {target}")
                if m.isdev():
                    raise UserError(f"{archive}: refused: device file {m.name!r}")
            tf.extractall(target, filter="data")  # the stdlib's own guard as a second line
        return [target / m.name for m in members if m.isfile()]
    raise UserError(f"{archive}: not a zip or tar archive")
