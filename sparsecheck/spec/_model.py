"""What a spec file becomes: checkpoint references, steps, expectations and checks.

An expectation's operand is a number, another field of the same result (:class:`FieldRef`) or
another check's result (:class:`CheckRef`, ``{check: sft-sparsity}``): a check of the same spec
file, by id (a parametrized one with its ``[values]``), whose result is computed before the
referencing check is judged; or the same check's result in a saved baseline
(:class:`BaselineRef`, ``{baseline: true}``, see :mod:`sparsecheck.engine._baseline`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsecheck.errors import Location

OPERATORS = ("gt", "ge", "lt", "le", "eq", "between")


@dataclass(frozen=True)
class CheckpointRef:
    """An entry of a spec's ``checkpoints:`` table (variables substituted), or a key a step produces."""

    key: str
    #: A local path (relative ones resolved against the spec file's folder) or a hub id.
    source: str
    location: Location
    revision: str | None = None
    #: The spec step producing this key (its ``source`` is a placeholder until the step ran).
    step: Step | None = None
    #: What the key names: a ``checkpoint`` (or a run folder of the checkpoints table), a step's
    #: snapshot ``run`` folder, or a ``mask`` file.
    kind: str = "checkpoint"
    #: For a PEFT adapter (``{base: KEY, adapter: PATH}``; ``source`` is the adapter folder):
    #: the checkpoint it applies to.
    base: CheckpointRef | None = None


@dataclass(frozen=True)
class Step:
    """An entry of a spec's ``steps:``: a fine-tuning run or a mask, run before the checks that
    read what it produces (see :mod:`sparsecheck.spec._steps`)."""

    id: str
    #: ``train`` or ``mask``.
    action: str
    #: The action's mapping as plain data, variables substituted, file paths made absolute.
    settings: Mapping[str, Any]
    #: Role (``base``, ``tuned``, ``mask``) → the checkpoint or step output it reads.
    inputs: Mapping[str, CheckpointRef]
    #: Role (``mask``) → a file it reads, named by path.
    files: Mapping[str, Path]
    location: Location
    spec_path: Path

    @property
    def nodeid(self) -> str:
        """``<spec file>::<step id>``: the step's identity in a session and its reports."""
        return f"{self.spec_path.as_posix()}::{self.id}"


@dataclass(frozen=True)
class FieldRef:
    """An operand that names another field of the same result (``{field: baseline_o1}``)."""

    field: str


@dataclass(frozen=True)
class CheckRef:
    """An operand that names another check's result in the same spec file
    (``{check: full-accuracy, field: accuracy, minus: 0.05}``): ``times`` × its primary value
    (or ``field``) + ``offset``.  In a ``per:`` expectation every group is compared with it."""

    check: str
    field: str | None = None
    times: float = 1.0
    offset: float = 0.0
    #: Where the reference is written (its ``check:`` value).
    location: Location | None = dataclasses.field(default=None, compare=False)

    def describe(self) -> str:
        """``sft-sparsity.value``, ``full-accuracy.accuracy - 0.05``, ``1.1 * sft.value``."""
        return _scaled_text(f"{self.check}.{self.field or 'value'}", self.times, self.offset)

    def apply(self, referenced: float) -> float:
        """The operand's value, given the referenced field's."""
        return self.times * referenced + self.offset


@dataclass(frozen=True)
class BaselineRef:
    """An operand that names this same check's result in the baseline given with ``--baseline``
    (``{baseline: true, minus: 0.02}``, ``{baseline: accuracy}``): ``times`` × its primary value
    (or ``field``) + ``offset``.  Under ``per:`` each group is compared with its own group in
    the baseline."""

    field: str | None = None
    times: float = 1.0
    offset: float = 0.0
    #: Where the reference is written (its ``baseline:`` value).
    location: Location | None = dataclasses.field(default=None, compare=False)

    def describe(self) -> str:
        """``baseline.value``, ``baseline.accuracy - 0.02``, ``0.9 * baseline.value``."""
        return _scaled_text(f"baseline.{self.field or 'value'}", self.times, self.offset)

    def apply(self, referenced: float) -> float:
        """The operand's value, given the baseline field's."""
        return self.times * referenced + self.offset


def _scaled_text(text: str, times: float, offset: float) -> str:
    """``text`` with its factor and offset: ``0.5 * sft.value + 0.1``."""
    if times != 1.0:
        text = f"{times:g} * {text}"
    if offset:
        text += f" {'+' if offset > 0 else '-'} {abs(offset):g}"
    return text


Operand = float | FieldRef | CheckRef | BaselineRef


@dataclass(frozen=True)
class Expectation:
    """``<field> <op> <operand>``; ``field`` None means the result's primary value."""

    op: str
    operands: tuple[Operand, ...]
    location: Location
    field: str | None = None
    #: Absolute tolerance of ``eq``.
    tol: float = 0.0

    def describe(self) -> str:
        names = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "eq": "=="}
        lhs = self.field or "value"

        def show(x: Operand) -> str:
            if isinstance(x, FieldRef):
                return x.field
            return x.describe() if isinstance(x, CheckRef | BaselineRef) else f"{x:g}"

        if self.op == "between":
            return f"{show(self.operands[0])} <= {lhs} <= {show(self.operands[1])}"
        text = f"{lhs} {names[self.op]} {show(self.operands[0])}"
        return text + (f" ± {self.tol:g}" if self.op == "eq" and self.tol else "")


@dataclass(frozen=True)
class Check:
    """One check after templates, parametrization and variable substitution."""

    #: Unique id within its spec file, e.g. ``each-run-sparse[rl_a]``.
    id: str
    metric: str
    args: Mapping[str, Any]
    location: Location
    spec_path: Path
    #: The spec's checkpoint table and its steps' keys (shared by its checks).
    checkpoints: Mapping[str, CheckpointRef]
    expect: tuple[Expectation, ...] = ()
    warn: tuple[Expectation, ...] = ()
    per: str | None = None
    mostly: float | None = None
    marks: tuple[str, ...] = ()
    skip: str | None = None
    description: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def nodeid(self) -> str:
        """``<spec file>::<id>``, the id used by ``--lf``, JUnit and the JSON report."""
        return self.nodeid_of(self.id)

    def nodeid_of(self, check_id: str) -> str:
        """The nodeid of the check ``check_id`` of the same spec file."""
        return f"{self.spec_path.as_posix()}::{check_id}"

    @property
    def check_refs(self) -> tuple[CheckRef, ...]:
        """The ``{check: ID}`` operands of the check's ``expect`` and ``warn``, in order."""
        expectations = (*self.expect, *self.warn)
        return tuple(x for e in expectations for x in e.operands if isinstance(x, CheckRef))

    @property
    def baseline_refs(self) -> tuple[BaselineRef, ...]:
        """The ``{baseline: …}`` operands of the check's ``expect`` and ``warn``, in order."""
        expectations = (*self.expect, *self.warn)
        return tuple(x for e in expectations for x in e.operands if isinstance(x, BaselineRef))

    @property
    def references(self) -> tuple[str, ...]:
        """The nodeids of the checks this check's expectations reference, each once."""
        return tuple(dict.fromkeys(self.nodeid_of(ref.check) for ref in self.check_refs))


@dataclass
class SpecFile:
    """A loaded spec file."""

    path: Path
    #: The checkpoints table plus the keys the steps produce.
    checkpoints: dict[str, CheckpointRef]
    checks: list[Check]
    #: The ``steps:``, in file order.
    steps: list[Step] = field(default_factory=list)
