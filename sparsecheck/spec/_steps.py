"""The ``steps:`` of a spec file: fine-tuning runs and masks whose outputs the checks read.

A step's id names what it produces, usable wherever a checkpoints-table key is::

    steps:
      - id: full                   # checkpoint key `full`; with snapshots also `full.run`
        train: {backend: trl, algorithm: dpo, base: base, data: {builtin: arithmetic, size: 64},
                hyperparameters: {lr: 1.0e-5, steps: 20, seed: 1}, snapshots: {every: 5}}
      - id: full-mask              # mask key `full-mask`
        mask: {base: base, tuned: full, policy: exact}
      - id: sub
        train: {backend: trl, algorithm: dpo, base: base, mask: full-mask, data: ..., ...}

- a ``train`` step ``ID`` produces the checkpoint ``ID``; with ``snapshots: {every: N}`` (a full
  snapshot every N optimizer steps and at the last) also ``ID.run``, the run folder of its
  ``checkpoint-<step>/`` snapshots, for run-list arguments (``run: [ID.run]``);
- a ``mask`` step ``ID`` produces the mask ``ID`` (entries changed from ``base`` to ``tuned``
  under ``policy``, default ``exact``), for ``mask`` arguments of checks and a train step's
  ``mask:``.

A train step's ``base`` (and ``reward_model``, the reward model a ``ppo`` run learns from) and a
mask step's ``base``/``tuned`` name a checkpoints key or a train step; a train step's ``mask``
names a mask step or a mask file (a path relative to the spec's folder).  ``data:`` describes the
generated dataset: ``builtin`` (its name, ``arithmetic``) and the other fields of
:class:`~sparsecheck.training._api.GeneratedDataset`.  ``hyperparameters``
go to the backend as given, except ``seed``, the run's seed.  Steps may be listed in any order.
A cycle, an unknown key, a duplicate id or an id that is also a checkpoints key is an error at
its file:line:column.  A backend's name and algorithms are checked when the step runs, so
collecting and validating specs never loads a training engine.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsecheck.errors import Location, SpecError
from sparsecheck.metrics._api import Metric
from sparsecheck.spec._located import YamlList, YamlMap, to_plain
from sparsecheck.spec._messages import did_you_mean, show_value
from sparsecheck.spec._model import CheckpointRef, Step
from sparsecheck.spec._variables import Variables
from sparsecheck.training._api import GeneratedDataset

#: The key of a train step's snapshots is its id plus this suffix.
RUN_SUFFIX = ".run"
ACTIONS = ("train", "mask")
MASK_POLICIES = ("exact", "atol", "rtol")
MISMATCH_CHOICES = ("error", "skip")
#: The roles of each action that name another key (a mask may also be a file path).
_ROLES = {"train": ("base", "mask", "reward_model"), "mask": ("base", "tuned")}
_STEP_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
#: GeneratedDataset field → its key under ``data:``, and back.
_DATA_KEYS = {"name": "builtin"}
_DATA_FIELDS = {key: name for name, key in _DATA_KEYS.items()}
_TYPE_WORDS = {str: "a string", int: "an integer", float: "a number"}
_KIND_WORDS = {
    "checkpoint": "a checkpoint",
    "run": "a run folder of snapshots",
    "mask": "a mask",
}


@dataclass
class _Draft:
    """A step as parsed, before its references are linked."""

    id: str
    action: str
    settings: YamlMap
    location: Location
    #: Role → (key as written, its location) for the roles that name a key.
    references: dict[str, tuple[str, Location]]


def load_steps(
    node: YamlList | None, variables: Variables, checkpoints: Mapping[str, CheckpointRef], path: Path
) -> tuple[list[Step], dict[str, CheckpointRef]]:
    """The steps of ``node`` (file order) and the keys they produce, each linked to its step."""
    if node is None:
        return [], {}
    drafts = _drafts(node, variables, checkpoints)
    produced = {key: (draft, kind) for draft in drafts for key, kind in _outputs(draft)}
    edges = {draft.id: _step_edges(draft, checkpoints, produced) for draft in drafts}
    built: dict[str, Step] = {}
    refs: dict[str, CheckpointRef] = {}
    by_id = {draft.id: draft for draft in drafts}
    for step_id in _dependency_order(drafts, edges):
        step = _build(by_id[step_id], {**checkpoints, **refs}, path)
        built[step_id] = step
        for key, kind in _outputs(by_id[step_id]):
            placeholder = f"<output of step {step_id!r}>"
            refs[key] = CheckpointRef(key, placeholder, step.location, step=step, kind=kind)
    ordered_refs = {key: refs[key] for key in produced}
    return [built[draft.id] for draft in drafts], ordered_refs


def _drafts(node: YamlList, variables: Variables, checkpoints: Mapping[str, CheckpointRef]) -> list[_Draft]:
    drafts: list[_Draft] = []
    first_seen: dict[str, Location] = {}
    for index, raw in enumerate(node):
        item = variables.substitute(raw, node.item_location(index))
        id_location = item.value_location("id")
        step_id = item["id"]
        if not isinstance(step_id, str) or not _STEP_ID.fullmatch(step_id):
            raise SpecError(
                f"steps[{index}].id: expected a name of letters, digits, _ and -, got {show_value(step_id)}",
                id_location,
            )
        if step_id in first_seen:
            raise SpecError(
                f"duplicate step id {step_id!r} (first at line {first_seen[step_id].line})", id_location
            )
        first_seen[step_id] = id_location
        action = next(name for name in ACTIONS if name in item)
        draft = _Draft(step_id, action, item[action], item.location, {})
        for key, _ in _outputs(draft):
            if key in checkpoints:
                raise SpecError(
                    f"step id {step_id!r}: {key!r} is already a key of the checkpoints table "
                    f"(line {checkpoints[key].location.line})",
                    id_location,
                )
        _validate_settings(draft)
        drafts.append(draft)
    return drafts


def _outputs(draft: _Draft) -> list[tuple[str, str]]:
    """The keys ``draft`` produces and their kinds."""
    if draft.action == "mask":
        return [(draft.id, "mask")]
    keys = [(draft.id, "checkpoint")]
    if "snapshots" in draft.settings:
        keys.append((draft.id + RUN_SUFFIX, "run"))
    return keys


# -- settings ----------------------------------------------------------------------------------


def _fail(draft: _Draft, key: str, message: str) -> SpecError:
    location = draft.settings.value_location(key)
    return SpecError(f"step {draft.id!r}: {draft.action}.{key}: {message}", location)


def _validate_settings(draft: _Draft) -> None:
    """Types and values the schema could not see (variables substituted), and the references."""
    settings = draft.settings
    for key in ("backend", "algorithm", "device", "policy", "on_mismatch"):
        if key in settings and (not isinstance(settings[key], str) or not settings[key]):
            raise _fail(draft, key, f"expected a name, got {show_value(settings[key])}")
    for role in _ROLES[draft.action]:
        if role in settings:
            value = settings[role]
            if not isinstance(value, str) or not value:
                raise _fail(draft, role, f"expected a checkpoint key or step id, got {show_value(value)}")
            draft.references[role] = (value, settings.value_location(role))
    for key in ("data", "hyperparameters", "snapshots"):
        if key in settings and not isinstance(settings[key], dict):
            raise _fail(draft, key, f"expected a mapping, got {show_value(settings[key])}")
    if draft.action == "train":
        _validate_train(draft)
    else:
        _validate_mask(draft)


def _validate_train(draft: _Draft) -> None:
    settings = draft.settings
    seed = settings.get("hyperparameters", {}).get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise _fail(draft, "hyperparameters", f"seed: expected an integer, got {show_value(seed)}")
    _validate_data(draft)
    if "snapshots" in settings:
        every = settings["snapshots"].get("every")
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise _fail(draft, "snapshots", f"every: expected a whole number >= 1, got {show_value(every)}")


def _validate_data(draft: _Draft) -> None:
    """``data:`` names a generated dataset: ``builtin`` and the other fields of GeneratedDataset."""
    defaults = {_DATA_KEYS.get(f.name, f.name): f.default for f in dataclasses.fields(GeneratedDataset)}
    for key, value in draft.settings["data"].items():
        if key not in defaults:
            hint = did_you_mean(key, defaults) or f" (it takes: {', '.join(defaults)})"
            raise _fail(draft, "data", f"unknown key {key!r}{hint}")
        kind = type(defaults[key])
        wanted = (int, float) if kind is float else (kind,)
        if not isinstance(value, wanted) or isinstance(value, bool):
            raise _fail(draft, "data", f"{key}: expected {_TYPE_WORDS[kind]}, got {show_value(value)}")


def generated_dataset(data: Mapping[str, Any]) -> GeneratedDataset:
    """The dataset a train step's ``data:`` (validated) describes."""
    return GeneratedDataset(**{_DATA_FIELDS.get(key, key): value for key, value in data.items()})


def _validate_mask(draft: _Draft) -> None:
    settings = draft.settings
    for key, choices in (("policy", MASK_POLICIES), ("on_mismatch", MISMATCH_CHOICES)):
        if key in settings and settings[key] not in choices:
            hint = did_you_mean(settings[key], choices)
            raise _fail(draft, key, f"{settings[key]!r} is not one of {', '.join(choices)}{hint}")
    if "tol" in settings:
        tol = settings["tol"]
        if not isinstance(tol, int | float) or isinstance(tol, bool) or math.isnan(tol) or tol < 0:
            raise _fail(draft, "tol", f"expected a number >= 0, got {show_value(tol)}")
    for key in ("include", "exclude"):
        patterns = settings.get(key, [])
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise _fail(draft, key, f"expected a list of glob patterns, got {show_value(patterns)}")


# -- references and order ---------------------------------------------------------------------


def _step_edges(
    draft: _Draft,
    checkpoints: Mapping[str, CheckpointRef],
    produced: Mapping[str, tuple[_Draft, str]],
) -> list[tuple[str, Location]]:
    """The steps ``draft`` reads from (with where it names them); a wrong reference is an error."""
    edges = []
    for role, (key, location) in draft.references.items():
        wanted = "mask" if role == "mask" else "checkpoint"
        if key in produced:
            source, kind = produced[key]
            if kind != wanted:
                raise _kind_error(draft, role, key, kind, wanted, f"produced by step {source.id!r}")
            edges.append((source.id, location))
        elif key in checkpoints:
            if wanted == "mask":
                raise _kind_error(draft, role, key, "checkpoint", wanted, "a checkpoints entry")
        elif role != "mask":
            known = [*checkpoints, *(k for k, (_, kind) in produced.items() if kind == "checkpoint")]
            hint = did_you_mean(key, known) or f" (known: {', '.join(known) or 'none'})"
            raise _fail(draft, role, f"unknown checkpoint or step {key!r}{hint}")
    return edges


def _kind_error(draft: _Draft, role: str, key: str, kind: str, wanted: str, origin: str) -> SpecError:
    if wanted == "mask":
        expected = "a mask step's id or a mask file path"
    else:
        expected = "a checkpoints key or a train step's id"
    return _fail(draft, role, f"{key!r} is {_KIND_WORDS[kind]} ({origin}); expected {expected}")


def _dependency_order(drafts: list[_Draft], edges: Mapping[str, list[tuple[str, Location]]]) -> list[str]:
    """Step ids with every step after the steps it reads (file order otherwise); a cycle is an error."""
    order: list[str] = []
    state: dict[str, str] = {}  # "active" while on the walk's path, "done" once placed

    def visit(step_id: str, path: list[str]) -> None:
        state[step_id] = "active"
        path = [*path, step_id]
        for target, location in edges[step_id]:
            if state.get(target) == "active":
                cycle = [*path[path.index(target) :], target]
                raise SpecError(f"steps form a cycle: {' → '.join(cycle)}", location)
            if target not in state:
                visit(target, path)
        state[step_id] = "done"
        order.append(step_id)

    for draft in drafts:
        if draft.id not in state:
            visit(draft.id, [])
    return order


def _build(draft: _Draft, known: Mapping[str, CheckpointRef], path: Path) -> Step:
    """The step, its references linked to ``known`` refs (its inputs are built already)."""
    settings: dict[str, Any] = to_plain(draft.settings)
    inputs: dict[str, CheckpointRef] = {}
    files: dict[str, Path] = {}
    for role, (key, _) in draft.references.items():
        if key in known:
            inputs[role] = known[key]
        else:  # a mask file, by path
            files[role] = _absolute(key, path)
            settings[role] = str(files[role])
    return Step(draft.id, draft.action, settings, inputs, files, draft.location, path)


def _absolute(value: str, spec_path: Path) -> Path:
    return (spec_path.parent / Path(value).expanduser()).resolve()


# -- checks reading step outputs --------------------------------------------------------------


def step_inputs(
    metric: Metric, args: Mapping[str, Any], checkpoints: Mapping[str, CheckpointRef]
) -> list[tuple[str, CheckpointRef]]:
    """(argument name, ref) for each key a check's arguments name that a step produces."""
    found = []
    for param in metric.all_params():
        if param.kind not in ("checkpoint", "checkpoints", "mask", "masks"):
            continue
        value = args.get(param.name)
        for key in value if isinstance(value, list) else [value]:
            ref = checkpoints.get(key) if isinstance(key, str) else None
            if ref is not None and ref.step is not None:
                found.append((param.name, ref))
    return found


def check_step_kinds(
    metric: Metric,
    args: Mapping[str, Any],
    given: YamlMap | None,
    location: Location,
    checkpoints: Mapping[str, CheckpointRef],
) -> None:
    """A check may read a train step's checkpoint where a checkpoint (or a mask) is wanted, its
    run in a run list, and a mask step's file where a mask is wanted; anything else is an error
    at the argument (``given`` holds the arguments as written, for their locations)."""
    kinds = {param.name: param.kind for param in metric.all_params()}
    allowed = {
        "checkpoint": ("checkpoint",),
        "checkpoints": ("checkpoint", "run"),
        "mask": ("mask", "checkpoint"),
        "masks": ("mask", "checkpoint"),
    }
    for name, ref in step_inputs(metric, args, checkpoints):
        if ref.kind in allowed[kinds[name]]:
            continue
        assert ref.step is not None
        where = given.value_location(name) if given is not None and name in given else location
        hint = f"; use it in a run list, e.g. [{ref.key}]" if ref.kind == "run" else ""
        raise SpecError(
            f"args.{name}: {ref.key!r} is {_KIND_WORDS[ref.kind]} (produced by step {ref.step.id!r}), "
            f"not what {metric.name!r} reads here{hint}",
            where,
        )
