"""``--junitxml FILE``: the checks as JUnit XML, the format CI systems display.

One ``<testsuite name="sparsecheck">`` in ``<testsuites>``; each check is a ``<testcase>``
whose ``classname`` is its spec file's path, dotted and without suffix.  FAIL is a
``<failure>``, ERROR an ``<error>``, SKIP a ``<skipped>``; WARN passes, with ``warning:`` and
its message in ``<system-out>`` (a ``<failure>`` with that message under ``--strict-warnings``).
Each case's ``<properties>`` hold its metric, status, value (named as in the terminal table:
``4/5 layers``, ``o1=0.4999``), expectation and ``warn:`` thresholds; ``time`` is the duration
every report shows.
"""

from __future__ import annotations

import platform
import re
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import PurePosixPath

from sparsecheck._config import Config, OptionRegistry, Session
from sparsecheck._markers import hookimpl
from sparsecheck.engine._outcome import DURATION_PLACES, CheckOutcome, Status
from sparsecheck.exitcodes import ExitCode
from sparsecheck.reports._filereport import FileReport
from sparsecheck.reports._table import INTERRUPTED, outcome_message, value_text

#: Characters XML 1.0 cannot carry, even escaped (pytest's junitxml does the same).
_ILLEGAL_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SPEC_SUFFIXES = (".yaml", ".yml", ".sparsecheck")


def xml_text(text: str) -> str:
    """``text`` with characters illegal in XML written as ``#xNN``."""
    return _ILLEGAL_XML.sub(lambda m: f"#x{ord(m.group()):02X}", text)


def classname(spec_path: PurePosixPath) -> str:
    """``specs/demo.sparsecheck.yaml`` → ``specs.demo``."""
    name = spec_path.as_posix().lstrip("/")
    for suffix in _SPEC_SUFFIXES:
        name = name.removesuffix(suffix)
    return name.replace("/", ".")


def _message(outcome: CheckOutcome) -> str:
    """The outcome's message; a WARN's starts with ``warning:`` (it is one even as a failure)."""
    text = outcome_message(outcome)
    return f"warning: {text}" if outcome.status is Status.WARN else text


def _details(outcome: CheckOutcome) -> str:
    warn = f"warn: {outcome.warn_expectation}\n" if outcome.warn_expectation else ""
    return (
        f"{_message(outcome)}\n\n"
        f"expectation: {outcome.expectation}\n{warn}"
        f"value: {value_text(outcome)}\n"
        f"location: {outcome.check.location}"
    )


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {k: xml_text(v) for k, v in attrs.items()})
    if text is not None:
        element.text = xml_text(text)
    return element


class JUnitXmlReport(FileReport):
    plugin_name = "junitxml-report"
    flag = "--junitxml"
    dest = "junitxml_path"
    title = "JUnit XML report"

    def _spec_path(self, outcome: CheckOutcome) -> PurePosixPath:
        path = outcome.check.spec_path
        if path.is_absolute() and path.is_relative_to(self.config.invocation_dir):
            path = path.relative_to(self.config.invocation_dir)
        return PurePosixPath(path.as_posix())

    def _kind(self, status: Status) -> str:
        """``failure``, ``error``, ``skipped`` or ``passed``."""
        if status is Status.WARN and self.config.getoption("strict_warnings", False):
            return "failure"
        kinds = {Status.FAIL: "failure", Status.ERROR: "error", Status.SKIP: "skipped"}
        return kinds.get(status, "passed")

    def _testcase(self, suite: ET.Element, outcome: CheckOutcome) -> str:
        check = outcome.check
        spec_path = self._spec_path(outcome)
        case = _sub(
            suite,
            "testcase",
            classname=classname(spec_path),
            name=check.id,
            file=spec_path.as_posix(),
            time=f"{outcome.duration:.{DURATION_PLACES}f}",
        )
        if check.location.line is not None:
            case.set("line", str(check.location.line))
        properties = _sub(case, "properties")
        shown = [
            ("metric", check.metric),
            ("status", outcome.status.value),
            ("value", value_text(outcome)),
            ("expectation", outcome.expectation),
        ]
        if outcome.warn_expectation:
            shown.append(("warn", outcome.warn_expectation))
        for name, value in shown:
            _sub(properties, "property", name=name, value=value)
        kind = self._kind(outcome.status)
        if kind == "skipped":
            _sub(case, "skipped", message=outcome.message)
        elif kind != "passed":
            _sub(case, kind, _details(outcome), message=_message(outcome))
        elif outcome.status is Status.WARN:
            _sub(case, "system-out", _details(outcome))
        return kind

    def render(self, session: Session, exitstatus: int) -> bytes:
        root = ET.Element("testsuites", name="sparsecheck")
        suite = _sub(
            root,
            "testsuite",
            name="sparsecheck",
            timestamp=datetime.fromtimestamp(session.started, timezone.utc).isoformat(),
            hostname=platform.node(),
        )
        kinds = [self._testcase(suite, outcome) for outcome in self.outcomes]
        if exitstatus == ExitCode.INTERRUPTED:  # CI must not read a partial run as green
            case = _sub(suite, "testcase", classname="sparsecheck", name="interrupted", time="0.000")
            _sub(case, "error", INTERRUPTED, message=INTERRUPTED)
            kinds.append("error")
        counts = {
            "tests": str(len(kinds)),
            "failures": str(kinds.count("failure")),
            "errors": str(kinds.count("error")),
            "skipped": str(kinds.count("skipped")),
            "time": f"{time.time() - session.started:.3f}",
        }
        for element in (root, suite):
            for name, value in counts.items():
                element.set(name, value)
        ET.indent(root)
        data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        return data + b"\n"


@hookimpl
def sparsecheck_addoption(options: OptionRegistry) -> None:
    JUnitXmlReport.add_option(options, "write a JUnit XML report (for CI systems) to FILE")


@hookimpl
def sparsecheck_configure(config: Config) -> None:
    JUnitXmlReport.configure(config)
