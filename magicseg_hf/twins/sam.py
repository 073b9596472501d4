"""The transformers SAM twin: ``tiny:sam``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from magicseg_hf.twins._common import seeded

if TYPE_CHECKING:
    from transformers import SamModel, SamProcessor


def tiny_transformers_sam(seed: int = 0) -> tuple[SamModel, SamProcessor]:
    """``tiny:sam``: a transformers ``SamModel`` at 256 px (16 px patches, 64 x 64 masks)."""
    from transformers import (
        SamConfig,
        SamImageProcessor,
        SamMaskDecoderConfig,
        SamModel,
        SamProcessor,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    # Like real SAM, the image encoder (a ViT over 16 x 16 patches) costs far more than the
    # prompt encoder + mask decoder, so re-embedding the image per box is what a naive loop pays.
    vision = SamVisionConfig(
        hidden_size=128,
        output_channels=32,
        num_hidden_layers=6,
        num_attention_heads=4,
        image_size=256,
        patch_size=16,
        window_size=8,
        global_attn_indexes=(2, 5),
        num_pos_feats=16,
        initializer_range=0.02,
    )
    prompt = SamPromptEncoderConfig(hidden_size=32, image_size=256, patch_size=16, mask_input_channels=8)
    decoder = SamMaskDecoderConfig(
        hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32
    )
    config = SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    with seeded(seed):
        model = SamModel(config)
    image_processor = SamImageProcessor(
        size={"longest_edge": 256},
        pad_size={"height": 256, "width": 256},
        mask_size={"longest_edge": 64},
        mask_pad_size={"height": 64, "width": 64},
    )
    return model.eval(), SamProcessor(image_processor=image_processor)



def write_tiny_transformers_sam(folder: Path, seed: int) -> None:
    """Save :func:`tiny_transformers_sam` (model and processor) into ``folder``."""
    model, processor = tiny_transformers_sam(seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
