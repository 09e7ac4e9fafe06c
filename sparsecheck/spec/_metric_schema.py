"""The spec schema for editors: ``schema.json`` plus, for each registered metric, the schema of
its ``args`` (``sparsecheck validate --schema``).

The loader validates arguments itself (with messages naming the metric); these schemas give an
editor completion and hover text.  Any value may also be a ``${variable}``; no argument is
marked required, since a template (``use:``) may supply it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from sparsecheck.metrics._api import REQUIRED, Metric, Param
from sparsecheck.spec._schema import load_schema

_VARIABLE = {"type": "string", "pattern": "^\\$\\{[^}]+\\}$"}
_KINDS: dict[str, dict[str, Any]] = {
    "checkpoint": {"type": "string"},
    "checkpoints": {"type": "array", "items": {"type": "string"}},
    "mask": {"type": "string"},
    "masks": {"type": "array", "items": {"type": "string"}},
    "path": {"type": "string"},
    "float": {"type": "number"},
    "int": {"type": "integer"},
    "bool": {"type": "boolean"},
    "str": {"type": "string"},
    "floats": {"type": "array", "items": {"type": "number"}},
    "ints": {"type": "array", "items": {"type": "integer"}},
    "strings": {"type": "array", "items": {"type": "string"}},
}


def param_schema(param: Param) -> dict[str, Any]:
    """The JSON Schema of one argument (or a ``${variable}``)."""
    kind = {"enum": list(param.choices)} if param.kind == "choice" else dict(_KINDS[param.kind])
    schema: dict[str, Any] = {"description": param.help, "anyOf": [kind, _VARIABLE]}
    if param.default is not REQUIRED and param.default is not None:
        default = list(param.default) if isinstance(param.default, tuple) else param.default
        if isinstance(default, str | int | float | bool | list):
            schema["default"] = default
    return schema


def args_schema(metric: Metric) -> dict[str, Any]:
    """The schema of ``args`` for ``metric``: its parameters, no others."""
    return {
        "type": "object",
        "properties": {param.name: param_schema(param) for param in metric.all_params()},
        "additionalProperties": False,
    }


def schema_with_metrics(metrics: Mapping[str, Metric]) -> dict[str, Any]:
    """``schema.json`` with each metric's ``args`` schema, chosen by the check's ``metric``."""
    schema = copy.deepcopy(load_schema())
    fields = schema["$defs"]["checkFields"]
    fields["allOf"] = [
        {
            "if": {"properties": {"metric": {"const": name}}, "required": ["metric"]},
            "then": {"properties": {"args": {"description": metric.summary, **args_schema(metric)}}},
        }
        for name, metric in sorted(metrics.items())
    ]
    return schema
