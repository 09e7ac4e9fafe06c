"""On-policy preference data: the base model's own samples, ranked by the answer reward.

Sampling uses transformers' ``generate`` (imported when called) with a fixed seed, so the same
model, problems and settings give the same pairs.  Prompts are chat messages when the tokenizer
has a chat template (an instruct model), plain text otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sparsecheck.training._api import GeneratedDataset
from sparsecheck.training._data import PreferencePair, Problem, arithmetic_problems, rank_samples

BATCH_SIZE = 16


def has_chat_template(tokenizer: Any) -> bool:
    """Whether prompts for ``tokenizer`` should be chat messages."""
    return bool(getattr(tokenizer, "chat_template", None))


def prompt_text(tokenizer: Any, problem: Problem) -> str:
    """The text a model is prompted with: the chat template's, or the plain question."""
    if has_chat_template(tokenizer):
        text: str = tokenizer.apply_chat_template(
            [{"role": "user", "content": problem.question}], add_generation_prompt=True, tokenize=False
        )
        return text
    return f"{problem.question}\n"


def sample_completions(
    model: Any,
    tokenizer: Any,
    problems: Sequence[Problem],
    data: GeneratedDataset,
) -> list[list[str]]:
    """``data.samples`` sampled completions (text) per problem from ``model``, seeded by ``data.seed``."""
    import torch

    texts = [prompt_text(tokenizer, p) for p in problems]
    tokenizer.padding_side = "left"
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    torch.manual_seed(data.seed)
    completions: list[list[str]] = []
    model.eval()
    for start in range(0, len(texts), BATCH_SIZE):
        batch = tokenizer(
            texts[start : start + BATCH_SIZE], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(model.device)
        with torch.no_grad():
            output = model.generate(
                **batch,
                do_sample=True,
                temperature=data.temperature,
                top_k=0,
                top_p=1.0,
                max_new_tokens=data.max_new_tokens,
                num_return_sequences=data.samples,
                pad_token_id=pad_token_id,
            )
        decoded = tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        completions.extend(
            [text.strip() for text in decoded[i : i + data.samples]]
            for i in range(0, len(decoded), data.samples)
        )
    return completions


def preference_pairs(model: Any, tokenizer: Any, data: GeneratedDataset) -> list[PreferencePair]:
    """Problems of ``data`` paired from ``model``'s own samples (see
    :func:`sparsecheck.training._data.rank_samples`)."""
    problems = arithmetic_problems(data.size, data.seed)
    return rank_samples(problems, sample_completions(model, tokenizer, problems, data))
