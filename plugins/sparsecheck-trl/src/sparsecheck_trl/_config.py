"""The TRL config of a request: device settings, our defaults, then the user's hyperparameters.

Hyperparameters are the config class's own field names (``learning_rate``, ``max_steps``,
``beta``, ``max_length``, ``weight_decay``, ``num_generations``, …), plus three short aliases.
On CPU (fp32): ``bf16=False``, ``use_cpu=True`` and activation (gradient) checkpointing off, as
TRL's configs default to bf16 and checkpointing.  On CUDA: bf16 where the GPU has it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsecheck.errors import UsageError
from sparsecheck_trl._algorithms import Algorithm, trl_version

ALIASES = {"lr": "learning_rate", "steps": "max_steps", "batch_size": "per_device_train_batch_size"}
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DevicePlan:
    """Where and in what precision a run trains."""

    device: str
    #: The dtype the model is loaded in: float32 on CPU, the stored dtype ("auto") on CUDA.
    dtype: Any
    settings: Mapping[str, Any]


#: A backend setting among the hyperparameters: the dtype the weights are loaded, trained and
#: saved in (default: float32 on CPU, the stored dtype on CUDA).  ``bfloat16`` trains in bf16
#: itself, unlike TRL's ``bf16: true`` (mixed precision over float32 weights).
WEIGHTS_DTYPE = "weights_dtype"
WEIGHTS_DTYPES = ("float32", "bfloat16", "float16")


def device_plan(device: str, weights_dtype: str | None = None) -> DevicePlan:
    """``auto``: CUDA with bf16 when present, else CPU with fp32."""
    import torch

    if device not in DEVICES:
        raise UsageError(f"trl backend: device {device!r} is not one of {', '.join(DEVICES)}")
    if weights_dtype is not None and weights_dtype not in WEIGHTS_DTYPES:
        raise UsageError(
            f"trl backend: {WEIGHTS_DTYPE} {weights_dtype!r} is not one of {', '.join(WEIGHTS_DTYPES)}"
        )
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        dtype = getattr(torch, weights_dtype or "float32")
        return DevicePlan(
            "cpu", dtype, {"use_cpu": True, "bf16": False, "fp16": False, "checkpointing": False}
        )
    if not torch.cuda.is_available():
        raise UsageError("trl backend: device 'cuda' asked for, but torch sees no CUDA device")
    dtype = getattr(torch, weights_dtype) if weights_dtype else "auto"
    return DevicePlan("cuda", dtype, {"bf16": torch.cuda.is_bf16_supported()})


def uses_deepspeed(hyperparameters: Mapping[str, Any]) -> bool:
    """Whether the run would go through DeepSpeed (a config, or ``accelerate launch`` with it)."""
    return bool(hyperparameters.get("deepspeed")) or os.environ.get(
        "ACCELERATE_USE_DEEPSPEED", ""
    ).lower() in (
        "1",
        "true",
    )


def build_config(
    algorithm: Algorithm,
    config_class: type[Any],
    hyperparameters: Mapping[str, Any],
    plan: DevicePlan,
    seed: int,
    output_dir: Path,
) -> Any:
    """The config object; unknown or invalid hyperparameters are a UsageError naming them."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    settings: dict[str, Any] = {
        "output_dir": str(output_dir),
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1,
        "disable_tqdm": True,
        "seed": seed,
        "data_seed": seed,
    }
    for key, value in plan.settings.items():
        if key == "checkpointing":
            key = (
                "activation_checkpointing"
                if "activation_checkpointing" in fields
                else "gradient_checkpointing"
            )
        settings[key] = value
    settings.update(algorithm.defaults)
    settings.update(_user_settings(hyperparameters, fields, config_class))
    try:
        return config_class(**settings)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"trl backend: {algorithm.name}: invalid hyperparameters: {exc}") from None


def _user_settings(
    hyperparameters: Mapping[str, Any], fields: set[str], config_class: type[Any]
) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in hyperparameters.items():
        name = ALIASES.get(key, key)
        if name in settings:
            raise UsageError(
                f"trl backend: hyperparameters {given_as[name]!r} and {key!r} are the same setting; give one"
            )
        given_as[name] = key
        if name not in fields:
            close = difflib.get_close_matches(name, sorted(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UsageError(
                f"trl backend: hyperparameter {key!r} is not a field of {config_class.__name__} "
                f"(TRL {trl_version()}){hint}"
            )
        settings[name] = value
    return settings
