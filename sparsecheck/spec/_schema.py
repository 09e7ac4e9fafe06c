"""The JSON Schema of spec files (``schema.json``), and its errors as one-line SpecErrors."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsecheck.errors import Location, SpecError
from sparsecheck.spec._located import YamlMap, locate
from sparsecheck.spec._messages import did_you_mean, show_value

if TYPE_CHECKING:  # jsonschema is imported only when a spec file is validated
    import jsonschema
    from jsonschema.exceptions import ValidationError

_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "null": "null",
}


def schema_path() -> Path:
    """Where the JSON Schema of the spec format (draft 2020-12) is installed."""
    return Path(__file__).with_name("schema.json")


@functools.cache
def load_schema() -> dict[str, Any]:
    """The JSON Schema of the spec format, parsed."""
    schema: dict[str, Any] = json.loads(schema_path().read_text(encoding="utf-8"))
    return schema


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    import jsonschema

    return jsonschema.Draft202012Validator(load_schema())


def validate_document(document: YamlMap) -> None:
    """Raise a SpecError for the first schema violation in ``document`` (in file order)."""
    errors = list(_validator().iter_errors(document))
    if not errors:
        return
    # A missing key is often the misspelt one reported elsewhere, so it comes last.
    placed = [(_location(error, document), error) for error in errors]
    ranked = [(error.validator == "required", loc.line or 0, loc.column or 0) for loc, error in placed]
    first = min(ranked)
    location, error = max(
        (pair for pair, rank in zip(placed, ranked, strict=True) if rank == first),
        key=lambda pair: _relevance(pair[1]),
    )
    raise SpecError(_message(error), location)


def _relevance(error: ValidationError) -> Any:
    from jsonschema.exceptions import relevance

    return relevance(error)


def _location(error: ValidationError, document: YamlMap) -> Location:
    """The offending node: the unknown or misnamed key itself, else the value at the path."""
    path = list(error.absolute_path)
    location = locate(document, path, document.location)
    key = _offending_key(error)
    container = _at(document, path)
    if key is not None and isinstance(container, YamlMap):
        return container.key_location(key)
    return location


def _offending_key(error: ValidationError) -> str | None:
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        return _unknown_keys(error)[0]
    if "propertyNames" in error.relative_schema_path:
        return str(error.instance)
    return None


def _at(document: YamlMap, path: Iterable[str | int]) -> Any:
    node: Any = document
    for step in path:
        node = node[step]
    return node


def _unknown_keys(error: ValidationError) -> list[str]:
    known = _declared_keys(error.schema)
    instance: dict[str, Any] = error.instance  # type: ignore[assignment]
    return [key for key in instance if key not in known]


def _declared_keys(schema: Any) -> set[str]:
    """The keys a closed mapping schema declares, following local ``$ref``s."""
    if not isinstance(schema, dict):
        return set()
    keys = set(schema.get("properties", {}))
    reference = schema.get("$ref")
    if isinstance(reference, str) and reference.startswith("#/$defs/"):
        keys |= _declared_keys(load_schema()["$defs"][reference.removeprefix("#/$defs/")])
    return keys


def _message(error: ValidationError) -> str:
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        key = _unknown_keys(error)[0]
        known = sorted(_declared_keys(error.schema))
        hint = did_you_mean(key, known) or f" (expected one of: {', '.join(known)})"
        return f"unknown key {key!r}{hint}"
    instance: Any = error.instance
    expected: Any = error.validator_value
    custom = error.schema.get("errorMessage", {}) if isinstance(error.schema, dict) else {}
    if error.validator in custom:
        text = str(custom[error.validator]).replace("{instance}", show_value(instance))
    elif error.validator == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        text = f"expected {' or '.join(_TYPE_WORDS[name] for name in names)}, "
        text += f"got {show_value(instance)}"
    elif error.validator == "required":
        missing = [key for key in expected if key not in instance]
        text = f"missing required key {missing[0]!r}"
    else:
        text = error.message
    if "propertyNames" in error.relative_schema_path or not error.absolute_path:
        return text
    return f"{_dotted(error.absolute_path)}: {text}"


def _dotted(path: Iterable[str | int]) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step}" if text else step
    return text
