"""The tiny random twins of every external model, and their offline tokenizers.

Each twin is built from a small config with its weights drawn under a fixed seed (torch's global
RNG is seeded for the build and the caller's RNG state restored after it), so every process on
every machine builds the same model, bit for bit, without the network. The tokenizers are built
from the vocabularies shipped with the package:

- a CLIP byte-level BPE (the byte alphabet plus whole-word merges of the shipped vocabularies'
  words), used by the tiny Stable Diffusion, CLIP and causal LM; OWLv2's twin uses the same
  vocabulary with every id shifted up by one;
- a BERT WordPiece with BERT's special ids, for the tiny Grounding DINO and MM-Grounding-DINO.

:mod:`magicseg_hf.loading` maps the ``tiny:`` ids of :mod:`magicseg_hf.presets` to the builders
here. Each builder imports its own model family when called, so building a tiny detector does not
import diffusers or segment-anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import lru_cache, partial
from importlib import resources
from typing import TYPE_CHECKING, Any

import torch

from magicseg_hf.errors import ModelLoadError
from magicseg_hf.families import TINY_DIFFUSION_MODELS
from magicseg_hf.presets import TINY_OPEN_SEG, TINY_OPEN_SEG_CLIP

if TYPE_CHECKING:
    from diffusers import (
        FluxFillPipeline,
        FluxPipeline,
        StableDiffusion3InpaintPipeline,
        StableDiffusion3Pipeline,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        StableDiffusionXLInpaintPipeline,
        StableDiffusionXLPipeline,
    )
    from segment_anything.modeling import Sam
    from transformers import (
        BertTokenizer,
        CLIPConfig,
        CLIPModel,
        CLIPProcessor,
        CLIPTextConfig,
        CLIPTokenizer,
        GroundingDinoForObjectDetection,
        GroundingDinoProcessor,
        LlamaForCausalLM,
        MMGroundingDinoForObjectDetection,
        Owlv2ForObjectDetection,
        Owlv2Processor,
        Sam2Model,
        Sam2Processor,
        SamModel,
        SamProcessor,
        T5Config,
    )

    from magicseg_hf.modeling import CLIPForOpenSegmentation

# The shipped vocabularies whose words make up both tiny tokenizers' vocabularies.
_CORPUS_FILES = ("lvis.txt", "voc20.txt", "context59.txt", "coco80.txt")
# Words of the prompt templates and counterfactual prompts, beyond the class names.
_CORPUS_EXTRA_WORDS = (
    "a an the of in on at with and or without photo picture image scene there is are no nothing "
    "sitting standing next to near under over beside street room table grass field sky water"
)
# Grounding DINO's text encoder splits phrases at these BERT ids ([CLS], [SEP], ".", "?"): the
# model hard-codes them, so the tiny BERT vocabulary puts those tokens at the same ids.
_BERT_SPECIAL_IDS = {
    "[PAD]": 0,
    "[UNK]": 100,
    "[CLS]": 101,
    "[SEP]": 102,
    "[MASK]": 103,
    ".": 1012,
    "?": 1029,
}


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global RNG seeded, restoring the caller's RNG state afterwards."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


# ---- offline tokenizers ------------------------------------------------------------------------
def _corpus_words() -> list[str]:
    """The lower-cased words of the shipped vocabularies and of the prompt templates, sorted."""
    words: set[str] = set()
    folder = resources.files("magicseg_hf") / "vocabularies"
    for name in _CORPUS_FILES:
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            words.update(line.replace("(", " ").replace(")", " ").replace("_", " ").lower().split())
    words.update(_CORPUS_EXTRA_WORDS.split())
    return sorted(words)


@lru_cache(maxsize=1)
def _tiny_clip_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab, merges) of the tiny CLIP BPE: the two special tokens, the byte alphabet with and
    without the end-of-word mark, then one merge per new prefix of each corpus word."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in ["<|startoftext|>", "<|endoftext|>", *alphabet, *(c + "</w>" for c in alphabet)]:
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for word in _corpus_words():
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        if any(p.replace("</w>", "") not in alphabet for p in pieces):
            continue
        prefix = pieces[0]
        for piece in pieces[1:]:
            pair = (prefix, piece)
            prefix = prefix + piece
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
                vocab.setdefault(prefix, len(vocab))
    return vocab, merges


def _clip_bpe_tokenizer(*, shift_ids: bool, model_max_length: int) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` over the tiny CLIP vocabulary; with ``shift_ids`` every id moves up by
    one and id 0 becomes an unused ``<|padding|>`` token. Padding is ``<|endoftext|>`` either way."""
    from transformers import CLIPTokenizer

    vocab, merges = _tiny_clip_vocab()
    if shift_ids:
        vocab = {"<|padding|>": 0, **{token: index + 1 for token, index in vocab.items()}}
    tokenizer = CLIPTokenizer(vocab=dict(vocab), merges=list(merges), pad_token="<|endoftext|>")
    tokenizer.model_max_length = model_max_length
    return tokenizer


def tiny_clip_tokenizer() -> CLIPTokenizer:
    """An offline, deterministic CLIP BPE tokenizer (byte alphabet + whole-word merges of the
    shipped vocabularies), ``model_max_length`` 77. Same vocabulary in every process."""
    return _clip_bpe_tokenizer(shift_ids=False, model_max_length=77)


def tiny_owlv2_tokenizer() -> CLIPTokenizer:
    """The tiny CLIP vocabulary with every id shifted up by one, ``model_max_length`` 16.

    OWLv2 treats a query whose first token id is 0 as padding (``query_mask = input_ids[..., 0] > 0``);
    :func:`tiny_clip_tokenizer` gives ``<|startoftext|>`` id 0, which would mask every query.
    """
    return _clip_bpe_tokenizer(shift_ids=True, model_max_length=16)


@lru_cache(maxsize=1)
def _tiny_bert_vocab() -> tuple[str, ...]:
    """WordPiece vocabulary: BERT's special ids, characters (and ``##`` continuations, so an
    unknown word is spelled out rather than mapped to [UNK]) and the shipped vocabularies' words."""
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    punctuation = list(",'-()!:;&/\"+")
    words = [*punctuation, *chars, *(f"##{c}" for c in chars), *_corpus_words()]
    reserved = {index: token for token, index in _BERT_SPECIAL_IDS.items()}
    pending = [w for w in dict.fromkeys(words) if w not in _BERT_SPECIAL_IDS]
    size = max(max(reserved) + 1, len(reserved) + len(pending))
    tokens: list[str] = []
    for index in range(size):
        if index in reserved:
            tokens.append(reserved[index])
        else:
            tokens.append(pending.pop(0) if pending else f"[unused{index}]")
    return tuple(tokens)


def tiny_bert_tokenizer() -> BertTokenizer:
    """An offline, deterministic BERT WordPiece tokenizer for the tiny Grounding DINO."""
    from transformers import BertTokenizer

    vocab = {token: index for index, token in enumerate(_tiny_bert_vocab())}
    return BertTokenizer(vocab=vocab, do_lower_case=True)


# ---- configs that fit a tokenizer ----------------------------------------------------------------
def _tokenizer_fields(tokenizer: Any) -> dict[str, Any]:
    """The text-config fields that make a model fit ``tokenizer``: its vocabulary size and the ids
    of its beginning, end and padding tokens."""
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


# ---- CLIP configs --------------------------------------------------------------------------------
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
        **_tokenizer_fields(tokenizer),
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


# ---- diffusion -----------------------------------------------------------------------------------
def _drawing_on(device: str | None) -> contextlib.AbstractContextManager[Any]:
    """Build modules on ``device`` (torch's default device for the block); ``None``: as usual."""
    return torch.device(device) if device is not None else contextlib.nullcontext()


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

    with seeded(seed), _drawing_on(device):
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
    vae = {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "block_out_channels": (8, 8, 16, 16),
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "sample_size": 128,
    }
    text_config = tiny_clip_text_config(tiny_clip_tokenizer())
    return random_stable_diffusion(unet, vae, text_config, inpainting=inpainting, seed=seed)


def _scheduler(kind: str) -> Any:
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


def tiny_t5_tokenizer() -> CLIPTokenizer:
    """The tokenizer of the tiny twins' T5 slot (SD3's ``tokenizer_3``, FLUX's ``tokenizer_2``):
    the tiny CLIP BPE with ``model_max_length`` 512, T5's longest text. The pipelines only call it,
    so any tokenizer whose ids fit the text encoder works."""
    return _clip_bpe_tokenizer(shift_ids=False, model_max_length=512)


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

    with seeded(seed), _drawing_on(device):
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
        "scheduler": _scheduler("euler"),
        "add_watermarker": False,
    }
    if inpainting:
        return StableDiffusionXLInpaintPipeline(**components, requires_aesthetics_score=False)
    return StableDiffusionXLPipeline(**components)


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

    with seeded(seed), _drawing_on(device):
        transformer_model = SD3Transformer2DModel(**transformer)
        vae_model = AutoencoderKL(**vae)
        text_encoder = CLIPTextModelWithProjection(text_config)
        text_encoder_2 = CLIPTextModelWithProjection(text_config_2)
        text_encoder_3 = T5EncoderModel(t5_config)
    cls = StableDiffusion3InpaintPipeline if inpainting else StableDiffusion3Pipeline
    return cls(
        transformer=transformer_model.eval(),
        scheduler=_scheduler("flow"),
        vae=vae_model.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tiny_clip_tokenizer(),
        text_encoder_2=text_encoder_2.eval(),
        tokenizer_2=tiny_clip_tokenizer(),
        text_encoder_3=text_encoder_3.eval(),
        tokenizer_3=tiny_t5_tokenizer(),
    )


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
    with seeded(seed), _drawing_on(device):
        transformer_model = FluxTransformer2DModel(**{**transformer, **channels})
        vae_model = AutoencoderKL(**vae)
        text_encoder = CLIPTextModel(text_config)
        text_encoder_2 = T5EncoderModel(t5_config)
    cls = FluxFillPipeline if fill else FluxPipeline
    return cls(
        scheduler=_scheduler("flow-dynamic"),
        vae=vae_model.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tiny_clip_tokenizer(),
        text_encoder_2=text_encoder_2.eval(),
        tokenizer_2=tiny_t5_tokenizer(),
        transformer=transformer_model.eval(),
    )


def _tiny_vae(latent_channels: int, **settings: Any) -> dict[str, Any]:
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
    vae = _tiny_vae(4, scaling_factor=0.13025, force_upcast=False)
    return random_sdxl(unet, vae, text_config, text_config_2, inpainting=inpainting, seed=seed)


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
    vae = _tiny_vae(
        16, scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False
    )
    return random_sd3(transformer, vae, text_config, text_config_2, t5_config, inpainting=inpainting, seed=seed)


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
    vae = _tiny_vae(
        16, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False
    )
    return random_flux(transformer, vae, text_config, t5_config, fill=fill, seed=seed)


def tiny_diffusion_pipeline(model_id: str, seed: int = 0) -> Any:
    """The ``tiny:`` diffusion twin ``model_id`` (any id of
    :data:`~magicseg_hf.families.TINY_DIFFUSION_MODELS`), weights drawn under ``seed``.

    Raises:
        ModelLoadError: ``model_id`` is not a tiny diffusion twin.
    """
    builders = {
        "tiny:stable-diffusion": partial(tiny_stable_diffusion, inpainting=False),
        "tiny:stable-diffusion-inpainting": partial(tiny_stable_diffusion, inpainting=True),
        "tiny:sdxl": partial(tiny_sdxl, inpainting=False),
        "tiny:sdxl-inpainting": partial(tiny_sdxl, inpainting=True),
        "tiny:sd3": partial(tiny_sd3, inpainting=False),
        "tiny:sd3-inpainting": partial(tiny_sd3, inpainting=True),
        "tiny:flux": partial(tiny_flux, fill=False),
        "tiny:flux-fill": partial(tiny_flux, fill=True),
    }
    if model_id not in builders:
        raise ModelLoadError(
            f"unknown tiny diffusion model {model_id!r}; the tiny diffusion twins are {', '.join(TINY_DIFFUSION_MODELS)}"
        )
    return builders[model_id](seed=seed)


# ---- prompts -------------------------------------------------------------------------------------
def tiny_causal_lm(seed: int = 0) -> tuple[LlamaForCausalLM, CLIPTokenizer]:
    """``tiny:causal-lm``: a 2-layer Llama over the tiny CLIP vocabulary, and that tokenizer
    (padding with its end-of-text token), for the ``transformers`` prompt backend."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_clip_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        **_tokenizer_fields(tokenizer),
    )
    with seeded(seed):
        model = LlamaForCausalLM(config)
    return model.eval(), tokenizer


# ---- detectors -----------------------------------------------------------------------------------
def _tiny_grounding_dino_config(config_class: type[Any], tokenizer: Any) -> Any:
    """The tiny Grounding DINO architecture as a ``config_class`` (``GroundingDinoConfig`` or
    ``MMGroundingDinoConfig``, which share their fields): a Swin backbone at 128 px, a 1-layer BERT
    text encoder over ``tokenizer``'s vocabulary, d_model 32 and 5 queries."""
    from transformers import BertConfig, SwinConfig

    backbone = SwinConfig(
        image_size=128,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        out_features=["stage2", "stage3", "stage4"],
    )
    text = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
    )
    return config_class(
        backbone_config=backbone,
        text_config=text,
        num_queries=5,  # with the tiny preset's 0.0 thresholds every query is a detection
        encoder_layers=1,
        decoder_layers=2,  # 1 breaks transformers' bbox_embed weight tying
        d_model=32,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_n_points=2,
        decoder_n_points=2,
    )


def _tiny_grounding_dino_processor(tokenizer: Any) -> GroundingDinoProcessor:
    """A ``GroundingDinoProcessor`` resizing to 128 px, over ``tokenizer``."""
    from transformers import GroundingDinoImageProcessor, GroundingDinoProcessor

    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 128, "longest_edge": 128})
    return GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)


def tiny_grounding_dino(seed: int = 0) -> tuple[GroundingDinoForObjectDetection, GroundingDinoProcessor]:
    """``tiny:grounding-dino``: a Swin backbone at 128 px, a 1-layer BERT text encoder over
    :func:`tiny_bert_tokenizer`, and 5 queries (5 boxes per image)."""
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection

    tokenizer = tiny_bert_tokenizer()
    config = _tiny_grounding_dino_config(GroundingDinoConfig, tokenizer)
    with seeded(seed):
        model = GroundingDinoForObjectDetection(config)
    return model.eval(), _tiny_grounding_dino_processor(tokenizer)


def tiny_mm_grounding_dino(
    seed: int = 0,
) -> tuple[MMGroundingDinoForObjectDetection, GroundingDinoProcessor]:
    """``tiny:mm-grounding-dino``: :func:`tiny_grounding_dino`'s architecture and processor as an
    ``MMGroundingDinoForObjectDetection`` (whose contrastive class head adds a learnt bias, drawn
    set to its prior, -log(99), so untrained token probabilities sit near 0.01), weights drawn
    under ``seed``."""
    from transformers import MMGroundingDinoConfig, MMGroundingDinoForObjectDetection

    tokenizer = tiny_bert_tokenizer()
    config = _tiny_grounding_dino_config(MMGroundingDinoConfig, tokenizer)
    with seeded(seed):
        model = MMGroundingDinoForObjectDetection(config)
    return model.eval(), _tiny_grounding_dino_processor(tokenizer)


def tiny_owlv2(seed: int = 0) -> tuple[Owlv2ForObjectDetection, Owlv2Processor]:
    """``tiny:owlv2``: 64 px images in 32 px patches (4 boxes per image), text over
    :func:`tiny_owlv2_tokenizer`."""
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    tokenizer = tiny_owlv2_tokenizer()
    text_config = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 16,
        **_tokenizer_fields(tokenizer),
    }
    # 64 px / 32 px patches = 4 patches = 4 boxes per image (one per patch).
    vision_config = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 64,
        "patch_size": 32,
    }
    # projection_dim must equal the text hidden size (OWLv2's class head).
    config = Owlv2Config(text_config=text_config, vision_config=vision_config, projection_dim=32)
    with seeded(seed):
        model = Owlv2ForObjectDetection(config)
    image_processor = Owlv2ImageProcessor(size={"height": 64, "width": 64})
    return model.eval(), Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer)


# ---- segmenters ----------------------------------------------------------------------------------
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


# ---- open-vocabulary segmentation model ----------------------------------------------------------
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
