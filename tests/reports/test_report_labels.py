"""Every report format names what its value column shows and lists the ``warn:`` thresholds, and
each check has one duration in all of them; the HTML page names each checkpoint's spec keys.

One run of a spec over planted checkpoints writes the terminal table, JSON, Markdown, HTML and
JUnit at once; the expected labels come from the planted truth (which layers are changed how
much), not from the code under test.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from report_fixtures import make_outcome, run_reports

from sparsecheck.cli import main
from sparsecheck.engine._outcome import Status
from sparsecheck.engine._plan import add_readers
from sparsecheck.exitcodes import ExitCode
from sparsecheck.reports._table import (
    expectation_text,
    format_value,
    outcome_message,
    plural,
    value_label,
    value_text,
)
from sparsecheck.reports.html import render_html
from sparsecheck.testing import plant_changes, tiny_llama_state_dict, write_checkpoint

#: Changed fraction of each layer's tensors; the rest (embeddings, final norm, head) is unchanged.
LAYER_FRACTION = {"model.layers.0.": 0.1, "model.layers.1.": 0.5}
SPEC = """\
version: 1
checkpoints: {{base: '{base}', rl: '{rl}'}}
checks:
  - id: sparse-layers
    metric: update_sparsity
    args: {{base: base, tuned: rl}}
    per: layer
    expect: {{ge: 0.8}}
    mostly: 0.5
  - id: density-low
    metric: update_sparsity
    args: {{base: base, tuned: rl}}
    expect: {{field: density, gt: 0.1}}
    warn: {{field: density, lt: 0.2}}
  - id: sparse
    metric: update_sparsity
    args: {{base: base, tuned: rl}}
    expect: {{gt: 0.5}}
"""
CHECK_IDS = ("sparse-layers", "density-low", "sparse")


@dataclass(frozen=True)
class Reports:
    base: Path
    rl: Path
    #: The planted share of changed entries over the whole model.
    density: float
    terminal: str
    json: dict[str, Any]
    markdown: str
    html: str
    junit: ET.Element


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Reports:
    root = tmp_path_factory.mktemp("labels")
    base = tiny_llama_state_dict(layers=2, seed=0)
    fractions = {
        name: next((f for prefix, f in LAYER_FRACTION.items() if name.startswith(prefix)), 0.0)
        for name in base
    }
    tuned, masks = plant_changes(base, fractions, seed=1)
    base_path = write_checkpoint(root / "base", base)
    rl_path = write_checkpoint(root / "rl", tuned)
    density = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    spec = root / "labels.sparsecheck.yaml"
    spec.write_text(SPEC.format(base=base_path, rl=rl_path), encoding="utf-8")
    out = root / "out"
    terminal = io.StringIO()  # a module fixture cannot use capsys
    with contextlib.redirect_stdout(terminal):
        code = main(
            [
                "run",
                str(spec),
                "--no-cache",
                "--json",
                str(out / "r.json"),
                "--md",
                str(out / "r.md"),
                "--html",
                str(out / "r.html"),
                "--junitxml",
                str(out / "r.xml"),
            ]
        )
    assert code == ExitCode.OK, terminal.getvalue()
    return Reports(
        base=base_path,
        rl=rl_path,
        density=density,
        terminal=terminal.getvalue(),
        json=json.loads((out / "r.json").read_text("utf-8")),
        markdown=(out / "r.md").read_text("utf-8"),
        html=(out / "r.html").read_text("utf-8"),
        junit=ET.parse(out / "r.xml").getroot(),
    )


def planted_truth(reports: Reports) -> dict[str, dict[str, str]]:
    """What each check's row must show, from the planted changes: layers.0 (10 % changed) and
    ``other`` (unchanged) have sparsity >= 0.8, layers.1 (50 % changed) not; the density (about
    0.21) is above 0.1 but not below 0.2, so the second check warns."""
    assert 0.2 < reports.density < 0.5  # the planted setup the labels below rely on
    return {
        "sparse-layers": {
            "value": "2/3 layers",
            "expectation": "value >= 0.8 per layer, mostly 0.5",
            "status": "PASS",
        },
        "density-low": {
            "value": f"density={reports.density:.4g}",
            "expectation": "density > 0.1; warn: density < 0.2",
            "status": "WARN",
        },
        "sparse": {
            "value": f"{1 - reports.density:.4g}",
            "expectation": "value > 0.5",
            "status": "PASS",
        },
    }


class Tables(HTMLParser):
    """Every ``<table>`` of a page as rows of cell texts (header cells included)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def html_table(page: str, first_header: str) -> list[dict[str, str]]:
    """The rows of the page's table whose first header is ``first_header``, by header."""
    parser = Tables()
    parser.feed(page)
    table = next(t for t in parser.tables if t and t[0][:1] == [first_header])
    return [dict(zip(table[0], row, strict=True)) for row in table[1:]]


def terminal_rows(text: str) -> dict[str, dict[str, str]]:
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["id", "metric", "value"])
    names = lines[header].split()
    rows = {}
    for line in lines[header + 2 : header + 2 + len(CHECK_IDS)]:
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = dict(zip(names, cells, strict=True))
    return rows


def markdown_rows(text: str) -> dict[str, dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    names = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(names, cells, strict=True))
    return rows


def junit_cases(root: ET.Element) -> dict[str, ET.Element]:
    return {case.attrib["name"]: case for case in root.iter("testcase")}


def test_the_terminal_table_names_each_value_and_lists_warn_thresholds(reports: Reports) -> None:
    rows = terminal_rows(reports.terminal)
    for check_id, truth in planted_truth(reports).items():
        assert {k: rows[check_id][k] for k in truth} == truth
    assert "warnings" in reports.terminal.split("\n")
    assert f"density {reports.density:.6g} is not < 0.2" in reports.terminal


def test_markdown_shows_the_same_labels_and_the_warning_once(reports: Reports) -> None:
    rows = markdown_rows(reports.markdown)
    for check_id, truth in planted_truth(reports).items():
        shown = {k: rows[check_id][k] for k in truth}
        assert shown == {**truth, "status": shown["status"]}
        assert shown["status"].endswith(truth["status"])
    warnings = reports.markdown.split("### Warnings", 1)[1]
    assert "density-low" in warnings and "warning:" not in warnings


def test_the_html_results_table_shows_the_same_labels(reports: Reports) -> None:
    rows = {row["id"]: row for row in html_table(reports.html, "id")}
    for check_id, truth in planted_truth(reports).items():
        assert {k: rows[check_id][k] for k in truth} == truth
    assert "warndensity &lt; 0.2" in re.sub(r"<[^>]+>", "", reports.html)  # the check's facts list


def test_json_keeps_numbers_and_adds_labels_and_warn(reports: Reports) -> None:
    checks = {c["id"]: c for c in reports.json["checks"]}
    truth = planted_truth(reports)
    for check_id in CHECK_IDS:
        assert checks[check_id]["value_label"] == truth[check_id]["value"]
    assert checks["sparse-layers"]["value"] == pytest.approx(2 / 3)
    assert checks["density-low"]["value"] == pytest.approx(reports.density)
    assert checks["density-low"]["expectation"] == "density > 0.1"
    assert checks["density-low"]["warn"] == "density < 0.2"
    assert checks["sparse"]["warn"] == ""
    assert not checks["density-low"]["message"].startswith("warning")


def test_json_report_matches_its_schema(reports: Reports) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from sparsecheck.reports.json_report import report_schema_path

    schema = json.loads(report_schema_path().read_text("utf-8"))
    jsonschema.validate(reports.json, schema)
    check_properties = schema["$defs"]["check"]["properties"]
    assert {"value_label", "warn"} <= set(check_properties)
    assert "keys" in schema["properties"]["checkpoints"]["items"]["properties"]


def test_junit_names_the_value_lists_warn_and_says_warning_once(reports: Reports) -> None:
    cases = junit_cases(reports.junit)
    for check_id, truth in planted_truth(reports).items():
        properties = {p.attrib["name"]: p.attrib["value"] for p in cases[check_id].iter("property")}
        assert properties["value"] == truth["value"]
        assert properties["status"] == truth["status"]
    warned = cases["density-low"]
    properties = {p.attrib["name"]: p.attrib["value"] for p in warned.iter("property")}
    assert properties["warn"] == "density < 0.2"
    assert "warn" not in {p.attrib["name"] for p in cases["sparse"].iter("property")}
    out = warned.findtext("system-out")
    assert out is not None
    assert out.startswith(f"warning: density {reports.density:.6g} is not < 0.2 (")
    assert out.lower().count("warning") == 1
    assert "\nwarn: density < 0.2\n" in out


def test_one_duration_per_check_in_every_format(reports: Reports) -> None:
    terminal = terminal_rows(reports.terminal)
    markdown = markdown_rows(reports.markdown)
    html = {row["id"]: row for row in html_table(reports.html, "id")}
    checks = {c["id"]: c for c in reports.json["checks"]}
    cases = junit_cases(reports.junit)
    for check_id in CHECK_IDS:
        shown = {
            "terminal": terminal[check_id]["time"],
            "markdown": markdown[check_id]["time"],
            "html": html[check_id]["time"],
            "json": f"{checks[check_id]['duration']:.2f}s",
            "junit": cases[check_id].attrib["time"] + "s",
        }
        assert len(set(shown.values())) == 1, shown
        assert re.fullmatch(r"\d+\.\d\ds", shown["terminal"])


def test_a_planted_duration_is_the_same_number_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = make_outcome("slow", Status.PASS, 0.9, duration=1.23456)
    paths = {
        "json_path": tmp_path / "r.json",
        "junitxml_path": tmp_path / "r.xml",
        "md_path": tmp_path / "r.md",
    }
    session = run_reports([outcome], {"verbosity": 1, **paths})
    out = capsys.readouterr().out
    assert "PASS  slow (1.23s)" in out
    assert terminal_like_row(out, "slow")[-1] == "1.23s"
    assert json.loads(paths["json_path"].read_text())["checks"][0]["duration"] == 1.23
    assert junit_cases(ET.parse(paths["junitxml_path"]).getroot())["slow"].attrib["time"] == "1.23"
    assert markdown_rows(paths["md_path"].read_text())["slow"]["time"] == "1.23s"
    page = render_html([outcome], session.checkpoints, 0, 1.0, 0)
    assert html_table(page, "id")[0]["time"] == "1.23s"


def terminal_like_row(text: str, check_id: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"{check_id} "))
    return re.split(r"\s{2,}", line.strip())


def test_the_html_checkpoints_table_names_each_key_with_its_path(reports: Reports) -> None:
    rows = html_table(reports.html, "key")
    assert [(row["key"], row["path"]) for row in rows] == [
        ("base", str(reports.base.resolve())),
        ("rl", str(reports.rl.resolve())),
    ]
    assert [c["keys"] for c in reports.json["checkpoints"]] == [["base"], ["rl"]]


def test_a_checkpoint_read_in_two_passes_keeps_every_key() -> None:
    checkpoints: dict[str, dict[str, Any]] = {}
    add_readers(checkpoints, {"/m/base": {"source": "/m/base", "fingerprint": "a", "keys": ["base"]}})
    add_readers(checkpoints, {"/m/base": {"source": "/m/base", "fingerprint": "a", "keys": ["init", "base"]}})
    assert checkpoints == {"/m/base": {"source": "/m/base", "fingerprint": "a", "keys": ["base", "init"]}}


def test_a_hub_checkpoint_shows_its_id_and_the_folder_read() -> None:
    info = {"source": "org/model@v1", "path": "/cache/org--model/v1", "keys": ["base"]}
    rows = html_table(render_html([], {"org/model@v1": info}, 0, 1.0, 0), "key")
    assert rows == [
        {
            "key": "base",
            "path": "org/model@v1 → /cache/org--model/v1",
            "format": "",
            "dtypes": "",
            "fingerprint": "",
        }
    ]


@pytest.mark.parametrize(
    ("noun", "count", "text"),
    [
        ("layer", 5, "layers"),
        ("layer", 1, "layer"),
        ("tensor", 0, "tensors"),
        ("class", 2, "classes"),
        ("category", 3, "categories"),
        ("key", 2, "keys"),
        ("box", 2, "boxes"),
    ],
)
def test_plural(noun: str, count: int, text: str) -> None:
    assert plural(noun, count) == text


def test_value_labels_of_planted_outcomes() -> None:
    per = make_outcome("p", Status.FAIL, 0.8)
    per.check = replace(per.check, per="layer")
    per.groups_passed = (4, 5)
    assert value_label(per) == "4/5 layers"
    field = make_outcome("f", Status.PASS, 0.49991)
    field.value_name = "o1"
    assert value_label(field) == "o1=0.4999"
    assert value_label(make_outcome("v", Status.PASS, 0.94134)) == format_value(0.94134) == "0.9413"


def test_under_per_a_baseline_is_compared_as_a_share_of_groups() -> None:
    outcome = make_outcome("p", Status.FAIL, 0.8)
    outcome.check = replace(outcome.check, per="module")
    outcome.groups_passed = (4, 5)
    outcome.baseline = 1.0
    assert value_text(outcome) == "4/5 modules = 0.8 (baseline 1, -0.2)"


def test_a_pass_names_the_warn_thresholds_that_hold() -> None:
    outcome = make_outcome("w", Status.PASS, 0.9)
    outcome.warn_expectation = "value > 0.8"
    assert outcome_message(outcome) == "value > 0.7 holds; warn: value > 0.8 holds (value 0.9)"
    assert expectation_text(outcome) == "value > 0.7; warn: value > 0.8"
