"""Building blocks of the HTML report: escaping, tables, status badges, the page and its style.

Everything is inline (style sheet, images as ``data:`` URIs) so the page is one file that
opens anywhere, offline.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence

from sparsecheck.engine._outcome import Status

STYLE = """
:root { --pass: #1a7f37; --fail: #cf222e; --warn: #9a6700; --error: #8250df; --skip: #6e7781;
        --line: #d0d7de; --soft: #f6f8fa; --text: #1f2328; --muted: #59636e; }
* { box-sizing: border-box; }
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif;
       color: var(--text); margin: 0 auto; padding: 24px 32px 64px; max-width: 1320px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 36px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 0; display: inline; }
code, pre, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
                   font-size: 12.5px; }
pre { white-space: pre-wrap; word-break: break-word; margin: 0; }
.meta { color: var(--muted); margin: 0; }
nav { margin: 14px 0 0; }
nav a { margin-right: 16px; }
a { color: #0969da; text-decoration: none; }
a:hover { text-decoration: underline; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
th, td { border: 1px solid var(--line); padding: 5px 9px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.results td:last-child { max-width: 480px; }
tr.status-fail td, tr.status-error td { background: #fff5f5; }
tr.status-warn td { background: #fffbea; }
.badge { display: inline-block; min-width: 54px; text-align: center; padding: 1px 8px; border-radius: 10px;
         color: #fff; font-weight: 600; font-size: 12px; }
.badge.pass { background: var(--pass); } .badge.fail { background: var(--fail); }
.badge.warn { background: var(--warn); } .badge.error { background: var(--error); }
.badge.skip { background: var(--skip); }
.summary-line { font-size: 16px; margin: 8px 0 4px; }
figure.sc-figure { margin: 0 0 28px; }
figure.sc-figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); max-width: 980px; margin-top: 4px; }
.figure-title { font-weight: 600; font-size: 15px; margin-bottom: 6px; }
.note { background: var(--soft); border-left: 4px solid var(--line); padding: 8px 12px; margin: 8px 0; }
.note.warning { border-left-color: var(--warn); }
details.check { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; margin: 8px 0; }
details.check > summary { cursor: pointer; }
details.check > summary .value { color: var(--muted); margin-left: 8px; }
details.inner { margin: 8px 0; }
details.inner > summary { cursor: pointer; color: var(--muted); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 10px 0; }
dt { color: var(--muted); }
dd { margin: 0; }
table.fields { width: auto; min-width: 420px; }
.scroll { overflow-x: auto; }
"""


def esc(text: object) -> str:
    """``text`` escaped for HTML content and attribute values."""
    return html.escape(str(text), quote=True)


def badge(status: Status) -> str:
    return f'<span class="badge {status.value.lower()}">{status.value}</span>'


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    css_class: str = "",
    numeric: Sequence[bool] = (),
    row_classes: Sequence[str] = (),
) -> str:
    """A table of already-escaped cells; ``numeric`` columns align right."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        cells = "".join(
            f'<td class="num">{cell}</td>'
            if column < len(numeric) and numeric[column]
            else f"<td>{cell}</td>"
            for column, cell in enumerate(row)
        )
        row_class = f' class="{row_classes[index]}"' if index < len(row_classes) else ""
        body.append(f"<tr{row_class}>{cells}</tr>")
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<table{attribute}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def png_image(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{encoded}">'


def page(title: str, body: str) -> str:
    """The whole document."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )
