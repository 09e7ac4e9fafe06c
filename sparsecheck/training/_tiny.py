"""A tiny causal LM built from a config, for tests of training backends (no download).

A 2-layer Llama with a WordLevel tokenizer whose vocabulary is every word the generated
arithmetic data writes (:func:`sparsecheck.training._data.vocabulary`), saved with
``save_pretrained`` like any Hub model, so a backend loads it from the folder.
"""

from __future__ import annotations

from pathlib import Path

from sparsecheck.training._data import vocabulary
from sparsecheck.training._quiet import quiet_hf

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")


def write_tiny_causal_lm(
    folder: Path,
    *,
    layers: int = 2,
    hidden: int = 32,
    tie_word_embeddings: bool = True,
    seed: int = 0,
) -> Path:
    """Write a random tiny Llama and its tokenizer to ``folder`` (fp32 safetensors); return it.

    Embeddings are tied by default, like SmolLM2's, so a checkpoint holds one tensor for both.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate([*SPECIAL_TOKENS, *vocabulary()])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]", eos_token="[EOS]"
    )
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=tie_word_embeddings,
        pad_token_id=vocab["[PAD]"],
        bos_token_id=vocab["[BOS]"],
        eos_token_id=vocab["[EOS]"],
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    with quiet_hf():
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder
