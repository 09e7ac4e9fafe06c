"""Shared by the CLI and pytest-plugin tests: planted checkpoints, spec text, running ``main``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from sparsecheck.cli import main
from sparsecheck.testing import plant_changes, tiny_llama_state_dict, write_checkpoint

#: A command-line argument: text or a path.
Arg = str | os.PathLike[str]

#: Fraction of entries planted as changed in each tuned checkpoint (sparsity = 1 - fraction).
FRACTIONS = {"rl_a": 0.1, "rl_b": 0.4}


@dataclass(frozen=True)
class Runs:
    """A base checkpoint and tuned ones with planted changes; ``sparsity`` is the exact truth."""

    root: Path
    base: Path
    tuned: dict[str, Path]
    sparsity: dict[str, float]
    #: Tuned key → tensor name → that tensor's planted sparsity.
    tensor_sparsity: dict[str, dict[str, float]]

    def header(self) -> str:
        """The ``version`` and ``checkpoints`` part of a spec over these checkpoints."""
        lines = ["version: 1", "checkpoints:", f"  base: '{self.base}'"]
        lines += [f"  {key}: '{path}'" for key, path in self.tuned.items()]
        return "\n".join(lines) + "\n"


def build_runs(root: Path) -> Runs:
    """``root/base`` and one sharded-or-not tuned folder per :data:`FRACTIONS` key."""
    base = tiny_llama_state_dict(layers=2, dtype=torch.float32, seed=0)
    write_checkpoint(root / "base", base, "dir")
    tuned: dict[str, Path] = {}
    sparsity: dict[str, float] = {}
    tensor_sparsity: dict[str, dict[str, float]] = {}
    for seed, (key, fraction) in enumerate(FRACTIONS.items(), start=1):
        changed, masks = plant_changes(base, fraction, seed=seed)
        tuned[key] = write_checkpoint(root / key, changed, "sharded" if seed % 2 else "dir")
        total = sum(mask.numel() for mask in masks.values())
        sparsity[key] = 1 - sum(int(mask.sum()) for mask in masks.values()) / total
        tensor_sparsity[key] = {name: 1 - int(m.sum()) / m.numel() for name, m in masks.items()}
    return Runs(root, root / "base", tuned, sparsity, tensor_sparsity)


def write_spec(folder: Path, text: str, name: str = "x.sparsecheck.yaml") -> Path:
    """Write dedented ``text`` to ``folder/name`` and return the path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def check_yaml(check_id: str, tuned: str, expect: str, extra: str = "") -> str:
    """One ``update_sparsity`` check of ``base`` → ``tuned`` as a YAML list item."""
    text = (
        f"  - id: {check_id}\n"
        "    metric: update_sparsity\n"
        f"    args: {{base: base, tuned: {tuned}}}\n"
        f"    expect: {expect}\n"
    )
    return text + "".join(f"    {line}\n" for line in textwrap.dedent(extra).splitlines() if line)


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: Arg) -> CliResult:
    """``sparsecheck ARGS`` in this process; its exit code and captured output."""
    capsys.readouterr()
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def run_console_script(cwd: Path, *args: Arg, **env: str) -> CliResult:
    """``sparsecheck ARGS`` as a user runs it: the console script installed beside this
    interpreter, in a subprocess started in ``cwd``, offline, with ``env`` added."""
    script = Path(sys.executable).parent / "sparsecheck"
    assert script.is_file(), f"{script}: sparsecheck is not installed in this environment"
    done = subprocess.run(
        [str(script), *map(str, args)],
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` → (size, mtime in ns): shows any write into it."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
    }


def shown(path: Path) -> Path:
    """A spec path as sparsecheck shows it: relative to the current folder when under it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path.resolve()
