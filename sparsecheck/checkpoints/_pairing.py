"""Pairing the tensors of checkpoints by name, before anything is read.

A check compares, for each selected name, the tensor of that name in every checkpoint it reads
(two for a base/tuned pair, T for a run).  ``include``/``exclude`` globs (``fnmatch``, case
sensitive) pick the names.  Names missing from some checkpoint and shape mismatches (a resized
vocabulary is the common case) are never dropped silently: by default they are an error saying
how to leave them out; with ``on_mismatch: skip`` they are skipped and listed with the reason.
Different dtypes are not a mismatch: metrics compare in float32 (float64 when either is).

Tied weights.  ``save_pretrained`` stores tied weights once in safetensors (``lm_head.weight``
absent, sharing ``model.embed_tokens.weight``), while a ``.bin`` stores both names over one
storage, which the reader reports as an alias (see ``CheckpointReader.aliases``).  A name that
is an alias in a checkpoint is read as its target there.  A name found only in some
checkpoints is not a mismatch when, in each checkpoint that has it, it is tied to a name that
is compared: it is compared once, under that name, and a note says so.  Names tied to each
other in every checkpoint are likewise compared once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from sparsecheck.checkpoints._reader import CheckpointReader, StoredTensor
from sparsecheck.errors import CheckpointError

_SHOWN = 3


@dataclass(frozen=True)
class SkippedTensor:
    """A tensor name left out of a comparison, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class Pairing:
    """The names a check compares, those it skipped (and why), and notes for its result."""

    #: Compared names, in the order the first checkpoint stores them (file, then offset).
    names: tuple[str, ...]
    skipped: tuple[SkippedTensor, ...] = ()
    notes: tuple[str, ...] = ()
    #: Checkpoint key → compared name → where that checkpoint stores it (``meta.name`` is the
    #: name to ``read``: the alias target where the compared name is an alias there).
    stored: Mapping[str, Mapping[str, StoredTensor]] = field(default_factory=dict)


#: Where the checks of ``diff`` and ``mask`` come from (their location's file name).
COMMAND_LINE = "<command line>"


def pair_tensors(
    readers: Mapping[str, CheckpointReader],
    include: Sequence[str],
    exclude: Sequence[str],
    on_mismatch: str,
    context: str,
) -> Pairing:
    """Pair the tensors of ``readers`` (checkpoint key → reader) for the check ``context``."""
    sides = [_Side(key, reader) for key, reader in readers.items()]
    keys = [side.key for side in sides]
    known = dict.fromkeys(name for side in sides for name in side.names())
    selected = [name for name in known if _selected(name, include, exclude)]
    notes = [f"include pattern {p!r} matches no tensor" for p in include if not _matches_any(p, known)]
    compared = _in_every_checkpoint(sides, selected, notes)
    missing = _missing(sides, selected, compared, notes)
    shapes = {name: [side.stored(name).meta.shape for side in sides] for name in compared}
    mismatched = {name: s for name, s in shapes.items() if len(set(s)) > 1}
    if (missing or mismatched) and on_mismatch != "skip":
        raise CheckpointError(_mismatch_message(context, missing, mismatched, keys))

    skipped = [SkippedTensor(name, _missing_reason(lacking, keys)) for name, lacking in missing.items()]
    skipped += [SkippedTensor(name, _shape_reason(s, keys)) for name, s in mismatched.items()]
    kept = [name for name in compared if name not in mismatched]
    if kept and not any(sides[0].stored(name).meta.numel for name in kept):
        raise CheckpointError(
            f"{context}: every compared tensor has 0 entries ({_listing(kept)}): nothing to compare"
        )
    if sides:
        first = sides[0]
        kept.sort(key=lambda name: (str(first.stored(name).file), first.stored(name).offset))
    return Pairing(
        names=tuple(kept),
        skipped=tuple(sorted(skipped, key=lambda s: s.name)),
        notes=tuple(notes),
        stored={side.key: {name: side.stored(name) for name in kept} for side in sides},
    )


def _in_every_checkpoint(sides: Sequence[_Side], selected: Sequence[str], notes: list[str]) -> list[str]:
    """Names every checkpoint has, once per storage: names tied everywhere are compared once."""
    compared: list[str] = []
    first_name: dict[tuple[str, ...], str] = {}
    for name in selected:
        if all(side.has(name) for side in sides):
            target = tuple(side.resolve(name) for side in sides)
            if target in first_name:
                notes.append(f"{name}: tied to {first_name[target]} in every checkpoint, compared once")
            else:
                first_name[target] = name
                compared.append(name)
    return compared


def _missing(
    sides: Sequence[_Side], selected: Sequence[str], compared: Sequence[str], notes: list[str]
) -> dict[str, list[str]]:
    """Names some checkpoints lack (→ the keys lacking them), except those tied to a compared name."""
    missing: dict[str, list[str]] = {}
    for name in selected:
        holders = [side for side in sides if side.has(name)]
        if len(holders) == len(sides):
            continue
        partners = [side.tied_partner(name, compared) for side in holders]
        if all(partners):
            notes.append(f"{name}: tied to {partners[0]} in {holders[0].key}, compared once")
        else:
            missing[name] = [side.key for side in sides if not side.has(name)]
    return missing


class _Side:
    """One checkpoint's names: stored ones and aliases."""

    def __init__(self, key: str, reader: CheckpointReader) -> None:
        self.key = key
        self.tensors = reader.tensors()
        self.aliases = reader.aliases()

    def names(self) -> Iterable[str]:
        yield from self.tensors
        yield from self.aliases

    def has(self, name: str) -> bool:
        return name in self.tensors or name in self.aliases

    def resolve(self, name: str) -> str:
        return self.aliases.get(name, name)

    def stored(self, name: str) -> StoredTensor:
        return self.tensors[self.resolve(name)]

    def tied_partner(self, name: str, compared: Sequence[str]) -> str | None:
        """A compared name that is the same storage as ``name`` here, if any."""
        target = self.resolve(name)
        return next((other for other in compared if other != name and self.resolve(other) == target), None)


def _selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    wanted = not include or any(fnmatchcase(name, p) for p in include)
    return wanted and not any(fnmatchcase(name, p) for p in exclude)


def _matches_any(pattern: str, names: Iterable[str]) -> bool:
    return any(fnmatchcase(name, pattern) for name in names)


def _missing_reason(lacking: Sequence[str], keys: Sequence[str]) -> str:
    holders = [key for key in keys if key not in lacking]
    return f"only in {', '.join(holders)}" if len(holders) == 1 else f"missing from {', '.join(lacking)}"


def _shape_reason(shapes: Sequence[tuple[int, ...]], keys: Sequence[str]) -> str:
    return "shape " + " vs ".join(f"{_shape(s)} in {k}" for s, k in zip(shapes, keys, strict=True))


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f", … ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")


def _mismatch_message(
    context: str,
    missing: Mapping[str, Sequence[str]],
    mismatched: Mapping[str, Sequence[tuple[int, ...]]],
    keys: Sequence[str],
) -> str:
    problems: list[str] = []
    by_lacking: dict[tuple[str, ...], list[str]] = {}
    for name, lacking in missing.items():
        by_lacking.setdefault(tuple(lacking), []).append(name)
    for lacking, names in by_lacking.items():
        plural = "s" if len(names) > 1 else ""
        problems.append(f"{len(names)} tensor{plural} missing from {', '.join(lacking)}: {_listing(names)}")
    if mismatched:
        names = list(mismatched)
        first = f"{names[0]} ({_shape_reason(mismatched[names[0]], keys)})"
        plural = "es" if len(names) > 1 else ""
        problems.append(f"{len(names)} shape mismatch{plural}: {_listing([first, *names[1:]])}")
    patterns = list(dict.fromkeys(re.sub(r"(?<=\.)\d+(?=\.)", "*", n) for n in [*missing, *mismatched]))
    more = " (and more)" if len(patterns) > _SHOWN + 1 else ""
    if COMMAND_LINE in context:  # diff / mask: the options, not the spec syntax
        options = " ".join(f"--exclude '{p}'" for p in patterns[: _SHOWN + 1])
        return (
            f"{context}: {'; '.join(problems)}; leave them out with {options}{more} "
            "or skip and list them with --on-mismatch skip"
        )
    suggestion = json.dumps(patterns[: _SHOWN + 1]) + more
    return (
        f"{context}: {'; '.join(problems)}; leave them out with exclude: {suggestion} "
        "or skip and list them with on_mismatch: skip"
    )
