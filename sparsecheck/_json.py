"""Strict JSON for the headers and indexes of checkpoint files.

Python's ``json`` keeps the last of two equal keys and recurses once per nesting level; a file
listing one tensor twice, or nested 100k deep, must be refused instead, with one line.
"""

from __future__ import annotations

import json
import reprlib
from typing import Any

#: Shows untrusted values in error messages, bounded in depth and length.
_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother = 3, 60, 60


class JsonError(ValueError):
    """Not valid JSON, a key given twice (``duplicate`` names it), or nested too deep."""

    def __init__(self, message: str, duplicate: str | None = None) -> None:
        super().__init__(message)
        self.duplicate = duplicate


def loads_strict(data: bytes | str) -> Any:
    """Parse JSON ``data``; a :class:`JsonError` for bad JSON, a duplicate key or deep nesting."""
    try:
        return json.loads(data, object_pairs_hook=_unique_keys)
    except JsonError:
        raise
    except RecursionError:
        raise JsonError("nested too deep") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise JsonError(f"not valid JSON: {exc}") from None


def show(value: Any) -> str:
    """A short ``repr`` of an untrusted value, safe for any nesting."""
    return _SHOWN.repr(value)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JsonError(f"key {show(key)} is given twice", duplicate=key)
        result[key] = value
    return result
