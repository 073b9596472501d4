"""The tiny CLIP twin (``tiny:clip``, the class scorer) and the tiny CLIP configs other twins reuse."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicseg_hf.twins._common import seeded, tokenizer_fields
from magicseg_hf.twins.tokenizers import tiny_clip_tokenizer

if TYPE_CHECKING:
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTextConfig


def tiny_clip_text_config(tokenizer: Any, hidden_size: int = 32, projection_dim: int = 32) -> CLIPTextConfig:
    """A 2-layer, 4-head ``CLIPTextConfig`` whose vocabulary size and special ids are ``tokenizer``'s."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=projection_dim,
        **tokenizer_fields(tokenizer),
    )


def tiny_clip_config(
    tokenizer: Any = None, vision_hidden_size: int = 32, projection_dim: int = 32
) -> CLIPConfig:
    """A tiny random ``CLIPConfig`` (2 layers, 4 heads, 32 px images in 8 px patches; vision width
    ``vision_hidden_size``, text width 32, projection ``projection_dim``) that fits
    :func:`tiny_clip_tokenizer`'s vocabulary (or ``tokenizer``'s)."""
    from transformers import CLIPConfig, CLIPVisionConfig

    tokenizer = tokenizer if tokenizer is not None else tiny_clip_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=vision_hidden_size,
        intermediate_size=2 * vision_hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=projection_dim,
    )
    text = tiny_clip_text_config(tokenizer, hidden_size=32, projection_dim=projection_dim)
    return CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=projection_dim)


def tiny_clip(seed: int = 0) -> tuple[CLIPModel, CLIPProcessor]:
    """``tiny:clip``, the class scorer's CLIP: a random :func:`tiny_clip_config` ``CLIPModel`` (32 px
    images, projection 32) drawn under ``seed``, and a ``CLIPProcessor`` of a 32 px image processor
    (resize the short side, centre crop) and :func:`tiny_clip_tokenizer`. Its scores prove the
    plumbing of the class check, not that a class is shown. (The open-segmentation model's CLIP,
    :func:`tiny_open_seg`, has other sizes.)"""
    from transformers import CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer = tiny_clip_tokenizer()
    with seeded(seed):
        model = CLIPModel(tiny_clip_config(tokenizer))
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return model.eval(), CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def write_tiny_clip(folder: Path, seed: int) -> None:
    """Save :func:`tiny_clip` (model and processor) into ``folder``."""
    model, processor = tiny_clip(seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
