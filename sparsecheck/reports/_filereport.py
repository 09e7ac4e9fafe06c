"""The life of a report written to a file an option names (``--json``, ``--junitxml``, ``--md``).

The format's module adds the option and, in ``sparsecheck_configure``, calls
:meth:`FileReport.configure`; when the option is set, an instance is registered as a plugin
that collects the outcomes, writes the file atomically when the session finishes, names it
in the terminal summary and unregisters itself at ``sparsecheck_unconfigure``.  A device or
FIFO path is written directly (never replaced); ``-`` is standard output for the formats that
allow it, and the terminal report then goes to standard error.
"""

from __future__ import annotations

import pathlib
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, TextIO

import click

from sparsecheck._atomic import prepare_output_path, write_output
from sparsecheck._config import Config, OptionRegistry, Session
from sparsecheck._markers import hookimpl
from sparsecheck.engine._outcome import CheckOutcome
from sparsecheck.errors import UsageError

#: The path that means standard output, for formats that allow it.
STDOUT = "-"


class FileReport(ABC):
    """A report format written to one file when the session finishes."""

    #: Name the instance is registered under, e.g. ``json-report``.
    plugin_name: ClassVar[str]
    #: The option's flag (``--json``) and its key in ``config.options`` (``json_path``).
    flag: ClassVar[str]
    dest: ClassVar[str]
    #: Shown in the terminal summary, e.g. ``JSON report``.
    title: ClassVar[str]
    #: Whether ``-`` means standard output (the terminal report then goes to standard error).
    stdout_allowed: ClassVar[bool] = False

    def __init__(self, config: Config, path: pathlib.Path) -> None:
        self.config = config
        self.path = path
        self.outcomes: list[CheckOutcome] = []
        self.written = False
        #: Standard output, kept for the report while the terminal report goes to stderr.
        self.stdout: TextIO | None = None

    @classmethod
    def add_option(cls, options: OptionRegistry, help: str) -> None:
        options.add(
            cls.flag,
            cls.dest,
            metavar="FILE",
            help=help,
            default=None,
            type=click.Path(dir_okay=False, path_type=pathlib.Path),
        )

    @classmethod
    def configure(cls, config: Config) -> None:
        """Register an instance when the option is set (its path checked, its folder made)."""
        path = config.getoption(cls.dest)
        if path is None:
            return
        if str(path) == STDOUT and cls.stdout_allowed:
            if config.stash.get(STDOUT) is not None:
                raise UsageError(f"option {cls.flag}: {config.stash[STDOUT]} already writes to stdout (-)")
            config.stash[STDOUT] = cls.flag
            report = cls(config, pathlib.Path(STDOUT))
            report.stdout, sys.stdout = sys.stdout, sys.stderr
        else:
            report = cls(config, prepare_output_path(pathlib.Path(path), cls.flag))
        config.pluginmanager.register(report, name=cls.plugin_name)

    @abstractmethod
    def render(self, session: Session, exitstatus: int) -> bytes:
        """The file's content."""

    @hookimpl
    def sparsecheck_check_report(self, outcome: CheckOutcome) -> None:
        self.outcomes.append(outcome)

    @hookimpl
    def sparsecheck_sessionfinish(self, session: Session, exitstatus: int) -> None:
        data = self.render(session, int(exitstatus))
        if self.stdout is None:
            write_output(self.path, data, self.flag)
        else:
            self.stdout.flush()
            self.stdout.buffer.write(data)
            self.stdout.flush()
        self.written = True

    @hookimpl
    def sparsecheck_terminal_summary(self, write: Callable[[str], None]) -> None:
        if self.written and self.config.getoption("verbosity", 0) >= 0:
            write(f"{self.title} written to {'stdout' if self.stdout is not None else self.path}")

    @hookimpl
    def sparsecheck_unconfigure(self, config: Config) -> None:
        if self.stdout is not None:
            sys.stdout, self.stdout = self.stdout, None
            config.stash.pop(STDOUT, None)
        config.pluginmanager.unregister(self)
