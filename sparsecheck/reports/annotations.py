"""``--annotations github``: each FAIL and ERROR as a GitHub Actions ``::error`` workflow command,
each WARN as ``::warning``, so the check shows at its line of the spec in the pull request.

The default is ``github`` when ``GITHUB_ACTIONS=true`` (as GitHub sets it in every job), else
``none``.  One line per check, after the results (on stdout, or stderr when a report takes stdout)::

    ::error file=specs/gate.sparsecheck.yaml,line=12,title=sparsity-kept::value 0.6 is not >= …

Escaping follows GitHub's toolkit (``@actions/core`` ``command.ts``): in the message ``%``, CR
and LF become ``%25``, ``%0D``, ``%0A``; in a property also ``:`` and ``,`` (``%3A``, ``%2C``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import click

from sparsecheck._config import Config, OptionRegistry, Session
from sparsecheck._markers import hookimpl
from sparsecheck.engine._outcome import CheckOutcome, Status
from sparsecheck.reports._table import outcome_message

FORMATS = ("github", "none")
_COMMANDS = {Status.FAIL: "error", Status.ERROR: "error", Status.WARN: "warning"}


def escape_data(text: str) -> str:
    """A workflow command's message, escaped."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value, escaped."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(outcome: CheckOutcome) -> str | None:
    """The workflow command of a failed, errored or warned outcome; None for the others."""
    command = _COMMANDS.get(outcome.status)
    if command is None:
        return None
    check = outcome.check
    properties = {"file": check.spec_path.as_posix()}
    if check.location.line is not None:
        properties["line"] = str(check.location.line)
    properties["title"] = check.id
    shown = ",".join(f"{key}={escape_property(value)}" for key, value in properties.items())
    return f"::{command} {shown}::{escape_data(outcome_message(outcome))}"


def annotations_format(config: Config) -> str:
    """``--annotations``, else ``github`` inside GitHub Actions, else ``none``."""
    given: str | None = config.getoption("annotations")
    if given is not None:
        return given
    return "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "none"


class GithubAnnotations:
    """Prints the annotations after the results."""

    def __init__(self) -> None:
        self.outcomes: list[CheckOutcome] = []

    @hookimpl
    def sparsecheck_check_report(self, outcome: CheckOutcome) -> None:
        self.outcomes.append(outcome)

    @hookimpl(trylast=True)
    def sparsecheck_terminal_summary(self, session: Session, write: Callable[[str], None]) -> None:
        for outcome in self.outcomes:  # the runner reads workflow commands on stdout and stderr
            line = annotation(outcome)
            if line is not None:
                write(line)

    @hookimpl
    def sparsecheck_unconfigure(self, config: Config) -> None:
        config.pluginmanager.unregister(self)


@hookimpl
def sparsecheck_addoption(options: OptionRegistry) -> None:
    options.add(
        "--annotations",
        "annotations",
        type=click.Choice(FORMATS),
        default=None,
        help="annotate failures at their spec line: github (the default when GITHUB_ACTIONS=true) or none",
    )


@hookimpl
def sparsecheck_configure(config: Config) -> None:
    if annotations_format(config) == "github":
        config.pluginmanager.register(GithubAnnotations(), name="github-annotations")
