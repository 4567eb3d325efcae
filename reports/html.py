"""One self-contained HTML page: the summary tables and every figure, the PNGs embedded as
base64 data URIs (no external files, no scripts)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 12px; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f0f0f0; }
td.met { background: #e3f5e1; } td.notmet { background: #fbe3e3; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0 1.5em; }
code { background: #f4f4f4; padding: 0 3px; }
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(path.stem)}</figcaption></figure>'


def _table(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p><em>(no rows)</em></p>"
    out = df.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="–", border=0, escape=True)
    return out.replace("<td>met</td>", '<td class="met">met</td>').replace("<td>not met</td>", '<td class="notmet">not met</td>')


def page(title: str, intro: list[str], sections: list[tuple[str, pd.DataFrame]], figures: list[Path]) -> str:
    """The HTML text: intro paragraphs, titled tables, then the figures."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    parts += [f"<p>{html.escape(p)}</p>" for p in intro]
    for heading, df in sections:
        parts += [f"<h2>{html.escape(heading)}</h2>", _table(df)]
    if figures:
        parts.append("<h2>Figures</h2>")
        parts += [_img(p) for p in figures]
    parts.append("</body></html>")
    return "\n".join(parts)


def write(path: Path, title: str, intro: list[str], sections: list[tuple[str, pd.DataFrame]], figures: list[Path]) -> Path:
    path.write_text(page(title, intro, sections, figures), encoding="utf-8")
    return path
