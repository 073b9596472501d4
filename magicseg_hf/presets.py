"""Named component sets: ``paper`` (real checkpoints) and ``tiny`` (random twins built offline).

Every external model has two sources. Preset ``paper`` names the real checkpoint (a Hub id and a
revision). Preset ``tiny`` names a ``tiny:<component>`` id that :mod:`magicseg_hf.twins` resolves to a
model folder its builder wrote once into the cache (a small config, fixed seeds, an offline
tokenizer) and that :mod:`magicseg_hf.loading` loads like any other folder, so tests, CI and
``magicseg demo`` never touch the network. Any model flag accepts a
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

PRESETS: tuple[str, ...] = ("paper", "quality", "tiny")
#: Presets of the open-vocabulary segmentation model (``build_open_seg``, ``magicseg train``).
OPEN_SEG_PRESETS: tuple[str, ...] = ("paper", "tiny")
TINY_PREFIX = "tiny:"

# The ``tiny:`` ids, one per component family.
TINY_STABLE_DIFFUSION = "tiny:stable-diffusion"
TINY_STABLE_DIFFUSION_INPAINTING = "tiny:stable-diffusion-inpainting"
TINY_GROUNDING_DINO = "tiny:grounding-dino"
TINY_OWLV2 = "tiny:owlv2"
TINY_SAM = "tiny:sam"
TINY_SEGMENT_ANYTHING = "tiny:segment-anything"
TINY_SAM2 = "tiny:sam2"
TINY_MM_GROUNDING_DINO = "tiny:mm-grounding-dino"
TINY_SDXL = "tiny:sdxl"
TINY_SD3 = "tiny:sd3"
TINY_FLUX = "tiny:flux"
TINY_CLIP = "tiny:clip"
TINY_CAUSAL_LM = "tiny:causal-lm"
#: The tiny open-vocabulary segmentation model (``build_open_seg("tiny")``; not a generation role).
TINY_OPEN_SEG_MODEL = "tiny:open-seg"
#: Detector kind -> its tiny id.
TINY_DETECTORS: dict[str, str] = {
    "grounding-dino": TINY_GROUNDING_DINO,
    "mm-grounding-dino": TINY_MM_GROUNDING_DINO,
    "owlv2": TINY_OWLV2,
}
#: Segmenter kind (``--segmenter``) -> its tiny id.
TINY_SEGMENTERS: dict[str, str] = {
    "transformers": TINY_SAM,
    "sam2": TINY_SAM2,
    "segment-anything": TINY_SEGMENT_ANYTHING,
}

# Model roles -> (id, revision) per preset. Revisions are pinned where the commit is known;
# ``None`` means "the default branch" and is recorded as such in generation.json (with the commit
# actually loaded, where the local cache knows it). A detector or segmenter role per kind: the
# run loads the one of its ``--detector`` / ``--segmenter`` (see DETECTOR_ROLES, SEGMENTER_ROLES).
PAPER_MODELS: dict[str, tuple[str, str | None]] = {
    "diffusion_model": ("stable-diffusion-v1-5/stable-diffusion-v1-5", None),
    "inpainting_model": ("stable-diffusion-v1-5/stable-diffusion-inpainting", None),
    "detector_model": ("IDEA-Research/grounding-dino-tiny", None),
    "mm_grounding_dino_model": ("openmmlab-community/mm_grounding_dino_tiny_o365v1_goldg_v3det", None),
    "owlv2_model": ("google/owlv2-base-patch16-ensemble", None),
    "segmenter_model": ("facebook/sam-vit-huge", None),
    "sam2_model": ("facebook/sam2.1-hiera-large", None),
    "clip_model": ("openai/clip-vit-base-patch16", None),
    "class_score_model": ("openai/clip-vit-large-patch14", None),
    "prompt_model": ("Qwen/Qwen2.5-1.5B-Instruct", None),
}

# Current models, chosen by published evidence (README, "Presets"): FLUX.1 [dev] with its Fill
# model, MM-Grounding-DINO (Swin-L, all data), SAM 2.1 Hiera-L, CLIP ViT-L/14 for the class check,
# a 7B instruct LLM for prompts.
QUALITY_MODELS: dict[str, tuple[str, str | None]] = {
    "diffusion_model": ("black-forest-labs/FLUX.1-dev", None),
    "inpainting_model": ("black-forest-labs/FLUX.1-Fill-dev", None),
    "detector_model": ("IDEA-Research/grounding-dino-base", None),
    "mm_grounding_dino_model": ("openmmlab-community/mm_grounding_dino_large_all", None),
    "owlv2_model": ("google/owlv2-large-patch14-ensemble", None),
    "segmenter_model": ("facebook/sam-vit-huge", None),
    "sam2_model": ("facebook/sam2.1-hiera-large", None),
    "clip_model": ("openai/clip-vit-base-patch16", None),
    "class_score_model": ("openai/clip-vit-large-patch14", None),
    "prompt_model": ("Qwen/Qwen2.5-7B-Instruct", None),
}

TINY_MODELS: dict[str, tuple[str, str | None]] = {
    "diffusion_model": (TINY_STABLE_DIFFUSION, None),
    "inpainting_model": (TINY_STABLE_DIFFUSION_INPAINTING, None),
    "detector_model": (TINY_GROUNDING_DINO, None),
    "mm_grounding_dino_model": (TINY_MM_GROUNDING_DINO, None),
    "owlv2_model": (TINY_OWLV2, None),
    "segmenter_model": (TINY_SAM, None),
    "sam2_model": (TINY_SAM2, None),
    "clip_model": (TINY_CLIP, None),
    "class_score_model": (TINY_CLIP, None),
    "prompt_model": (TINY_CAUSAL_LM, None),
}

#: ``--detector`` kind -> the model role holding each preset's checkpoint of that kind.
DETECTOR_ROLES: dict[str, str] = {
    "grounding-dino": "detector_model",
    "mm-grounding-dino": "mm_grounding_dino_model",
    "owlv2": "owlv2_model",
}
#: ``--segmenter`` kind -> the model role of its checkpoint (segment-anything reads a .pth file
#: instead; its tiny twin is chosen by the SAM role's tiny id).
SEGMENTER_ROLES: dict[str, str] = {
    "transformers": "segmenter_model",
    "sam2": "sam2_model",
    "segment-anything": "segmenter_model",
}
#: The inpainting checkpoint of each generator family, for a ``--diffusion-model`` outside the
#: preset's own family (``None``: the text-to-image checkpoint inpaints itself, as SD3's does).
INPAINTING_MODELS: dict[str, tuple[str | None, str | None]] = {
    "stable-diffusion": ("stable-diffusion-v1-5/stable-diffusion-inpainting", None),
    "sdxl": ("diffusers/stable-diffusion-xl-1.0-inpainting-0.1", None),
    "sd3": (None, None),
    "flux": ("black-forest-labs/FLUX.1-Fill-dev", None),
}

# GenerationConfig defaults that depend on the preset (fields left at None take these). Steps,
# guidance, size and text length come from the generator's family (magicseg_hf.families).
_GENERATION_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {
        "prompt_backend": "transformers",
        "detector": "grounding-dino",
        "segmenter": "transformers",
        "box_threshold": 0.35,
        "text_threshold": 0.25,
        "counterfactual_threshold": 0.3,
        "min_mask_area": 0.01,
        "max_mask_area": 0.95,
        # The published method has no class check: the column is filled, nothing is dropped.
        "class_score_threshold": -1.0,
    },
    # MM-Grounding-DINO's scores are calibrated like Grounding DINO's (same head), so the paper's
    # thresholds carry over. The class check: 0.2 cosine with CLIP ViT-L/14 is a starting value,
    # not tuned on data (README, "Presets").
    "quality": {
        "prompt_backend": "transformers",
        "detector": "mm-grounding-dino",
        "segmenter": "sam2",
        "box_threshold": 0.35,
        "text_threshold": 0.25,
        "counterfactual_threshold": 0.3,
        "min_mask_area": 0.01,
        "max_mask_area": 0.95,
        "class_score_threshold": 0.2,
    },
    # Random weights: thresholds are set so that a tiny run keeps most attempts; the tiny
    # preset proves plumbing, not quality.
    "tiny": {
        "prompt_backend": "template",
        "detector": "grounding-dino",
        "segmenter": "transformers",
        "box_threshold": 0.0,
        "text_threshold": 0.0,
        "counterfactual_threshold": 1.01,
        "min_mask_area": 0.0,
        "max_mask_area": 1.0,
        "class_score_threshold": -1.0,
    },
}

# The tiny twin of the paper's open-vocabulary segmentation model: the same code path (deep prompts
# with prompt_proj and prompt_norm, as the paper) at 64 px, patch 8, 2 layers, plus drop path 0.1
# (the release builds DropPath but never calls it: its rate is in effect 0, CLIPOpenSegConfig's
# default; tiny keeps 0.1, with which it was measured). These
# are ``CLIPOpenSegConfig`` fields. Chosen by measurement: held-out mIoU of `magicseg train --preset
# tiny` on the earlier procedural shapes (coloured circle, square, triangle; before the package's
# procedural source), seeds 0-2 (benchmarks/README.md, "Tiny preset: chosen by measurement"; the preset
# scores 0.64-0.66, the untrained model 0.06-0.15; on today's sun/house/tree scenes it scores 0.75):
# - initializer_range 0.1 (decoder): at 0.02 the attention logits start near 0 and the take-off
#   step varies with the seed (0.60-0.66).
# - templates: the bare class name ("{}"). Averaged over the paper's 15 templates, the random text
#   tower gives the classes nearly one embedding (mean cosine 0.90-0.95 between the shape classes,
#   0.96-0.97 over VOC's 20 names), the shared template words drowning the name; the name alone,
#   with the larger text init of TINY_OPEN_SEG_CLIP, gives -0.12-0.62 (VOC: 0.42-0.60).
# - prompt_proj, prompt_norm and drop path stay on: without them mIoU is alike (0.66-0.67) but the
#   counterfactual loss does less (cos(g_pos, g_cf) 0.77-0.86 instead of 0.54-0.67).
TINY_OPEN_SEG: dict[str, Any] = {
    "image_size": 64,
    "num_prompt_tokens": 4,
    "decoder_hidden_size": 32,
    "decoder_num_heads": 4,
    "decoder_intermediate_size": 64,
    "slide_crop_size": 64,
    "slide_stride": 48,
    "initializer_range": 0.1,
    "templates": ("{}",),
    "drop_path_rate": 0.1,
}

# The random CLIP of the tiny open-segmentation model (:func:`magicseg_hf.twins.tiny_open_seg`; the
# generation twins do not use it), chosen by the same measurements:
# - vision width 64 and projection 64 (text width 32): 0.64-0.66 against 0.61-0.64 at 32.
# - vision attention query/key weights drawn 8x larger: with CLIP's default init the attention is
#   nearly uniform and the [CLS] embedding hardly depends on the image (cos(g_pos, g_cf) 0.98-0.99
#   on held-out pairs, before and after training with the loss on), so the counterfactual loss has
#   nothing to act on. At 8x it starts at 0.90-0.94 and ends at 0.54-0.67 with the loss, 0.91-0.93
#   without; 4x scores 0.02 more mIoU but separates less (0.64-0.88 against 0.94-0.98). Scaling
#   every vision weight instead scrambles the patch features (mIoU drops).
# - text weights (all but the layer norms) drawn 8x larger: more of the class name reaches the
#   pooled text feature (see ``templates`` above).
TINY_OPEN_SEG_CLIP: dict[str, Any] = {
    "vision_hidden_size": 64,
    "projection_dim": 64,
    "vision_query_key_scale": 8.0,
    "text_init_scale": 8.0,
}

# Roles whose id and revision are GenerationConfig fields of the same name (the detector,
# segmenter and inpainting models depend on other settings: see GenerationConfig.resolved).
_GENERATION_ROLES = ("diffusion_model", "prompt_model", "class_score_model")


def is_tiny(model_id: str | None) -> bool:
    """Whether ``model_id`` names a tiny random twin (a ``tiny:`` id) rather than a checkpoint."""
    return bool(model_id) and str(model_id).startswith(TINY_PREFIX)


def models_for(preset: str) -> dict[str, tuple[str, str | None]]:
    """Role -> (model id, revision) for ``preset`` (a copy: changing it changes no preset)."""
    tables = {"paper": PAPER_MODELS, "quality": QUALITY_MODELS, "tiny": TINY_MODELS}
    if preset not in tables:
        raise ModelLoadError(f"unknown preset {preset!r}; known presets: {', '.join(PRESETS)}")
    return dict(tables[preset])


def generation_defaults(preset: str) -> dict[str, Any]:
    """The preset's values for the preset-dependent :class:`GenerationConfig` fields that do not
    depend on other settings (the generator, the prompt and class-check models, thresholds, the
    detector and segmenter kinds)."""
    models = models_for(preset)
    defaults = dict(_GENERATION_DEFAULTS[preset])
    for role in _GENERATION_ROLES:
        model_id, revision = models[role]
        defaults[role] = model_id
        defaults[f"{role}_revision"] = revision
    return defaults


def detector_model_for(preset: str, detector: str) -> tuple[str, str | None]:
    """(id, revision) of ``preset``'s checkpoint of detector kind ``detector``."""
    return models_for(preset)[DETECTOR_ROLES[detector]]


def segmenter_model_for(preset: str, segmenter: str) -> tuple[str, str | None]:
    """(id, revision) of ``preset``'s checkpoint of segmenter kind ``segmenter``."""
    return models_for(preset)[SEGMENTER_ROLES[segmenter]]


def inpainting_model_for(preset: str, family: str, tiny_id: str, diffusion_model: str) -> tuple[str, str | None]:
    """(id, revision) of the inpainting model that pairs with ``diffusion_model`` of ``family``.

    A ``tiny:`` generator pairs with its family's tiny twin (``tiny_id``) whatever the preset; the
    preset's own generator with the preset's inpainting model; any other generator with its
    family's checkpoint in :data:`INPAINTING_MODELS` (or with itself, where the family inpaints
    with the text-to-image checkpoint).
    """
    models = models_for(preset)
    if is_tiny(diffusion_model):
        return tiny_id, None
    if diffusion_model == models["diffusion_model"][0]:
        return models["inpainting_model"]
    model_id, revision = INPAINTING_MODELS[family]
    return (model_id, revision) if model_id is not None else (diffusion_model, None)


# TrainingArguments defaults of ``magicseg train`` per preset (a flag on the command line wins).
_TRAINING_DEFAULTS: dict[str, dict[str, Any]] = {
    # The release (docs/fidelity.md): AdamW at 2e-4 (2e-5 x lr_mult 10), weight decay 0.01 on every
    # trainable tensor (training_recipe), mmcv's linear warm-up over 1500 steps (from 1e-6 of the
    # rate) multiplying a poly decay (power 0.9) to 1e-6 over all 20k steps (schedule.py, selected by
    # "warmup_times_poly"), no gradient clipping (its optimizer_config is dict()), global batch 16
    # (split over processes by ``magicseg train``), 512 px.
    "paper": {
        "learning_rate": 2e-4,
        "weight_decay": 0.01,
        "warmup_steps": 1500,
        "lr_scheduler_type": "polynomial",
        "lr_scheduler_kwargs": {"lr_end": 1e-6, "power": 0.9, "warmup_ratio": 1e-6, "warmup_times_poly": True},
        "max_grad_norm": 0.0,
        "max_steps": 20_000,
        "logging_steps": 50,
        "save_steps": 2000,
        "eval_strategy": "steps",
        "eval_steps": 2000,
        "save_total_limit": 3,
    },
    # The tiny random model at 64 px: ~25 s of one CPU core. Chosen by measurement (benchmarks/
    # README.md, seeds 0-2): 600 steps at batch 8, lr 4e-3 decayed to 0 by a cosine, no warm-up:
    # held-out mIoU 0.64-0.66. The lr is a flat optimum with the decay (2e-3: 0.63-0.65, 1e-2:
    # 0.65-0.67); without it, 0.60-0.65 at 2e-3 and 0.55-0.60 at 4e-3. 300 steps: 0.60-0.62.
    # Batch 16: 0.67 for 1.6x the time. Measured with the Trainer's gradient clipping (1.0) and its
    # decay rule (norms and biases exempt), which tiny keeps (see _TRAINING_RECIPES).
    "tiny": {
        "learning_rate": 4e-3,
        "weight_decay": 0.01,
        "warmup_steps": 0,
        "lr_scheduler_type": "cosine",
        "max_steps": 600,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 8,
        "logging_steps": 50,
        "save_steps": 300,
        "eval_strategy": "no",
        "save_total_limit": 2,
    },
}
#: The paper's global batch size (per-device batch x processes x accumulation steps).
PAPER_GLOBAL_BATCH = 16


# Settings of ``magicseg train`` beyond TrainingArguments, per preset: where the released recipe and
# transformers' or torchvision's defaults differ, each a named option (docs/fidelity.md).
# - decay_norms_and_biases: weight decay on every trainable tensor (MagicSegTrainer).
# - crop_padding, cat_max_ratio, photometric_kind: the augmentation (training/transforms.py,
#   AugmentationSettings): "background" pads the crop with background labels and the mean colour,
#   "ignore" with ignored labels and black; cat_max_ratio 0.75 redraws a crop (up to 10 times) where
#   one class covers 75 % of it, 1.0 never; "mmseg" is mmseg's PhotoMetricDistortion, "color_jitter"
#   torchvision's ColorJitter.
# tiny keeps the settings its numbers (benchmarks/README.md) were measured with.
_TRAINING_RECIPES: dict[str, dict[str, Any]] = {
    "paper": {
        "decay_norms_and_biases": True,
        "crop_padding": "background",
        "cat_max_ratio": 0.75,
        "photometric_kind": "mmseg",
    },
    "tiny": {
        "decay_norms_and_biases": False,
        "crop_padding": "ignore",
        "cat_max_ratio": 1.0,
        "photometric_kind": "color_jitter",
    },
}


def training_recipe(preset: str) -> dict[str, Any]:
    """The preset's training settings that are not TrainingArguments (a copy)."""
    if preset not in _TRAINING_RECIPES:
        raise ModelLoadError(f"unknown preset {preset!r}; known presets: {', '.join(PRESETS)}")
    return dict(_TRAINING_RECIPES[preset])


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
