"""The HTML report's history section: each check's value across the runs of ``--history``, one
small inline SVG line chart per check (no matplotlib needed), a dot per run coloured by its
status, each with a tooltip naming the run and its value."""

from __future__ import annotations

import math
from collections.abc import Sequence

from sparsecheck.reports._html_page import esc, table
from sparsecheck.reports._table import format_value
from sparsecheck.reports.history import HistoryRecord, check_names

WIDTH, HEIGHT, PAD = 360, 72, 8
COLOURS = {"PASS": "#1a7f37", "FAIL": "#cf222e", "WARN": "#9a6700", "ERROR": "#8250df", "SKIP": "#6e7781"}


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def history_chart(records: Sequence[HistoryRecord], nodeid: str) -> str:
    """The SVG of one check's values across ``records`` (a run without a number leaves a gap)."""
    values = [_number(record.value(nodeid)) for record in records]
    known = [v for v in values if v is not None]
    if not known:
        return '<span class="note">no values</span>'
    low, high = min(known), max(known)
    span = high - low or max(abs(high), 1.0) * 0.01
    step = (WIDTH - 2 * PAD) / max(len(records) - 1, 1)

    def xy(index: int, value: float) -> tuple[float, float]:
        return PAD + index * step, HEIGHT - PAD - (value - low) / span * (HEIGHT - 2 * PAD)

    points = [(i, v) for i, v in enumerate(values) if v is not None]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in points))
    dots = []
    for index, value in points:
        x, y = xy(index, value)
        record = records[index]
        status = record.status(nodeid) or ""
        tip = f"{record.name}: {format_value(value)} {status}"
        dots.append(
            f'<circle class="run" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{COLOURS.get(status, "#57606a")}">'
            f"<title>{esc(tip)}</title></circle>"
        )
    return (
        f'<svg class="history" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{esc(f"values across {len(records)} runs")}">'
        f'<polyline points="{line}" fill="none" stroke="#57606a" stroke-width="1.5"/>{"".join(dots)}</svg>'
    )


def history_section(records: Sequence[HistoryRecord]) -> str:
    """The section, or nothing without records."""
    if not records:
        return ""
    rows = []
    for nodeid, name in check_names(records).items():
        latest = next((r for r in reversed(records) if r.status(nodeid) is not None), records[-1])
        rows.append(
            [
                f"<code>{esc(name)}</code>",
                history_chart(records, nodeid),
                esc(format_value(latest.value(nodeid))),
            ]
        )
    runs = f"{len(records)} runs, from {esc(records[0].name)} to {esc(records[-1].name)}"
    return f'<h2 id="history">History</h2><p class="note">{runs}</p>' + table(
        ("check", "value across the runs", "latest"), rows, "history", (False, False, True)
    )
