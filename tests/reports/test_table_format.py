from __future__ import annotations

import math
import random

import pytest
from report_fixtures import make_outcome, planted_outcomes

from sparsecheck.engine._outcome import Status
from sparsecheck.reports._table import (
    HEADERS,
    format_value,
    outcome_rows,
    overall_status,
    status_counts,
    summary_text,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.9413, "0.9413"),
        (0.94134, "0.9413"),
        (1.2e-05, "1.2e-05"),
        (-3.5e-07, "-3.5e-07"),
        (1234567, "1,234,567"),
        (12345.6, "12,345.6"),
        (2.0e6, "2,000,000"),
        (0.99999, "0.99999"),
        (999.99, "999.99"),
        (0.0, "0"),
        (2.5, "2.5"),
        (math.nan, "nan"),
        (-math.inf, "-inf"),
        (None, "-"),
        (True, "true"),
        ("bf16", "bf16"),
    ],
)
def test_format_value(value: object, text: str) -> None:
    assert format_value(value) == text  # type: ignore[arg-type]


def test_formatted_floats_stay_within_four_digits_of_precision() -> None:
    rng = random.Random(0)
    for _ in range(2000):
        x = 10 ** rng.uniform(-8, 14) * rng.choice([-1, 1])
        shown = float(format_value(x).replace(",", ""))
        assert abs(shown - x) <= 5e-3 * abs(x), (x, format_value(x))


def test_rows_follow_headers_and_render_status() -> None:
    outcome = make_outcome("a", Status.FAIL, 0.5, duration=1.25)
    outcome.cached = False
    rows = outcome_rows([outcome, make_outcome("b", Status.PASS, 1234)], lambda s: f"<{s.value}>")
    assert len(rows[0]) == len(HEADERS)
    assert rows[0] == ["a", "update_sparsity", "0.5", "value > 0.7", "<FAIL>", "1.25s"]
    assert rows[1][2] == "1,234"


def test_cached_outcome_shows_cached_time() -> None:
    outcome = make_outcome("a", Status.PASS, 0.9)
    outcome.cached = True
    assert outcome_rows([outcome], str)[0][-1] == "cached"


def test_counts_and_summary_match_the_planted_statuses() -> None:
    outcomes = planted_outcomes()
    expected = {s: sum(o.status is s for o in outcomes) for s in Status}
    assert status_counts(outcomes) == expected
    text = summary_text(outcomes, deselected=2, duration=1.234)
    assert text == "2 passed, 1 failed, 1 warned, 1 error, 1 skipped, 2 deselected in 1.23s"


def test_summary_leaves_out_zero_counts_but_passed() -> None:
    failed = [make_outcome("a", Status.FAIL), make_outcome("b", Status.ERROR)] * 2
    assert summary_text(failed, 0, 0.5) == "0 passed, 2 failed, 2 errors in 0.50s"
    assert summary_text([], 3, 0.0) == "no checks ran, 3 deselected in 0.00s"


def test_overall_status_is_the_worst() -> None:
    statuses = [Status.PASS, Status.WARN, Status.FAIL, Status.ERROR]
    for worst_index, worst in enumerate(statuses):
        outcomes = [make_outcome(str(i), s) for i, s in enumerate(statuses[: worst_index + 1])]
        assert overall_status(outcomes) is worst
    assert overall_status([make_outcome("s", Status.SKIP)]) is Status.SKIP
    assert overall_status([]) is Status.SKIP
