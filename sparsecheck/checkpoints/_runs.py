"""A training run on disk: a Trainer output folder of ``checkpoint-<step>/`` subfolders."""

from __future__ import annotations

import re
from pathlib import Path

from sparsecheck.errors import CheckpointError

#: The name of a Trainer checkpoint subfolder; group 1 is the step.
STEP_FOLDER = re.compile(r"checkpoint-(\d+)", re.ASCII)


def run_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """The ``checkpoint-<step>`` subfolders of ``folder`` (a Trainer output folder), by step."""
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a folder (expected one holding checkpoint-<step> subfolders)")
    found: dict[int, Path] = {}
    for child in folder.iterdir():
        match = STEP_FOLDER.fullmatch(child.name)
        if match is None or not child.is_dir():
            continue
        step = int(match.group(1))
        if step in found:
            raise CheckpointError(f"{folder}: {found[step].name} and {child.name} are both step {step}")
        found[step] = child
    if not found:
        raise CheckpointError(f"{folder}: no checkpoint-<step> subfolders")
    return sorted(found.items())
