"""What a spec file becomes: checkpoint references, expectations and checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsecheck.errors import Location

OPERATORS = ("gt", "ge", "lt", "le", "eq", "between")


@dataclass(frozen=True)
class CheckpointRef:
    """An entry of a spec's ``checkpoints:`` table, variables substituted."""

    key: str
    #: A local path (relative ones resolved against the spec file's folder) or a hub id.
    source: str
    location: Location
    revision: str | None = None


@dataclass(frozen=True)
class FieldRef:
    """An operand that names another field of the same result (``{field: baseline_o1}``)."""

    field: str


Operand = float | FieldRef


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
            return x.field if isinstance(x, FieldRef) else f"{x:g}"

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
    #: The spec's checkpoint table (shared by its checks).
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
        return f"{self.spec_path.as_posix()}::{self.id}"


@dataclass
class SpecFile:
    """A loaded spec file."""

    path: Path
    checkpoints: dict[str, CheckpointRef]
    checks: list[Check]
