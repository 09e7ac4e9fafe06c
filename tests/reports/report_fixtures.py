"""Helpers of the report tests: outcomes with planted statuses, values and results, and a
driver that calls the report hooks the way the session runner does."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import click
import pluggy

from sparsecheck import hookspec
from sparsecheck._config import Config, OptionRegistry, Session
from sparsecheck.engine._outcome import CheckOutcome, Status
from sparsecheck.errors import Location
from sparsecheck.metrics._api import Fields, MetricResult, SkippedTensor
from sparsecheck.reports import json_report, junitxml, markdown, terminal
from sparsecheck.spec._model import Check

SPEC = Path("specs/demo.sparsecheck.yaml")
REPORT_MODULES = {
    "terminal": terminal,
    "json": json_report,
    "junitxml": junitxml,
    "markdown": markdown,
}


def make_check(
    check_id: str, line: int = 1, metric: str = "update_sparsity", per: str | None = None
) -> Check:
    return Check(
        per=per,
        id=check_id,
        metric=metric,
        args={"base": "sft", "tuned": "rl"},
        location=Location(SPEC.as_posix(), line, 5),
        spec_path=SPEC,
        checkpoints={},
    )


def make_outcome(
    check_id: str,
    status: Status,
    value: Any = None,
    *,
    line: int = 1,
    message: str = "",
    result: MetricResult | None = None,
    duration: float = 0.5,
) -> CheckOutcome:
    """An outcome; a result with a ``layer`` breakdown makes a ``per: layer`` check."""
    per = "layer" if result is not None and "layer" in result.groups else None
    return CheckOutcome(
        make_check(check_id, line, per=per),
        status,
        result=result,
        value=value,
        expectation="value > 0.7",
        message=message,
        duration=duration,
    )


def layer_result(n_layers: int = 3) -> MetricResult:
    """An update_sparsity-like result with a per-layer breakdown, notes and a skipped tensor."""
    groups: dict[str, Fields] = {
        f"layer{i}": {"sparsity": 0.9 + i / 1000, "density": 0.1 - i / 1000, "changed": 1000 + i}
        for i in range(n_layers)
    }
    return MetricResult(
        metric="update_sparsity",
        value_field="sparsity",
        fields={"sparsity": 0.94134, "density": 0.05866, "changed": 1234567},
        definition="unchanged / compared",
        groups={"layer": groups},
        skipped=[SkippedTensor("lm_head.weight", "shape (10, 4) vs (12, 4)")],
        notes=["compared bfloat16 with float32 in float32"],
    )


def planted_outcomes() -> list[CheckOutcome]:
    """One outcome of every status, in spec order (two PASS, one of them with NaN fields)."""
    nan_result = MetricResult(
        metric="update_sparsity",
        value_field="sparsity",
        fields={"sparsity": math.nan, "ratio": math.inf},
        definition="unchanged / compared",
    )
    return [
        make_outcome("rl-update-is-sparse", Status.PASS, 0.94134, line=3, result=layer_result()),
        make_outcome(
            "every-layer-sparse",
            Status.FAIL,
            0.5,
            line=10,
            message="3 of 6 layers have sparsity <= 0.6",
        ),
        make_outcome("sparse-enough", Status.WARN, 0.75, line=17, message="value 0.75 is not > 0.8"),
        make_outcome(
            "broken",
            Status.ERROR,
            line=22,
            message="update_sparsity: bad byte \x00 and <tag> & \x1b[0m",
        ),
        make_outcome("later", Status.SKIP, line=30, message="not ready yet"),
        make_outcome("empty-run", Status.PASS, math.nan, line=35, result=nan_result),
    ]


def registered_manager(names: Iterable[str] = REPORT_MODULES) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("sparsecheck")
    pm.add_hookspecs(hookspec)
    for name in names:
        pm.register(REPORT_MODULES[name], name=name)
    return pm


def run_reports(
    outcomes: Sequence[CheckOutcome],
    options: dict[str, Any] | None = None,
    *,
    deselected: int = 0,
    checkpoints: dict[str, dict[str, Any]] | None = None,
    exitstatus: int = 1,
    write: Callable[[str], None] = click.echo,
) -> Session:
    """Drive the report plugins through a whole session, as the session runner does."""
    pm = registered_manager()
    config = Config(pm, options={"verbosity": 0, "strict_warnings": False, **(options or {})})
    config.deselect([make_check(f"deselected-{i}") for i in range(deselected)])
    pm.hook.sparsecheck_configure.call_historic(kwargs={"config": config})
    session = Session(config, checks=[o.check for o in outcomes])
    session.checkpoints.update(checkpoints or {})
    for outcome in outcomes:
        session.outcomes.append(outcome)
        pm.hook.sparsecheck_check_report(outcome=outcome)
    pm.hook.sparsecheck_sessionfinish(session=session, exitstatus=exitstatus)
    pm.hook.sparsecheck_terminal_summary(session=session, write=write)
    pm.hook.sparsecheck_unconfigure(config=config)
    return session


def option_registry() -> OptionRegistry:
    registry = OptionRegistry()
    registered_manager().hook.sparsecheck_addoption.call_historic(kwargs={"options": registry})
    return registry
