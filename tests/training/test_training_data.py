"""Generated arithmetic data: reproducible, answers right, reward and pair ranking as documented."""

from __future__ import annotations

import re

import pytest

from sparsecheck.training._data import (
    MAX_NUMBER,
    Problem,
    arithmetic_problems,
    arithmetic_reward,
    final_number,
    preference_rows,
    prompt_rows,
    rank_samples,
    sft_rows,
    unpaired_rows,
    vocabulary,
)

OPERATIONS = {"+": int.__add__, "-": int.__sub__, "*": int.__mul__, "/": int.__floordiv__}


def test_problems_are_seeded() -> None:
    assert arithmetic_problems(20, seed=3) == arithmetic_problems(20, seed=3)
    assert arithmetic_problems(20, seed=3) != arithmetic_problems(20, seed=4)
    assert arithmetic_problems(5, seed=3) == arithmetic_problems(20, seed=3)[:5]


def test_answers_follow_from_the_numbers_in_the_question() -> None:
    for problem in arithmetic_problems(200, seed=1):
        a, op, b, result = re.fullmatch(r"(\d+) ([-+*/]) (\d+) = (\d+)", problem.equation).groups()  # type: ignore[union-attr]
        assert OPERATIONS[op](int(a), int(b)) == int(result) == problem.answer
        if op == "/":
            assert int(a) % int(b) == 0
        # the operands are the numbers the question states, in order (division: total, then parts)
        assert [int(n) for n in re.findall(r"\d+", problem.question)] == [int(a), int(b)]
        assert 0 <= problem.answer <= MAX_NUMBER


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 + 4 = 7, so the answer is 7.", 7.0),
        ("It is 1,200 coins", 1200.0),
        ("-3 then 2.5", 2.5),
        ("none", None),
    ],
)
def test_final_number(text: str, expected: float | None) -> None:
    assert final_number(text) == expected


def test_reward_reads_the_final_number_of_text_and_messages() -> None:
    completions = [
        "3 + 4 = 7, so the answer is 7.",
        "The answer is 7, not 8",  # the final number counts
        [{"role": "assistant", "content": "7"}],
        "",
    ]
    assert arithmetic_reward(completions, answer=[7, 7, 7, 7]) == [1.0, 0.0, 1.0, 0.0]


def test_reference_answers_are_rewarded() -> None:
    for problem in arithmetic_problems(50, seed=2):
        assert arithmetic_reward([problem.model_style_answer()], [problem.answer]) == [1.0]
        assert arithmetic_reward([problem.off_style_answer()], [problem.answer]) == [1.0]


def test_rank_samples_picks_correct_over_wrong_and_falls_back_to_the_reference() -> None:
    p1, p2, p3 = (Problem(f"q{i}", 10 + i, f"{5 + i} + 5 = {10 + i}") for i in range(3))
    samples = [
        ["it is 3", "so 11", "maybe 10", "again 10"],  # p1 (answer 10): correct and wrong
        ["no idea", "5"],  # p2 (answer 11): none correct
        ["12", "it is 12"],  # p3 (answer 12): none wrong → no pair
    ]
    pairs = rank_samples([p1, p2, p3], samples)
    assert [(p.problem, p.chosen, p.rejected, p.reference_chosen) for p in pairs] == [
        (p1, "maybe 10", "it is 3", False),
        (p2, p2.model_style_answer(), "no idea", True),
    ]


def test_rows_in_trl_column_formats() -> None:
    problems = arithmetic_problems(3, seed=0)
    assert prompt_rows(problems)[0] == {"prompt": problems[0].question + "\n", "answer": problems[0].answer}
    chat = sft_rows(problems, conversational=True)[1]
    assert chat == {
        "prompt": [{"role": "user", "content": problems[1].question}],
        "completion": [{"role": "assistant", "content": problems[1].off_style_answer()}],
    }
    pairs = rank_samples(problems, [["wrong 1000"]] * 3)
    assert set(preference_rows(pairs)[0]) == {"prompt", "chosen", "rejected"}
    unpaired = unpaired_rows(pairs)
    assert [row["label"] for row in unpaired] == [True, False] * 3
    assert unpaired[1]["completion"] == "wrong 1000"


def test_vocabulary_covers_every_generated_word() -> None:
    vocab = set(vocabulary())
    for problem in arithmetic_problems(300, seed=9):
        text = f"{problem.question} {problem.model_style_answer()} {problem.off_style_answer()}"
        assert set(re.findall(r"\w+|[^\w\s]", text)) <= vocab
