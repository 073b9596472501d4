"""What the tiny diffusion twins share: their schedulers, VAE layout and T5 config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import T5Config


def scheduler(kind: str) -> Any:
    """A deterministic scheduler with a family's settings (no noise drawn while stepping):

    - ``euler``: SDXL's ``EulerDiscreteScheduler`` (SD-1.x/SDXL noise schedule, leading spacing);
    - ``flow``: SD3's ``FlowMatchEulerDiscreteScheduler`` (shift 3);
    - ``flow-dynamic``: FLUX.1's, whose shift grows with the image's token count (0.5 at 256
      tokens to 1.15 at 4096).
    """
    from diffusers import EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler

    if kind == "euler":
        return EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            steps_offset=1,
            timestep_spacing="leading",
        )
    if kind == "flow":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )


def tiny_t5_config(tokenizer: Any, d_model: int = 32, num_layers: int = 2) -> T5Config:
    """A small ``T5Config`` (4 heads, gated-GELU feed-forward like T5 v1.1) whose vocabulary size
    and special ids are ``tokenizer``'s."""
    from transformers import T5Config

    return T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=d_model // 4,
        d_ff=2 * d_model,
        num_layers=num_layers,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        feed_forward_proj="gated-gelu",
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )


def tiny_vae(latent_channels: int, **settings: Any) -> dict[str, Any]:
    """The tiny twins' 4-block VAE (scale factor 8: 128 px <-> 16 x 16 latents)."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": latent_channels,
        "block_out_channels": (8, 8, 16, 16),
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "sample_size": 128,
        **settings,
    }


