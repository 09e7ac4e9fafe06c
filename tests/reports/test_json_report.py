from __future__ import annotations

import json
import math
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import pytest
from report_fixtures import option_registry, planted_outcomes, registered_manager, run_reports

import sparsecheck
from sparsecheck._config import Config
from sparsecheck.errors import UsageError
from sparsecheck.reports.json_report import strict_json

CHECKPOINTS = {
    "/ckpt/sft": {
        "source": "/ckpt/sft",
        "path": Path("/ckpt/sft"),
        "format": "safetensors",
        "dtypes": ["bfloat16"],
        "fingerprint": "abc123",
    },
}


def _no_constants(name: str) -> Any:
    raise AssertionError(f"non-standard JSON constant {name}")


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"), parse_constant=_no_constants)
    return data


def test_options_parse_with_click(tmp_path: Path) -> None:
    params: list[click.Parameter] = [*option_registry().options]
    command = click.Command("run", params=params, callback=lambda **kw: kw)
    args = ["--json", "a.json", "--junitxml", "j.xml", "--md", "s.md", "--md-append"]
    parsed = command.main(args, standalone_mode=False)
    paths = {"json_path": Path("a.json"), "junitxml_path": Path("j.xml"), "md_path": Path("s.md")}
    assert parsed == {**paths, "md_append": True}
    assert command.main([], standalone_mode=False) == {**dict.fromkeys(paths), "md_append": False}


def test_document_matches_outcomes(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "report.json"
    outcomes = planted_outcomes()
    run_reports(outcomes, {"json_path": path}, deselected=2, checkpoints=CHECKPOINTS, exitstatus=1)
    doc = _load(path)
    assert list(doc) == [
        "schema_version",
        "sparsecheck_version",
        "created",
        "duration",
        "exitstatus",
        "summary",
        "checkpoints",
        "steps",
        "checks",
    ]
    assert doc["sparsecheck_version"] == sparsecheck.__version__
    assert datetime.fromisoformat(doc["created"]).tzinfo is not None
    assert doc["exitstatus"] == 1
    assert doc["summary"] == {
        "passed": 2,
        "failed": 1,
        "warned": 1,
        "errors": 1,
        "skipped": 1,
        "deselected": 2,
        "total": 6,
    }
    assert doc["checkpoints"] == [{**CHECKPOINTS["/ckpt/sft"], "path": "/ckpt/sft"}]
    assert [c["id"] for c in doc["checks"]] == [o.check.id for o in outcomes]
    for check, outcome in zip(doc["checks"], outcomes, strict=True):
        assert check["status"] == outcome.status.value
        assert check["message"] == outcome.message
        assert check["location"] == str(outcome.check.location)
    first = doc["checks"][0]
    assert first["value"] == 0.94134
    assert first["result"]["groups"]["layer"]["layer2"]["changed"] == 1002
    assert first["result"]["skipped"] == [{"name": "lm_head.weight", "reason": "shape (10, 4) vs (12, 4)"}]


def test_nan_and_inf_become_null(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    run_reports(planted_outcomes(), {"json_path": path})
    assert "NaN" not in path.read_text("utf-8")
    nan_check = _load(path)["checks"][-1]
    assert nan_check["value"] is None
    assert nan_check["result"]["fields"] == {"sparsity": None, "ratio": None}
    assert nan_check["result"]["value"] is None


def test_strict_json_recurses() -> None:
    value = {"a": (1.0, math.nan), "b": [{"c": -math.inf}], 3: "x"}
    assert strict_json(value) == {"a": [1.0, None], "b": [{"c": None}], "3": "x"}


def test_second_run_replaces_the_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    outcomes = planted_outcomes()
    run_reports(outcomes, {"json_path": path})
    run_reports(outcomes[:1], {"json_path": path}, exitstatus=0)
    doc = _load(path)
    assert doc["summary"]["total"] == 1
    assert doc["exitstatus"] == 0
    assert os.listdir(tmp_path) == ["report.json"]


def test_registered_only_while_configured(tmp_path: Path) -> None:
    pm = registered_manager(["json"])
    config = Config(pm, options={"json_path": tmp_path / "r.json"})
    pm.hook.sparsecheck_configure.call_historic(kwargs={"config": config})
    assert pm.get_plugin("json-report") is not None
    pm.hook.sparsecheck_unconfigure(config=config)
    assert pm.get_plugin("json-report") is None

    unset = registered_manager(["json"])
    unset.hook.sparsecheck_configure.call_historic(kwargs={"config": Config(unset)})
    assert unset.get_plugin("json-report") is None


def test_directory_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        run_reports(planted_outcomes(), {"json_path": tmp_path})
    assert "--json" in str(info.value)
    assert str(tmp_path) in str(info.value)
