"""References between checks (``{check: ID}`` operands): validated when a spec file is loaded,
and followed when a selection needs checks it left out.

A reference names a check of the same spec file by id; a parametrized check is named with its
``[values]`` (``each-run[rl_a]``).  A check may not reference itself, nor be part of a cycle of
references.  The checks a selected check references (directly or through others) are computed
even when ``-k``, ``-m`` or ``--lf`` deselected them, but only the selected ones are reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sparsecheck.errors import SpecError
from sparsecheck.spec._messages import did_you_mean
from sparsecheck.spec._model import Check


def validate_references(checks: Sequence[Check]) -> None:
    """Raise a SpecError at the first reference (in file order) to an unknown check, to the
    check itself, or closing a cycle; ``checks`` are one spec file's."""
    by_id = {check.id: check for check in checks}
    expanded: dict[str, list[str]] = {}
    for check in checks:
        base, bracket, _ = check.id.partition("[")
        if bracket:
            expanded.setdefault(base, []).append(check.id)
    for check in checks:
        for ref in check.check_refs:
            if ref.check == check.id:
                raise SpecError(f"{_prefix(check)}a check cannot reference itself", ref.location)
            if ref.check not in by_id:
                raise SpecError(f"{_prefix(check)}{_unknown(ref.check, by_id, expanded)}", ref.location)
    _reject_cycles(checks, by_id)


def _prefix(check: Check) -> str:
    """``each-run[rl_a]: `` for a parametrized check (which of its expansions is wrong)."""
    return f"{check.id}: " if "[" in check.id else ""


def _unknown(name: str, by_id: dict[str, Check], expanded: dict[str, list[str]]) -> str:
    if name in expanded:
        listed = ", ".join(repr(check_id) for check_id in expanded[name])
        return f"check {name!r} is parametrized: reference one of its checks ({listed})"
    hint = did_you_mean(name, by_id) or f" (the file's checks: {', '.join(by_id)})"
    return f"unknown check {name!r}{hint}"


def _reject_cycles(checks: Sequence[Check], by_id: dict[str, Check]) -> None:
    done: set[str] = set()

    def visit(check: Check, path: list[str]) -> None:
        for ref in check.check_refs:
            if ref.check in path:
                cycle = " -> ".join([*path[path.index(ref.check) :], ref.check])
                raise SpecError(f"reference cycle: {cycle}", ref.location)
            if ref.check not in done:
                visit(by_id[ref.check], [*path, ref.check])
        done.add(check.id)

    for check in checks:
        if check.id not in done:
            visit(check, [check.id])


def referenced_checks(selected: Sequence[Check], among: Iterable[Check]) -> list[Check]:
    """The not-skipped checks of ``among`` that the not-skipped ``selected`` checks reference,
    directly or through others, and that are not selected themselves (in ``among``'s order)."""
    by_nodeid = {check.nodeid: check for check in among}
    chosen = {check.nodeid for check in selected}
    needed: set[str] = set()
    pending = [nodeid for check in selected if check.skip is None for nodeid in check.references]
    while pending:
        nodeid = pending.pop()
        check = by_nodeid.get(nodeid)
        if check is None or check.skip is not None or nodeid in chosen or nodeid in needed:
            continue
        needed.add(nodeid)
        pending.extend(check.references)
    return [check for nodeid, check in by_nodeid.items() if nodeid in needed]
