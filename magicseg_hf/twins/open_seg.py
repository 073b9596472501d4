"""The tiny open-vocabulary segmentation model (``tiny:open-seg``, ``build_open_seg("tiny")``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from magicseg_hf.presets import TINY_OPEN_SEG, TINY_OPEN_SEG_CLIP
from magicseg_hf.twins._common import seeded
from magicseg_hf.twins.clip import tiny_clip_config
from magicseg_hf.twins.tokenizers import tiny_clip_tokenizer

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

    from magicseg_hf.modeling import CLIPForOpenSegmentation


def _scale_initial_weights(clip: torch.nn.Module, vision_query_key_scale: float, text_init_scale: float) -> None:
    """Rescale a freshly drawn CLIP's weights in place (as if drawn with a larger std).

    The vision tower's attention query and key projections are multiplied by
    ``vision_query_key_scale``: sharper attention makes the frozen [CLS] embedding depend on the
    image, which the counterfactual loss needs. Every text-tower weight but the layer norms, and
    the text projection, are multiplied by ``text_init_scale``: the pooled text feature then
    carries more of the class name and less of what every prompt shares.
    """
    with torch.no_grad():
        for name, parameter in clip.vision_model.named_parameters():
            if ".q_proj." in name or ".k_proj." in name:
                parameter.mul_(vision_query_key_scale)
        for name, parameter in clip.text_model.named_parameters():
            if "layer_norm" not in name:
                parameter.mul_(text_init_scale)
        clip.text_projection.weight.mul_(text_init_scale)


def tiny_open_seg(seed: int = 0, **overrides: Any) -> tuple[CLIPForOpenSegmentation, CLIPTokenizer]:
    """The tiny ``CLIPForOpenSegmentation`` and its tokenizer.

    A random :func:`tiny_clip_config` CLIP sized and initialised per
    :data:`~magicseg_hf.presets.TINY_OPEN_SEG_CLIP` (vision width 64, projection 64, sharper vision
    attention, a larger text init), wrapped with :data:`~magicseg_hf.presets.TINY_OPEN_SEG`'s
    settings, ``overrides`` (``CLIPOpenSegConfig`` fields) on top; CLIP and the new layers are drawn
    under ``seed``. Only this model uses these settings: the generation twins' CLIP text encoder and
    tokenizer are untouched.
    """
    from transformers import CLIPModel

    from magicseg_hf.modeling import CLIPForOpenSegmentation

    tokenizer = tiny_clip_tokenizer()
    sizes = TINY_OPEN_SEG_CLIP
    config = tiny_clip_config(
        tokenizer, vision_hidden_size=sizes["vision_hidden_size"], projection_dim=sizes["projection_dim"]
    )
    with seeded(seed):
        clip = CLIPModel(config)
        _scale_initial_weights(clip, sizes["vision_query_key_scale"], sizes["text_init_scale"])
        model = CLIPForOpenSegmentation.from_clip(clip, tokenizer=tokenizer, **{**TINY_OPEN_SEG, **overrides})
    return model, tokenizer


def write_tiny_open_seg(folder: Path, seed: int, **overrides: Any) -> None:
    """Save :func:`tiny_open_seg` (``overrides`` applied) and its processor into ``folder``, as
    ``magicseg train`` saves a model: what :func:`magicseg_hf.loading.load_open_seg` reads."""
    from magicseg_hf.loading import open_seg_processor

    model, tokenizer = tiny_open_seg(seed, **overrides)
    model.save_pretrained(folder)
    open_seg_processor(model, tokenizer).save_pretrained(folder)
