"""GGUF files (llama.cpp's format), read through the ``gguf`` package one tensor at a time.

A ``.gguf`` path opens as a checkpoint (the optional ``gguf`` extra).  Quantized tensors
(Q4_1, Q8_0, K-quants, …) are dequantized with ``gguf.quants.dequantize`` when the pass reads
them and read as float32; F32, F16 and BF16 tensors read as stored.  GGUF lists dimensions
innermost first; tensors come in the PyTorch order.

Names.  For the Llama family (``general.architecture`` ``llama`` or ``mistral``), GGUF names
map to Hugging Face names (``blk.3.attn_q.weight`` → ``model.layers.3.self_attn.q_proj.weight``)
and the rows of the query and key projections, which llama.cpp's converter interleaves for its
rotary embedding, are put back in the Hugging Face order, as transformers does when it loads a
GGUF.  So a quantized release compares with its source checkpoint name by name.  Other
architectures keep their GGUF names (two GGUF files still compare).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sparsecheck._dtypes import STORAGE
from sparsecheck._extras import require
from sparsecheck._markers import hookimpl
from sparsecheck.checkpoints._fingerprint import sampled_fingerprint
from sparsecheck.checkpoints._reader import CheckpointReader, StoredTensor, TensorMeta
from sparsecheck.errors import CheckpointError

#: Architectures whose names map to Hugging Face's, and whose q/k rows llama.cpp permutes.
LLAMA_FAMILY = frozenset({"llama", "mistral"})
_TOP = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_BLOCK = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK_NAME = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")
#: GGML types read as stored; every other type is dequantized to float32.
_PLAIN = {
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F64": "float64",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
}


@hookimpl(tryfirst=True)
def sparsecheck_open_checkpoint(source: str, path: Path | None) -> CheckpointReader | None:
    if path is None or path.suffix.lower() != ".gguf" or not path.is_file():
        return None
    return GgufReader(source, path)


def hf_name(name: str) -> str:
    """The Hugging Face name of a Llama-family GGUF tensor name (unchanged when unknown)."""
    stem, _, kind = name.rpartition(".")
    if stem in _TOP:
        return f"{_TOP[stem]}.{kind}"
    match = _BLOCK_NAME.fullmatch(name)
    if match and match.group(2) in _BLOCK:
        return f"model.layers.{match.group(1)}.{_BLOCK[match.group(2)]}.{match.group(3)}"
    return name


def unpermute(rows: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's rotary interleaving of a q/k projection's rows (``heads`` of them)."""
    half = rows.shape[0] // heads // 2
    restored: np.ndarray = rows.reshape(heads, half, 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)
    return restored


class GgufReader(CheckpointReader):
    """One GGUF file."""

    format = "gguf"

    def __init__(self, source: str, path: Path) -> None:
        super().__init__(source, path)
        gguf = require("gguf", f"{path}: reading a GGUF file")
        self._gguf = gguf
        try:
            self._file = gguf.GGUFReader(path)
        except Exception as exc:  # gguf raises ValueError, struct errors, IndexError on a bad file
            raise CheckpointError(f"{path}: not a readable GGUF file: {exc}") from None
        self.architecture = str(self._field("general.architecture") or "")
        mapped = self.architecture in LLAMA_FAMILY
        self._heads: dict[str, int] = {}
        if mapped:
            heads = int(self._field(f"{self.architecture}.attention.head_count") or 0)
            kv_heads = int(self._field(f"{self.architecture}.attention.head_count_kv") or heads)
            self._heads = {"self_attn.q_proj": heads, "self_attn.k_proj": kv_heads}
        self._entries: dict[str, Any] = {}
        self._tensors: dict[str, StoredTensor] = {}
        for tensor in self._file.tensors:
            name = hf_name(tensor.name) if mapped else tensor.name
            if name in self._tensors:
                raise CheckpointError(f"{path}: tensor {tensor.name!r} is stored twice")
            kind = tensor.tensor_type.name
            meta = TensorMeta(
                name, _PLAIN.get(kind, "float32"), tuple(int(d) for d in reversed(tensor.shape))
            )
            self._entries[name] = tensor
            self._tensors[name] = StoredTensor(meta, path, int(tensor.data_offset), int(tensor.n_bytes))

    def _field(self, key: str) -> Any:
        field = self._file.fields.get(key)
        return None if field is None else field.contents()

    def tensors(self) -> Mapping[str, StoredTensor]:
        return self._tensors

    def read(self, name: str) -> np.ndarray:
        tensor = self._entries[name]
        meta = self._tensors[name].meta
        kind = tensor.tensor_type.name
        try:
            if kind in _PLAIN:
                data = np.asarray(tensor.data).view(STORAGE[meta.dtype]).reshape(meta.shape)
            else:
                data = self._gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(meta.shape)
        except Exception as exc:  # an unsupported quantization type, or a truncated file
            raise CheckpointError(
                f"{self.path}: tensor {tensor.name!r} ({kind}): cannot dequantize: {exc}"
            ) from None
        heads = next((h for module, h in self._heads.items() if f".{module}." in name), None)
        if heads:
            data = unpermute(data, heads)
        if data.flags.writeable:
            data.flags.writeable = False
        return data

    def fingerprint(self) -> str:
        return sampled_fingerprint(self.path.parent, {self.path: None})
