"""collect(): files named, folders searched by the naming rule, local plugins, and bad paths."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from spec_support import HEADER, plugin_config, write

from sparsecheck import hookimpl
from sparsecheck.errors import SpecError, UsageError
from sparsecheck.spec._collect import collect
from sparsecheck.spec._model import Check, SpecFile


def spec_text(*ids: str, metric: str = "update_sparsity") -> str:
    body = "".join(f"  - {{id: {i}, metric: {metric}, args: {{base: sft, tuned: rl_a}}}}\n" for i in ids)
    return HEADER + "checks:\n" + body


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    root = tmp_path / "suite"
    write(root, spec_text("a1", "a2"), "a.sparsecheck.yaml")
    write(root, spec_text("b1"), "b.sparsecheck.yml")
    write(root, spec_text("c1"), "sub/c.sparsecheck.yaml")
    write(root, spec_text("notes"), "notes.yaml")
    for skipped in (".hidden", ".venv", "node_modules", "__pycache__", "cache"):
        write(root, "not: [valid", f"{skipped}/x.sparsecheck.yaml")
    return root


def nodeids(checks: list[Check]) -> list[str]:
    return [c.nodeid for c in checks]


def test_a_folder_is_searched_by_the_naming_rule_in_sorted_order(suite: Path) -> None:
    config = plugin_config(options={"cache_dir": str(suite / "cache")})
    assert nodeids(collect(config, [suite])) == [
        f"{suite.as_posix()}/a.sparsecheck.yaml::a1",
        f"{suite.as_posix()}/a.sparsecheck.yaml::a2",
        f"{suite.as_posix()}/b.sparsecheck.yml::b1",
        f"{suite.as_posix()}/sub/c.sparsecheck.yaml::c1",
    ]


def test_paths_keep_the_form_given(suite: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(suite)
    config = plugin_config(options={"cache_dir": "cache"})
    assert nodeids(collect(config, [Path("sub")])) == ["sub/c.sparsecheck.yaml::c1"]
    assert nodeids(collect(config, [Path(".")]))[0] == "a.sparsecheck.yaml::a1"


def test_a_named_file_is_read_whatever_its_yaml_name_and_each_file_once(suite: Path) -> None:
    config = plugin_config(options={"cache_dir": str(suite / "cache")})
    checks = collect(config, [suite / "notes.yaml", suite / "sub", suite / "sub" / "c.sparsecheck.yaml"])
    assert [c.id for c in checks] == ["notes", "c1"]


def test_a_named_file_of_another_type_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "spec.txt"
    path.write_text("version: 1\nchecks: []\n")
    with pytest.raises(
        UsageError, match=r"spec.txt: not a spec file \(sparsecheck reads .yaml and .yml files"
    ):
        collect(plugin_config(), [path])


def test_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        collect(plugin_config(), [tmp_path / "nope"])
    assert str(info.value) == f"{tmp_path / 'nope'}: no such file or folder"


def test_a_bad_spec_raises_its_spec_error(tmp_path: Path) -> None:
    write(tmp_path, "version: 1\nchecks: [{id: a, metric: nope}]\n")
    with pytest.raises(SpecError, match=r"unknown metric 'nope'"):
        collect(plugin_config(), [tmp_path])


LOCAL_PLUGIN = """\
from sparsecheck import Metric, Param, hookimpl


class LocalMetric(Metric):
    name = "local_metric"
    summary = "a metric from a spec folder"
    value_field = "value"
    reads_tensors = False
    params = (Param("level", "int", "a level", 1),)

    def reducer(self, args):
        raise AssertionError("not run in these tests")


@hookimpl
def sparsecheck_add_metrics():
    return [LocalMetric()]
"""


def test_the_spec_folders_local_plugin_is_loaded_before_its_specs(tmp_path: Path) -> None:
    write(tmp_path / "plain", spec_text("first"), "a.sparsecheck.yaml")
    local = tmp_path / "local"
    write(
        local,
        spec_text("own", metric="local_metric").replace(", args: {base: sft, tuned: rl_a}", ""),
        "b.sparsecheck.yaml",
    )
    (local / "sparsecheck_plugin.py").write_text(textwrap.dedent(LOCAL_PLUGIN))
    config = plugin_config()
    # The first folder builds the metrics table; the local plugin must refresh it.
    checks = collect(config, [tmp_path / "plain", local])
    assert [(c.id, c.metric, dict(c.args)) for c in checks][1] == ("own", "local_metric", {"level": 1})
    assert "local_metric" in config.metrics
    # Without the plugin file the metric is unknown.
    (local / "sparsecheck_plugin.py").unlink()
    with pytest.raises(SpecError, match="unknown metric 'local_metric'"):
        collect(plugin_config(), [local])


class TextSpecs:
    """A plugin that collects ``.txt`` files (as an empty spec)."""

    @hookimpl
    def sparsecheck_collect_file(self, path: Path) -> SpecFile | None:
        return SpecFile(path, {}, []) if path.suffix == ".txt" else None


def test_a_plugin_may_collect_other_file_types(tmp_path: Path) -> None:
    path = tmp_path / "spec.txt"
    path.write_text("anything")
    assert collect(plugin_config(TextSpecs()), [path]) == []
