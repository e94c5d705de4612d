"""The page of `probgen report`: sections of text, tables and images, written as one self-contained
HTML file (images as base64 data URIs, inline CSS and JS, no network) and optionally as Markdown.

Wiring only: what goes on a page is decided in :mod:`probgen.pipelines.report_run`,
:mod:`~probgen.pipelines.report_sweep` and :mod:`~probgen.pipelines.report_experiment`.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probgen.checkpoint import atomic_write

log = logging.getLogger("probgen")

# --- blocks --------------------------------------------------------------------------------------------


@dataclass
class Text:
    """A paragraph (``kind="p"``), a warning line (``"warn"``) or preformatted text (``"pre"``; with a
    ``summary`` it is folded under it)."""

    text: str
    kind: str = "p"
    summary: str = ""


@dataclass
class Link:
    """A line linking to a sibling page (another report)."""

    text: str
    href: str


@dataclass
class Table:
    """Rows of cells under ``columns``; a sortable table sorts by a column when its header is clicked."""

    columns: list[str]
    rows: list[list[Any]]
    sortable: bool = False
    caption: str = ""


@dataclass
class Figure:
    """A PNG image: ``data`` its bytes, ``name`` its file name in the Markdown version."""

    data: bytes
    caption: str
    name: str
    link: str | None = None  # a sibling report this image links to


@dataclass
class Gallery:
    """Small figures side by side, each with its caption (and link)."""

    figures: list[Figure]


Block = Text | Link | Table | Figure | Gallery


@dataclass
class Section:
    """One titled part of a page; ``id`` is its HTML anchor."""

    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Page:
    """A report page: a title, sections and the problems met while reading the folder."""

    title: str
    folder: Path
    sections: list[Section] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def section(self, id: str, title: str) -> Section:
        """A new section, appended; empty sections are left out when the page is written."""
        s = Section(id, title)
        self.sections.append(s)
        return s

    def problem(self, message: str) -> None:
        """A missing or unreadable file: one warning on stderr and one line on the page (once)."""
        if message in self.problems:
            return
        log.warning("report: %s", message)
        self.problems.append(message)


# --- reading the folder's files --------------------------------------------------------------------------


def read_json_file(page: Page, path: Path, what: str = "") -> Any:
    """The JSON file ``path``, or None (after :meth:`Page.problem`) when it is unreadable or not JSON."""
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        page.problem(f"{_rel(page, path)}: cannot read{' ' + what if what else ''} ({exc.strerror or exc})")
    except ValueError as exc:
        page.problem(f"{_rel(page, path)}: not valid JSON ({exc})")
    return None


def read_csv_file(page: Page, path: Path) -> list[dict[str, str]] | None:
    """The rows of CSV file ``path``, or None (after :meth:`Page.problem`) when unreadable."""
    import csv

    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        page.problem(f"{_rel(page, path)}: cannot read ({exc})")
        return None
    if rows and any(None in r or None in r.values() for r in rows):
        page.problem(f"{_rel(page, path)}: rows with the wrong number of cells (truncated or corrupt)")
        return None
    return rows


def figure_from_file(page: Page, path: Path, caption: str, max_side: int | None = None) -> Figure | None:
    """A :class:`Figure` of PNG/JPEG file ``path`` (decoded to check it; with ``max_side`` scaled down
    to fit, for thumbnails), or None after :meth:`Page.problem`."""
    from PIL import Image, UnidentifiedImageError

    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if max_side is not None and max(im.size) > max_side:
                im.thumbnail((max_side, max_side))
                buf = io.BytesIO()
                im.save(buf, format="PNG", optimize=True)
                data = buf.getvalue()
            elif im.format != "PNG":
                buf = io.BytesIO()
                im.save(buf, format="PNG")
                data = buf.getvalue()
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        page.problem(f"{_rel(page, path)}: not a readable image ({exc})")
        return None
    name = _rel(page, path).replace("/", "__").rsplit(".", 1)[0] + ".png"
    return Figure(data, caption, name)


def figure_from_plot(draw: Any, caption: str, name: str) -> Figure:
    """A :class:`Figure` drawn by ``draw(path)`` (a :mod:`probgen.plots` function writing a PNG)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        draw(path)
        return Figure(path.read_bytes(), caption, name)


def _rel(page: Page, path: Path) -> str:
    try:
        return path.relative_to(page.folder).as_posix()
    except ValueError:
        return str(path)


def cell(value: Any) -> str:
    """A number as a table shows it (6 significant digits; integers whole), anything else as text."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return value if number.is_integer() and "." not in value and "e" not in value.lower() else f"{number:.6g}"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


# --- HTML ------------------------------------------------------------------------------------------------

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1150px;
padding:0 18px 40px;color:#1d1d1f;background:#fff}
h1{font-size:1.6em;margin:.8em 0 .2em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:3px;
margin-top:1.6em}nav a{margin-right:.8em;font-size:.9em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f3f3f6;white-space:nowrap}
.scroll{overflow-x:auto}table.sortable th{cursor:pointer}
table.sortable th:after{content:" \\2195";color:#999}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:.8em 0}figure img{max-width:100%;border:1px solid #eee;image-rendering:pixelated}
figcaption{font-size:.85em;color:#555}.gallery{display:flex;flex-wrap:wrap;gap:12px}
.gallery figure{max-width:460px;margin:0}.warn{color:#8a4b00;background:#fff6e5;padding:2px 6px;margin:2px 0}
pre{background:#f6f6f8;padding:8px;overflow-x:auto;font-size:.82em}details summary{cursor:pointer}
.caption{font-size:.85em;color:#555}
"""

# sorts a table by the clicked column: numerically when every cell of the column reads as a number
_JS = """
document.querySelectorAll("table.sortable").forEach(function(t){
 t.querySelectorAll("th").forEach(function(th,i){th.addEventListener("click",function(){
  var b=t.tBodies[0],rows=Array.from(b.rows),up=th.dataset.dir!=="asc";th.dataset.dir=up?"asc":"desc";
  var v=function(r){return r.cells[i]?r.cells[i].textContent.trim():""};
  var num=rows.every(function(r){var s=v(r);return s===""||!isNaN(parseFloat(s))&&isFinite(s)});
  rows.sort(function(x,y){var a=v(x),c=v(y);if(num){a=a===""?Infinity:parseFloat(a);c=c===""?Infinity:parseFloat(c);
   return up?a-c:c-a}return up?a.localeCompare(c):c.localeCompare(a)});
  rows.forEach(function(r){b.appendChild(r)});});});});
"""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _html_block(b: Block) -> str:
    e = html.escape
    if isinstance(b, Text):
        if b.kind == "warn":
            return f'<p class="warn">{e(b.text)}</p>'
        if b.kind == "pre":
            pre = f"<pre>{e(b.text)}</pre>"
            return f"<details><summary>{e(b.summary)}</summary>{pre}</details>" if b.summary else pre
        return f"<p>{e(b.text)}</p>"
    if isinstance(b, Link):
        return f'<p><a href="{e(b.href)}">{e(b.text)}</a></p>'
    if isinstance(b, Table):
        cls = ' class="sortable"' if b.sortable else ""
        head = "".join(f"<th>{e(c)}</th>" for c in b.columns)
        body = []
        for row in b.rows:
            cells = [cell(v) for v in row]
            body.append("<tr>" + "".join(f'<td class="num">{e(c)}</td>' if _is_number(c) else f"<td>{e(c)}</td>"
                                          for c in cells) + "</tr>")  # fmt: skip
        cap = f'<p class="caption">{e(b.caption)}</p>' if b.caption else ""
        table = f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        return f'<div class="scroll">{table}</div>{cap}'
    if isinstance(b, Figure):
        src = "data:image/png;base64," + base64.b64encode(b.data).decode()
        img = f'<img src="{src}" alt="{e(b.caption)}">'
        if b.link:
            img = f'<a href="{e(b.link)}">{img}</a>'
        return f"<figure>{img}<figcaption>{e(b.caption)}</figcaption></figure>"
    return '<div class="gallery">' + "".join(_html_block(f) for f in b.figures) + "</div>"


def render_html(page: Page) -> str:
    """The page as one HTML document: no external file, font, script or style."""
    e = html.escape
    sections = [s for s in page.sections if s.blocks]
    nav = " ".join(f'<a href="#{e(s.id)}">{e(s.title)}</a>' for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
        f"<title>{e(page.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(page.title)}</h1>",
        f'<p class="caption">{e(str(page.folder))}</p>',
        f"<nav>{nav}</nav>",
    ]
    if page.problems:
        parts.append('<section id="problems"><h2>Missing or unreadable files</h2>')
        parts += [f'<p class="warn">{e(p)}</p>' for p in page.problems]
        parts.append("</section>")
    for s in sections:
        parts.append(f'<section id="{e(s.id)}"><h2>{e(s.title)}</h2>')
        parts += [_html_block(b) for b in s.blocks]
        parts.append("</section>")
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts)


# --- Markdown --------------------------------------------------------------------------------------------


def _md_text(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_block(b: Block, files: Path, prefix: str) -> list[str]:
    if isinstance(b, Text):
        if b.kind == "pre":
            head = [f"<details><summary>{html.escape(b.summary)}</summary>", ""] if b.summary else []
            return [*head, "```", b.text, "```", *(["", "</details>"] if b.summary else []), ""]
        return [f"> **warning:** {b.text}" if b.kind == "warn" else b.text, ""]
    if isinstance(b, Link):
        return [f"[{b.text}]({b.href.removesuffix('.html')}.md)", ""]
    if isinstance(b, Table):
        lines = ["| " + " | ".join(_md_text(c) for c in b.columns) + " |", "|" + "---|" * len(b.columns)]
        lines += ["| " + " | ".join(_md_text(cell(v)) for v in row) + " |" for row in b.rows]
        return [*lines, "", *([b.caption, ""] if b.caption else [])]
    figures = b.figures if isinstance(b, Gallery) else [b]
    lines = []
    for f in figures:
        target = files / f.name
        atomic_write(target, lambda fh, data=f.data: fh.write(data))
        image = f"![{_md_text(f.caption)}]({prefix}{f.name})"
        if f.link:
            image = f"[{image}]({f.link.removesuffix('.html')}.md)"
        lines += [image, "", f"*{f.caption}*", ""]
    return lines


def render_markdown(page: Page, files: Path) -> str:
    """The page as Markdown; its images are written into ``files`` (a folder beside the .md file)."""
    files.mkdir(parents=True, exist_ok=True)
    prefix = files.name + "/"
    lines = [f"# {page.title}", "", f"`{page.folder}`", ""]
    if page.problems:
        lines += ["## Missing or unreadable files", "", *[f"- {p}" for p in page.problems], ""]
    for s in page.sections:
        if s.blocks:
            lines += [f"## {s.title}", ""]
            for b in s.blocks:
                lines += _md_block(b, files, prefix)
    return "\n".join(lines)


def write_page(page: Page, markdown: bool) -> Path:
    """``report.html`` (and with ``markdown`` ``report.md`` + ``report_files/``) in the page's folder,
    replacing earlier ones; returns the HTML file."""
    out = page.folder / "report.html"
    text = render_html(page)
    atomic_write(out, lambda f: f.write(text.encode()))
    if markdown:
        md = render_markdown(page, page.folder / "report_files")
        atomic_write(page.folder / "report.md", lambda f: f.write(md.encode()))
    return out
