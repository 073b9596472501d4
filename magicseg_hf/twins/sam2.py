"""The SAM 2 twin: ``tiny:sam2``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from magicseg_hf.twins._common import seeded

if TYPE_CHECKING:
    from transformers import Sam2Model, Sam2Processor


def tiny_sam2(seed: int = 0) -> tuple[Sam2Model, Sam2Processor]:
    """``tiny:sam2``: a transformers ``Sam2Model`` at 256 px and its ``Sam2Processor``.

    SAM 2's architecture scaled down: a 4-stage Hiera backbone (1, 2, 3, 1 blocks of width 32, 64,
    128, 256; windowed attention, one global block in stage 3, as in SAM 2's) over 4 px patches
    gives 64, 32 and 16 px feature maps to a 32-channel FPN; the prompt encoder and mask decoder
    work at width 32 on the 16 x 16 embedding and return 64 x 64 masks. Like real SAM 2, the image
    encoder costs far more than decoding a box (about 20x on a CPU), so re-embedding the image per
    box is what a naive loop pays. Weights drawn under ``seed``.
    """
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2ImageProcessor,
        Sam2MaskDecoderConfig,
        Sam2Model,
        Sam2Processor,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    image_size, width = 256, 32
    backbone = Sam2HieraDetConfig(
        hidden_size=width,
        num_attention_heads=1,
        image_size=[image_size, image_size],
        blocks_per_stage=[1, 2, 3, 1],
        embed_dim_per_stage=[32, 64, 128, 256],
        num_attention_heads_per_stage=[1, 2, 4, 8],
        window_size_per_stage=[8, 4, 8, 4],
        global_attention_blocks=[4],
    )
    # Stage outputs at 64, 32, 16 and 8 px per side; the FPN keeps the three finest, low to high channels.
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[256, 128, 64, 32],
        backbone_feature_sizes=[[64, 64], [32, 32], [16, 16]],
        fpn_hidden_size=width,  # the mask decoder's width: its conv_s0/s1 read the FPN maps
    )
    prompt = Sam2PromptEncoderConfig(hidden_size=width, image_size=image_size, patch_size=16, mask_input_channels=8)
    decoder = Sam2MaskDecoderConfig(
        hidden_size=width, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32
    )
    config = Sam2Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    with seeded(seed):
        model = Sam2Model(config)
    image_processor = Sam2ImageProcessor(
        size={"height": image_size, "width": image_size}, mask_size={"height": 64, "width": 64}
    )
    return model.eval(), Sam2Processor(image_processor=image_processor)



def write_tiny_sam2(folder: Path, seed: int) -> None:
    """Save :func:`tiny_sam2` (model and processor) into ``folder``."""
    model, processor = tiny_sam2(seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
