"""Checks built from the command line (``diff``, ``mask``): metrics over one BASE → TUNED pair."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sparsecheck._config import Config
from sparsecheck.checkpoints._adapter import is_adapter
from sparsecheck.checkpoints._pairing import COMMAND_LINE
from sparsecheck.errors import Location, UsageError
from sparsecheck.spec._args import validate_args
from sparsecheck.spec._located import YamlMap
from sparsecheck.spec._model import Check, CheckpointRef

PAIR = ("base", "tuned")


def pair_checks(
    config: Config,
    base: str,
    tuned: str,
    metrics: Sequence[str],
    options: Mapping[str, Any],
    per: str | None = None,
) -> list[Check]:
    """One check per metric over BASE → TUNED, no expectation.

    A TUNED that is a PEFT adapter folder is read as BASE moved by the adapter.
    ``options`` (CLI values by argument name; None = not given) go to each metric that takes
    them; ``per`` to each metric that has that granularity.  An error opening a checkpoint names
    the argument (``TUNED: <path>: …``).
    """
    base_ref = CheckpointRef("base", base, Location("BASE"))
    adapter = is_adapter(Path(tuned).expanduser())
    refs = {
        "base": base_ref,
        "tuned": CheckpointRef("tuned", tuned, Location("TUNED"), base=base_ref if adapter else None),
    }
    checks = []
    for name in metrics:
        metric = config.metric(name)
        params = {p.name: p for p in metric.all_params()}
        needed = {p.name for p in params.values() if p.kind == "checkpoint" and p.required}
        if not needed or not needed <= set(PAIR) or not set(PAIR) <= set(params):
            raise UsageError(f"--metrics: {name!r} does not compare a BASE and a TUNED checkpoint")
        given = YamlMap(Location(COMMAND_LINE))
        for key, value in {"base": "base", "tuned": "tuned", **options}.items():
            if key in params and value is not None:
                given.put(key, value, Location(f"--{key}"), Location(f"--{key.replace('_', '-')}"))
        args = validate_args(metric, given, Location(COMMAND_LINE), refs, Path.cwd())
        checks.append(
            Check(
                id=name,
                metric=name,
                args=args,
                location=Location(COMMAND_LINE),
                spec_path=Path.cwd() / COMMAND_LINE,
                checkpoints=refs,
                per=per if per in metric.granularities else None,
            )
        )
    return checks
