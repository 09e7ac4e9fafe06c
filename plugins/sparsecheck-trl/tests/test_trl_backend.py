"""The trl backend on a tiny Llama, CPU: sft, dpo and grpo runs, their outputs, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file
from sparsecheck_trl import TrlBackend
from sparsecheck_trl._algorithms import ALGORITHMS, available, resolve
from sparsecheck_trl._config import build_config, device_plan

from sparsecheck._manager import get_plugin_manager
from sparsecheck.checkpoints._formats import open_local
from sparsecheck.errors import UsageError
from sparsecheck.metrics._maskfile import MaskFile, MaskWriter
from sparsecheck.training._api import GeneratedDataset, TrainRequest, TrainResult
from sparsecheck.training._data import arithmetic_reward, completion_text

DATA = GeneratedDataset(size=8, samples=2, max_new_tokens=8)


def train(
    tiny_model: Path, output: Path, algorithm: str, hyperparameters: dict[str, Any], **kw: Any
) -> TrainResult:
    request = TrainRequest(algorithm, tiny_model, output, kw.pop("dataset", DATA), hyperparameters, **kw)
    return TrlBackend().train(request)


def changed(base: Path, final: Path) -> dict[str, np.ndarray]:
    """Entries whose bits differ, by tensor (independent of sparsecheck's readers)."""
    before, after = load_file(str(base / "model.safetensors")), load_file(str(final / "model.safetensors"))
    assert before.keys() == after.keys()
    return {name: before[name].view(np.uint32) != after[name].view(np.uint32) for name in before}


def rows(output: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (output / "train_data.jsonl").read_text().splitlines()]


def test_entry_point_registers_the_trl_backend() -> None:
    backends = [b for group in get_plugin_manager().hook.sparsecheck_add_backends() for b in group]
    trl = [b for b in backends if b.name == "trl"]
    assert len(trl) == 1 and isinstance(trl[0], TrlBackend)
    assert trl[0].algorithms == ("sft", "dpo", "grpo", "rloo", "kto", "orpo", "simpo", "reward", "ppo")


def test_loading_the_plugin_imports_neither_the_backend_nor_training() -> None:
    # Every sparsecheck command loads the entry point; only a spec with training steps needs more.
    heavy = ("sparsecheck_trl.", "sparsecheck.training", "trl")
    code = f"import sys, sparsecheck_trl; print(sorted(m for m in sys.modules if m.startswith({heavy!r})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_sft_trains_on_off_style_answers(tiny_model: Path, tmp_path: Path, fast: dict[str, Any]) -> None:
    result = train(tiny_model, tmp_path, "sft", fast)

    assert result.checkpoint == tmp_path / "final"
    assert result.snapshots == []  # the default policy keeps only the mask and the log
    assert set(open_local("final", result.checkpoint).tensors()) == set(
        open_local("base", tiny_model).tensors()
    )
    moved = changed(tiny_model, result.checkpoint)
    assert sum(int(m.sum()) for m in moved.values()) > 0.5 * sum(m.size for m in moved.values())
    data = rows(tmp_path)
    assert len(data) == DATA.size and all(r["completion"].startswith("ANSWER: ") for r in data)

    assert [r["step"] for r in result.log if "loss" in r] == [1, 2]
    assert result.log_file is not None
    assert [json.loads(line) for line in result.log_file.read_text().splitlines()] == result.log
    assert result.changed_mask is not None
    with MaskFile.open(result.changed_mask) as mask_file:
        assert set(mask_file.names()) == set(moved)
        for name, final_change in moved.items():
            assert not (final_change & ~mask_file.read(name)).any(), name  # changed at the end ⊆ ever changed
        assert mask_file.metadata["policy"] == "exact"
    info = json.loads((tmp_path / "run.json").read_text())
    assert (info["steps"], info["device"], info["trl"]) == (2, "cpu", __import__("trl").__version__)


def test_dpo_trains_on_ranked_samples_of_the_model(
    tiny_model: Path, tmp_path: Path, fast: dict[str, Any]
) -> None:
    result = train(tiny_model, tmp_path, "dpo", fast)

    pairs = rows(tmp_path)
    assert pairs, "the random tiny model answers wrong, so every prompt gives a pair"
    answers = [int(row["chosen"].rsplit(" ", 1)[-1].rstrip(".")) for row in pairs]
    assert arithmetic_reward([r["rejected"] for r in pairs], answers) == [0.0] * len(pairs)
    assert arithmetic_reward([r["chosen"] for r in pairs], answers) == [1.0] * len(pairs)
    assert [r["step"] for r in result.log if "rewards/margins" in r] == [1, 2]
    assert any(m.any() for m in changed(tiny_model, result.checkpoint).values())
    assert result.mask_violations is None and result.mask_report is None


def test_grpo_scores_its_samples_with_the_given_reward(
    tiny_model: Path, tmp_path: Path, fast: dict[str, Any]
) -> None:
    calls: list[int] = []

    def counted(completions: list[Any], **kwargs: Any) -> list[float]:
        calls.append(len(completions))
        return longer_is_better(completions, **kwargs)

    del fast["max_length"]
    fast.update(num_generations=4, max_completion_length=8)
    result = train(tiny_model, tmp_path, "grpo", fast, rewards=[counted])

    assert calls and all(n % 4 == 0 for n in calls)
    assert [r["step"] for r in result.log if "reward" in r] == [1, 2]
    assert all(r["reward"] > 0 for r in result.log if "reward" in r)
    assert any(m.any() for m in changed(tiny_model, result.checkpoint).values())
    assert rows(tmp_path)[0].keys() == {"prompt", "answer"}


def longer_is_better(completions: list[Any], **_: Any) -> list[float]:
    """A reward that varies even for a random model, so on-policy gradients are not zero."""
    return [float(len(completion_text(c))) for c in completions]


@pytest.mark.parametrize("algorithm", ["rloo", "kto", "orpo", "simpo"])
def test_other_algorithms_train_on_their_data_format(
    tiny_model: Path, tmp_path: Path, fast: dict[str, Any], algorithm: str
) -> None:
    rewards = []
    if algorithm == "rloo":
        del fast["max_length"]
        fast.update(num_generations=4, max_completion_length=8)
        rewards = [longer_is_better]
    result = train(tiny_model, tmp_path, algorithm, fast, rewards=rewards)
    assert [r["step"] for r in result.log if "loss" in r] == [1, 2]
    assert any(m.any() for m in changed(tiny_model, result.checkpoint).values())
    columns = {"rloo": {"prompt", "answer"}, "kto": {"prompt", "completion", "label"}}
    assert rows(tmp_path)[0].keys() == columns.get(algorithm, {"prompt", "chosen", "rejected"})


def test_same_request_same_run_bitwise(tiny_model: Path, tmp_path: Path, fast: dict[str, Any]) -> None:
    first = train(tiny_model, tmp_path / "a", "dpo", fast, seed=3)
    second = train(tiny_model, tmp_path / "b", "dpo", fast, seed=3)
    other_data = train(tiny_model, tmp_path / "c", "dpo", fast, seed=3, dataset=replace(DATA, seed=1))
    assert rows(tmp_path / "a") == rows(tmp_path / "b") != rows(tmp_path / "c")
    weights = [(r.checkpoint / "model.safetensors").read_bytes() for r in (first, second)]
    assert weights[0] == weights[1]
    assert not any(m.any() for m in changed(first.checkpoint, second.checkpoint).values())
    assert other_data.log != first.log


def test_cpu_runs_in_fp32_without_checkpointing(tmp_path: Path) -> None:
    algorithm, _, config_class = resolve("dpo")
    config = build_config(algorithm, config_class, {"lr": 1e-3}, device_plan("cpu"), 7, tmp_path)
    assert (config.bf16, config.fp16, config.use_cpu, config.activation_checkpointing) == (
        False,
        False,
        True,
        False,
    )
    assert (config.learning_rate, config.seed, config.save_strategy) == (1e-3, 7, "no")
    simpo, _, cpo_config = resolve("simpo")
    config = build_config(simpo, cpo_config, {"cpo_alpha": 0.5}, device_plan("cpu"), 0, tmp_path)
    assert (config.loss_type, config.cpo_alpha) == ("simpo", 0.5)


def test_unavailable_and_unknown_algorithms_are_named() -> None:
    import trl

    assert set(available()) >= set(ALGORITHMS) - {"ppo"}
    if "ppo" not in available():  # TRL >= 1.13
        with pytest.raises(UsageError) as error:
            resolve("ppo")
        assert str(error.value) == (
            f"trl backend: ppo is not available in TRL {trl.__version__} (no PPOTrainer in "
            "trl.experimental.ppo); available: sft, dpo, grpo, rloo, kto, orpo, simpo, reward; TRL removed "
            "PPOTrainer in 1.13; `pip install trl==1.12.0` (its last release with one) to run ppo"
        )
    with pytest.raises(UsageError, match="unknown algorithm 'ipo'; known: sft, dpo, grpo"):
        resolve("ipo")
    for name in available():
        algorithm, trainer, config = resolve(name)
        assert (trainer.__name__, config.__name__) == (algorithm.trainer, algorithm.config)


@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        (
            {"learning_rat": 1e-5},
            "hyperparameter 'learning_rat' is not a field of DPOConfig .* 'learning_rate'",
        ),
        (
            {"lr": 1e-5, "learning_rate": 1e-5},
            "hyperparameters 'lr' and 'learning_rate' are the same setting",
        ),
    ],
)
def test_bad_hyperparameters_are_named_before_loading(
    tmp_path: Path, hyperparameters: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        # the base folder is fake: the error must come before the model is loaded
        fake = tmp_path / "base"
        fake.mkdir()
        (fake / "config.json").write_text("{}")
        train(fake, tmp_path / "out", "dpo", hyperparameters)


def test_a_mask_with_nothing_trainable_is_refused_naming_its_file(tiny_model: Path, tmp_path: Path) -> None:
    mask = tmp_path / "none.mask.safetensors"
    with MaskWriter(mask, {"policy": "exact", "tol": "0.0"}) as writer:
        for name, array in load_file(str(tiny_model / "model.safetensors")).items():
            writer.add(name, np.zeros(array.shape, bool))
    with pytest.raises(UsageError) as error:
        train(tiny_model, tmp_path / "out", "dpo", {}, mask=mask)
    assert str(error.value) == f"{mask}: the mask marks no entry trainable: there is nothing to train"
    assert not (tmp_path / "out" / "train_data.jsonl").exists()  # refused before sampling


def test_deepspeed_is_refused_for_masked_runs(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(
        UsageError, match="a masked run cannot use DeepSpeed: its optimizer steps inside backward"
    ):
        train(tiny_model, tmp_path, "dpo", {}, mask=tmp_path / "m.mask.safetensors")


def test_weights_dtype_trains_and_saves_in_bf16(
    tiny_model: Path, tmp_path: Path, fast: dict[str, Any]
) -> None:
    result = train(tiny_model, tmp_path, "sft", {**fast, "weights_dtype": "bfloat16"})
    final = open_local("final", result.checkpoint)
    assert {stored.meta.dtype for stored in final.tensors().values()} == {"bfloat16"}
    with pytest.raises(UsageError, match="weights_dtype 'int8' is not one of"):
        train(tiny_model, tmp_path / "bad", "sft", {**fast, "weights_dtype": "int8"})
