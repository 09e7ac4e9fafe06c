"""The update_norm plugin: right numbers, found through its entry point, usable from a spec.

Requires the package to be installed (``pip install -e plugins/sparsecheck-update-norm``).
``example_pair`` (this package's conftest.py) writes a planted bf16 base/tuned pair.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import sparsecheck_update_norm
import torch
import yaml

from sparsecheck import Status
from sparsecheck._config import Config
from sparsecheck._manager import DISABLE_AUTOLOAD_ENV, get_plugin_manager
from sparsecheck.cli import main
from sparsecheck.exitcodes import ExitCode
from sparsecheck.testing import plant_changes, run_spec, tiny_llama_state_dict, write_checkpoint

State = dict[str, torch.Tensor]
EXAMPLE_SPEC = Path(__file__).parents[1] / "specs" / "update_norm.sparsecheck.yaml"
CHECKPOINTS_ENV = "UPDATE_NORM_CKPTS"


def relative_norm(base: State, tuned: State, names: list[str]) -> float:
    """‖tuned - base‖_F / ‖base‖_F over ``names``, from the full tensors in float64."""
    delta = torch.cat([(tuned[n].double() - base[n].double()).reshape(-1) for n in names])
    weights = torch.cat([base[n].double().reshape(-1) for n in names])
    return float(torch.linalg.vector_norm(delta) / torch.linalg.vector_norm(weights))


def layer(name: str) -> str:
    match = re.match(r"(model\.layers\.\d+)\.", name)
    return match.group(1) if match else "other"


@pytest.mark.parametrize(
    ("dtype", "chunk", "workers"),
    [(torch.bfloat16, sparsecheck_update_norm.CHUNK, 1), (torch.float32, 37, 1), (torch.bfloat16, 1000, 2)],
    ids=["bf16", "fp32-small-chunks", "bf16-two-worker-processes"],
)
def test_relative_norm_equals_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype, chunk: int, workers: int
) -> None:
    # Independent of installation: autoload off, the module registered by run_spec.
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    monkeypatch.setattr(sparsecheck_update_norm, "CHUNK", chunk)
    base = tiny_llama_state_dict(layers=3, dtype=dtype, seed=1)
    fractions = {name: 0.1 * (index % 7) for index, name in enumerate(base)}  # differs per tensor
    tuned, _ = plant_changes(base, fractions, seed=2, magnitude=0.01)
    write_checkpoint(tmp_path / "base", base, "sharded")
    write_checkpoint(tmp_path / "tuned", tuned, "sharded")
    spec = tmp_path / "norm.sparsecheck.yaml"
    args = {"base": "base", "tuned": "tuned"}
    checks = [
        {"id": "all", "metric": "update_norm", "args": args},
        {"id": "mlp", "metric": "update_norm", "args": {**args, "include": ["*.mlp.*"]}},
        {"id": "none", "metric": "update_norm", "args": {**args, "include": ["vision_tower.*"]}},
    ]
    spec.write_text(
        yaml.safe_dump({"version": 1, "checkpoints": {"base": "base", "tuned": "tuned"}, "checks": checks})
    )

    session = run_spec(spec, plugins=[sparsecheck_update_norm], options={"workers": workers})
    outcomes = {o.check.id: o for o in session.outcomes}
    result = outcomes["all"].result
    assert result is not None and outcomes["all"].status is Status.PASS
    names = list(base)
    assert result.value == pytest.approx(relative_norm(base, tuned, names), rel=1e-12)
    assert result.fields["tensors"] == len(names) and result.fields["skipped"] == 0
    layers: dict[str, list[str]] = {}
    for name in names:
        layers.setdefault(layer(name), []).append(name)
    assert set(result.groups["layer"]) == set(layers)
    for key, members in layers.items():
        assert result.groups["layer"][key]["relative_norm"] == pytest.approx(
            relative_norm(base, tuned, members), rel=1e-12
        )
    for name in names:
        want = relative_norm(base, tuned, [name])
        assert result.groups["tensor"][name]["relative_norm"] == pytest.approx(want, rel=1e-12, abs=0)
        assert (want == 0) == (fractions[name] == 0)
    up_proj = [n for n in names if n.endswith("mlp.up_proj.weight")]
    module = result.groups["module"]["model.layers.*.mlp.up_proj.weight"]
    assert module["relative_norm"] == pytest.approx(relative_norm(base, tuned, up_proj), rel=1e-12)

    mlp = outcomes["mlp"].result
    assert mlp is not None
    mlp_names = [n for n in names if ".mlp." in n]
    assert set(mlp.groups["tensor"]) == set(mlp_names)
    assert mlp.value == pytest.approx(relative_norm(base, tuned, mlp_names), rel=1e-12)

    none = outcomes["none"]
    assert none.status is Status.ERROR and none.error_kind == "usage"
    assert "no tensor was compared" in none.message


def test_found_through_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    points = {ep.name: ep.value for ep in entry_points(group="sparsecheck")}
    assert points.get("update_norm") == "sparsecheck_update_norm"

    pm = get_plugin_manager()
    assert pm.get_plugin("update_norm") is sparsecheck_update_norm
    metric = Config(pm).metrics["update_norm"]
    assert isinstance(metric, sparsecheck_update_norm.UpdateNorm)
    assert "update_norm" not in Config(get_plugin_manager(["no:update_norm"])).metrics
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    assert "update_norm" not in Config(get_plugin_manager()).metrics


def test_metrics_command_lists_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    assert main(["metrics"]) == ExitCode.OK
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    row = next(r for r in rows if r and r[0] == "update_norm")
    assert row[1:3] == ["update_norm", "relative_norm"]  # metric, plugin, value field


def run_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoints: Path
) -> tuple[int, dict[str, str]]:
    """``sparsecheck run`` on the example spec over ``checkpoints``: exit code, status by check id."""
    monkeypatch.setenv(CHECKPOINTS_ENV, str(checkpoints))
    report = tmp_path / f"{checkpoints.name}.json"
    code = main(["run", str(EXAMPLE_SPEC), "--json", str(report)])
    return code, {check["id"]: check["status"] for check in json.loads(report.read_text())["checks"]}


def expected_statuses(base: State, tuned: State) -> dict[str, str]:
    """The example spec's verdicts, computed from the tensors."""
    names = list(base)
    layers: dict[str, list[str]] = {}
    for name in names:
        layers.setdefault(layer(name), []).append(name)
    update = torch.cat([(tuned[n].double() - base[n].double()).reshape(-1) for n in names])
    weights = torch.cat([base[n].double().reshape(-1) for n in names])
    holds = {
        "update-is-small": relative_norm(base, tuned, names) < 0.1,
        "no-layer-rewritten": all(relative_norm(base, tuned, m) < 0.1 for m in layers.values()),
        "norms-untouched": relative_norm(base, tuned, [n for n in names if "norm" in n]) == 0,
        "update-smaller-than-weights": bool(
            torch.linalg.vector_norm(update) < torch.linalg.vector_norm(weights)
        ),
    }
    return {check_id: "PASS" if ok else "FAIL" for check_id, ok in holds.items()}


def test_example_spec_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example_pair: Callable[..., tuple[State, State]]
) -> None:
    monkeypatch.chdir(tmp_path)  # the CLI's cache folder goes here
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    base, small = example_pair("small")
    _, large = example_pair("large", magnitude=0.1)

    code, statuses = run_example(tmp_path, monkeypatch, tmp_path / "small")
    assert statuses == expected_statuses(base, small)
    assert set(statuses.values()) == {"PASS"}
    assert code == ExitCode.OK

    code, statuses = run_example(tmp_path, monkeypatch, tmp_path / "large")
    assert statuses == expected_statuses(base, large)
    assert statuses["update-is-small"] == "FAIL" and statuses["norms-untouched"] == "PASS"
    assert code == ExitCode.CHECKS_FAILED
