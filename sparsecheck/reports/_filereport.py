"""The life of a report written to a file an option names (``--json``, ``--junitxml``, ``--md``).

The format's module adds the option and, in ``sparsecheck_configure``, calls
:meth:`FileReport.configure`; when the option is set, an instance is registered as a plugin
that collects the outcomes, writes the file atomically when the session finishes, names it
in the terminal summary and unregisters itself at ``sparsecheck_unconfigure``.

The path ``-`` writes the report to stdout instead (one report at most); the terminal output
then goes to stderr, so ``sparsecheck run --json - | jq`` reads clean JSON.  A format that
appends (:meth:`FileReport.appends`, e.g. ``--md-append``) adds to the file in one write
instead of replacing it.  A device or FIFO path is written directly, never replaced.
"""

from __future__ import annotations

import pathlib
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import click

from sparsecheck._atomic import append_output, prepare_output_path, write_output
from sparsecheck._config import Config, OptionRegistry, Session
from sparsecheck._markers import hookimpl
from sparsecheck.engine._outcome import CheckOutcome
from sparsecheck.errors import UsageError

#: The path that means stdout.
STDOUT = "-"
#: ``config.stash`` key: the flag of the report writing to stdout, if any.
STDOUT_REPORT = "stdout_report"


def stdout_taken(config: Config) -> bool:
    """Whether a report writes to stdout (then the terminal output goes to stderr)."""
    return STDOUT_REPORT in config.stash


class FileReport(ABC):
    """A report format written to one file when the session finishes."""

    #: Name the instance is registered under, e.g. ``json-report``.
    plugin_name: ClassVar[str]
    #: The option's flag (``--json``) and its key in ``config.options`` (``json_path``).
    flag: ClassVar[str]
    dest: ClassVar[str]
    #: Shown in the terminal summary, e.g. ``JSON report``.
    title: ClassVar[str]

    def __init__(self, config: Config, path: pathlib.Path) -> None:
        self.config = config
        self.path = path
        self.outcomes: list[CheckOutcome] = []
        self.written = False

    @classmethod
    def add_option(cls, options: OptionRegistry, help: str) -> None:
        options.add(
            cls.flag,
            cls.dest,
            metavar="FILE",
            help=f"{help} (- for stdout)",
            default=None,
            type=click.Path(dir_okay=False, path_type=pathlib.Path),
        )

    @classmethod
    def configure(cls, config: Config) -> None:
        """Register an instance when the option is set (its path checked, its folder made)."""
        path = config.getoption(cls.dest)
        if path is None:
            return
        if str(path) == STDOUT:
            if stdout_taken(config):
                raise UsageError(
                    f"option {cls.flag}: {config.stash[STDOUT_REPORT]} already writes to stdout (-)"
                )
            config.stash[STDOUT_REPORT] = cls.flag
            report = cls(config, pathlib.Path(STDOUT))
        else:
            report = cls(config, prepare_output_path(pathlib.Path(path), cls.flag))
        config.pluginmanager.register(report, name=cls.plugin_name)

    @property
    def to_stdout(self) -> bool:
        return str(self.path) == STDOUT

    def appends(self) -> bool:
        """Whether the report is appended to its file rather than replacing it."""
        return False

    @abstractmethod
    def render(self, session: Session, exitstatus: int) -> bytes:
        """The file's content."""

    @hookimpl
    def sparsecheck_check_report(self, outcome: CheckOutcome) -> None:
        self.outcomes.append(outcome)

    @hookimpl
    def sparsecheck_sessionfinish(self, session: Session, exitstatus: int) -> None:
        data = self.render(session, int(exitstatus))
        if self.to_stdout:
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        elif self.appends():
            append_output(self.path, data, self.flag)
        else:
            write_output(self.path, data, self.flag)
        self.written = True

    @hookimpl
    def sparsecheck_terminal_summary(self, write: Callable[[str], None]) -> None:
        if self.written and not self.to_stdout and self.config.getoption("verbosity", 0) >= 0:
            write(f"{self.title} {'appended to' if self.appends() else 'written to'} {self.path}")

    @hookimpl
    def sparsecheck_unconfigure(self, config: Config) -> None:
        config.pluginmanager.unregister(self)
