"""The documentation stands alone: README.md and every text file under docs/ and experiments/ name
only files that a user of the repository has (its own files, or temporary output folders in example
commands), never the developers' shared folder, another machine's paths or a file above the checkout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".md", ".py", ".toml", ".json", ".csv", ".txt", ".cfg", ".yaml", ".yml"}
#: absolute paths a user has, or chooses as the output of an example command
ALLOWED_ABSOLUTE = ("/tmp/", "/dev/null", "/usr/bin/")
#: files of the team's working folder that are not part of the repository
OUTSIDE_NAMES = ("EXPERIMENTS.md", "DESIGN.md", "STYLE.md", "HELPERS.md")

_ABSOLUTE = re.compile(r"(?<![\w.:/~$}{)\]>*-])/(?:[\w.+-]+/)*[\w.+-]*[\w+-]")  # /a/b, not a/b, x/y, URLs, ~/a
_OUTSIDE = re.compile(r"(?<![\w/.-])(?:shared/|" + "|".join(map(re.escape, OUTSIDE_NAMES)) + r")")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def documented_files() -> list[Path]:
    """README.md and the text files under docs/ and experiments/."""
    files = [ROOT / "README.md"]
    for top in ("docs", "experiments"):
        files += sorted(p for p in (ROOT / top).rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
    return [p for p in files if "__pycache__" not in p.parts]


def outside_references(text: str, where: Path, root: Path = ROOT) -> list[str]:
    """What ``text`` (the content of file ``where`` in the repository at ``root``) names outside it."""
    found = []
    text = re.sub(r"<!--.*?-->", "", text)  # markers such as <!-- /setup:test -->
    for m in _ABSOLUTE.finditer(text):
        path = m.group(0)
        if re.search(r"[A-Za-z]", path) and not path.startswith(ALLOWED_ABSOLUTE):  # not /255
            found.append(f"absolute path {path}")
    found += [f"outside file {m.group(0)}" for m in _OUTSIDE.finditer(text)]
    if where.suffix == ".md":
        for m in _LINK.finditer(text):
            target = m.group(1).split("#")[0]
            if not target or re.match(r"^[a-z]+:", target):  # an anchor in the page, or a URL
                continue
            resolved = (where.parent / target).resolve()
            if not resolved.is_relative_to(root.resolve()):
                found.append(f"link out of the repository {target}")
            elif not resolved.exists():
                found.append(f"link to a missing file {target}")
    return found


@pytest.mark.parametrize("path", documented_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_names_no_file_outside_the_repository(path):
    lines = path.read_text(errors="replace").splitlines()
    bad = [f"line {i}: {ref}" for i, line in enumerate(lines, 1) for ref in outside_references(line, path)]
    assert not bad, f"{path.relative_to(ROOT)} names files a user does not have: {bad}"


def test_the_check_finds_what_it_should(tmp_path):
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    (tmp_path / "docs" / "there.md").write_text("x")
    bad = [
        "defined in `/work/shared/EXPERIMENTS.md`",
        "see shared/DESIGN.md",
        "the protocol of R1 (EXPERIMENTS.md)",
        "[up](../../outside.md)",
        "[gone](missing.md)",
        "--out /scratch/runs/x",
    ]
    for text in bad:
        assert outside_references(text, page, tmp_path), text
    good = [
        "probgen fit vae --out /tmp/first",
        "[ok](there.md#anchor) and [web](https://pyro.ai/x/y) and [same page](#top)",
        "FID/IS/KID on runs/x/checkpoint.pt, -ELBO / (pixels * ln 2), ~/.cache/probgen, $PROBGEN_DATA/dsprites",
        "python -m probgen > /dev/null; /usr/bin/time -v probgen; x /255; <!-- /setup:test -->",
    ]
    for text in good:
        assert outside_references(text, page, tmp_path) == [], text
