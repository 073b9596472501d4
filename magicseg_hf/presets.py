"""Named component sets: ``paper`` (real checkpoints) and ``tiny`` (random twins built offline).

Every external model has two sources. Preset ``paper`` names the real checkpoint (a Hub id and
a revision). Preset ``tiny`` names a ``tiny:<component>`` id that :func:`load_component` builds
from a small config with fixed seeds and an offline tokenizer, so tests, CI and ``magicseg demo``
never touch the network. Any model flag accepts a Hub id, a local folder or a ``tiny:`` id; the
loading path is the same for all three except where the weights come from.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from transformers.utils import logging

from magicseg_hf.errors import ModelLoadError

logger = logging.get_logger(__name__)

TINY_PREFIX = "tiny:"

# Model roles -> (id, revision) per preset. Revisions are pinned where the commit is known;
# ``None`` means "the default branch" and is recorded as such in generation.json.
PAPER_MODELS: dict[str, tuple[str, str | None]] = {
    "diffusion_model": ("stable-diffusion-v1-5/stable-diffusion-v1-5", None),
    "inpainting_model": ("stable-diffusion-v1-5/stable-diffusion-inpainting", None),
    "detector_model": ("IDEA-Research/grounding-dino-tiny", None),
    "owlv2_model": ("google/owlv2-base-patch16-ensemble", None),
    "segmenter_model": ("facebook/sam-vit-huge", None),
    "clip_model": ("openai/clip-vit-base-patch16", None),
    "prompt_model": ("Qwen/Qwen2.5-1.5B-Instruct", None),
}

TINY_MODELS: dict[str, tuple[str, str | None]] = {
    "diffusion_model": ("tiny:stable-diffusion", None),
    "inpainting_model": ("tiny:stable-diffusion-inpainting", None),
    "detector_model": ("tiny:grounding-dino", None),
    "owlv2_model": ("tiny:owlv2", None),
    "segmenter_model": ("tiny:sam", None),
    "clip_model": ("tiny:clip", None),
    "prompt_model": ("tiny:causal-lm", None),
}

# GenerationConfig defaults that depend on the preset (fields left at None take these).
_GENERATION_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {
        "prompt_backend": "transformers",
        "num_inference_steps": 50,
        "height": 512,
        "width": 512,
        "box_threshold": 0.35,
        "text_threshold": 0.25,
        "counterfactual_threshold": 0.3,
        "min_mask_area": 0.01,
        "max_mask_area": 0.95,
    },
    # Random weights: thresholds are set so that a tiny run keeps most attempts; the tiny
    # preset proves plumbing, not quality.
    "tiny": {
        "prompt_backend": "template",
        "num_inference_steps": 4,
        "height": 128,
        "width": 128,
        "box_threshold": 0.0,
        "text_threshold": 0.0,
        "counterfactual_threshold": 1.01,
        "min_mask_area": 0.0,
        "max_mask_area": 1.0,
    },
}


def models_for(preset: str) -> dict[str, tuple[str, str | None]]:
    """Role -> (model id, revision) for ``preset``."""
    if preset == "paper":
        return dict(PAPER_MODELS)
    if preset == "tiny":
        return dict(TINY_MODELS)
    raise ModelLoadError(f"unknown preset {preset!r}; known presets: paper, tiny")


def generation_defaults(preset: str) -> dict[str, Any]:
    """The preset's values for every preset-dependent :class:`GenerationConfig` field."""
    models = models_for(preset)
    defaults = dict(_GENERATION_DEFAULTS[preset])
    for role in ("diffusion_model", "inpainting_model", "detector_model", "segmenter_model", "prompt_model"):
        model_id, revision = models[role]
        defaults[role] = model_id
        defaults[f"{role}_revision"] = revision
    return defaults


# ----------------------------------------------------------------------------------------------
# Loading real checkpoints: local folder, Hub cache, or Hub — failing fast when offline.
# ----------------------------------------------------------------------------------------------
def is_tiny(model_id: str | None) -> bool:
    return bool(model_id) and str(model_id).startswith(TINY_PREFIX)


def check_model_available(model_id: str, revision: str | None = None, what: str = "model") -> None:
    """Raise :class:`ModelLoadError` at once if ``model_id`` cannot possibly be loaded.

    A local folder must exist; a Hub id must be in the local cache or the Hub must be reachable
    (and ``HF_HUB_OFFLINE`` unset). This turns a 20-45 s retry loop into an immediate one-line error.
    """
    if is_tiny(model_id):
        return
    path = Path(model_id).expanduser()
    if path.exists():
        return
    looks_like_path = model_id.startswith((".", "/", "~")) or os.sep in model_id.strip("/").replace("/", "", 1)
    if looks_like_path or model_id.count("/") > 1:
        raise ModelLoadError(f"{what} {model_id!r}: no such folder")
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_OFFLINE

    with contextlib.suppress(Exception):
        snapshot_download(model_id, revision=revision, local_files_only=True)
        return
    if HF_HUB_OFFLINE:
        raise ModelLoadError(
            f"{what} {model_id!r} is not in the local cache and HF_HUB_OFFLINE=1; "
            "download it first or pass a local folder"
        )
    from magicseg_hf.hub import hub_reachable

    if not hub_reachable():
        raise ModelLoadError(
            f"{what} {model_id!r}: the Hugging Face Hub is unreachable and the model is not cached; "
            "pass a local folder or check the network"
        )


@contextlib.contextmanager
def _load_errors(model_id: str, what: str) -> Iterator[None]:
    try:
        yield
    except ModelLoadError:
        raise
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"cannot load {what} {model_id!r}: {first_line}") from error


# ----------------------------------------------------------------------------------------------
# Tiny components: deterministic random twins, built from configs, offline.
# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global RNG seeded, restoring the caller's RNG state afterwards."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


def _tiny_corpus_words() -> list[str]:
    from importlib import resources

    words: set[str] = set()
    folder = resources.files("magicseg_hf") / "vocabularies"
    for name in ("lvis.txt", "voc20.txt", "context59.txt", "coco80.txt"):
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            for word in line.replace("(", " ").replace(")", " ").replace("_", " ").lower().split():
                words.add(word)
    words.update(
        "a an the of in on at with and or without photo picture image scene there is are no nothing "
        "sitting standing next to near under over beside street room table grass field sky water".split()
    )
    return sorted(words)


@lru_cache(maxsize=1)
def _tiny_clip_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in ["<|startoftext|>", "<|endoftext|>", *alphabet, *(c + "</w>" for c in alphabet)]:
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for word in _tiny_corpus_words():
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


def tiny_clip_tokenizer() -> Any:
    """An offline, deterministic CLIP BPE tokenizer (byte alphabet + whole-word merges of the
    shipped vocabularies), ``model_max_length`` 77. Same vocabulary in every process."""
    from transformers import CLIPTokenizer

    vocab, merges = _tiny_clip_vocab()
    tokenizer = CLIPTokenizer(vocab=dict(vocab), merges=list(merges))
    tokenizer.model_max_length = 77
    return tokenizer


def _tiny_clip_text_config(tokenizer: Any, hidden_size: int = 32, projection_dim: int = 32) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=projection_dim,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def random_stable_diffusion(
    unet: dict[str, Any], vae: dict[str, Any], text_config: Any, *, inpainting: bool = False, seed: int = 0
) -> Any:
    """A Stable Diffusion pipeline with random weights from architecture settings, built offline.

    Args:
        unet: ``UNet2DConditionModel`` settings (``in_channels`` is set here: 9 for inpainting, else 4).
        vae: ``AutoencoderKL`` settings.
        text_config: a ``CLIPTextConfig`` whose ids fit :func:`tiny_clip_tokenizer`.
        inpainting: build a ``StableDiffusionInpaintPipeline``.
        seed: weights are drawn under this seed, so every process builds the same model.

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

    with _seeded(seed):
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


def _tiny_stable_diffusion(inpainting: bool, seed: int = 0) -> Any:
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
    text_config = _tiny_clip_text_config(tiny_clip_tokenizer())
    return random_stable_diffusion(unet, vae, text_config, inpainting=inpainting, seed=seed)


def _resolve_dtype(dtype: str | torch.dtype, device: str | torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.float16 if torch.device(device).type == "cuda" else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


def load_diffusion_pipeline(
    model_id: str,
    revision: str | None = None,
    *,
    inpainting: bool = False,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device = "cpu",
    safety_checker: bool = True,
) -> Any:
    """A Stable Diffusion text-to-image (or inpainting) pipeline from a Hub id, folder or ``tiny:`` id.

    The pipeline is moved to ``device`` in ``dtype`` and has its progress bar disabled.
    """
    torch_dtype = _resolve_dtype(dtype, device)
    what = "inpainting model" if inpainting else "diffusion model"
    if is_tiny(model_id):
        expected = TINY_MODELS["inpainting_model" if inpainting else "diffusion_model"][0]
        if model_id != expected:
            raise ModelLoadError(f"unknown tiny {what} {model_id!r}; the tiny preset has {expected!r}")
        pipe = _tiny_stable_diffusion(inpainting=inpainting)
        if torch_dtype != torch.float32:
            pipe = pipe.to(dtype=torch_dtype)
    else:
        from diffusers import AutoPipelineForInpainting, AutoPipelineForText2Image

        check_model_available(model_id, revision, what)
        cls = AutoPipelineForInpainting if inpainting else AutoPipelineForText2Image
        kwargs: dict[str, Any] = {"revision": revision, "dtype": torch_dtype}
        if not safety_checker:
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        with _load_errors(model_id, what):
            pipe = cls.from_pretrained(model_id, **kwargs)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ---- tiny causal LM for the `transformers` prompt backend -------------------------------------
def _tiny_causal_lm(seed: int = 0) -> tuple[Any, Any]:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_clip_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with _seeded(seed):
        model = LlamaForCausalLM(config)
    return model.eval(), tokenizer


def load_causal_lm(
    model_id: str, revision: str | None = None, *, dtype: str | torch.dtype = "auto", device: str = "cpu"
) -> tuple[Any, Any]:
    """(model, tokenizer) of an instruct LLM for the ``transformers`` prompt backend."""
    if is_tiny(model_id):
        if model_id != TINY_MODELS["prompt_model"][0]:
            raise ModelLoadError(f"unknown tiny prompt model {model_id!r}")
        model, tokenizer = _tiny_causal_lm()
        return model.to(device), tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_available(model_id, revision, "prompt model")
    with _load_errors(model_id, "prompt model"):
        tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(
            model_id, revision=revision, dtype=_resolve_dtype(dtype, device)
        )
    return model.to(device).eval(), tokenizer


# --- detectors and segmenters (annotation) ---
# Grounding DINO / OWLv2 detectors and SAM segmenters (transformers SamModel or the
# segment-anything package), each from a Hub id, a local folder or a ``tiny:`` id.
TINY_DETECTORS = {"grounding-dino": "tiny:grounding-dino", "owlv2": "tiny:owlv2"}
TINY_SAM = "tiny:sam"
TINY_SEGMENT_ANYTHING = "tiny:segment-anything"

# Grounding DINO's text encoder splits phrases at these BERT ids ([CLS], [SEP], ".", "?"): the
# model hard-codes them, so the tiny BERT vocabulary puts those tokens at the same ids.
_BERT_SPECIAL_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, ".": 1012, "?": 1029}


@lru_cache(maxsize=1)
def _tiny_bert_vocab() -> tuple[str, ...]:
    """WordPiece vocabulary: BERT's special ids, characters (and ``##`` continuations, so an
    unknown word is spelled out rather than mapped to [UNK]) and the shipped vocabularies' words."""
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    punctuation = list(",'-()!:;&/\"+")
    words = [*punctuation, *chars, *(f"##{c}" for c in chars), *_tiny_corpus_words()]
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


def tiny_bert_tokenizer() -> Any:
    """An offline, deterministic BERT WordPiece tokenizer for the tiny Grounding DINO."""
    from transformers import BertTokenizer

    vocab = {token: index for index, token in enumerate(_tiny_bert_vocab())}
    return BertTokenizer(vocab=vocab, do_lower_case=True)


def _tiny_grounding_dino(seed: int = 0) -> tuple[Any, Any]:
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    tokenizer = tiny_bert_tokenizer()
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
    config = GroundingDinoConfig(
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
    with _seeded(seed):
        model = GroundingDinoForObjectDetection(config)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 128, "longest_edge": 128})
    return model.eval(), GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)


def _tiny_owlv2_tokenizer() -> Any:
    """The tiny CLIP vocabulary with every id shifted up by one.

    OWLv2 treats a query whose first token id is 0 as padding (``query_mask = input_ids[..., 0] > 0``);
    :func:`tiny_clip_tokenizer` gives ``<|startoftext|>`` id 0, which would mask every query.
    """
    from transformers import CLIPTokenizer

    vocab, merges = _tiny_clip_vocab()
    shifted = {"<|padding|>": 0, **{token: index + 1 for token, index in vocab.items()}}
    tokenizer = CLIPTokenizer(vocab=shifted, merges=list(merges), pad_token="<|endoftext|>")
    tokenizer.model_max_length = 16
    return tokenizer


def _tiny_owlv2(seed: int = 0) -> tuple[Any, Any]:
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    tokenizer = _tiny_owlv2_tokenizer()
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 16,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
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
    with _seeded(seed):
        model = Owlv2ForObjectDetection(config)
    image_processor = Owlv2ImageProcessor(size={"height": 64, "width": 64})
    return model.eval(), Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer)


def load_detector(
    kind: str,
    model_id: str,
    revision: str | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "auto",
) -> tuple[Any, Any]:
    """(model, processor) of an open-vocabulary detector: ``kind`` is ``grounding-dino`` or ``owlv2``.

    ``model_id`` is a Hub id, a local folder or the kind's ``tiny:`` id. The model is put in eval
    mode on ``device`` in ``dtype`` (``auto``: float16 on CUDA, float32 otherwise).
    """
    if kind not in TINY_DETECTORS:
        raise ModelLoadError(f"unknown detector {kind!r}; known: {', '.join(TINY_DETECTORS)}")
    torch_dtype = _resolve_dtype(dtype, device)
    what = f"{kind} detector"
    if is_tiny(model_id):
        if model_id != TINY_DETECTORS[kind]:
            raise ModelLoadError(f"unknown tiny {what} {model_id!r}; the tiny preset has {TINY_DETECTORS[kind]!r}")
        model, processor = _tiny_grounding_dino() if kind == "grounding-dino" else _tiny_owlv2()
    else:
        from transformers import AutoProcessor, GroundingDinoForObjectDetection, Owlv2ForObjectDetection

        check_model_available(model_id, revision, what)
        cls = GroundingDinoForObjectDetection if kind == "grounding-dino" else Owlv2ForObjectDetection
        with _load_errors(model_id, what):
            processor = AutoProcessor.from_pretrained(model_id, revision=revision)
            model = cls.from_pretrained(model_id, revision=revision, dtype=torch_dtype)
    return model.to(device=device, dtype=torch_dtype).eval(), processor


def _tiny_transformers_sam(seed: int = 0) -> tuple[Any, Any]:
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
    with _seeded(seed):
        model = SamModel(config)
    image_processor = SamImageProcessor(
        size={"longest_edge": 256},
        pad_size={"height": 256, "width": 256},
        mask_size={"longest_edge": 64},
        mask_pad_size={"height": 64, "width": 64},
    )
    return model.eval(), SamProcessor(image_processor=image_processor)


def _segment_anything_architecture(model_type: str) -> Any:
    """An untrained ``segment_anything.modeling.Sam`` of ``model_type`` (vit_h, vit_l, vit_b or tiny)."""
    if model_type == "tiny":
        return _tiny_segment_anything_architecture()
    from segment_anything import sam_model_registry

    if model_type not in sam_model_registry or model_type == "default":
        known = ", ".join(k for k in sam_model_registry if k != "default")
        raise ModelLoadError(f"unknown segment-anything model type {model_type!r}; known: {known}, tiny")
    return sam_model_registry[model_type](checkpoint=None)  # checkpoint=None: no torch.load inside


def _tiny_segment_anything_architecture() -> Any:
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    image_size, patch_size, prompt_dim = 256, 16, 32
    return Sam(
        # The image encoder dominates the cost, as in real SAM (see _tiny_transformers_sam).
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


def _tiny_segment_anything(seed: int = 0) -> Any:
    with _seeded(seed):
        return _tiny_segment_anything_architecture()


def load_segment_anything_checkpoint(checkpoint: str | os.PathLike, model_type: str = "vit_h") -> Any:
    """A segment-anything ``Sam`` of ``model_type`` with weights from ``checkpoint`` (a .pth state dict).

    The file is read with ``torch.load(..., weights_only=True)``, never through ``build_sam``'s own
    unrestricted ``torch.load``.
    """
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"segment-anything checkpoint {str(checkpoint)!r}: no such file")
    model = _segment_anything_architecture(model_type)
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state_dict)
    except Exception as error:  # unpickling, wrong keys or shapes: all mean "not this checkpoint"
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelLoadError(
            f"cannot load segment-anything checkpoint {str(checkpoint)!r} as {model_type}: {first_line}"
        ) from error
    return model


def load_segmenter(
    backend: str,
    model_id: str | None = None,
    revision: str | None = None,
    *,
    sam_checkpoint: str | os.PathLike | None = None,
    sam_model_type: str = "vit_h",
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "auto",
) -> tuple[Any, Any]:
    """(model, processor) of a SAM segmenter.

    ``backend="transformers"``: a ``SamModel`` and ``SamProcessor`` from ``model_id`` (Hub id, folder
    or ``tiny:sam``). ``backend="segment-anything"``: a ``segment_anything.modeling.Sam`` and ``None``;
    weights from ``sam_checkpoint`` (``sam_model_type`` names its architecture; ``tiny`` is the tiny
    one), or, with no checkpoint and a ``tiny:`` ``model_id``, the tiny random ``Sam``
    (``tiny:segment-anything``).
    """
    torch_dtype = _resolve_dtype(dtype, device)
    if backend == "transformers":
        if model_id is None:
            raise ModelLoadError("the transformers SAM backend needs a segmenter model id or folder")
        if is_tiny(model_id):
            if model_id != TINY_SAM:
                raise ModelLoadError(f"unknown tiny SAM model {model_id!r}; the tiny preset has {TINY_SAM!r}")
            model, processor = _tiny_transformers_sam()
        else:
            from transformers import SamModel, SamProcessor

            check_model_available(model_id, revision, "SAM model")
            with _load_errors(model_id, "SAM model"):
                processor = SamProcessor.from_pretrained(model_id, revision=revision)
                model = SamModel.from_pretrained(model_id, revision=revision, dtype=torch_dtype)
        return model.to(device=device, dtype=torch_dtype).eval(), processor
    if backend == "segment-anything":
        if sam_checkpoint is not None:
            sam = load_segment_anything_checkpoint(sam_checkpoint, sam_model_type)
        elif is_tiny(model_id):
            sam = _tiny_segment_anything()
        else:
            raise ModelLoadError(
                "the segment-anything backend needs --sam-checkpoint (a .pth file) outside the tiny preset"
            )
        return sam.to(device=device, dtype=torch_dtype).eval(), None
    raise ModelLoadError(f"unknown segmenter backend {backend!r}; known: transformers, segment-anything")


# --- open-vocabulary segmentation model (issue 5) ---
# Tiny twin of the paper's model: same code path, hidden 32, 2 layers, 64 px, patch 8.
_TINY_OPEN_SEG: dict[str, Any] = {
    "image_size": 64,
    "num_prompt_tokens": 4,
    "decoder_hidden_size": 32,
    "decoder_num_heads": 4,
    "decoder_intermediate_size": 64,
    "slide_crop_size": 64,
    "slide_stride": 48,
}


def tiny_clip_config(tokenizer: Any = None) -> Any:
    """A tiny random `CLIPConfig` (hidden 32, 2 layers, patch 8, projection 32) that fits
    :func:`tiny_clip_tokenizer`'s vocabulary."""
    from transformers import CLIPConfig, CLIPVisionConfig

    tokenizer = tokenizer if tokenizer is not None else tiny_clip_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=32,
    )
    text = _tiny_clip_text_config(tokenizer, hidden_size=32, projection_dim=32)
    return CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=32)


def build_open_seg(preset: str = "tiny", seed: int = 0, **overrides: Any) -> tuple[Any, Any]:
    """``(CLIPForOpenSegmentation, CLIPOpenSegProcessor)`` for ``preset``.

    ``tiny`` builds offline from configs (random CLIP, offline tokenizer, seeded); ``paper`` wraps
    ``openai/clip-vit-base-patch16`` via ``CLIPForOpenSegmentation.from_clip``. ``overrides`` are
    :class:`CLIPOpenSegConfig` fields (e.g. ``vocabulary=[...]``, ``use_lora=True``, ``image_size=...``);
    the processor's resize/pad size follows ``image_size``.
    """
    from magicseg_hf.modeling import CLIPForOpenSegmentation, CLIPOpenSegImageProcessor, CLIPOpenSegProcessor

    if preset == "tiny":
        from transformers import CLIPModel

        tokenizer = tiny_clip_tokenizer()
        with _seeded(seed):
            clip = CLIPModel(tiny_clip_config(tokenizer))
            model = CLIPForOpenSegmentation.from_clip(clip, tokenizer=tokenizer, **{**_TINY_OPEN_SEG, **overrides})
    elif preset == "paper":
        from transformers import AutoTokenizer

        model_id, revision = PAPER_MODELS["clip_model"]
        check_model_available(model_id, revision, "CLIP model")
        with _load_errors(model_id, "CLIP model"):
            tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
            model = CLIPForOpenSegmentation.from_clip(
                model_id, tokenizer=tokenizer, clip_kwargs={"revision": revision}, **overrides
            )
    else:
        raise ModelLoadError(f"unknown preset {preset!r}; known presets: paper, tiny")
    size = model.config.image_size
    image_processor = CLIPOpenSegImageProcessor(
        size={"max_height": size, "max_width": size}, pad_size={"height": size, "width": size}
    )
    processor = CLIPOpenSegProcessor(image_processor, tokenizer, templates=list(model.config.templates))
    return model, processor
