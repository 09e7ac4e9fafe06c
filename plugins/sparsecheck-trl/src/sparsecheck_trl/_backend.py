"""The ``trl`` training backend: one TRL trainer run per request, optionally exactly masked.

A run's output folder holds ``final/`` (the final checkpoint, ``save_pretrained`` safetensors
with the tokenizer), ``checkpoint-<step>/`` snapshots when asked (so the folder is a run folder
the transient metrics read), ``ever_changed.mask.safetensors``, ``train_log.jsonl``,
``train_data.jsonl`` (generated data), ``run.json`` (settings, data notes, step time) and, for
masked runs, ``mask_report.json``.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any, ClassVar

from sparsecheck.errors import CheckpointError, UsageError
from sparsecheck.training import (
    ExactMask,
    TrainingBackend,
    TrainRequest,
    TrainResult,
    checkpoint_violations,
    exact_mask_metadata,
    match_masks,
    quiet_hf,
    read_masks,
    write_folder,
    write_text_atomic,
)
from sparsecheck_trl._algorithms import ALGORITHMS, SCORE, resolve, trl_version
from sparsecheck_trl._config import WEIGHTS_DTYPE, build_config, device_plan, uses_deepspeed
from sparsecheck_trl._datasets import training_data
from sparsecheck_trl._ppo import check_reward_model, load_score_model, ppo_hyperparameters, ppo_models

FINAL = "final"
MASK_REPORT = "mask_report.json"
RUN_INFO = "run.json"
TRAINER_FOLDER = "trainer"


class TrlBackend(TrainingBackend):
    """Fine-tunes with TRL's trainers (``sft``, ``dpo``, ``grpo``, ``rloo``, ``kto``, ``orpo``,
    ``simpo``, ``reward`` and ``ppo``; ``ppo`` needs TRL 1.12, the last with a ``PPOTrainer``)."""

    name: ClassVar[str] = "trl"
    algorithms: ClassVar[tuple[str, ...]] = tuple(ALGORITHMS)

    def train(self, request: TrainRequest) -> TrainResult:
        with quiet_hf():
            return self._train(request)

    def _train(self, request: TrainRequest) -> TrainResult:
        algorithm, trainer_class, config_class = resolve(request.algorithm)
        if not (request.base / "config.json").is_file():
            raise CheckpointError(f"{request.base}: not a model folder (no config.json)")
        if request.mask is not None and uses_deepspeed(request.hyperparameters):
            raise UsageError(
                "trl backend: a masked run cannot use DeepSpeed: its optimizer steps inside backward, so the "
                "masked entries cannot be restored after each step; use FSDP2 or a single device"
            )
        check_reward_model(algorithm, request)
        hyperparameters = dict(request.hyperparameters)
        if algorithm.name == "ppo":
            hyperparameters = ppo_hyperparameters(hyperparameters)
        plan = device_plan(request.device, hyperparameters.pop(WEIGHTS_DTYPE, None))
        request.output.mkdir(parents=True, exist_ok=True)
        config = build_config(
            algorithm,
            config_class,
            hyperparameters,
            plan,
            request.seed,
            request.output / TRAINER_FOLDER,
        )
        model, tokenizer = _load(request, plan.dtype, plan.device, algorithm.model)
        masks = read_masks(request.mask) if request.mask is not None else None
        if masks is not None:
            try:
                match_masks(model, masks)  # fail before any sampling or training
            except UsageError as exc:
                raise UsageError(exc.message, location=str(request.mask)) from None
        # A reward model's pairs are samples of the causal LM under its score head.
        sampler = model if algorithm.model != SCORE else _causal_lm(request.base, plan.dtype, plan.device)
        data = training_data(algorithm, request, sampler, tokenizer)
        del sampler

        from sparsecheck_trl._callbacks import ExactMaskCallback, ProgressCallback, RecorderCallback

        # PPO optimizes its policy and value model together: mask and record the policy alone.
        own = model if algorithm.name == "ppo" else None
        mask_callback = ExactMaskCallback(masks, own) if masks is not None else None
        recorder = RecorderCallback(request.output, request.snapshots, own)
        extra = {"reward_funcs": data.rewards} if algorithm.takes_rewards else {}
        if algorithm.name == "ppo":
            extra = ppo_models(request, tokenizer, plan.dtype, plan.device)
        trainer = trainer_class(
            model=model,
            args=config,
            train_dataset=data.dataset,
            processing_class=tokenizer,
            callbacks=[c for c in (mask_callback, recorder, ProgressCallback()) if c is not None],
            **extra,
        )
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # the recorder keeps the log; keep the terminal for results
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        with contextlib.suppress(OSError):
            (request.output / TRAINER_FOLDER).rmdir()  # TRL's output_dir: empty, as nothing is saved there

        final = _save_final(model, tokenizer, request.output / FINAL)
        assert recorder.recorder is not None, "on_train_begin was not called"
        recorded = recorder.recorder.finish(
            trainer.state.global_step, exact_mask_metadata(request.base, final)
        )
        _write_run_info(request, plan.device, trainer.state.global_step, seconds, data.notes)
        result = TrainResult(
            checkpoint=final,
            snapshots=recorded.snapshots,
            log=recorded.log,
            changed_mask=recorded.changed_mask,
            log_file=recorded.log_file,
        )
        if masks is not None and mask_callback is not None and mask_callback.exact is not None:
            result.mask_report, result.mask_violations = _report_mask(
                request, final, masks, mask_callback.exact
            )
        return result


def _load(request: TrainRequest, dtype: Any, device: str, kind: str) -> tuple[Any, Any]:
    """The tokenizer and the model trained: the causal LM, or (``reward``) a score head on it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(request.tokenizer or request.base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if kind == SCORE:
        return load_score_model(request.base, tokenizer, dtype, device), tokenizer
    return _causal_lm(request.base, dtype, device), tokenizer


def _causal_lm(folder: Path, dtype: Any, device: str) -> Any:
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    return model.to(device)


def _save_final(model: Any, tokenizer: Any, folder: Path) -> Path:
    def save(target: Path) -> None:
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)

    return write_folder(folder, save)


def _report_mask(request: TrainRequest, final: Path, masks: Any, exact: ExactMask) -> tuple[Path, int]:
    """Compare the saved final checkpoint's frozen entries with the base; write the report."""
    violations = checkpoint_violations(request.base, final, masks)
    report = {
        "mask": str(request.mask),
        "base": str(request.base),
        "checkpoint": str(final),
        "violations": violations.total,
        "violations_by_tensor": {name: n for name, n in violations.by_tensor.items() if n},
        "not_compared": violations.not_compared,
        **exact.stats.as_dict(),
    }
    path = request.output / MASK_REPORT
    write_text_atomic(path, json.dumps(report, indent=2) + "\n")
    return path, violations.total


def _write_run_info(
    request: TrainRequest, device: str, steps: int, seconds: float, notes: dict[str, Any]
) -> None:
    info = {
        "algorithm": request.algorithm,
        "trl": trl_version(),
        "device": device,
        "seed": request.seed,
        "hyperparameters": dict(request.hyperparameters),
        "masked": request.mask is not None,
        "data": notes,
        "steps": steps,
        "train_seconds": round(seconds, 3),
        "seconds_per_step": round(seconds / steps, 3) if steps else None,
    }
    write_text_atomic(request.output / RUN_INFO, json.dumps(info, indent=2, default=str) + "\n")
