"""Which TRL trainer runs each algorithm, where the installed TRL keeps it, and what data it takes.

TRL 1.x moved some trainers to ``trl.experimental`` (ORPO, CPO, PPO); each algorithm lists the
modules that have held its trainer, and the first that imports wins.  TRL removed its
``PPOTrainer`` in 1.13 (it lives in ``trl.experimental.ppo`` up to 1.12), so ``ppo`` is available
only with TRL 1.12.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sparsecheck.errors import UsageError

#: The data each algorithm trains on (``sparsecheck.training._data`` builds each kind); PPO takes
#: its prompts tokenized.
PROMPTS, SFT, PAIRS, UNPAIRED, TOKENIZED_PROMPTS = "prompts", "sft", "pairs", "unpaired", "tokenized_prompts"
#: The model an algorithm trains: a causal LM, or a sequence-classification head (a reward model).
CAUSAL_LM, SCORE = "causal_lm", "score"
#: What ``ppo`` needs when the installed TRL lacks it.
PPO_HINT = "TRL removed PPOTrainer in 1.13; `pip install trl==1.12.0` (its last release with one) to run ppo"


@dataclass(frozen=True)
class Algorithm:
    """One algorithm: its TRL trainer and config class names and where to find them."""

    name: str
    trainer: str
    config: str
    modules: tuple[str, ...]
    data: str
    #: Config values this algorithm needs (the user's hyperparameters override them).
    defaults: Mapping[str, Any] = field(default_factory=dict)
    model: str = CAUSAL_LM
    #: What to do when the installed TRL lacks the trainer.
    missing_hint: str = ""

    @property
    def takes_rewards(self) -> bool:
        """On-policy algorithms score their own samples with reward functions."""
        return self.data == PROMPTS


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("sft", "SFTTrainer", "SFTConfig", ("trl",), SFT),
        Algorithm("dpo", "DPOTrainer", "DPOConfig", ("trl",), PAIRS),
        Algorithm("grpo", "GRPOTrainer", "GRPOConfig", ("trl",), PROMPTS),
        Algorithm("rloo", "RLOOTrainer", "RLOOConfig", ("trl",), PROMPTS),
        Algorithm("kto", "KTOTrainer", "KTOConfig", ("trl", "trl.experimental.kto"), UNPAIRED),
        Algorithm(
            "orpo",
            "ORPOTrainer",
            "ORPOConfig",
            ("trl", "trl.experimental.orpo"),
            PAIRS,
            {"remove_unused_columns": False},  # its collator needs every column
        ),
        # SimPO is CPO with the simpo loss; cpo_alpha 0 drops CPO's behaviour-cloning term.
        Algorithm(
            "simpo",
            "CPOTrainer",
            "CPOConfig",
            ("trl", "trl.experimental.cpo"),
            PAIRS,
            {"loss_type": "simpo", "cpo_alpha": 0.0, "remove_unused_columns": False},
        ),
        # A reward model for ppo: TRL's RewardTrainer on preference pairs, a one-logit score head.
        Algorithm("reward", "RewardTrainer", "RewardConfig", ("trl",), PAIRS, model=SCORE),
        Algorithm(
            "ppo",
            "PPOTrainer",
            "PPOConfig",
            ("trl.experimental.ppo",),
            TOKENIZED_PROMPTS,
            # Stop at the end of a turn, and no sample generations between updates (they cost time).
            {"stop_token": "eos", "num_sample_generations": 0},
            missing_hint=PPO_HINT,
        ),
    )
}


def trl_version() -> str:
    import trl

    return str(trl.__version__)


def _find(algorithm: Algorithm) -> tuple[type[Any], type[Any]] | None:
    for module_name in algorithm.modules:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*trl.experimental.*")
                module = importlib.import_module(module_name)
                return getattr(module, algorithm.trainer), getattr(module, algorithm.config)
        except (ImportError, AttributeError):
            continue
    return None


def available() -> list[str]:
    """The algorithms the installed TRL has."""
    return [name for name, algorithm in ALGORITHMS.items() if _find(algorithm) is not None]


def resolve(name: str) -> tuple[Algorithm, type[Any], type[Any]]:
    """The algorithm ``name`` with its trainer and config classes; a clear error when the
    backend does not know it or the installed TRL lacks it."""
    algorithm = ALGORITHMS.get(name)
    if algorithm is None:
        raise UsageError(f"trl backend: unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)}")
    found = _find(algorithm)
    if found is None:
        hint = f"; {algorithm.missing_hint}" if algorithm.missing_hint else ""
        raise UsageError(
            f"trl backend: {name} is not available in TRL {trl_version()} (no {algorithm.trainer} in "
            f"{' or '.join(algorithm.modules)}); available: {', '.join(available())}{hint}"
        )
    return algorithm, found[0], found[1]
