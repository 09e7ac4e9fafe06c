from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath

import pytest
from report_fixtures import planted_outcomes, run_reports

from sparsecheck.engine._outcome import Status
from sparsecheck.reports.junitxml import classname, xml_text


def _report(tmp_path: Path, strict_warnings: bool = False) -> ET.Element:
    path = tmp_path / "junit" / "report.xml"
    run_reports(
        planted_outcomes(),
        {"junitxml_path": path, "strict_warnings": strict_warnings},
    )
    return ET.parse(path).getroot()


def _cases(root: ET.Element) -> dict[str, ET.Element]:
    return {case.attrib["name"]: case for case in root.iter("testcase")}


def test_suite_counts_match_statuses(tmp_path: Path) -> None:
    root = _report(tmp_path)
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    outcomes = planted_outcomes()
    expected = {
        "tests": len(outcomes),
        "failures": sum(o.status is Status.FAIL for o in outcomes),
        "errors": sum(o.status is Status.ERROR for o in outcomes),
        "skipped": sum(o.status is Status.SKIP for o in outcomes),
    }
    for element in (root, suite):
        assert {k: int(element.attrib[k]) for k in expected} == expected
        assert float(element.attrib["time"]) >= 0
    assert suite.attrib["name"] == "sparsecheck"
    assert len(suite.findall("testcase")) == len(outcomes)


def test_testcase_attributes(tmp_path: Path) -> None:
    cases = _cases(_report(tmp_path))
    case = cases["every-layer-sparse"]
    assert case.attrib["classname"] == "specs.demo"
    assert case.attrib["file"] == "specs/demo.sparsecheck.yaml"
    assert case.attrib["line"] == "10"
    assert case.attrib["time"] == "0.50"
    properties = {p.attrib["name"]: p.attrib["value"] for p in case.iter("property")}
    assert properties == {
        "metric": "update_sparsity",
        "status": "FAIL",
        "value": "0.5",
        "expectation": "value > 0.7",
    }


def test_failure_error_skip_and_warning_elements(tmp_path: Path) -> None:
    cases = _cases(_report(tmp_path))
    failure = cases["every-layer-sparse"].find("failure")
    assert failure is not None
    assert failure.attrib["message"] == "3 of 6 layers have sparsity <= 0.6"
    assert failure.text is not None
    for part in ("expectation: value > 0.7", "value: 0.5", "specs/demo.sparsecheck.yaml:10:5"):
        assert part in failure.text

    error = cases["broken"].find("error")
    assert error is not None
    assert "<tag> &" in error.attrib["message"]

    skipped = cases["later"].find("skipped")
    assert skipped is not None
    assert skipped.attrib["message"] == "not ready yet"

    warned = cases["sparse-enough"]
    assert warned.find("failure") is None
    out = warned.find("system-out")
    assert out is not None and out.text is not None
    assert out.text.startswith("warning: value 0.75 is not > 0.8\n")
    assert out.text.lower().count("warning") == 1

    passed = cases["rl-update-is-sparse"]
    assert [child.tag for child in passed] == ["properties"]


def test_strict_warnings_make_warnings_failures(tmp_path: Path) -> None:
    root = _report(tmp_path, strict_warnings=True)
    assert root.attrib["failures"] == "2"
    failure = _cases(root)["sparse-enough"].find("failure")
    assert failure is not None
    assert failure.attrib["message"] == "warning: value 0.75 is not > 0.8"
    assert failure.text is not None and failure.text.lower().count("warning") == 1


def test_illegal_xml_characters_are_replaced(tmp_path: Path) -> None:
    error = _cases(_report(tmp_path))["broken"].find("error")
    assert error is not None
    assert "#x00" in error.attrib["message"]
    assert "#x1B" in error.attrib["message"]
    assert "\x00" not in error.attrib["message"]


@pytest.mark.parametrize(
    ("text", "clean"),
    [("ok\ttext\n", "ok\ttext\n"), ("a\x00b", "a#x00b"), ("\x07\ufffe", "#x07#xFFFE"), ("é😀", "é😀")],
)
def test_xml_text(text: str, clean: str) -> None:
    assert xml_text(text) == clean


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("specs/demo.sparsecheck.yaml", "specs.demo"),
        ("specs/sub/other.yml", "specs.sub.other"),
        ("/abs/spec.yaml", "abs.spec"),
    ],
)
def test_classname(path: str, name: str) -> None:
    assert classname(PurePosixPath(path)) == name
