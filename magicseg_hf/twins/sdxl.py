"""The Stable Diffusion XL twins: ``tiny:sdxl`` and ``tiny:sdxl-inpainting``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicseg_hf.twins._common import drawing_on, seeded
from magicseg_hf.twins._diffusion import scheduler, tiny_vae
from magicseg_hf.twins.clip import tiny_clip_text_config
from magicseg_hf.twins.tokenizers import tiny_clip_tokenizer

if TYPE_CHECKING:
    from diffusers import StableDiffusionXLInpaintPipeline, StableDiffusionXLPipeline


def random_sdxl(
    unet: dict[str, Any],
    vae: dict[str, Any],
    text_config: Any,
    text_config_2: Any,
    *,
    inpainting: bool = False,
    seed: int = 0,
    device: str | None = None,
) -> StableDiffusionXLPipeline | StableDiffusionXLInpaintPipeline:
    """A Stable Diffusion XL pipeline with random weights from architecture settings, built offline.

    Args:
        unet: ``UNet2DConditionModel`` settings with SDXL's ``text_time`` added conditioning:
            ``cross_attention_dim`` = the two text encoders' widths summed,
            ``projection_class_embeddings_input_dim`` = ``text_config_2.projection_dim`` + 6 x
            ``addition_time_embed_dim`` (``in_channels`` is set here: 9 for inpainting, else 4).
        vae: ``AutoencoderKL`` settings.
        text_config, text_config_2: ``CLIPTextConfig`` of the ``CLIPTextModel`` and of the
            ``CLIPTextModelWithProjection``, ids fitting :func:`tiny_clip_tokenizer`.
        inpainting: build a ``StableDiffusionXLInpaintPipeline``.
        seed: weights are drawn under this seed, so every process builds the same model.
        device: where the weights are drawn (default: the CPU).

    Euler discrete scheduler (SDXL's); no watermarker; empty prompts encoded, not zeroed.
    """
    from diffusers import (
        AutoencoderKL,
        StableDiffusionXLInpaintPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    with seeded(seed), drawing_on(device):
        unet_model = UNet2DConditionModel(**{**unet, "in_channels": 9 if inpainting else 4})
        vae_model = AutoencoderKL(**vae)
        text_encoder = CLIPTextModel(text_config)
        text_encoder_2 = CLIPTextModelWithProjection(text_config_2)
    components: dict[str, Any] = {
        "vae": vae_model.eval(),
        "text_encoder": text_encoder.eval(),
        "text_encoder_2": text_encoder_2.eval(),
        "tokenizer": tiny_clip_tokenizer(),
        "tokenizer_2": tiny_clip_tokenizer(),
        "unet": unet_model.eval(),
        "scheduler": scheduler("euler"),
        "add_watermarker": False,
    }
    if inpainting:
        return StableDiffusionXLInpaintPipeline(**components, requires_aesthetics_score=False)
    return StableDiffusionXLPipeline(**components)


def tiny_sdxl(inpainting: bool = False, seed: int = 0) -> StableDiffusionXLPipeline | StableDiffusionXLInpaintPipeline:
    """The ``tiny:sdxl`` (or ``-inpainting``) pipeline: 128 px from 16 x 16 x 4 latents, a 2-block
    UNet with SDXL's layout (attention in the second block, linear projections, ``text_time``
    conditioning on the pooled text + 6 size/crop numbers), two tiny CLIP text encoders (32 wide
    each, so cross-attention width 64)."""
    tokenizer = tiny_clip_tokenizer()
    text_config = tiny_clip_text_config(tokenizer)
    text_config_2 = tiny_clip_text_config(tokenizer, projection_dim=32)
    time_dim = 8
    unet = {
        "sample_size": 16,
        "out_channels": 4,
        "block_out_channels": (16, 32),
        "layers_per_block": 1,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "transformer_layers_per_block": (1, 1),
        "attention_head_dim": (2, 4),
        "use_linear_projection": True,
        "cross_attention_dim": text_config.hidden_size + text_config_2.hidden_size,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": time_dim,
        "projection_class_embeddings_input_dim": text_config_2.projection_dim + 6 * time_dim,
        "norm_num_groups": 8,
    }
    # force_upcast off: SDXL's real VAE overflows in float16; the tiny one runs in float32 and
    # would otherwise be re-cast (with a warning) on every inpainting call.
    vae = tiny_vae(4, scaling_factor=0.13025, force_upcast=False)
    return random_sdxl(unet, vae, text_config, text_config_2, inpainting=inpainting, seed=seed)


