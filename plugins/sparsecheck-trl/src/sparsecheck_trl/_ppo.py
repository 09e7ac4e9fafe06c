"""What a ``ppo`` run needs beyond the other algorithms: a reward model, a value model and a frozen
reference policy, and its length in episodes.

The classic RLHF pipeline is three runs: ``sft``, then ``reward`` (TRL's ``RewardTrainer`` on
preference pairs, a one-logit sequence-classification head on the same base), then ``ppo`` from
the SFT model with that reward model.  The value model starts as a copy of the reward model, as
TRL's PPO examples do.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sparsecheck.errors import CheckpointError, UsageError
from sparsecheck.training import TrainRequest
from sparsecheck_trl._algorithms import Algorithm
from sparsecheck_trl._config import ALIASES

#: Hyperparameters that count optimizer steps of a ``Trainer``; PPO counts episodes instead.
_STEPS = ("steps", "max_steps")


def check_reward_model(algorithm: Algorithm, request: TrainRequest) -> None:
    """``ppo`` needs a reward model folder; the other algorithms take none."""
    if algorithm.name != "ppo":
        if request.reward_model is not None:
            raise UsageError(
                f"trl backend: {algorithm.name} takes no reward_model (only ppo learns from one)"
            )
        return
    if request.reward_model is None:
        raise UsageError(
            "trl backend: ppo needs reward_model: a reward model checkpoint (train one with algorithm reward)"
        )
    if not (request.reward_model / "config.json").is_file():
        raise CheckpointError(f"{request.reward_model}: not a model folder (no config.json)")


def ppo_hyperparameters(hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """``steps`` as PPO counts them: ``total_episodes`` = steps × batch size × accumulation, so a
    run of N steps makes N policy updates of one batch each (one PPO epoch, one mini-batch by
    default)."""
    settings = dict(hyperparameters)
    settings.setdefault("num_ppo_epochs", 1)  # TRL's default is 4 optimizer steps per update
    given = [key for key in _STEPS if key in settings]
    if not given:
        return settings
    if len(given) > 1 or "total_episodes" in settings:
        raise UsageError("trl backend: ppo: give one of steps, max_steps and total_episodes")
    steps = settings.pop(given[0])
    batch = settings.get("batch_size", settings.get(ALIASES["batch_size"], 8))
    accumulation = settings.get("gradient_accumulation_steps", 1)
    settings["total_episodes"] = int(steps) * int(batch) * int(accumulation)
    return settings


def ppo_models(request: TrainRequest, tokenizer: Any, dtype: Any, device: str) -> dict[str, Any]:
    """The frozen reference policy (the base again), the reward model and the value model."""
    from transformers import AutoModelForCausalLM

    assert request.reward_model is not None
    reference: Any = AutoModelForCausalLM.from_pretrained(request.base, dtype=dtype)
    return {
        "ref_model": reference.to(device),
        "reward_model": load_score_model(request.reward_model, tokenizer, dtype, device),
        "value_model": load_score_model(request.reward_model, tokenizer, dtype, device),
    }


def load_score_model(folder: Path, tokenizer: Any, dtype: Any, device: str) -> Any:
    """A one-logit sequence-classification model from ``folder`` (a new head on a causal LM)."""
    from transformers import AutoModelForSequenceClassification

    model: Any = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1, dtype=dtype)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device)
