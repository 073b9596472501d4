"""The Stable Diffusion 3 twins: ``tiny:sd3`` and ``tiny:sd3-inpainting``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicseg_hf.twins._common import drawing_on, seeded
from magicseg_hf.twins._diffusion import scheduler, tiny_t5_config, tiny_vae
from magicseg_hf.twins.clip import tiny_clip_text_config
from magicseg_hf.twins.tokenizers import tiny_clip_tokenizer, tiny_t5_tokenizer

if TYPE_CHECKING:
    from diffusers import StableDiffusion3InpaintPipeline, StableDiffusion3Pipeline


def random_sd3(
    transformer: dict[str, Any],
    vae: dict[str, Any],
    text_config: Any,
    text_config_2: Any,
    t5_config: Any,
    *,
    inpainting: bool = False,
    seed: int = 0,
    device: str | None = None,
) -> StableDiffusion3Pipeline | StableDiffusion3InpaintPipeline:
    """A Stable Diffusion 3 pipeline with random weights from architecture settings, built offline.

    Args:
        transformer: ``SD3Transformer2DModel`` settings: ``in_channels`` = the VAE's 16 latent
            channels (SD3's inpainting pipeline requires 16), ``joint_attention_dim`` = the T5 width
            (at least the two CLIP widths summed: CLIP features are zero-padded to it),
            ``pooled_projection_dim`` = the two CLIP projections summed, ``caption_projection_dim``
            = heads x head width.
        vae: ``AutoencoderKL`` settings (16 latent channels).
        text_config, text_config_2: the two ``CLIPTextModelWithProjection`` configs.
        t5_config: the ``T5EncoderModel`` config (ids fitting :func:`tiny_t5_tokenizer`).
        inpainting: build a ``StableDiffusion3InpaintPipeline`` (the same components: SD3 inpaints
            with its text-to-image transformer, blending the known region at each step).
        seed: weights are drawn under this seed, so every process builds the same model.
        device: where the weights are drawn (default: the CPU).
    """
    from diffusers import (
        AutoencoderKL,
        SD3Transformer2DModel,
        StableDiffusion3InpaintPipeline,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextModelWithProjection, T5EncoderModel

    with seeded(seed), drawing_on(device):
        transformer_model = SD3Transformer2DModel(**transformer)
        vae_model = AutoencoderKL(**vae)
        text_encoder = CLIPTextModelWithProjection(text_config)
        text_encoder_2 = CLIPTextModelWithProjection(text_config_2)
        text_encoder_3 = T5EncoderModel(t5_config)
    cls = StableDiffusion3InpaintPipeline if inpainting else StableDiffusion3Pipeline
    return cls(
        transformer=transformer_model.eval(),
        scheduler=scheduler("flow"),
        vae=vae_model.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tiny_clip_tokenizer(),
        text_encoder_2=text_encoder_2.eval(),
        tokenizer_2=tiny_clip_tokenizer(),
        text_encoder_3=text_encoder_3.eval(),
        tokenizer_3=tiny_t5_tokenizer(),
    )


def tiny_sd3(inpainting: bool = False, seed: int = 0) -> StableDiffusion3Pipeline | StableDiffusion3InpaintPipeline:
    """The ``tiny:sd3`` (or ``-inpainting``) pipeline: 128 px from 16 x 16 x 16 latents in 2 x 2
    patches (64 image tokens), a 2-block MMDiT 32 wide, two tiny CLIP encoders with projection and a
    2-layer T5 64 wide (the joint text width)."""
    tokenizer = tiny_clip_tokenizer()
    text_config = tiny_clip_text_config(tokenizer)
    text_config_2 = tiny_clip_text_config(tokenizer)
    t5_config = tiny_t5_config(tiny_t5_tokenizer(), d_model=text_config.hidden_size + text_config_2.hidden_size)
    transformer = {
        "sample_size": 16,
        "patch_size": 2,
        "in_channels": 16,
        "out_channels": 16,
        "num_layers": 2,
        "attention_head_dim": 8,
        "num_attention_heads": 4,
        "caption_projection_dim": 32,
        "joint_attention_dim": t5_config.d_model,
        "pooled_projection_dim": text_config.projection_dim + text_config_2.projection_dim,
        "pos_embed_max_size": 16,
    }
    vae = tiny_vae(
        16, scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False
    )
    return random_sd3(transformer, vae, text_config, text_config_2, t5_config, inpainting=inpainting, seed=seed)


