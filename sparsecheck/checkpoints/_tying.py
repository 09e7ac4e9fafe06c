"""Tied embeddings saved as two copies: read the model config's ``tie_word_embeddings``.

``save_pretrained`` stores a tied ``lm_head.weight`` once in safetensors, but other writers
store it as its own copy; the model as loaded uses the input embedding for both.  When the
folder's ``config.json`` says ``tie_word_embeddings: true``, the output embedding is an alias of
the input embedding, so it is compared once (the pairing notes it), whatever the storage.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from sparsecheck.checkpoints._reader import StoredTensor

OUTPUT_EMBEDDING = "lm_head.weight"
#: Names of input embeddings an output embedding is tied to, by architecture family.
INPUT_EMBEDDINGS = (
    "model.embed_tokens.weight",
    "transformer.wte.weight",
    "gpt_neox.embed_in.weight",
    "model.decoder.embed_tokens.weight",
    "transformer.word_embeddings.weight",
)


def tied_copies(folder: Path, stored: Mapping[str, StoredTensor]) -> dict[str, str]:
    """``{"lm_head.weight": <input embedding>}`` when ``folder/config.json`` ties the word
    embeddings and both are stored with one shape; else ``{}``."""
    head = stored.get(OUTPUT_EMBEDDING)
    targets = [name for name in INPUT_EMBEDDINGS if name in stored]
    if head is None or len(targets) != 1 or stored[targets[0]].meta.shape != head.meta.shape:
        return {}
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    tied = isinstance(config, dict) and config.get("tie_word_embeddings") is True
    return {OUTPUT_EMBEDDING: targets[0]} if tied else {}
