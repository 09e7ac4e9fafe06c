"""``.pre-commit-hooks.yaml``: the ``sparsecheck-validate`` hook picks spec files and its entry
fails on a bad one, naming file and line."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from cli_support import run_cli, write_spec

from sparsecheck.exitcodes import ExitCode

ROOT = Path(__file__).resolve().parents[2]


def test_the_validate_hook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "sparsecheck-validate"
    files = re.compile(hook["files"])
    assert [bool(files.search(n)) for n in ("a.sparsecheck.yaml", "s/b.sparsecheck.yml", "c.yaml")] == [
        1,
        1,
        0,
    ]
    command, *args = shlex.split(hook["entry"])
    assert command == "sparsecheck"
    check = "  - {id: c, metric: update_sparsity, args: {base: a, tuned: b}}\n"
    text = "version: 1\ncheckpoints: {a: x, b: y}\nchecks:\n" + check
    good = write_spec(tmp_path, text, "good.sparsecheck.yaml")
    bad = write_spec(tmp_path, "version: 1\nchekcs: []\n", "bad.sparsecheck.yaml")
    passed = run_cli(capsys, *args, good)
    assert (passed.code, passed.out) == (ExitCode.OK, "ok: 1 checks in 1 spec files\n")
    failed = run_cli(capsys, *args, good, bad)
    assert failed.code == ExitCode.USAGE_ERROR
    assert "bad.sparsecheck.yaml:2:1: unknown key 'chekcs'" in failed.err
