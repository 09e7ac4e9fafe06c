"""``--color auto|always|never``, ``NO_COLOR`` and ``FORCE_COLOR``."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import Runs, run_cli, write_spec

from sparsecheck._cli_options import use_color

ESC = "\x1b["


@pytest.mark.parametrize(
    ("choice", "environ", "expected"),
    [
        (None, {}, None),
        ("auto", {}, None),
        (None, {"NO_COLOR": "1"}, False),
        (None, {"NO_COLOR": ""}, None),
        (None, {"FORCE_COLOR": "1"}, True),
        (None, {"FORCE_COLOR": "0"}, None),
        (None, {"NO_COLOR": "1", "FORCE_COLOR": "1"}, False),
        ("always", {"NO_COLOR": "1"}, True),
        ("never", {"FORCE_COLOR": "1"}, False),
    ],
)
def test_precedence(choice: str | None, environ: dict[str, str], expected: bool | None) -> None:
    assert use_color(choice, environ) is expected


def test_colour_in_the_output(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = f'version: 1\ncheckpoints: {{base: "{runs.base}", tuned: "{runs.tuned["rl_a"]}"}}\nchecks:\n'
    text += "  - {id: a, metric: update_sparsity, args: {base: base, tuned: tuned}, expect: {gt: 0.5}}\n"
    spec = write_spec(tmp_path, text)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    assert ESC not in run_cli(capsys, "run", spec).out  # not a terminal
    assert ESC in run_cli(capsys, "run", spec, "--color", "always").out
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert ESC in run_cli(capsys, "run", spec).out
    assert ESC not in run_cli(capsys, "run", spec, "--color", "never").out
