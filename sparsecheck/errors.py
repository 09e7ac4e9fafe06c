"""Errors that name their culprit: a file (and line), a tensor, an option or a plugin."""

from __future__ import annotations

from dataclasses import dataclass

from sparsecheck.exitcodes import ExitCode


@dataclass(frozen=True)
class Location:
    """A place in a file; ``line`` and ``column`` are 1-based."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        text = self.file
        if self.line is not None:
            text += f":{self.line}"
            if self.column is not None:
                text += f":{self.column}"
        return text


class SparsecheckError(Exception):
    """Base of every error sparsecheck raises on purpose; ``exit_code`` says how the CLI ends."""

    exit_code: ExitCode = ExitCode.INTERNAL_ERROR

    def __init__(self, message: str, location: Location | str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class UsageError(SparsecheckError):
    """The user's input is wrong: an option, a spec file, a checkpoint (exit code 4)."""

    exit_code = ExitCode.USAGE_ERROR


class SpecError(UsageError):
    """A spec file is malformed; the location is the spec's file:line:column."""


class CheckpointError(UsageError):
    """A checkpoint is missing, unreadable, corrupt, or does not pair with its partner."""


class PluginError(SparsecheckError):
    """A plugin broke its contract; the message names the plugin (exit code 3)."""
