"""The tiny causal LM twin (``tiny:causal-lm``) of the ``transformers`` prompt backend."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from magicseg_hf.twins._common import seeded, tokenizer_fields
from magicseg_hf.twins.tokenizers import tiny_clip_tokenizer

if TYPE_CHECKING:
    from transformers import CLIPTokenizer, LlamaForCausalLM


def tiny_causal_lm(seed: int = 0) -> tuple[LlamaForCausalLM, CLIPTokenizer]:
    """``tiny:causal-lm``: a 2-layer Llama over the tiny CLIP vocabulary, and that tokenizer
    (padding with its end-of-text token), for the ``transformers`` prompt backend."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_clip_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        **tokenizer_fields(tokenizer),
    )
    with seeded(seed):
        model = LlamaForCausalLM(config)
    return model.eval(), tokenizer



def write_tiny_causal_lm(folder: Path, seed: int) -> None:
    """Save :func:`tiny_causal_lm` (model and tokenizer) into ``folder``."""
    model, tokenizer = tiny_causal_lm(seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
