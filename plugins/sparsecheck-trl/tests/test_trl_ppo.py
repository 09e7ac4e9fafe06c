"""The classic RLHF pipeline on a tiny Llama, CPU: sft → reward model → ppo, plain and exactly masked.

TRL removed its ``PPOTrainer`` in 1.13; with a TRL that lacks it (the pinned 1.16) ``ppo`` must
say so and how to get it, and CI runs this file again over TRL 1.12 (its last release with one),
where the pipeline must train.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file
from sparsecheck_trl import TrlBackend
from sparsecheck_trl._algorithms import available

from sparsecheck.errors import UsageError
from sparsecheck.metrics._maskfile import MaskWriter
from sparsecheck.testing import run_spec
from sparsecheck.training._api import GeneratedDataset, TrainRequest, TrainResult

DATA = GeneratedDataset(size=8, samples=2, max_new_tokens=8)
#: Two PPO updates of a 4-prompt batch, short responses; weight decay moves every entry it may.
PPO = {"lr": 0.01, "steps": 2, "batch_size": 4, "response_length": 8, "weight_decay": 0.1}
HAS_PPO = "ppo" in available()
FROZEN_TENSOR = "model.layers.1.mlp.down_proj.weight"


def train(
    base: Path, output: Path, algorithm: str, hyperparameters: dict[str, Any], **kw: Any
) -> TrainResult:
    return TrlBackend().train(TrainRequest(algorithm, base, output, DATA, hyperparameters, **kw))


def weights(folder: Path) -> dict[str, np.ndarray]:
    return {
        name: array.view(np.uint32) for name, array in load_file(str(folder / "model.safetensors")).items()
    }


@pytest.fixture(scope="module")
def sft_and_reward(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The SFT policy and a reward model trained on the project's preference pairs from it."""
    root = tmp_path_factory.mktemp("rlhf")
    sft = train(tiny_model, root / "sft", "sft", {"lr": 0.05, "steps": 2, "batch_size": 4, "max_length": 64})
    reward = train(sft.checkpoint, root / "reward", "reward", {"lr": 0.01, "steps": 2, "batch_size": 4})
    return sft.checkpoint, reward.checkpoint


def test_reward_model_is_a_score_head_trained_on_preference_pairs(
    sft_and_reward: tuple[Path, Path],
) -> None:
    sft, reward = sft_and_reward
    config = json.loads((reward / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and len(config["id2label"]) == 1
    stored = load_file(str(reward / "model.safetensors"))
    assert stored["score.weight"].shape == (1, 32)
    rows = [json.loads(line) for line in (reward.parent / "train_data.jsonl").read_text().splitlines()]
    assert rows and rows[0].keys() == {"prompt", "chosen", "rejected"}
    before = weights(sft)
    moved = [
        name for name, bits in weights(reward).items() if name in before and (bits != before[name]).any()
    ]
    assert moved, "the reward trainer moved the shared body"


@pytest.mark.skipif(HAS_PPO, reason="the installed TRL has PPOTrainer: the pipeline tests below run instead")
def test_ppo_without_a_ppo_trainer_in_trl_says_which_trl_has_one(
    sft_and_reward: tuple[Path, Path], tmp_path: Path
) -> None:
    sft, reward = sft_and_reward
    with pytest.raises(UsageError, match=r"ppo is not available in TRL .*pip install trl==1\.12\.0"):
        train(sft, tmp_path, "ppo", PPO, reward_model=reward)


needs_ppo = pytest.mark.skipif(
    not HAS_PPO, reason="TRL >= 1.13 has no PPOTrainer; CI runs these over TRL 1.12"
)


@needs_ppo
def test_ppo_trains_the_policy_with_a_reward_and_a_value_model(
    sft_and_reward: tuple[Path, Path], tmp_path: Path
) -> None:
    sft, reward = sft_and_reward
    result = train(sft, tmp_path, "ppo", PPO, reward_model=reward)
    assert weights(result.checkpoint).keys() == weights(sft).keys()  # the policy alone, no value head
    assert any((a != weights(sft)[n]).any() for n, a in weights(result.checkpoint).items())
    updates = [r for r in result.log if "objective/scores" in r]
    assert [r["step"] for r in updates] == [1, 2]
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["steps"] == 2 and info["hyperparameters"]["steps"] == 2
    rows = [json.loads(line) for line in (tmp_path / "train_data.jsonl").read_text().splitlines()]
    assert rows[0].keys() == {"input_ids"}


def test_ppo_without_a_reward_model_is_a_usage_error(
    sft_and_reward: tuple[Path, Path], tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="ppo needs reward_model" if HAS_PPO else "ppo is not available"):
        train(sft_and_reward[0], tmp_path, "ppo", PPO)
    with pytest.raises(UsageError, match="dpo takes no reward_model"):
        train(sft_and_reward[0], tmp_path, "dpo", PPO, reward_model=sft_and_reward[1])


@needs_ppo
def test_masked_ppo_keeps_every_frozen_entry_bitwise(
    sft_and_reward: tuple[Path, Path], tmp_path: Path
) -> None:
    sft, reward = sft_and_reward
    base = weights(sft)
    rng = np.random.default_rng(3)
    masks = {name: rng.random(bits.shape) < 0.3 for name, bits in base.items()}
    masks[FROZEN_TENSOR][:] = False
    mask_path = tmp_path / "sub.mask.safetensors"
    with MaskWriter(mask_path, {"policy": "exact", "tol": "0.0"}) as writer:
        for name, mask in masks.items():
            writer.add(name, mask)
    result = train(sft, tmp_path / "run", "ppo", PPO, reward_model=reward, mask=mask_path)
    final = weights(result.checkpoint)
    frozen_moved = sum(int(((final[n] != base[n]) & ~masks[n]).sum()) for n in base)
    trainable_moved = sum(int(((final[n] != base[n]) & masks[n]).sum()) for n in base)
    assert frozen_moved == 0 and trainable_moved > 0
    assert result.mask_violations == 0
    assert result.mask_report is not None
    report = json.loads(result.mask_report.read_text())
    assert report["violations"] == 0 and report["fixed"] > 0  # weight decay moved frozen entries; restored


@needs_ppo
def test_a_spec_trains_the_rlhf_pipeline_as_steps(tiny_model: Path, tmp_path: Path) -> None:
    spec = tmp_path / "rlhf.sparsecheck.yaml"
    spec.write_text(
        f"""version: 1
checkpoints: {{base: {tiny_model}}}
steps:
  - id: sft
    train: {{backend: trl, algorithm: sft, base: base, data: &data {{builtin: arithmetic, size: 8, samples: 2,
             max_new_tokens: 8}}, hyperparameters: {{lr: 0.05, steps: 2, batch_size: 4, max_length: 64}}}}
  - id: reward
    train: {{backend: trl, algorithm: reward, base: sft, data: *data,
             hyperparameters: {{lr: 0.01, steps: 2, batch_size: 4}}}}
  - id: ppo
    train: {{backend: trl, algorithm: ppo, base: sft, reward_model: reward, data: *data,
             hyperparameters: {{lr: 0.01, steps: 2, batch_size: 4, response_length: 8}}}}
checks:
  - id: ppo-changed-the-policy
    metric: update_sparsity
    args: {{base: sft, tuned: ppo, policy: exact}}
    expect: {{lt: 1.0}}
"""
    )
    session = run_spec(spec, options={"no_cache": True})
    (outcome,) = session.outcomes
    assert outcome.status.name == "PASS", outcome.message


@pytest.mark.parametrize(
    ("given", "episodes", "epochs"),
    [({"steps": 3, "batch_size": 2}, 6, 1), ({"max_steps": 2, "num_ppo_epochs": 4}, 16, 4), ({}, None, 1)],
)
def test_ppo_steps_are_policy_updates_of_one_epoch(
    given: dict[str, int], episodes: int | None, epochs: int
) -> None:
    from sparsecheck_trl._ppo import ppo_hyperparameters

    settings = ppo_hyperparameters(given)
    assert settings.get("total_episodes") == episodes
    assert settings["num_ppo_epochs"] == epochs
