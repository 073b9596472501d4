"""The segment-anything (non-transformers) twin: ``tiny:segment-anything``, a ``.pth`` checkpoint.

The twin is written as a state-dict checkpoint file (``sam_tiny.pth``) and loaded as a user's
``--sam-checkpoint`` is: :func:`magicseg_hf.loading.load_segment_anything_checkpoint` with
``weights_only=True`` and the model type ``tiny`` (:data:`SEGMENT_ANYTHING_MODEL_TYPES`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from magicseg_hf.twins._common import seeded

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

#: The file name of the twin's checkpoint in its cache folder, and its model type.
CHECKPOINT_NAME = "sam_tiny.pth"
MODEL_TYPE = "tiny"


def tiny_segment_anything_architecture() -> Sam:
    """An untrained segment-anything ``Sam`` of the tiny architecture (the ``tiny`` model type),
    the same shape as :func:`tiny_transformers_sam`'s model; weights from torch's current RNG."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    image_size, patch_size, prompt_dim = 256, 16, 32
    return Sam(
        # The image encoder dominates the cost, as in real SAM (see tiny_transformers_sam).
        image_encoder=ImageEncoderViT(
            img_size=image_size,
            patch_size=patch_size,
            embed_dim=128,
            depth=6,
            num_heads=4,
            mlp_ratio=4.0,
            out_chans=prompt_dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=8,
            global_attn_indexes=(2, 5),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(image_size // patch_size, image_size // patch_size),
            input_image_size=(image_size, image_size),
            mask_in_chans=8,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=64, num_heads=2),
            transformer_dim=prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def tiny_segment_anything(seed: int = 0) -> Sam:
    """``tiny:segment-anything``: :func:`tiny_segment_anything_architecture` with seeded weights."""
    with seeded(seed):
        return tiny_segment_anything_architecture()


#: segment-anything model types beyond the library's own (``vit_h``, ``vit_l``, ``vit_b``):
#: model type -> a builder of the untrained architecture.
SEGMENT_ANYTHING_MODEL_TYPES: dict[str, Callable[[], Sam]] = {MODEL_TYPE: tiny_segment_anything_architecture}


def write_tiny_segment_anything(folder: Path, seed: int) -> None:
    """Save :func:`tiny_segment_anything`'s state dict as ``folder / CHECKPOINT_NAME``."""
    torch.save(tiny_segment_anything(seed).state_dict(), folder / CHECKPOINT_NAME)
