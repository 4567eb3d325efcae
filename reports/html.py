"""One self-contained HTML page: the Markdown summary rendered (headings, paragraphs, lists,
pipe tables, inline code and bold: the subset `tables.summary_markdown` writes) with every figure
embedded as a base64 data URI (no external files, no scripts). Its first line says it is
generated and by what."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from reports import markdown as md

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #222; }
table { border-collapse: collapse; font-size: 12px; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f0f0f0; }
td.met { background: #e3f5e1; } td.notmet { background: #fbe3e3; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0 1.5em; }
code { background: #f4f4f4; padding: 0 3px; }
"""


def _inline(text: str, table: bool = False) -> str:
    return md.inline_html(text, table=table)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _table(block: list[str]) -> str:
    head, body = _cells(block[0]), [_cells(line) for line in block[2:]]
    cls = {"met": ' class="met"', "not met": ' class="notmet"'}
    rows = ["<tr>" + "".join(f"<th>{_inline(c, table=True)}</th>" for c in head) + "</tr>"]
    rows += ["<tr>" + "".join(f"<td{cls.get(c, '')}>{_inline(c, table=True)}</td>" for c in r) + "</tr>" for r in body]
    return "<table>" + "".join(rows) + "</table>"


def _image(src: str, figures: dict[str, Path]) -> str:
    path = figures.get(src)
    if path is None:
        return f"<p>(missing figure {html.escape(src)})</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = html.escape(path.stem)
    return f'<figure><img alt="{name}" src="data:image/png;base64,{data}"><figcaption>{name}</figcaption></figure>'


def render(markdown: str, figures: dict[str, Path]) -> str:
    """The HTML body of ``markdown`` (the subset the summary uses)."""
    out: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("<!--") or not line.strip():
            i += 1
        elif m := re.match(r"(#{1,3}) (.*)", line):
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
            i += 1
        elif m := re.match(r"!\[[^\]]*\]\(([^)]+)\)", line):
            out.append(_image(m.group(1), figures))
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            out.append(_table(block))
        elif line.startswith("- "):
            items: list[str] = []
            while i < len(lines) and (lines[i].startswith("- ") or (lines[i].startswith("  ") and items)):
                if lines[i].startswith("- "):
                    items.append(lines[i][2:])
                else:
                    items[-1] += " " + lines[i].strip()
                i += 1
            out.append("<ul>" + "".join(f"<li>{_inline(t)}</li>" for t in items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"#|\||- |!\[", lines[i]):
                para.append(_inline(lines[i]))
                i += 1
            out.append("<p>" + "<br>".join(para) + "</p>")
    return "\n".join(out)


def write(path: Path, title: str, generated: str, markdown: str, figures: list[Path]) -> Path:
    """Write the page of ``markdown`` with ``figures`` embedded."""
    body = render(markdown, {p.name: p for p in figures})
    page = (f"<!-- {md.comment(generated)} -->\n<!doctype html>\n<html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")
    path.write_text(page, encoding="utf-8")
    return path
