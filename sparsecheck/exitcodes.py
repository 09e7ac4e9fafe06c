"""The exit codes of every sparsecheck command, one enum."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit status of ``sparsecheck`` (and of the library's ``main``)."""

    #: Every check passed (warnings allowed unless ``--strict-warnings``).
    OK = 0
    #: At least one check failed (or warned, under ``--strict-warnings``).
    CHECKS_FAILED = 1
    #: Interrupted by the user (Ctrl-C).
    INTERRUPTED = 2
    #: A bug: in sparsecheck or in a plugin.
    INTERNAL_ERROR = 3
    #: Bad usage: bad option, bad spec file, unreadable or mismatched checkpoint.
    USAGE_ERROR = 4
    #: No check was collected (or all were deselected).
    NO_CHECKS_COLLECTED = 5
