"""A check's ``args``, validated and converted against its metric's parameters.

Each :class:`~sparsecheck.metrics._api.Param` kind has one converter.  An int is accepted for a
float; a list kind (``checkpoints``, ``floats``, ``ints``, ``strings``) accepts a single value as a
one-item list.  Omitted arguments get their defaults, so the result is complete.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsecheck.errors import Location, SpecError
from sparsecheck.metrics._api import Metric, Param
from sparsecheck.spec._located import YamlMap, to_plain
from sparsecheck.spec._messages import did_you_mean, show_value
from sparsecheck.spec._model import CheckpointRef


@dataclass(frozen=True)
class _Context:
    checkpoints: Mapping[str, CheckpointRef]
    spec_dir: Path


class _Mismatch(Exception):
    """A value is not what its parameter's kind expects."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def validate_args(
    metric: Metric,
    args: YamlMap | None,
    location: Location,
    checkpoints: Mapping[str, CheckpointRef],
    spec_dir: Path,
) -> dict[str, Any]:
    """``args`` converted per the metric's parameters, defaults filled in.

    ``location`` is where to point when ``args`` is absent; ``spec_dir`` anchors relative mask
    paths.
    """
    given = args if args is not None else YamlMap(location)
    params = {param.name: param for param in metric.all_params()}
    for key in given:
        if key not in params:
            hint = did_you_mean(key, params) or f" (it takes: {', '.join(params) or 'none'})"
            raise SpecError(
                f"args: unknown argument {key!r} of metric {metric.name!r}{hint}",
                given.key_location(key),
            )
    context = _Context(checkpoints, spec_dir)
    result: dict[str, Any] = {}
    for name, param in params.items():
        if name in given:
            result[name] = _convert(param, given[name], given.value_location(name), context)
        elif param.required:
            raise SpecError(
                f"args: missing required argument {name!r} of metric {metric.name!r} ({param.help})",
                given.location,
            )
        else:
            result[name] = list(param.default) if isinstance(param.default, tuple) else param.default
    return result


def _convert(param: Param, value: Any, location: Location, context: _Context) -> Any:
    """``value`` as ``param``'s kind wants it; ``null`` stands for a ``None`` default."""
    value = to_plain(value)
    if value is None and param.default is None:
        return None
    try:
        return _CONVERTERS[param.kind](param, value, context)
    except _Mismatch as exc:
        raise SpecError(
            f"args.{param.name}: expected {exc.expected}, got {show_value(value)}", location
        ) from None
    except SpecError as exc:
        raise SpecError(f"args.{param.name}: {exc.message}", location) from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _float(param: Param, value: Any, context: _Context) -> float:
    if not _is_number(value):
        raise _Mismatch("a number")
    if not math.isfinite(value):
        raise _Mismatch("a finite number")
    return float(value)


def _int(param: Param, value: Any, context: _Context) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Mismatch("an integer")
    return value


def _bool(param: Param, value: Any, context: _Context) -> bool:
    if not isinstance(value, bool):
        raise _Mismatch("true or false")
    return value


def _str(param: Param, value: Any, context: _Context) -> str:
    if not isinstance(value, str):
        raise _Mismatch("a string")
    return value


def _choice(param: Param, value: Any, context: _Context) -> str:
    text = _str(param, value, context)
    if text not in param.choices:
        hint = did_you_mean(text, param.choices)
        raise SpecError(f"{text!r} is not one of {', '.join(param.choices)}{hint}")
    return text


def _checkpoint(param: Param, value: Any, context: _Context) -> str:
    if not isinstance(value, str):
        raise _Mismatch("a checkpoint key")
    if value not in context.checkpoints:
        hint = did_you_mean(value, context.checkpoints)
        if not hint:
            known = ", ".join(context.checkpoints)
            hint = f" (the checkpoints table has: {known})" if known else " (the spec has no checkpoints)"
        raise SpecError(f"unknown checkpoint {value!r}{hint}")
    return value


def _mask(param: Param, value: Any, context: _Context) -> str:
    """A checkpoints-table key as is, or a mask file path made absolute."""
    if not isinstance(value, str) or not value:
        raise _Mismatch("a checkpoint key or a mask file path")
    if value in context.checkpoints:
        return value
    return str((context.spec_dir / Path(value).expanduser()).resolve())


def _path(param: Param, value: Any, context: _Context) -> str:
    """A file path made absolute (relative to the spec file's folder)."""
    if not isinstance(value, str) or not value:
        raise _Mismatch("a file path")
    return str((context.spec_dir / Path(value).expanduser()).resolve())


def _list_of(
    item: Callable[[Param, Any, _Context], Any], expected: str, non_empty: bool = False
) -> Callable[[Param, Any, _Context], list[Any]]:
    def convert(param: Param, value: Any, context: _Context) -> list[Any]:
        items = value if isinstance(value, list) else [value]
        if non_empty and not items:
            raise _Mismatch(expected)
        try:
            return [item(param, entry, context) for entry in items]
        except _Mismatch:
            raise _Mismatch(expected) from None

    return convert


_CONVERTERS: dict[str, Callable[[Param, Any, _Context], Any]] = {
    "checkpoint": _checkpoint,
    "checkpoints": _list_of(_checkpoint, "a non-empty list of checkpoint keys", non_empty=True),
    "mask": _mask,
    "masks": _list_of(_mask, "a non-empty list of checkpoint keys or mask file paths", non_empty=True),
    "path": _path,
    "float": _float,
    "int": _int,
    "bool": _bool,
    "str": _str,
    "choice": _choice,
    "floats": _list_of(_float, "a list of numbers"),
    "ints": _list_of(_int, "a list of integers"),
    "strings": _list_of(_str, "a list of strings"),
}
