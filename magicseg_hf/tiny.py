"""Compatibility module: the tiny twins' builders now live in :mod:`magicseg_hf.twins`.

Every public name this module had is re-exported from there unchanged (one module per model
family: ``magicseg_hf.twins.stable_diffusion``, ``.sdxl``, ``.sd3``, ``.flux``,
``.grounding_dino``, ``.owlv2``, ``.sam``, ``.sam2``, ``.segment_anything``, ``.clip``,
``.open_seg``, ``.causal_lm``, and ``.tokenizers``). New code imports :mod:`magicseg_hf.twins`.
A ``tiny:`` id is no longer built by the loaders: :func:`magicseg_hf.twins.resolve` turns it into a
folder written once into the cache, loaded like any other folder.
"""

from __future__ import annotations

from magicseg_hf.twins import (
    random_flux,
    random_sd3,
    random_sdxl,
    random_stable_diffusion,
    seeded,
    tiny_bert_tokenizer,
    tiny_causal_lm,
    tiny_clip,
    tiny_clip_config,
    tiny_clip_text_config,
    tiny_clip_tokenizer,
    tiny_diffusion_pipeline,
    tiny_flux,
    tiny_grounding_dino,
    tiny_mm_grounding_dino,
    tiny_open_seg,
    tiny_owlv2,
    tiny_owlv2_tokenizer,
    tiny_sam2,
    tiny_sd3,
    tiny_sdxl,
    tiny_segment_anything,
    tiny_segment_anything_architecture,
    tiny_stable_diffusion,
    tiny_t5_config,
    tiny_t5_tokenizer,
    tiny_transformers_sam,
)

__all__ = [
    "random_flux",
    "random_sd3",
    "random_sdxl",
    "random_stable_diffusion",
    "seeded",
    "tiny_bert_tokenizer",
    "tiny_causal_lm",
    "tiny_clip",
    "tiny_clip_config",
    "tiny_clip_text_config",
    "tiny_clip_tokenizer",
    "tiny_diffusion_pipeline",
    "tiny_flux",
    "tiny_grounding_dino",
    "tiny_mm_grounding_dino",
    "tiny_open_seg",
    "tiny_owlv2",
    "tiny_owlv2_tokenizer",
    "tiny_sam2",
    "tiny_sd3",
    "tiny_sdxl",
    "tiny_segment_anything",
    "tiny_segment_anything_architecture",
    "tiny_stable_diffusion",
    "tiny_t5_config",
    "tiny_t5_tokenizer",
    "tiny_transformers_sam",
]
