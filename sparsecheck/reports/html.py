"""``--html FILE``: one self-contained page with the results table, the seed's figures, every
check's fields and the checkpoints read.

The page has no external assets: the style sheet is inline and the figures are PNGs embedded
as ``data:`` URIs.  Figures are drawn with matplotlib (``pip install 'sparsecheck[plots]'``),
imported only when this report is written; without it the page still has every table and says
how to get the figures.  A figure is drawn from whatever results the session has and left out
when they hold none of its data (see ``_figure_data`` for what each one reads; any result
whose ``series`` has ``step`` and ``loss`` lists is drawn as a loss curve).  A figure that
fails to draw is named on the page and on stderr; it never fails the report.

Each figure is a ``<figure class="sc-figure" id="fig-<key>">`` (keys in ``_figures.FIGURES``).
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import click

from sparsecheck._config import Config, OptionRegistry, Session
from sparsecheck._extras import install_command
from sparsecheck._markers import hookimpl
from sparsecheck._version import __version__
from sparsecheck.engine._outcome import CheckOutcome, Status
from sparsecheck.metrics._api import MetricResult, Scalar
from sparsecheck.reports._figures import FIGURES, FigureKind, require_matplotlib
from sparsecheck.reports._filereport import FileReport
from sparsecheck.reports._history_chart import history_section
from sparsecheck.reports._html_page import badge, esc, page, png_image, table
from sparsecheck.reports._table import (
    INTERRUPTED,
    duration_text,
    expectation_text,
    format_value,
    outcome_message,
    overall_status,
    summary_text,
    value_text,
)
from sparsecheck.reports.history import HistoryRecord, read_history
from sparsecheck.spec._model import Check

if TYPE_CHECKING:
    from sparsecheck.engine._outcome import StepRecord

INSTALL_HINT = f"install sparsecheck[plots] for figures ({install_command('plots')})"


@dataclass
class DrawnFigures:
    """The figures of one report: drawn, without data, failed, or matplotlib missing."""

    images: list[tuple[FigureKind, bytes]] = field(default_factory=list)
    absent: list[FigureKind] = field(default_factory=list)
    failed: list[tuple[FigureKind, str]] = field(default_factory=list)
    matplotlib_missing: bool = False


def draw_figures(outcomes: Sequence[CheckOutcome]) -> DrawnFigures:
    """Draw every figure the outcomes have data for."""
    drawn = DrawnFigures()
    try:
        require_matplotlib()
    except ImportError:
        drawn.matplotlib_missing = True
        return drawn
    for kind in FIGURES:
        try:
            image = kind.draw(outcomes)
        except Exception as exc:  # a figure must never cost the user the report
            reason = f"{type(exc).__name__}: {exc}"
            click.echo(f"sparsecheck: warning: --html: figure {kind.key!r} not drawn: {reason}", err=True)
            drawn.failed.append((kind, reason))
            continue
        if image is None:
            drawn.absent.append(kind)
        else:
            drawn.images.append((kind, image))
    return drawn


def _anchor(index: int) -> str:
    return f"check-{index}"


def check_labels(outcomes: Sequence[CheckOutcome]) -> list[str]:
    """Each check's id, with its spec file's name where another file has a check of that id."""
    files: dict[str, set[pathlib.Path]] = {}
    for o in outcomes:
        files.setdefault(o.check.id, set()).add(o.check.spec_path)
    return [
        f"{o.check.id} ({o.check.spec_path.name})" if len(files[o.check.id]) > 1 else o.check.id
        for o in outcomes
    ]


def results_section(outcomes: Sequence[CheckOutcome]) -> str:
    if not outcomes:
        return '<h2 id="results">Results</h2><p class="note">No checks ran.</p>'
    labels = check_labels(outcomes)
    rows = [
        [
            f'<a href="#{_anchor(i)}">{esc(labels[i])}</a>',
            esc(o.check.metric),
            esc(value_text(o)),
            f"<code>{esc(expectation_text(o))}</code>" if expectation_text(o) else "",
            badge(o.status),
            esc(duration_text(o)),
            f"<pre>{esc(o.message)}</pre>" if o.message else "",
        ]
        for i, o in enumerate(outcomes)
    ]
    headers = ("id", "metric", "value", "expectation", "status", "time", "message")
    numeric = (False, False, True, False, False, True, False)
    row_classes = [f"status-{o.status.value.lower()}" for o in outcomes]
    return (
        '<h2 id="results">Results</h2><div class="scroll">'
        + table(headers, rows, "results", numeric, row_classes)
        + "</div>"
    )


def figures_section(drawn: DrawnFigures) -> str:
    parts = ['<h2 id="figures">Figures</h2>']
    if drawn.matplotlib_missing:
        parts.append(
            f'<p class="note warning">No figures: matplotlib is not installed; {esc(INSTALL_HINT)}.</p>'
        )
        return "".join(parts)
    for kind, image in drawn.images:
        parts.append(
            f'<figure class="sc-figure" id="fig-{kind.key}"><div class="figure-title">{esc(kind.title)}</div>'
            f"{png_image(image, kind.title)}<figcaption>{esc(kind.caption)}</figcaption></figure>"
        )
    if not drawn.images:
        parts.append('<p class="note">No figure: the results hold none of the data the figures draw.</p>')
    for kind, reason in drawn.failed:
        parts.append(f'<p class="note warning">{esc(kind.title)}: not drawn ({esc(reason)}).</p>')
    if drawn.absent:
        names = ", ".join(kind.title for kind in drawn.absent)
        parts.append(f'<p class="note">Not drawn, no data in this session: {esc(names)}.</p>')
    return "".join(parts)


def _show(value: Any) -> str:
    if isinstance(value, str | int | float | bool) or value is None:
        return esc(format_value(value))
    return f"<code>{esc(json.dumps(value, default=str, ensure_ascii=False))}</code>"


def _fields_table(fields: Mapping[str, Scalar]) -> str:
    rows = [[esc(name), _show(value)] for name, value in fields.items()]
    return table(("field", "value"), rows, "fields", (False, True))


def _records_table(first_header: str, records: Mapping[str, Mapping[str, Any]]) -> str:
    """Rows keyed by name, one column per field any record has."""
    columns = list(dict.fromkeys(key for record in records.values() for key in record))
    rows = [[esc(name), *(_show(record.get(c)) for c in columns)] for name, record in records.items()]
    return table((first_header, *columns), rows, "", (False, *([True] * len(columns))))


def _inner(title: str, content: str) -> str:
    return (
        f'<details class="inner"><summary>{esc(title)}</summary><div class="scroll">{content}</div></details>'
    )


def _result_parts(result: MetricResult) -> list[str]:
    parts = [f"<p><strong>Definition:</strong> {esc(result.definition)}</p>", _fields_table(result.fields)]
    if result.notes:
        parts.append("<ul>" + "".join(f"<li>{esc(note)}</li>" for note in result.notes) + "</ul>")
    for granularity, groups in result.groups.items():
        parts.append(_inner(f"per {granularity} ({len(groups)} groups)", _records_table(granularity, groups)))
    if result.series:
        length = max(len(values) for values in result.series.values())
        rows = {
            str(i): {key: values[i] if i < len(values) else None for key, values in result.series.items()}
            for i in range(length)
        }
        parts.append(_inner(f"series ({length} points)", _records_table("#", rows)))
    if result.skipped:
        skipped = [[esc(s.name), esc(s.reason)] for s in result.skipped]
        parts.append(_inner(f"skipped tensors ({len(skipped)})", table(("tensor", "reason"), skipped)))
    return parts


def check_section(index: int, outcome: CheckOutcome, label: str) -> str:
    check = outcome.check
    facts = [
        ("metric", esc(check.metric)),
        ("location", f"<code>{esc(check.location)}</code>"),
        ("description", esc(check.description)),
        ("arguments", _show(dict(check.args))),
        ("per", esc(check.per or "")),
        ("marks", esc(", ".join(check.marks))),
        ("expectation", f"<code>{esc(outcome.expectation)}</code>" if outcome.expectation else ""),
        ("warn", f"<code>{esc(outcome.warn_expectation)}</code>" if outcome.warn_expectation else ""),
        ("outcome", f"<pre>{esc(outcome_message(outcome))}</pre>"),
        ("time", esc(duration_text(outcome))),
    ]
    shown = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts if value)
    parts = [f"<dl>{shown}</dl>"]
    if outcome.result is not None:
        parts += _result_parts(outcome.result)
    opened = " open" if outcome.status in (Status.FAIL, Status.ERROR) else ""
    return (
        f'<details class="check" id="{_anchor(index)}"{opened}><summary>{badge(outcome.status)} '
        f'<h3>{esc(label)}</h3><span class="value">{esc(check.metric)}: '
        f"{esc(value_text(outcome))}</span></summary>{''.join(parts)}</details>"
    )


def checkpoints_section(checkpoints: Mapping[str, Mapping[str, Any]]) -> str:
    """Each checkpoint read: the spec keys naming it, its path (a hub id or URL with the folder
    it was read from), format, dtypes and fingerprint."""
    title = '<h2 id="checkpoints">Checkpoints</h2>'
    if not checkpoints:
        return (
            title
            + '<p class="note">No checkpoint was read (every result came from the cache, or none ran).</p>'
        )
    rows = [
        [
            esc(", ".join(info.get("keys", []))),
            _checkpoint_path(info.get("source", key), info.get("path", "")),
            esc(info.get("format", "")),
            esc(", ".join(info.get("dtypes", []))),
            f'<span class="mono">{esc(info.get("fingerprint", ""))}</span>',
        ]
        for key, info in checkpoints.items()
    ]
    return title + table(("key", "path", "format", "dtypes", "fingerprint"), rows)


def _checkpoint_path(source: str, path: str) -> str:
    """``/runs/rl``; a hub id with the folder it was read from: ``org/model@v1 → /cache/…``."""
    if not path or path == source:
        return f"<code>{esc(source)}</code>"
    return f"<code>{esc(source)}</code> → <code>{esc(path)}</code>"


def training_outcomes(steps: Mapping[str, StepRecord]) -> list[CheckOutcome]:
    """Train steps' logs as outcomes of a pseudo-metric ``training_log`` (series ``step``,
    ``loss``, …), so the loss figure (seed Fig. 4) draws them beside any check's series."""
    outcomes = []
    seen: set[str | None] = set()
    for record in steps.values():
        series = record.details.get("series")
        if record.step.action != "train" or not series or record.key in seen:
            continue  # a step shared by several spec files (same work key) is drawn once
        seen.add(record.key)
        step = record.step
        args = {"algorithm": step.settings.get("algorithm", "")}
        check = Check(step.id, "training_log", args, step.location, step.spec_path, {})
        result = MetricResult("training_log", "loss", {}, "the training step's log", series=dict(series))
        outcomes.append(CheckOutcome(check, Status.PASS, result=result))
    return outcomes


def render_html(
    outcomes: Sequence[CheckOutcome],
    checkpoints: Mapping[str, Mapping[str, Any]],
    deselected: int,
    duration: float,
    exitstatus: int,
    steps: Mapping[str, StepRecord] | None = None,
    history: Sequence[HistoryRecord] = (),
) -> str:
    """The whole page; ``steps`` adds the training steps' loss curves, ``history`` (the runs
    of ``--history``) a chart of each check's value across them."""
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    header = (
        "<header><h1>sparsecheck report</h1>"
        f'<p class="summary-line">{badge(overall_status(outcomes))} '
        f"{esc(summary_text(outcomes, deselected, duration))}</p>"
        + (f'<p class="summary-line"><strong>{esc(INTERRUPTED)}</strong></p>' if exitstatus == 2 else "")
        + f'<p class="meta">created {esc(created)} · sparsecheck {esc(__version__)} · '
        f"exit status {exitstatus}</p>"
        '<nav><a href="#results">Results</a><a href="#figures">Figures</a><a href="#checks">Checks</a>'
        '<a href="#checkpoints">Checkpoints</a>'
        + ('<a href="#history">History</a>' if history else "")
        + "</nav></header>"
    )
    labels = check_labels(outcomes)
    checks = "".join(check_section(i, o, labels[i]) for i, o in enumerate(outcomes))
    body = [
        header,
        results_section(outcomes),
        figures_section(draw_figures([*outcomes, *training_outcomes(steps or {})])),
        f'<h2 id="checks">Checks</h2>{checks}',
        checkpoints_section(checkpoints),
        history_section(history),
    ]
    return page("sparsecheck report", "\n".join(body))


class HtmlReport(FileReport):
    plugin_name = "html-report"
    flag = "--html"
    dest = "html_path"
    title = "HTML report"

    def render(self, session: Session, exitstatus: int) -> bytes:
        text = render_html(
            self.outcomes,
            session.checkpoints,
            deselected=len(session.config.deselected),
            duration=time.time() - session.started,
            exitstatus=exitstatus,
            steps=session.steps,
            history=self._history(),
        )
        return text.encode("utf-8")

    def _history(self) -> list[HistoryRecord]:
        """The ``--history`` file's runs, this one included (appended before this report)."""
        path = self.config.getoption("history_path")
        return [] if path is None else read_history(pathlib.Path(path))


@hookimpl
def sparsecheck_addoption(options: OptionRegistry) -> None:
    HtmlReport.add_option(
        options, "write a self-contained HTML report (results, figures, every check's fields) to FILE"
    )


@hookimpl
def sparsecheck_configure(config: Config) -> None:
    HtmlReport.configure(config)
