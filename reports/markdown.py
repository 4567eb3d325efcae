"""Untrusted text in Markdown: every field a results file (or a results log) carries goes through
`text` or `code` before it lands in a Markdown page, so that no field can start a heading, end a
table row, split a cell, open a link or inject HTML, whatever bytes it holds. `inline_html` renders
the inline Markdown these pages use back to HTML, undoing exactly these escapes.

Standard library only: the benchmark report (`reports/`) and the suites' Markdown writers (the
conformance and mutation reports) share it.
"""

from __future__ import annotations

import html
import re

#: Shown in place of a line break inside a field (a field never spans lines).
LINE_BREAK = "↵"
#: ASCII punctuation that Markdown or HTML could read as syntax; each is written backslash-escaped
#: (and ``_`` unless it sits inside a word, where Markdown never reads it as emphasis). ``>``
#: needs none: with ``<`` escaped no tag can open, and a field never starts a line.
_SPECIAL = set("\\`*[]<&|")
#: Every character `str.splitlines` breaks on (a renderer splitting on any of them must see one line).
_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_BREAK_RE = re.compile("\r\n|[" + re.escape(_BREAKS) + "]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f]")


def _one_line(value: object) -> str:
    """``value`` as one line: line breaks shown as `LINE_BREAK`, other control characters as ``\\xNN``."""
    flat = _BREAK_RE.sub(LINE_BREAK, str(value))
    return _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", flat)


def text(value: object) -> str:
    """``value`` as Markdown text that renders as itself, on one line, anywhere: in a table cell, a
    list item or a paragraph (``None`` as an empty string)."""
    if value is None:
        return ""
    flat = _BREAK_RE.sub(LINE_BREAK, str(value))
    out = []
    for i, ch in enumerate(flat):
        if ch == "_":
            inside = 0 < i < len(flat) - 1 and flat[i - 1].isalnum() and flat[i + 1].isalnum()
            out.append("_" if inside else "\\_")
        elif ch in _SPECIAL:
            out.append("\\" + ch)
        elif _CONTROL_RE.match(ch):
            out.append(f"\\\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def code(value: object, *, table: bool = False) -> str:
    """``value`` as an inline code span on one line: fenced with more backticks than the longest
    run inside it; ``table=True`` (a cell of a pipe table) also escapes its pipes, which GitHub
    tables read before the code span."""
    body = _one_line("" if value is None else value)
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * (longest + 1)
    if body.startswith("`") or body.endswith("`") or not body.strip():
        body = f" {body} "
    if table:
        body = body.replace("|", "\\|")
    return f"{fence}{body}{fence}"


def comment(value: object) -> str:
    """``value`` inside an HTML comment (``<!-- ... -->``) on one line: it can neither close the
    comment nor open another."""
    return _one_line(value).replace("--", "- -").replace(">", "&gt;")


# ----------------------------------------------------------------------- back to HTML

_TOKEN = re.compile(r"\\([!-/:-@\[-`{-~])|(`+)|\*\*|(?<![\w])_\(|\)_(?![\w])")


def inline_html(markdown: str, *, table: bool = False) -> str:
    """The HTML of one line of inline Markdown as these pages write it: backslash escapes, code
    spans (any fence length), ``**bold**`` and ``_(emphasis)_``; everything else is escaped text.
    ``table=True``: a cell of a pipe table, where ``\\|`` is a pipe inside code spans too."""
    out: list[str] = []
    i, bold, em = 0, False, False
    source = markdown.rstrip()
    while i < len(source):
        m = _TOKEN.search(source, i)
        if m is None:
            out.append(html.escape(source[i:], quote=False))
            break
        out.append(html.escape(source[i : m.start()], quote=False))
        token = m.group(0)
        if m.group(1) is not None:
            out.append(html.escape(m.group(1), quote=False))
            i = m.end()
        elif m.group(2) is not None:
            fence = m.group(2)
            close = re.compile(r"(?<!`)" + fence + r"(?!`)")
            end = close.search(source, m.end())
            if end is None:
                out.append(html.escape(fence, quote=False))
                i = m.end()
                continue
            body = source[m.end() : end.start()]
            if table:
                body = body.replace("\\|", "|")
            if body.startswith(" ") and body.endswith(" ") and body.strip():
                body = body[1:-1]
            out.append(f"<code>{html.escape(body, quote=False)}</code>")
            i = end.end()
        elif token == "**":
            out.append("</strong>" if bold else "<strong>")
            bold = not bold
            i = m.end()
        elif token == "_(":
            out.append("<em>(")
            em = True
            i = m.end()
        elif em:  # ")_"
            out.append(")</em>")
            em = False
            i = m.end()
        else:
            out.append(html.escape(token, quote=False))
            i = m.end()
    if bold:
        out.append("</strong>")
    if em:
        out.append("</em>")
    return "".join(out)
