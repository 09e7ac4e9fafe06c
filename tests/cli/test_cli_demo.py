"""``sparsecheck demo --tiny`` as the README has a new user run it: the installed console script,
from a fresh empty folder, with the default (relative) ``--out``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cli_support import run_console_script

from sparsecheck._demo import SETTINGS, SUITES, equal_total_update, paper_suites
from sparsecheck._manager import DISABLE_AUTOLOAD_ENV
from sparsecheck.exitcodes import ExitCode


def test_tiny_demo_from_an_empty_folder_runs_every_suite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV)  # the demo trains through the installed TRL plugin
    done = run_console_script(tmp_path, "demo", "--tiny")
    shown = done.out + done.err
    # The seed's claims may fail on a tiny random model; what must hold is that everything ran.
    assert done.code in (ExitCode.OK, ExitCode.CHECKS_FAILED), shown
    data = json.loads((tmp_path / "sparsecheck-demo" / "report.json").read_text())
    spec_files = {Path(check["nodeid"].split("::")[0]).name for check in data["checks"]}
    assert spec_files == {f"{name}.sparsecheck.yaml" for name in SUITES}
    assert all(check["status"] in ("PASS", "FAIL", "WARN") for check in data["checks"]), shown
    assert "ERROR" not in done.out, shown
    # off a terminal, each training step says when it starts and ends (the TRL callback counts steps)
    steps = SETTINGS["tiny"]["steps"]
    assert "step dpo: training ...\n" in done.err
    assert f"step dpo: training done, {steps}/{steps} steps in " in done.err
    assert done.out.count("step dpo: ") == 1  # one line per output, though five suites read it
    trained = {step["id"] for step in data["steps"] if step["status"] in ("ran", "reused")}
    assert {"sft", "dpo", "grpo", "dpo-mask", "dpo-sub", "dpo-seed2", "dpo-data2"} <= trained
    ablations = {"dpo-beta4x", "dpo-noclip", "dpo-offpolicy", "dpo-lr2x", "grpo-beta004", "grpo-beta016"}
    assert ablations <= trained
    out = tmp_path / "sparsecheck-demo"
    assert all(
        Path(path).is_absolute() and Path(path).is_relative_to(out)
        for step in data["steps"]
        for path in step["outputs"].values()
    )
    html = (out / "report.html").read_text()
    for figure in (
        "unchanged-fraction",
        "update-categories",
        "layerwise-sparsity",
        "transient-share",
        "overlap-vs-chance",
        "tolerance-sweep",
        "loss",
    ):
        assert f'id="fig-{figure}' in html, figure


def test_suite_variables_cover_every_mode() -> None:
    names = [set(settings) for settings in SETTINGS.values()]
    assert all(n == names[0] for n in names)
    text = "".join(path.read_text() for path in paper_suites())
    assert all("${" + name + "}" in text for name in names[0])


@pytest.mark.parametrize("mode", list(SETTINGS))
def test_the_why_suite_compares_two_settings_of_equal_lr_times_steps(mode: str) -> None:
    settings = SETTINGS[mode]
    second = equal_total_update(settings)
    assert second["steps_half"] < settings["steps"]
    assert second["lr_double"] * second["steps_half"] == pytest.approx(settings["lr"] * settings["steps"])


def test_the_why_suite_defaults_keep_lr_times_steps_equal() -> None:
    (why,) = [path for path in paper_suites() if path.name == "why.sparsecheck.yaml"]
    defaults = yaml.safe_load(why.read_text())["vars"]
    assert defaults["lr_double"] * defaults["steps_half"] == pytest.approx(defaults["lr"] * defaults["steps"])
