"""The training data of a request: a ``datasets.Dataset`` as given, or generated for the algorithm.

Generated arithmetic data (``GeneratedDataset``) takes the form the algorithm needs: prompts
with answers (GRPO, RLOO), tokenized prompts (PPO), off-style answers (SFT), or pairs of the base
model's own samples (DPO, ORPO, SimPO, reward models; unpaired for KTO), or those pairs in the SFT
style (``pair_style: off``).  Its rows are also written to ``train_data.jsonl``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sparsecheck.errors import UsageError
from sparsecheck.training import (
    PAIR_STYLES,
    GeneratedDataset,
    RewardFunction,
    TrainRequest,
    arithmetic_problems,
    arithmetic_reward,
    has_chat_template,
    off_style_pairs,
    preference_pairs,
    preference_rows,
    prompt_rows,
    prompt_text,
    sft_rows,
    unpaired_rows,
    write_text_atomic,
)
from sparsecheck_trl._algorithms import PAIRS, PROMPTS, SFT, TOKENIZED_PROMPTS, Algorithm

DATA_FILE = "train_data.jsonl"
GENERATED = ("arithmetic",)


@dataclass
class TrainingData:
    """A run's dataset, its reward functions and notes on how it was made."""

    dataset: Any
    rewards: list[RewardFunction]
    notes: dict[str, Any]


def training_data(algorithm: Algorithm, request: TrainRequest, model: Any, tokenizer: Any) -> TrainingData:
    """The dataset and reward functions ``algorithm`` trains on for ``request``."""
    from datasets import Dataset  # type: ignore[import-untyped]

    rewards = list(request.rewards)
    if isinstance(request.dataset, GeneratedDataset):
        rows, notes = _generated_rows(algorithm, request.dataset, model, tokenizer)
        write_text_atomic(request.output / DATA_FILE, "".join(json.dumps(row) + "\n" for row in rows))
        dataset = Dataset.from_list(rows)
        if algorithm.takes_rewards and not rewards:
            rewards = [arithmetic_reward]
    elif isinstance(request.dataset, Dataset):
        dataset, notes = request.dataset, {"rows": len(request.dataset)}
    else:
        raise UsageError(
            f"trl backend: dataset must be a datasets.Dataset or a GeneratedDataset, "
            f"not {type(request.dataset).__name__}"
        )
    if algorithm.takes_rewards and not rewards:
        raise UsageError(f"trl backend: {algorithm.name} needs reward functions (TrainRequest.rewards)")
    return TrainingData(dataset, rewards if algorithm.takes_rewards else [], notes)


def _generated_rows(
    algorithm: Algorithm, data: GeneratedDataset, model: Any, tokenizer: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if data.name not in GENERATED:
        raise UsageError(f"trl backend: no generated dataset {data.name!r}; known: {', '.join(GENERATED)}")
    conversational = has_chat_template(tokenizer)
    notes: dict[str, Any] = {"generated": data.name, "size": data.size, "seed": data.seed}
    if algorithm.data == TOKENIZED_PROMPTS:
        tokenizer.padding_side = "left"  # PPO generates after the prompts
        rows = [
            {"input_ids": tokenizer(prompt_text(tokenizer, p), add_special_tokens=False)["input_ids"]}
            for p in arithmetic_problems(data.size, data.seed)
        ]
    elif algorithm.data in (PROMPTS, SFT):
        problems = arithmetic_problems(data.size, data.seed)
        rows = (prompt_rows if algorithm.data == PROMPTS else sft_rows)(problems, conversational)
    else:
        if data.pair_style not in PAIR_STYLES:
            raise UsageError(
                f"trl backend: data pair_style {data.pair_style!r} is not one of {', '.join(PAIR_STYLES)}"
            )
        pairs = preference_pairs(model, tokenizer, data)
        if not pairs:
            raise UsageError(
                f"trl backend: {algorithm.name}: the base model answered all {data.samples} samples right "
                "for every prompt, so no pair has a rejected answer; use more prompts or samples"
            )
        notes.update(pairs=len(pairs), reference_chosen=sum(p.reference_chosen for p in pairs))
        if data.pair_style == "off":
            pairs = off_style_pairs(pairs)
            notes["pair_style"] = "off"
        rows = (preference_rows if algorithm.data == PAIRS else unpaired_rows)(pairs, conversational)
    notes["rows"] = len(rows)
    return rows, notes
