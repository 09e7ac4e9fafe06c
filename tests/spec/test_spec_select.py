"""-k and -m deselect checks through the collection_modifyitems hook."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from spec_support import HEADER, METRICS, plugin_config, write

from sparsecheck._config import OptionRegistry
from sparsecheck.errors import UsageError
from sparsecheck.spec._loader import load_spec
from sparsecheck.spec._model import Check

TEXT = (
    HEADER
    + """\
checks:
  - {id: rl-update-is-sparse, metric: update_sparsity, args: {base: sft, tuned: rl_a}, marks: [gate]}
  - {id: Every-Layer, metric: update_sparsity, args: {base: sft, tuned: rl_a}, marks: [gate, slow]}
  - id: each-run
    metric: update_sparsity
    parametrize: {run: [rl_a, rl_b]}
    args: {base: sft, tuned: "${run}"}
  - {id: probe, metric: kinds_probe, marks: [slow]}
"""
)


@pytest.fixture
def checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Check]:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, TEXT, name="suite.sparsecheck.yaml")
    return load_spec(Path("suite.sparsecheck.yaml"), METRICS).checks


def select(checks: list[Check], **options: str) -> tuple[list[str], list[str]]:
    config = plugin_config(options=options)
    kept = list(checks)
    config.hook.sparsecheck_collection_modifyitems(config=config, checks=kept)
    return [c.id for c in kept], [c.id for c in config.deselected]


ALL = ["rl-update-is-sparse", "Every-Layer", "each-run[rl_a]", "each-run[rl_b]", "probe"]


@pytest.mark.parametrize(
    ("options", "kept"),
    [
        ({}, ALL),
        ({"keyword": "  "}, ALL),
        ({"markexpr": "gate"}, ["rl-update-is-sparse", "Every-Layer"]),
        ({"markexpr": "gate and not slow"}, ["rl-update-is-sparse"]),
        ({"markexpr": "slow or gate"}, ["rl-update-is-sparse", "Every-Layer", "probe"]),
        ({"markexpr": "not gate"}, ["each-run[rl_a]", "each-run[rl_b]", "probe"]),
        ({"markexpr": "gat"}, []),  # a mark matches exactly
        ({"keyword": "every-layer"}, ["Every-Layer"]),  # id, case-insensitive
        ({"keyword": "rl_b"}, ["each-run[rl_b]"]),  # the parameter part of an id
        ({"keyword": "kinds"}, ["probe"]),  # the metric name
        ({"keyword": "SLOW"}, ["Every-Layer", "probe"]),  # a mark, case-insensitive
        ({"keyword": "suite"}, ALL),  # the nodeid holds the file name
        ({"keyword": "suite::each"}, ["each-run[rl_a]", "each-run[rl_b]"]),
        ({"keyword": "run and not rl_a"}, ["each-run[rl_b]"]),
        # The naming rule's ".sparsecheck.yaml" is no keyword: "sparse" selects by id alone.
        ({"keyword": "sparse"}, ["rl-update-is-sparse"]),
        ({"keyword": "sparse or probe", "markexpr": "not gate"}, ["probe"]),
    ],
)
def test_selection(checks: list[Check], options: dict[str, str], kept: list[str]) -> None:
    selected, deselected = select(checks, **options)
    assert selected == kept
    assert deselected == [c for c in ALL if c not in kept]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"keyword": "a and"}, "-k: bad expression 'a and': expected identifier at column 6"),
        ({"markexpr": "(gate"}, "-m: bad expression '(gate': expected ')' at column 6"),
    ],
)
def test_bad_expressions_are_usage_errors(checks: list[Check], options: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        select(checks, **options)
    assert str(info.value) == message


def test_the_options_are_added() -> None:
    registry = OptionRegistry()
    plugin_config().hook.sparsecheck_addoption.call_historic(kwargs={"options": registry})
    command = click.Command("run", params=list(registry.options), callback=lambda **kw: kw)
    parsed = command.main(["-k", "a or b", "-m", "gate"], standalone_mode=False)
    assert parsed == {"keyword": "a or b", "markexpr": "gate"}
