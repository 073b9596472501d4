"""The Stable Diffusion 1.x twins: ``tiny:stable-diffusion`` and ``tiny:stable-diffusion-inpainting``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicseg_hf.twins._common import drawing_on, seeded
from magicseg_hf.twins._diffusion import tiny_vae
from magicseg_hf.twins.clip import tiny_clip_text_config
from magicseg_hf.twins.tokenizers import tiny_clip_tokenizer

if TYPE_CHECKING:
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline


def random_stable_diffusion(
    unet: dict[str, Any],
    vae: dict[str, Any],
    text_config: Any,
    *,
    inpainting: bool = False,
    seed: int = 0,
    device: str | None = None,
) -> StableDiffusionPipeline | StableDiffusionInpaintPipeline:
    """A Stable Diffusion pipeline with random weights from architecture settings, built offline.

    Args:
        unet: ``UNet2DConditionModel`` settings (``in_channels`` is set here: 9 for inpainting, else 4).
        vae: ``AutoencoderKL`` settings.
        text_config: a ``CLIPTextConfig`` whose ids fit :func:`tiny_clip_tokenizer`.
        inpainting: build a ``StableDiffusionInpaintPipeline``.
        seed: weights are drawn under this seed, so every process builds the same model.
        device: where the weights are drawn (default: the CPU); a real-size model is drawn on its GPU.

    The ``tiny`` preset uses it with small settings; ``benchmarks/bench_generate_real_size.py``
    with SD-1.5's. DDIM scheduler with SD-1.x's noise schedule; no safety checker.
    """
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel

    with seeded(seed), drawing_on(device):
        unet_model = UNet2DConditionModel(**{**unet, "in_channels": 9 if inpainting else 4})
        vae_model = AutoencoderKL(**vae)
        text_encoder = CLIPTextModel(text_config)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    cls = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    return cls(
        vae=vae_model.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tiny_clip_tokenizer(),
        unet=unet_model.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_stable_diffusion(
    inpainting: bool = False, seed: int = 0
) -> StableDiffusionPipeline | StableDiffusionInpaintPipeline:
    """The ``tiny:stable-diffusion`` (or ``-inpainting``) pipeline: 128 px images from 16 x 16 x 4
    latents, a 2-block UNet with cross-attention width 32, a 4-block VAE, the tiny CLIP text encoder."""
    unet = {
        "sample_size": 16,
        "out_channels": 4,
        "block_out_channels": (16, 32),
        "layers_per_block": 1,
        "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
        "cross_attention_dim": 32,
        "attention_head_dim": 8,
        "norm_num_groups": 8,
    }
    vae = tiny_vae(4)
    text_config = tiny_clip_text_config(tiny_clip_tokenizer())
    return random_stable_diffusion(unet, vae, text_config, inpainting=inpainting, seed=seed)

