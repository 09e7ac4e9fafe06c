"""task_accuracy: held-out problems disjoint from training data, planted completions scored
exactly, a tiny model that always writes one number scored by real generation, determinism."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from sparsecheck import CheckOutcome, Status
from sparsecheck.metrics import task_accuracy
from sparsecheck.testing import run_spec
from sparsecheck.training._data import (
    DISTINCT_PROBLEMS,
    HELD_OUT_EXCLUDE,
    ITEMS,
    KINDS,
    NAMES,
    _problem,
    arithmetic_problems,
    held_out_problems,
    prompt_rows,
)
from sparsecheck.training._tiny import write_tiny_causal_lm

SIZE = 24


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "model")


def most_common_answer(size: int, seed: int) -> tuple[int, int]:
    """The answer held-out problems have most often, and how often."""
    answer, count = Counter(p.answer for p in held_out_problems(size, seed)).most_common(1)[0]
    return answer, count


@pytest.fixture(scope="module")
def constant_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A tiny model whose greedy output is always the token of one number: every hidden state is
    the same vector (all embeddings equal, attention and MLP outputs zeroed), and only that
    number's output row is non-zero."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    folder = write_tiny_causal_lm(tmp_path_factory.mktemp("constant") / "model", tie_word_embeddings=False)
    answer, _ = most_common_answer(SIZE, seed=3)
    token = AutoTokenizer.from_pretrained(folder).convert_tokens_to_ids(str(answer))
    model = LlamaForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        model.model.embed_tokens.weight.fill_(1.0)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        model.lm_head.weight[token] = 1.0
    model.save_pretrained(folder)
    return folder, answer


def run_check(root: Path, model: Path, args: dict[str, Any]) -> CheckOutcome:
    spec = {
        "version": 1,
        "checkpoints": {"m": str(model)},
        "checks": [{"id": "score", "metric": "task_accuracy", "args": {"model": "m", **args}}],
    }
    path = root / "task.sparsecheck.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    (outcome,) = run_spec(path, options={"no_cache": True}).outcomes
    return outcome


def fields(outcome: CheckOutcome) -> dict[str, Any]:
    assert outcome.status is not Status.ERROR, outcome.message
    assert outcome.result is not None
    return dict(outcome.result.fields)


@pytest.mark.parametrize("seed", [0, 7])
def test_held_out_problems_avoid_the_training_problems_of_their_seed(seed: int) -> None:
    held_out = held_out_problems(500, seed)
    questions = [p.question for p in held_out]
    assert len(set(questions)) == 500
    assert not set(questions) & {p.question for p in arithmetic_problems(HELD_OUT_EXCLUDE, seed)}
    assert held_out_problems(500, seed) == held_out
    assert held_out_problems(500, seed + 1) != held_out


def test_exclusion_holds_where_a_separate_stream_alone_would_overlap() -> None:
    # 60,000 training draws cover about half the space: chance alone would put thousands of
    # these 20,000 held-out problems among them
    training = {p.question for p in arithmetic_problems(60_000, seed=1)}
    held_out = {p.question for p in held_out_problems(20_000, seed=1, exclude=60_000)}
    assert len(held_out) == 20_000
    assert not held_out & training
    with pytest.raises(ValueError, match="at most"):
        held_out_problems(DISTINCT_PROBLEMS, seed=1, exclude=1)


def test_distinct_problems_counts_every_question_the_generator_can_write() -> None:
    numbers = range(2, 21)
    questions = {
        _problem(kind, name, item, a, b).question
        for kind in range(KINDS)
        for name in NAMES
        for item in ITEMS
        for a in numbers
        for b in numbers
    }
    assert len(questions) == DISTINCT_PROBLEMS


def test_planted_completions_give_the_planted_accuracy(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    problems = held_out_problems(SIZE, seed=5)
    planted = {i for i in range(SIZE) if i % 3 == 0 or i == 7}
    asked: list[str] = []

    def fake(model: Any, tokenizer: Any, prompts: Sequence[str], **_: Any) -> list[str]:
        asked.extend(prompts)
        completions = []
        for i, p in enumerate(problems):
            if i in planted:
                completions.append(p.model_style_answer() if i % 2 else f"It is {p.answer}")
            else:  # the final number counts; no number is wrong
                completions.append([f"{p.answer}, no: {p.answer + 1}", "no idea", ""][i % 3])
        return completions

    monkeypatch.setattr(task_accuracy, "generate_completions", fake)
    result = fields(run_check(tmp_path, tiny_model, {"size": SIZE, "seed": 5}))
    assert asked == [row["prompt"] for row in prompt_rows(problems)]  # the training data's prompts
    assert result["accuracy"] == result["reward"] == len(planted) / SIZE
    assert (result["correct"], result["total"]) == (len(planted), SIZE)
    assert result["chat_template"] is False
    assert problems[0].question[:20] in str(result["examples"])

    outcome = run_check(tmp_path, tiny_model, {"size": SIZE, "seed": 5, "score": "reward"})
    assert outcome.result is not None and outcome.result.value_field == "reward"


def test_prompts_use_the_chat_template_when_the_tokenizer_has_one() -> None:
    class ChatTokenizer:
        chat_template = "(a template)"

        def apply_chat_template(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
            assert kwargs == {"add_generation_prompt": True, "tokenize": False}
            return f"<user>{messages[0]['content']}<assistant>"

    problems = held_out_problems(3, seed=0)
    expected = [f"<user>{p.question}<assistant>" for p in problems]
    assert task_accuracy.format_prompts(ChatTokenizer(), problems) == expected


def test_real_generation_scores_a_model_that_always_writes_one_number(
    tmp_path: Path, constant_model: tuple[Path, int]
) -> None:
    folder, answer = constant_model
    _, count = most_common_answer(SIZE, seed=3)
    assert 0 < count < SIZE
    result = fields(
        run_check(tmp_path, folder, {"size": SIZE, "seed": 3, "batch_size": 5, "max_new_tokens": 3})
    )
    assert result["accuracy"] == count / SIZE
    assert (result["correct"], result["total"], result["device"]) == (count, SIZE, "cpu")
    assert f"A: {answer} {answer} {answer}" in str(result["examples"])


def test_end_to_end_on_a_random_tiny_model_is_deterministic(tmp_path: Path, tiny_model: Path) -> None:
    args = {"size": 10, "seed": 2, "batch_size": 4, "max_new_tokens": 6, "device": "cpu"}
    first = fields(run_check(tmp_path, tiny_model, args))
    second = fields(run_check(tmp_path, tiny_model, args))
    assert 0.0 <= float(first["accuracy"]) <= 1.0
    assert first["total"] == 10
    first.pop("seconds"), second.pop("seconds")
    assert first == second


def test_bad_arguments_and_a_weights_file_alone_are_reported(tmp_path: Path, tiny_model: Path) -> None:
    outcome = run_check(tmp_path, tiny_model, {"size": 0})
    assert outcome.status is Status.ERROR and "size must be at least 1" in outcome.message
    outcome = run_check(tmp_path, tiny_model / "model.safetensors", {"size": 2})
    assert outcome.status is Status.ERROR and "needs a model folder" in outcome.message
