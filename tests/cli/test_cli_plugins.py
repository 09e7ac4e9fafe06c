"""Plugins from the command line: ``-p NAME``, ``-p no:NAME``, a spec folder's local plugin file,
entry points (and the variable that turns them off), and two plugins claiming one metric."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from cli_support import Runs, check_yaml, run_cli, write_spec

from sparsecheck._manager import DISABLE_AUTOLOAD_ENV, LOCAL_PLUGIN_FILE, get_plugin_manager
from sparsecheck.exitcodes import ExitCode
from sparsecheck.testing import tiny_llama_state_dict


def plugin_source(metric: str) -> str:
    """A plugin module registering ``metric``: the number of tensors (and entries) of checkpoint ``of``."""
    return textwrap.dedent(
        f'''\
        from sparsecheck import Metric, MetricResult, Param, Reducer, hookimpl


        class _Count(Reducer):
            def __init__(self, checkpoint):
                self.checkpoint, self.tensors, self.entries = checkpoint, 0, 0

            def update(self, group):
                self.tensors += 1
                self.entries += group.array(self.checkpoint).size

            def finish(self, skipped):
                return MetricResult(
                    metric="{metric}",
                    value_field="tensors",
                    fields={{"tensors": self.tensors, "entries": self.entries}},
                    definition="tensors and entries of a checkpoint",
                )


        class Count(Metric):
            name = "{metric}"
            summary = "counts a checkpoint's tensors"
            params = (Param("of", "checkpoint", "the checkpoint"),)
            value_field = "tensors"

            def reducer(self, args):
                return _Count(args["of"])


        @hookimpl
        def sparsecheck_add_metrics():
            return [Count()]
        '''
    )


def _module(folder: Path, name: str, metric: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(plugin_source(metric))
    return folder


TENSORS = len(tiny_llama_state_dict(layers=2))
ENTRIES = sum(t.numel() for t in tiny_llama_state_dict(layers=2).values())


def _count_spec(runs: Runs, folder: Path, metric: str) -> Path:
    check = f"  - id: count\n    metric: {metric}\n    args: {{of: rl_a}}\n    expect: {{eq: {TENSORS}}}\n"
    return write_spec(folder, runs.header() + "checks:\n" + check)


def _value_and_fields(report: Path) -> tuple[object, dict[str, object]]:
    check = json.loads(report.read_text())["checks"][0]
    return check["value"], check["result"]["fields"]


def test_no_update_sparsity_makes_it_unknown(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, runs.header() + "checks:\n" + check_yaml("a", "rl_a", "{gt: 0.5}"))
    result = run_cli(capsys, "run", "-p", "no:update_sparsity", spec)
    assert result.code == ExitCode.USAGE_ERROR
    assert "unknown metric 'update_sparsity'" in result.err
    listing = run_cli(capsys, "metrics", "-p", "no:update_sparsity").out
    assert not any(line.startswith("update_sparsity ") for line in listing.splitlines())
    assert run_cli(capsys, "run", spec).code == ExitCode.OK
    assert run_cli(capsys, "run", "-p", "sparsecheck.metrics.update_sparsity", spec).code == ExitCode.OK


def test_a_module_named_with_p_adds_a_metric(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(_module(tmp_path / "mods", "sc_test_count_plugin", "tensor_count")))
    spec = _count_spec(runs, tmp_path, "tensor_count")
    report = tmp_path / "r.json"

    unknown = run_cli(capsys, "run", spec)
    assert unknown.code == ExitCode.USAGE_ERROR and "unknown metric 'tensor_count'" in unknown.err
    result = run_cli(capsys, "run", "-p", "sc_test_count_plugin", "--json", report, spec)
    assert result.code == ExitCode.OK, result.out + result.err
    assert _value_and_fields(report) == (TENSORS, {"tensors": TENSORS, "entries": ENTRIES})
    assert run_cli(capsys, "validate", "-p", "sc_test_count_plugin", spec).code == ExitCode.OK
    listing = run_cli(capsys, "metrics", "-psc_test_count_plugin").out
    assert any(line.split()[:2] == ["tensor_count", "sc_test_count_plugin"] for line in listing.splitlines())


def test_a_spec_folders_local_plugin_is_loaded(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "suite"
    (folder).mkdir()
    (folder / LOCAL_PLUGIN_FILE).write_text(plugin_source("local_count"))
    spec = _count_spec(runs, folder, "local_count")
    report = tmp_path / "r.json"
    result = run_cli(capsys, "run", "--json", report, tmp_path)
    assert result.code == ExitCode.OK, result.out + result.err
    assert _value_and_fields(report) == (TENSORS, {"tensors": TENSORS, "entries": ENTRIES})
    assert run_cli(capsys, "validate", spec).code == ExitCode.OK
    # Only the spec's own folder is searched: a sibling folder's specs do not see it.
    sibling = _count_spec(runs, tmp_path / "other", "local_count")
    assert run_cli(capsys, "run", sibling).code == ExitCode.USAGE_ERROR


def test_two_plugins_registering_one_metric_name_is_an_error_naming_both(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    mods = tmp_path / "mods"
    _module(mods, "sc_test_dup_one", "dup_count")
    _module(mods, "sc_test_dup_two", "dup_count")
    monkeypatch.syspath_prepend(str(mods))
    spec = _count_spec(runs, tmp_path, "dup_count")
    result = run_cli(capsys, "run", "-p", "sc_test_dup_one", "-p", "sc_test_dup_two", spec)
    assert result.code == ExitCode.INTERNAL_ERROR
    assert "Traceback" not in result.err
    assert result.err.strip() == (
        "sparsecheck: error: metric 'dup_count' is registered by both plugin "
        "'sc_test_dup_one' and plugin 'sc_test_dup_two'"
    )


def test_a_local_plugin_clashing_with_a_builtin_metric_names_both(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / LOCAL_PLUGIN_FILE).write_text(plugin_source("update_sparsity"))
    spec = write_spec(tmp_path, runs.header() + "checks:\n" + check_yaml("a", "rl_a", "{gt: 0.5}"))
    result = run_cli(capsys, "run", spec)
    assert result.code == ExitCode.INTERNAL_ERROR
    assert "'update_sparsity' is registered by both plugin 'update_sparsity' and plugin 'local:" in result.err
    assert str(tmp_path / LOCAL_PLUGIN_FILE) in result.err


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A distribution on sys.path whose ``sparsecheck`` entry point registers metric ``ep_count``."""
    site = _module(tmp_path / "site", "sc_test_entry_point_plugin", "ep_count")
    info = site / "sc_test_ep_dist-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sc-test-ep-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[sparsecheck]\nep_count = sc_test_entry_point_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV)
    return "ep_count"


def test_entry_points_load_unless_autoload_is_disabled(
    runs: Runs,
    installed_plugin: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert get_plugin_manager().get_plugin(installed_plugin) is not None
    spec = _count_spec(runs, tmp_path, "ep_count")
    assert run_cli(capsys, "run", spec).code == ExitCode.OK
    # Naming the module an entry point already loaded is harmless.
    assert run_cli(capsys, "run", "-p", "sc_test_entry_point_plugin", spec).code == ExitCode.OK
    blocked = run_cli(capsys, "run", "-p", f"no:{installed_plugin}", spec)
    assert blocked.code == ExitCode.USAGE_ERROR and "unknown metric 'ep_count'" in blocked.err

    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    assert get_plugin_manager().get_plugin(installed_plugin) is None
    disabled = run_cli(capsys, "run", spec)
    assert disabled.code == ExitCode.USAGE_ERROR and "unknown metric 'ep_count'" in disabled.err
    assert run_cli(capsys, "run", "-p", "sc_test_entry_point_plugin", spec).code == ExitCode.OK
