"""Layer and module-type grouping of tensor names across architectures (METRICS.md, "Granularity")."""

from __future__ import annotations

import random

import pytest

from sparsecheck.metrics._grouping import OTHER, group_key, layer_of, module_of, sort_keys

# (tensor name, its layer, its module type)
NAMES = [
    # Llama / Mistral / Qwen
    ("model.layers.0.self_attn.q_proj.weight", "model.layers.0", "model.layers.*.self_attn.q_proj.weight"),
    ("model.layers.17.mlp.up_proj.weight", "model.layers.17", "model.layers.*.mlp.up_proj.weight"),
    ("model.embed_tokens.weight", OTHER, "model.embed_tokens.weight"),
    ("model.norm.weight", OTHER, "model.norm.weight"),
    ("lm_head.weight", OTHER, "lm_head.weight"),
    # GPT-2
    ("transformer.h.3.attn.c_attn.weight", "transformer.h.3", "transformer.h.*.attn.c_attn.weight"),
    ("transformer.h.11.ln_1.bias", "transformer.h.11", "transformer.h.*.ln_1.bias"),
    ("transformer.wte.weight", OTHER, "transformer.wte.weight"),
    ("transformer.ln_f.weight", OTHER, "transformer.ln_f.weight"),
    # BERT
    (
        "bert.encoder.layer.11.attention.self.query.weight",
        "bert.encoder.layer.11",
        "bert.encoder.layer.*.attention.self.query.weight",
    ),
    ("bert.embeddings.word_embeddings.weight", OTHER, "bert.embeddings.word_embeddings.weight"),
    # T5: the first integer is the block; the sub-layer index stays part of the module type
    (
        "encoder.block.0.layer.1.DenseReluDense.wi.weight",
        "encoder.block.0",
        "encoder.block.*.layer.1.DenseReluDense.wi.weight",
    ),
    (
        "decoder.block.0.layer.1.EncDecAttention.q.weight",
        "decoder.block.0",
        "decoder.block.*.layer.1.EncDecAttention.q.weight",
    ),
    ("shared.weight", OTHER, "shared.weight"),
    # a bare nn.Sequential
    ("0.weight", "0", "*.weight"),
    # digits inside a component are not an index
    ("model.layers.2.mlp.fc1.weight", "model.layers.2", "model.layers.*.mlp.fc1.weight"),
    ("h2o.proj.weight", OTHER, "h2o.proj.weight"),
]


@pytest.mark.parametrize(("name", "layer", "module"), NAMES, ids=[n for n, _, _ in NAMES])
def test_layer_and_module_of(name: str, layer: str, module: str) -> None:
    assert layer_of(name) == layer
    assert module_of(name) == module
    assert group_key("layer", name) == layer
    assert group_key("module", name) == module
    assert group_key("tensor", name) == name


def test_t5_encoder_and_decoder_blocks_stay_distinct() -> None:
    encoder = "encoder.block.5.layer.0.SelfAttention.q.weight"
    decoder = "decoder.block.5.layer.0.SelfAttention.q.weight"
    assert layer_of(encoder) != layer_of(decoder)
    assert module_of(encoder) != module_of(decoder)
    assert module_of(encoder) == module_of(encoder.replace("block.5", "block.0"))


def test_sort_keys_is_natural_with_other_last() -> None:
    ordered = [
        "decoder.block.1",
        "decoder.block.2",
        "decoder.block.10",
        "encoder.block.0",
        "encoder.block.9",
        "encoder.block.11",
        "model.layers.2",
        "model.layers.10",
        "model.layers.100",
        OTHER,
    ]
    shuffled = ordered[:]
    random.Random(0).shuffle(shuffled)
    assert sort_keys(shuffled) == ordered
    assert sort_keys(reversed(ordered)) == ordered


def test_sort_keys_takes_any_text() -> None:
    keys = ["w²", "w1²", "w10", "w2", "x"]
    assert sort_keys(keys) == ["w1²", "w2", "w10", "w²", "x"]
