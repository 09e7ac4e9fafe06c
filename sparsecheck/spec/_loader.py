"""Load a spec file: YAML with locations → schema → variables → steps → templates → parametrize → checks
→ references between checks."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsecheck._files import read_regular
from sparsecheck._paths import absolute_path
from sparsecheck.errors import Location, SpecError
from sparsecheck.metrics._api import Metric
from sparsecheck.spec._check import build_check
from sparsecheck.spec._located import YamlMap
from sparsecheck.spec._messages import did_you_mean, show_value
from sparsecheck.spec._model import Check, CheckpointRef, SpecFile
from sparsecheck.spec._parametrize import PRODUCT_KEY, ZIP_KEY, combinations
from sparsecheck.spec._references import validate_references
from sparsecheck.spec._schema import validate_document
from sparsecheck.spec._steps import check_step_kinds, load_steps
from sparsecheck.spec._variables import UnsetEnv, Variables, spec_variables

#: Template keys merged key by key into a check's own; every other key of the check replaces.
_MERGED_KEYS = ("args",)
#: Keys consumed before a check's body is substituted.
_STRUCTURE_KEYS = ("use", PRODUCT_KEY, ZIP_KEY)
_BAD_ID_CHARACTERS = re.compile(r"[\s:\[\]]")
#: The largest spec file read (a spec is a few kilobytes; this bounds the work on a wrong file).
MAX_SPEC_BYTES = 16 << 20


@dataclass
class SpecProblems:
    """What ``sparsecheck validate`` collects where ``run`` stops: unset ``${env:NAME}``
    references (each then stands as ``$NAME``) and the errors of single ``checks:`` entries (the
    other entries are still loaded)."""

    unset_env: list[UnsetEnv] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)


def load_spec(
    path: Path,
    metrics: Mapping[str, Metric],
    overrides: Mapping[str, Any] | None = None,
    problems: SpecProblems | None = None,
) -> SpecFile:
    """Load and validate the spec file at ``path`` against the registered ``metrics``;
    ``overrides`` replace (or add) ``vars:`` values.  Given ``problems``, an unset
    ``${env:NAME}`` and an error in one ``checks:`` entry are added to it, not raised, and the
    spec holds the other checks (references between checks are then checked only when there
    was no such error).

    Every problem is a :class:`SpecError` at the offending file:line:column.  A checkpoint
    source naming an existing local file or folder (relative ones relative to ``path.parent``)
    becomes its absolute path; any other source is kept as written (variables substituted): a
    hub id, or a path reported missing when it is opened.
    """
    filename = str(path)
    try:
        text = read_regular(path, MAX_SPEC_BYTES).decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError("not a UTF-8 text file", Location(filename)) from None
    except OSError as exc:
        raise SpecError(f"cannot read the spec file: {exc.strerror or exc}", Location(filename)) from None
    from sparsecheck.spec._yaml import load_yaml  # the YAML parser: only where a spec file is read

    document = load_yaml(text, filename)
    if not isinstance(document, YamlMap):
        found = "empty" if document is None else f"{show_value(document)}, not a mapping"
        raise SpecError(
            f"a spec file is a mapping with 'version' and 'checks'; this one is {found}",
            Location(filename, 1, 1),
        )
    validate_document(document)
    unset_env = problems.unset_env if problems is not None else None
    variables = spec_variables(document.get("vars"), overrides=overrides, unset_env=unset_env)
    checkpoints = _checkpoints(document.get("checkpoints"), variables, path.parent)
    steps, produced = load_steps(document.get("steps"), variables, checkpoints, path)
    checkpoints.update(produced)
    templates: YamlMap = document.get("templates") or YamlMap(document.location)
    checks: list[Check] = []
    first_seen: dict[str, Location] = {}
    errors: list[SpecError] = []
    for node in document["checks"]:
        try:
            for check in _expand(node, templates, variables, path, checkpoints, metrics):
                if check.id in first_seen:
                    raise SpecError(
                        f"duplicate check id {check.id!r} (first at line {first_seen[check.id].line})",
                        check.location,
                    )
                first_seen[check.id] = check.location
                checks.append(check)
        except SpecError as exc:
            if problems is None:
                raise
            errors.append(exc)
    if problems is not None:
        problems.errors += errors
    if not errors:
        validate_references(checks)
    return SpecFile(path=path, checkpoints=checkpoints, checks=checks, steps=steps)


def _checkpoints(table: YamlMap | None, variables: Variables, spec_dir: Path) -> dict[str, CheckpointRef]:
    """The ``checkpoints:`` table, variables substituted, local paths made absolute."""
    refs: dict[str, CheckpointRef] = {}
    if table is None:
        return refs
    adapters: dict[str, Location] = {}
    for key, entry in table.items():
        if isinstance(entry, YamlMap) and "adapter" in entry:
            raw, location = entry["adapter"], entry.value_location("adapter")
            if "path" in entry or "revision" in entry:
                raise SpecError(
                    f"checkpoints.{key}: an adapter entry is {{base: KEY, adapter: PATH}}, "
                    "without path or revision",
                    table.value_location(key),
                )
            adapters[key] = entry.value_location("base")
        elif isinstance(entry, YamlMap):
            if "base" in entry:
                raise SpecError(
                    f"checkpoints.{key}: base goes with adapter (a PEFT adapter folder)",
                    table.value_location(key),
                )
            raw, location = entry["path"], entry.value_location("path")
        else:
            raw, location = entry, table.value_location(key)
        source = variables.substitute(raw, location)
        if not isinstance(source, str) or not source:
            raise SpecError(
                f"checkpoints.{key}: expected a path or hub id, got {show_value(source)}", location
            )
        revision = None
        if isinstance(entry, YamlMap) and entry.get("revision") is not None:
            revision_location = entry.value_location("revision")
            revision = variables.substitute(entry["revision"], revision_location)
            if not isinstance(revision, str):
                raise SpecError(
                    f"checkpoints.{key}.revision: expected a string, got {show_value(revision)}",
                    revision_location,
                )
        local = absolute_path(source, spec_dir)
        source = str(local) if local.exists() else source
        refs[key] = CheckpointRef(key=key, source=source, location=location, revision=revision)
    for key, location in adapters.items():
        base = table[key]["base"]
        if base not in refs or base in adapters:
            raise SpecError(
                f"checkpoints.{key}.base: {base!r} is not a checkpoint of this table"
                + (" (an adapter applies to a plain checkpoint)" if base in adapters else ""),
                location,
            )
        refs[key] = dataclasses.replace(refs[key], base=refs[base])
    return refs


def _expand(
    node: YamlMap,
    templates: YamlMap,
    variables: Variables,
    path: Path,
    checkpoints: Mapping[str, CheckpointRef],
    metrics: Mapping[str, Metric],
) -> list[Check]:
    """The checks one entry of ``checks:`` stands for: one per parameter combination."""
    merged = _with_template(node, templates)
    body = YamlMap(merged.location)
    for key, value in merged.items():
        if key not in _STRUCTURE_KEYS:
            body.put(key, value, merged.key_location(key), merged.value_location(key))
    checks = []
    for combination in combinations(merged, variables):
        scope = variables.with_values(combination.params)
        substituted = scope.substitute(body, body.location)
        base_id = substituted["id"]
        id_location = body.value_location("id")
        if not isinstance(base_id, str) or not base_id or _BAD_ID_CHARACTERS.search(base_id):
            raise SpecError(
                f"id: expected a name without spaces, ':', '[' or ']', got {show_value(base_id)}",
                id_location,
            )
        check_id = base_id + combination.suffix
        try:
            check = build_check(substituted, check_id, combination.params, path, checkpoints, metrics)
            metric = metrics[check.metric]
            check_step_kinds(metric, check.args, substituted.get("args"), check.location, checkpoints)
        except SpecError as exc:
            if not combination.suffix:
                raise
            raise SpecError(f"{check_id}: {exc.message}", exc.location) from None
        checks.append(check)
    return checks


def _with_template(node: YamlMap, templates: YamlMap) -> YamlMap:
    """``node`` over the template it ``use``s: its own keys win, ``args`` merge key by key."""
    name = node.get("use")
    if name is None:
        return node
    if name not in templates:
        hint = did_you_mean(name, templates)
        if not hint:
            hint = f" (templates: {', '.join(templates)})" if templates else " (the spec has no templates)"
        raise SpecError(f"unknown template {name!r}{hint}", node.value_location("use"))
    return _overlay(templates[name], node, _MERGED_KEYS)


def _overlay(base: YamlMap, over: YamlMap, merged_keys: tuple[str, ...] = ()) -> YamlMap:
    """``over``'s keys over ``base``'s; mappings under ``merged_keys`` are overlaid in turn."""
    merged = YamlMap(over.location)
    for source in (base, over):
        for key, value in source.items():
            if key in merged_keys and isinstance(merged.get(key), YamlMap) and isinstance(value, YamlMap):
                value = _overlay(merged[key], value)
            merged.put(key, value, source.key_location(key), source.value_location(key))
    return merged
