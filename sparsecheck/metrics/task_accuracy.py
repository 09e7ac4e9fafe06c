"""The ``task_accuracy`` metric: how well a causal LM solves held-out problems of a task.

Performance recovery (METRICS.md): θ_sub's score ≥ θ_full's − margin.  The score of one
checkpoint (``model``, a transformers folder: config, tokenizer files and weights) is measured on
``size`` held-out problems of the built-in ``arithmetic`` task, drawn by
:func:`sparsecheck.training._data.held_out_problems`: distinct, and disjoint from every generated
training set of ``seed`` with at most ``train_size`` problems (training sets are prefixes of one
seeded sequence, which the held-out draw excludes).

Prompts are formatted as the training data formats them (:func:`~sparsecheck.training._data.prompt_rows`):
chat messages under the tokenizer's chat template when it has one (an instruct model), plain
text otherwise.  Completions are greedy (``do_sample=False``), at most ``max_new_tokens`` tokens,
``batch_size`` prompts at a time, left-padded; fp32 on the CPU, bf16 on CUDA.  ``accuracy`` is the
share of completions whose final number equals the answer, ``reward`` the mean of the task's
reward function (:func:`~sparsecheck.training._data.arithmetic_reward`; for arithmetic the two
coincide); ``score`` picks the value.

The model is loaded by transformers, not streamed by the engine (``reads_tensors`` is False); the
engine still opens the checkpoint, so its fingerprint keys the result cache.  A hub id is
evaluated from its cached snapshot, which holds only ``*.json`` and ``*.safetensors`` files: a
chat template kept in a separate ``chat_template.jinja`` is missing there (prompts are then plain
text), so evaluate such a model from a local folder.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sparsecheck import _progress as progress
from sparsecheck._extras import require
from sparsecheck._markers import hookimpl
from sparsecheck.checkpoints._hub import HUB_ID, download_snapshot
from sparsecheck.errors import CheckpointError, UsageError
from sparsecheck.metrics._api import Fields, Metric, MetricResult, Param, Reducer, SkippedTensor, TensorGroup
from sparsecheck.metrics.update_rank import resolve_device
from sparsecheck.training._data import (
    DISTINCT_PROBLEMS,
    HELD_OUT_EXCLUDE,
    Problem,
    arithmetic_reward,
    held_out_problems,
    prompt_rows,
)
from sparsecheck.training._onpolicy import has_chat_template
from sparsecheck.training._quiet import quiet_hf

TASKS = ("arithmetic",)
SCORES = ("accuracy", "reward")
#: Characters of a question or completion shown in ``examples``.
EXAMPLE_CHARS = 60
EXAMPLES = 2


def model_folder(reader_id: str) -> Path:
    """The local folder of a checkpoint the engine resolved: its path, or a hub id's snapshot."""
    path = Path(reader_id)
    if not path.is_absolute() and HUB_ID.fullmatch(reader_id):
        repo_id, _, revision = reader_id.partition("@")
        path = download_snapshot(repo_id, revision or None)
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"{reader_id}: task_accuracy needs a model folder (config.json, tokenizer files, weights)"
        )
    return path


def load_model(folder: Path, device: str) -> tuple[Any, Any]:
    """The causal LM in ``folder`` on ``device`` (fp32 on the CPU, bf16 on CUDA) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    bar = logging.is_progress_bar_enabled()  # no loading bar in the middle of sparsecheck's report
    logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model: Any = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=dtype)
    except Exception as exc:  # transformers raises many kinds for a folder it cannot load
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(
            f"{folder}: cannot load it as a causal LM with its tokenizer: {reason}"
        ) from None
    finally:
        if bar:
            logging.enable_progress_bar()  # type: ignore[no-untyped-call]
    return model.to(device).eval(), tokenizer


def format_prompts(tokenizer: Any, problems: Sequence[Problem]) -> list[str]:
    """The training data's prompts as text: under the chat template when the tokenizer has one."""
    conversational = has_chat_template(tokenizer)
    return [
        tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        if conversational
        else row["prompt"]
        for row in prompt_rows(problems, conversational)
    ]


def generate_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    task: progress.Task | None = None,
) -> list[str]:
    """Greedy completions (decoded, stripped) of ``prompts``, ``batch_size`` at a time, counted
    on ``task``."""
    import torch

    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    completions: list[str] = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(
            list(prompts[start : start + batch_size]),
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        ).to(model.device)
        with torch.no_grad():
            output = model.generate(
                **batch, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id
            )
        decoded = tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        completions.extend(text.strip() for text in decoded)
        if task is not None:
            task.update(len(completions))
    return completions


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"


def _examples(problems: Sequence[Problem], completions: Sequence[str]) -> str:
    return " | ".join(
        f"Q: {_shorten(p.question)} A: {_shorten(c)}"
        for p, c in zip(problems[:EXAMPLES], completions, strict=False)
    )


class TaskAccuracyReducer(Reducer):
    def __init__(self, metric: str, args: Mapping[str, Any]) -> None:
        for name in ("size", "max_new_tokens", "batch_size"):
            if args[name] < 1:
                raise UsageError(f"{metric}: {name} must be at least 1, not {args[name]}")
        if args["train_size"] < 0:
            raise UsageError(f"{metric}: train_size must be at least 0, not {args['train_size']}")
        if args["size"] + args["train_size"] > DISTINCT_PROBLEMS:
            raise UsageError(
                f"{metric}: size + train_size must be at most {DISTINCT_PROBLEMS} "
                f"(the distinct {args['data']} problems), got {args['size']} + {args['train_size']}"
            )
        self.metric = metric
        self.args = dict(args)

    def update(self, group: TensorGroup) -> None:
        """Never called: the metric reads no tensors through the engine."""

    def finish(self, skipped: Sequence[SkippedTensor]) -> MetricResult:
        args = self.args
        began = time.perf_counter()
        for module in ("torch", "transformers"):
            require(module, f"{self.metric}: running the model", "train")
        device = resolve_device(self.metric, args["device"])
        problems = held_out_problems(args["size"], args["seed"], args["train_size"])
        folder = model_folder(args["model"])
        name = f"{self.metric} of {'/'.join(folder.parts[-3:])}"
        with quiet_hf(), progress.task(name, len(problems), "problems") as task:
            model, tokenizer = load_model(folder, device)
            completions = generate_completions(
                model,
                tokenizer,
                format_prompts(tokenizer, problems),
                max_new_tokens=args["max_new_tokens"],
                batch_size=args["batch_size"],
                task=task,
            )
        rewards = arithmetic_reward(completions, [p.answer for p in problems])
        correct = sum(r == 1.0 for r in rewards)
        fields: Fields = {
            "accuracy": correct / len(problems),
            "reward": sum(rewards) / len(rewards),
            "correct": correct,
            "total": len(problems),
            "score": args["score"],
            "data": args["data"],
            "seed": args["seed"],
            "train_size": args["train_size"],
            "max_new_tokens": args["max_new_tokens"],
            "chat_template": has_chat_template(tokenizer),
            "device": device,
            "seconds": time.perf_counter() - began,
            "examples": _examples(problems, completions),
        }
        return MetricResult(
            metric=self.metric,
            value_field=args["score"],
            fields=fields,
            definition=(
                f"{self.metric}: greedy completions (at most {args['max_new_tokens']} new tokens) of "
                f"{len(problems)} held-out {args['data']} problems (seed {args['seed']}, none among the "
                f"first {args['train_size']} training problems of that seed); accuracy = share whose final "
                "number equals the answer, reward = mean of the task's reward (equal for arithmetic)"
            ),
            skipped=list(skipped),
        )


class TaskAccuracy(Metric):
    name = "task_accuracy"
    summary = "score of a causal LM on held-out task prompts: accuracy of the final number, or mean reward"
    params = (
        Param("model", "checkpoint", "the model to score: a folder with config, tokenizer files and weights"),
        Param("data", "choice", "the task whose held-out problems are asked", "arithmetic", TASKS),
        Param("size", "int", "number of held-out problems", 64),
        Param("seed", "int", "the training data's seed; held-out problems avoid its training problems", 0),
        Param(
            "train_size",
            "int",
            "held-out problems avoid the first N training problems of seed (training sets up to N)",
            HELD_OUT_EXCLUDE,
        ),
        Param("max_new_tokens", "int", "most tokens generated per completion", 32),
        Param("batch_size", "int", "prompts generated at once", 16),
        Param(
            "device",
            "choice",
            "where to generate: auto (CUDA when available), cpu, cuda",
            "auto",
            ("auto", "cpu", "cuda"),
        ),
        Param("score", "choice", "the value: accuracy or reward (mean reward)", "accuracy", SCORES),
    )
    value_field = "accuracy"
    reads_tensors = False

    def reducer(self, args: Mapping[str, Any]) -> Reducer:
        return TaskAccuracyReducer(self.name, args)


@hookimpl
def sparsecheck_add_metrics() -> list[Metric]:
    return [TaskAccuracy()]
