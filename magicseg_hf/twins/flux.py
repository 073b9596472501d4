"""The FLUX.1 twins: ``tiny:flux`` and ``tiny:flux-fill``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicseg_hf.twins._common import drawing_on, seeded
from magicseg_hf.twins._diffusion import scheduler, tiny_t5_config, tiny_vae
from magicseg_hf.twins.clip import tiny_clip_text_config
from magicseg_hf.twins.tokenizers import tiny_clip_tokenizer, tiny_t5_tokenizer

if TYPE_CHECKING:
    from diffusers import FluxFillPipeline, FluxPipeline


def random_flux(
    transformer: dict[str, Any],
    vae: dict[str, Any],
    text_config: Any,
    t5_config: Any,
    *,
    fill: bool = False,
    seed: int = 0,
    device: str | None = None,
) -> FluxPipeline | FluxFillPipeline:
    """A FLUX.1 pipeline with random weights from architecture settings, built offline.

    Args:
        transformer: ``FluxTransformer2DModel`` settings: ``joint_attention_dim`` = the T5 width,
            ``pooled_projection_dim`` = the CLIP width, ``axes_dims_rope`` summing to
            ``attention_head_dim`` (``in_channels``/``out_channels`` are set here from the VAE:
            4 x latent channels, as 2 x 2 patches are packed into tokens; FLUX Fill's input adds the
            packed masked-image latents and the packed mask, ``4 * s * s`` for VAE scale ``s``).
        vae: ``AutoencoderKL`` settings.
        text_config: the ``CLIPTextModel`` config (its pooled output is the pooled projection).
        t5_config: the ``T5EncoderModel`` config (ids fitting :func:`tiny_t5_tokenizer`).
        fill: build a ``FluxFillPipeline``.
        seed: weights are drawn under this seed, so every process builds the same model.
        device: where the weights are drawn (default: the CPU).
    """
    from diffusers import AutoencoderKL, FluxFillPipeline, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5EncoderModel

    packed = 4 * vae["latent_channels"]  # one token: a 2 x 2 patch of latents
    scale = 2 ** (len(vae["block_out_channels"]) - 1)
    channels = {"in_channels": 2 * packed + 4 * scale * scale, "out_channels": packed} if fill else {
        "in_channels": packed,
        "out_channels": None,
    }
    with seeded(seed), drawing_on(device):
        transformer_model = FluxTransformer2DModel(**{**transformer, **channels})
        vae_model = AutoencoderKL(**vae)
        text_encoder = CLIPTextModel(text_config)
        text_encoder_2 = T5EncoderModel(t5_config)
    cls = FluxFillPipeline if fill else FluxPipeline
    return cls(
        scheduler=scheduler("flow-dynamic"),
        vae=vae_model.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tiny_clip_tokenizer(),
        text_encoder_2=text_encoder_2.eval(),
        tokenizer_2=tiny_t5_tokenizer(),
        transformer=transformer_model.eval(),
    )


def tiny_flux(fill: bool = False, seed: int = 0) -> FluxPipeline | FluxFillPipeline:
    """The ``tiny:flux`` (or ``tiny:flux-fill``) pipeline: 128 px from 16 x 16 x 16 latents packed
    into 64 tokens of 64 channels, one double-stream and one single-stream block 32 wide with
    guidance embedding (FLUX.1-dev's distilled guidance), the tiny CLIP text encoder and a 2-layer
    T5 32 wide."""
    tokenizer = tiny_clip_tokenizer()
    text_config = tiny_clip_text_config(tokenizer)
    t5_config = tiny_t5_config(tiny_t5_tokenizer(), d_model=32)
    transformer = {
        "patch_size": 1,
        "num_layers": 1,
        "num_single_layers": 1,
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "joint_attention_dim": t5_config.d_model,
        "pooled_projection_dim": text_config.hidden_size,
        "guidance_embeds": True,
        "axes_dims_rope": (4, 6, 6),
    }
    vae = tiny_vae(
        16, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False
    )
    return random_flux(transformer, vae, text_config, t5_config, fill=fill, seed=seed)


