"""Named component sets: ``paper`` (real checkpoints) and ``tiny`` (random twins built offline).

Every external model has two sources. Preset ``paper`` names the real checkpoint (a Hub id and a
revision). Preset ``tiny`` names a ``tiny:<component>`` id that :mod:`magicseg_hf.loading` hands to
:mod:`magicseg_hf.tiny`, which builds it from a small config with fixed seeds and an offline
tokenizer, so tests, CI and ``magicseg demo`` never touch the network. Any model flag accepts a
Hub id, a local folder or a ``tiny:`` id.

This module is tables only: it imports no model library, so resolving a
:class:`~magicseg_hf.generation.GenerationConfig` or printing ``magicseg --help`` does not pay for
torch. ``from magicseg_hf.presets import build_open_seg`` still works: the name is looked up in
:mod:`magicseg_hf.loading` on first use (:func:`magicseg_hf.lazy.lazy_exports`).
"""

from __future__ import annotations

from typing import Any

from magicseg_hf.errors import ModelLoadError
from magicseg_hf.lazy import lazy_exports

PRESETS: tuple[str, ...] = ("paper", "tiny")
TINY_PREFIX = "tiny:"

# The ``tiny:`` ids, one per component family.
TINY_STABLE_DIFFUSION = "tiny:stable-diffusion"
TINY_STABLE_DIFFUSION_INPAINTING = "tiny:stable-diffusion-inpainting"
TINY_GROUNDING_DINO = "tiny:grounding-dino"
TINY_OWLV2 = "tiny:owlv2"
TINY_SAM = "tiny:sam"
TINY_SEGMENT_ANYTHING = "tiny:segment-anything"
TINY_CLIP = "tiny:clip"
TINY_CAUSAL_LM = "tiny:causal-lm"
#: Detector kind -> its tiny id.
TINY_DETECTORS: dict[str, str] = {"grounding-dino": TINY_GROUNDING_DINO, "owlv2": TINY_OWLV2}

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
    "diffusion_model": (TINY_STABLE_DIFFUSION, None),
    "inpainting_model": (TINY_STABLE_DIFFUSION_INPAINTING, None),
    "detector_model": (TINY_GROUNDING_DINO, None),
    "owlv2_model": (TINY_OWLV2, None),
    "segmenter_model": (TINY_SAM, None),
    "clip_model": (TINY_CLIP, None),
    "prompt_model": (TINY_CAUSAL_LM, None),
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

# The tiny twin of the paper's open-vocabulary segmentation model: the same code path at hidden
# size 32, 2 layers, 64 px input and patch 8. These are ``CLIPOpenSegConfig`` fields.
TINY_OPEN_SEG: dict[str, Any] = {
    "image_size": 64,
    "num_prompt_tokens": 4,
    "decoder_hidden_size": 32,
    "decoder_num_heads": 4,
    "decoder_intermediate_size": 64,
    "slide_crop_size": 64,
    "slide_stride": 48,
}

# Roles whose id and revision are GenerationConfig fields.
_GENERATION_ROLES = (
    "diffusion_model",
    "inpainting_model",
    "detector_model",
    "segmenter_model",
    "prompt_model",
)


def is_tiny(model_id: str | None) -> bool:
    """Whether ``model_id`` names a tiny random twin (a ``tiny:`` id) rather than a checkpoint."""
    return bool(model_id) and str(model_id).startswith(TINY_PREFIX)


def models_for(preset: str) -> dict[str, tuple[str, str | None]]:
    """Role -> (model id, revision) for ``preset`` (a copy: changing it changes no preset)."""
    if preset == "paper":
        return dict(PAPER_MODELS)
    if preset == "tiny":
        return dict(TINY_MODELS)
    raise ModelLoadError(f"unknown preset {preset!r}; known presets: {', '.join(PRESETS)}")


def generation_defaults(preset: str) -> dict[str, Any]:
    """The preset's values for every preset-dependent :class:`GenerationConfig` field."""
    models = models_for(preset)
    defaults = dict(_GENERATION_DEFAULTS[preset])
    for role in _GENERATION_ROLES:
        model_id, revision = models[role]
        defaults[role] = model_id
        defaults[f"{role}_revision"] = revision
    return defaults


# TrainingArguments defaults of ``magicseg train`` per preset (a flag on the command line wins).
_TRAINING_DEFAULTS: dict[str, dict[str, Any]] = {
    # The paper: AdamW 2e-4, weight decay 0.01, 1500 warm-up steps, polynomial decay (power 0.9) to
    # 1e-6 over 20k steps, global batch 16 (split over processes by ``magicseg train``), 512 px.
    "paper": {
        "learning_rate": 2e-4,
        "weight_decay": 0.01,
        "warmup_steps": 1500,
        "lr_scheduler_type": "polynomial",
        "lr_scheduler_kwargs": {"lr_end": 1e-6, "power": 0.9},
        "max_steps": 20_000,
        "logging_steps": 50,
        "save_steps": 2000,
        "eval_strategy": "steps",
        "eval_steps": 2000,
        "save_total_limit": 3,
    },
    # The tiny random model at 64 px: a few hundred steps on a CPU (values chosen by measurement,
    # see the README's training section).
    "tiny": {
        "learning_rate": 2e-3,
        "weight_decay": 0.01,
        "warmup_steps": 0,
        "lr_scheduler_type": "constant",
        "max_steps": 300,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 8,
        "logging_steps": 50,
        "save_steps": 150,
        "eval_strategy": "no",
        "save_total_limit": 2,
    },
}
#: The paper's global batch size (per-device batch x processes x accumulation steps).
PAPER_GLOBAL_BATCH = 16


def training_defaults(preset: str) -> dict[str, Any]:
    """``TrainingArguments`` defaults of ``magicseg train --preset preset``."""
    if preset not in _TRAINING_DEFAULTS:
        raise ModelLoadError(f"unknown preset {preset!r}; known presets: {', '.join(PRESETS)}")
    return {key: (dict(value) if isinstance(value, dict) else value) for key, value in _TRAINING_DEFAULTS[preset].items()}


# Names that live in magicseg_hf.loading but were documented here first. Compatibility path:
# ``from magicseg_hf.presets import build_open_seg`` loads magicseg_hf.loading (and so torch) only
# when that name is asked for. The lookup is dynamic because ``loading`` itself imports this module;
# new code imports magicseg_hf.loading.build_open_seg directly.
_FORWARDED = {"build_open_seg": "magicseg_hf.loading"}

__getattr__, __dir__ = lazy_exports(__name__, _FORWARDED)
