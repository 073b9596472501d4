"""The component assembler: a resolved :class:`GenerationConfig` -> the loaded parts of a run.

``generate()`` resolves its settings once (:meth:`GenerationConfig.resolved`) and hands the
resolved config here; this module is the one place that turns settings into objects:

* :func:`models_record` — which models the run loads (``generation.json``'s ``"models"``), and
  :func:`check_models` — whether each can be loaded, checked before anything is written;
* :func:`check_device` — whether the device exists here, and :func:`check_class_names` — whether
  every class name fits the loaded text encoders (both before anything is written);
* :func:`build_prompt_backend`, :func:`build_pair_generator`, :func:`build_annotator` — the
  prompt backend, the diffusion pipelines inside a
  :class:`~magicseg_hf.generation.images.PairImageGenerator`, and the detector + segmenter inside an
  :class:`~magicseg_hf.generation.annotate.Annotator`; :func:`build_components` builds all three
  and picks the counterfactual mode.

The parts themselves take what they need handed in (a pipeline, a detector, thresholds): none of
them reads a config or a preset.

Example:
    >>> config = GenerationConfig(classes=["cat"], preset="tiny").resolved()
    >>> parts = build_components(config, device="cpu")
    >>> parts.mode.name, type(parts.prompt_backend).__name__
    ('prompt', 'TemplatePromptBackend')
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magicseg_hf.errors import InputError
from magicseg_hf.families import DiffusionFamily, diffusion_model_info
from magicseg_hf.generation.annotate import (
    Annotator,
    Detector,
    GroundingDinoDetector,
    MMGroundingDinoDetector,
    Owlv2Detector,
    Sam2Segmenter,
    SegmentAnythingSegmenter,
    Segmenter,
    TransformersSamSegmenter,
    grounding_dino_text,
)
from magicseg_hf.generation.class_scores import ClassScorer
from magicseg_hf.generation.config import GenerationConfig
from magicseg_hf.generation.images import PairImageGenerator
from magicseg_hf.generation.modes import CounterfactualMode, counterfactual_mode
from magicseg_hf.generation.names import bare_name
from magicseg_hf.generation.prompts import (
    OpenAIPromptBackend,
    PromptBackend,
    TemplatePromptBackend,
    TransformersPromptBackend,
)
from magicseg_hf.licenses import loaded_commit, model_license
from magicseg_hf.loading import (
    check_model_available,
    load_causal_lm,
    load_clip_scorer,
    load_detector,
    load_diffusion_pipeline,
    load_segmenter,
)
from magicseg_hf.presets import TINY_SEGMENT_ANYTHING
from magicseg_hf.runtime import resolve_device

logger = logging.getLogger(__name__)

__all__ = [
    "Components",
    "ModelsRecord",
    "build_annotator",
    "build_class_scorer",
    "build_components",
    "build_pair_generator",
    "build_prompt_backend",
    "check_class_names",
    "check_device",
    "check_models",
    "diffusion_record",
    "models_record",
]

#: Role (``"diffusion_model"``, ...) -> ``{"id": ..., "revision": ...}`` of each model a run loads.
ModelsRecord = dict[str, dict[str, "str | None"]]


def _require_resolved(config: GenerationConfig) -> None:
    if not config.is_resolved():
        raise ValueError(
            "the component assembler needs a resolved config (got an unresolved one); pass config.resolved()"
        )


# ----------------------------------------------------------------------------------------------
# What the run loads, and whether it can
# ----------------------------------------------------------------------------------------------
def models_record(config: GenerationConfig) -> ModelsRecord:
    """Role -> ``{"id", "revision", "commit", "license"}`` of every model the run loads, as
    ``generation.json`` and the card record it.

    The inpainting model only where the counterfactual mode uses it, the prompt model only for
    the LLM backends; a segment-anything segmenter is recorded as its ``.pth`` file and model type
    (or the tiny twin). ``commit`` is the commit of the local Hub cache that the revision resolves
    to (None for ``tiny:`` twins, folders and uncached repos); ``license`` the licence's name
    (:func:`magicseg_hf.licenses.model_license`), since the models' licences bind the data.
    """
    _require_resolved(config)
    roles = ["diffusion_model", "detector_model"]
    if counterfactual_mode(config.counterfactual).uses_inpainting_model:
        roles.append("inpainting_model")
    if config.segmenter != "segment-anything":
        roles.append("segmenter_model")
    roles.append("class_score_model")
    if config.prompt_backend in ("transformers", "openai"):
        roles.append("prompt_model")
    record: ModelsRecord = {}
    for role in roles:
        model_id, revision = getattr(config, role), getattr(config, f"{role}_revision")
        commit = None if role == "prompt_model" and config.prompt_backend == "openai" else loaded_commit(model_id, revision)
        record[role] = {"id": model_id, "revision": revision, "commit": commit, "license": model_license(model_id, revision)[1]}
    if config.segmenter == "segment-anything":  # a .pth file and its architecture, or the tiny twin
        record["segmenter_model"] = (
            {"id": config.sam_checkpoint, "revision": config.sam_model_type, "commit": None,
             "license": model_license("facebook/sam-vit-")[1]}
            if config.sam_checkpoint
            else {"id": TINY_SEGMENT_ANYTHING, "revision": "tiny", "commit": None, "license": model_license(TINY_SEGMENT_ANYTHING)[1]}
        )
    return record


def diffusion_record(config: GenerationConfig) -> dict[str, Any]:
    """How the run's pairs are made, for ``generation.json``: the generator's family and pipeline
    classes, its kind of guidance, and what steers the counterfactual away from the classes —
    the negative prompt where the family has one and classifier-free guidance is on, otherwise
    the edited prompt alone (FLUX's distilled guidance takes no negative prompt)."""
    _require_resolved(config)
    info = diffusion_model_info(config.diffusion_model, config.diffusion_model_revision)
    family = info.family
    negative = family.uses_negative_prompt(config.guidance_scale)
    record: dict[str, Any] = {
        "family": family.name,
        "pipeline": info.pipeline_class,
        "guidance": family.guidance,
        "negative_prompt": negative,
        "counterfactual_steering": "edited prompt + class names as negative prompt" if negative else "edited prompt only",
    }
    if counterfactual_mode(config.counterfactual).uses_inpainting_model:
        inpainting = diffusion_model_info(config.inpainting_model, config.inpainting_model_revision, inpainting=True)
        record["inpainting_pipeline"] = inpainting.pipeline_class
        dedicated = inpainting.pipeline_class == family.inpainting[0] and family.inpainting_guidance_scale is not None
        record["inpainting_guidance_scale"] = family.inpainting_guidance_scale if dedicated else config.guidance_scale
    if not negative:
        reason = (
            f"{family.title} has distilled guidance and takes no negative prompt"
            if not family.negative_prompt
            else f"classifier-free guidance is off at --guidance-scale {config.guidance_scale}"
        )
        record["note"] = f"no negative prompt: {reason}; the counterfactual relies on the edited prompt alone"
    return record


def check_models(config: GenerationConfig, record: ModelsRecord) -> None:
    """Fail at once, before anything is written, when a model of ``record`` cannot be loaded.

    Raises:
        InputError: a segment-anything checkpoint that is missing, or none outside the tiny preset.
        ModelLoadError: a model folder that does not exist, or a Hub id that is neither cached nor
            reachable (see :func:`magicseg_hf.loading.check_model_available`).
    """
    if config.segmenter == "segment-anything":
        if config.sam_checkpoint and not Path(config.sam_checkpoint).expanduser().is_file():
            raise InputError(f"`sam_checkpoint` {config.sam_checkpoint!r}: no such file")
        if not config.sam_checkpoint and config.preset != "tiny":
            raise InputError("`segmenter` segment-anything needs `sam_checkpoint` (a .pth file) outside the tiny preset")
    for role, model in record.items():
        if role == "prompt_model" and config.prompt_backend == "openai":
            continue  # a model name on the endpoint, not a Hub id
        if role == "segmenter_model" and config.segmenter == "segment-anything":
            continue  # checked above: a file, not a Hub id
        check_model_available(model["id"], model["revision"], role.replace("_", " "))


def check_device(device: str | None) -> None:
    """Raise :class:`InputError` when ``device`` (``--device``) is not a device of this machine
    (:func:`magicseg_hf.runtime.resolve_device`: cpu, cuda, cuda:N or mps; CUDA or MPS where there
    is none, or ``cuda:N`` past the GPUs present, are refused). ``None`` (each process's own device,
    the way generation spells ``auto``) always passes."""
    if device is not None:
        resolve_device(device, auto=False)


def _shown(name: str, limit: int = 60) -> str:
    """``repr(name)``, cut to ``limit`` characters for a one-line message."""
    return repr(name) if len(name) <= limit else f"{name[:limit]!r}... ({len(name)} characters)"


def _token_counts(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Tokens of each text without special tokens."""
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def _text_limit(tokenizer: Any) -> int | None:
    """The tokenizer's ``model_max_length`` when it is a real bound (tokenizers without one report ~1e30)."""
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < 1_000_000 else None


def _longest_name_over(tokenizer: Any, names: Sequence[str]) -> tuple[int, int, int] | None:
    """(index, tokens, limit) of the name with the most tokens when it does not fit ``tokenizer``'s
    bound with the start and end tokens; None when every name fits or there is no real bound."""
    limit = _text_limit(tokenizer)
    if tokenizer is None or limit is None:
        return None
    counts = _token_counts(tokenizer, names)
    worst = max(range(len(names)), key=counts.__getitem__)
    return (worst, counts[worst], limit) if counts[worst] + 2 > limit else None


def check_class_names(parts: Components, vocabulary: Sequence[str], max_classes_per_prompt: int) -> None:
    """Refuse, before anything is written, a class name that the loaded text encoders cannot read.

    Counted with the loaded tokenizers, on the bare names (what prompts and detector texts use):

    * the diffusion pipeline's text encoder (``tokenizer.model_max_length``, 77 for CLIP): each
      name, with the start and end tokens, must fit in a prompt;
    * Grounding DINO (``config.max_text_len``, 256): the detector text of the ``k =
      max_classes_per_prompt`` names with the most tokens (``"a. b."``), with its two special
      tokens, must fit; a longer text does not truncate but fails inside the model;
    * OWLv2 (``tokenizer.model_max_length``, 16): each name, as one query, must fit.

    Raises:
        InputError: naming the longest class name, its token count and the encoder's bound.
    """
    names = [bare_name(name) for name in vocabulary]
    too_long = _longest_name_over(getattr(getattr(parts.images, "pipe", None), "tokenizer", None), names)
    if too_long is not None:
        worst, count, limit = too_long
        raise InputError(
            f"class name {_shown(vocabulary[worst])} is too long for the diffusion model's text encoder: "
            f"{count} tokens, at most {limit - 2} fit in a prompt; shorten it"
        )
    detector = parts.annotator.detector
    if isinstance(detector, GroundingDinoDetector):
        detector_kind = "mm-grounding-dino" if isinstance(detector, MMGroundingDinoDetector) else "grounding-dino"
        limit = int(getattr(detector.model.config, "max_text_len", 0) or 0) or _text_limit(detector.processor.tokenizer)
        if limit is None:
            return
        counts = _token_counts(detector.processor.tokenizer, [grounding_dino_text([n])[0] for n in names])
        order = sorted(range(len(names)), key=counts.__getitem__, reverse=True)
        k = min(max_classes_per_prompt, len(names))
        needed = sum(counts[i] for i in order[:k]) + 2
        if needed > limit:
            longest = order[0]
            raise InputError(
                f"class name {_shown(vocabulary[longest])} is too long for the {detector_kind} detector: "
                f"{counts[longest]} tokens, and a detector text of up to {k} class(es) needs {needed} of the "
                f"{limit} it reads; shorten the class names or lower `max_classes_per_prompt`"
            )
    elif isinstance(detector, Owlv2Detector):
        too_long = _longest_name_over(getattr(detector.processor, "tokenizer", None), names)
        if too_long is not None:
            worst, count, limit = too_long
            raise InputError(
                f"class name {_shown(vocabulary[worst])} is too long for the owlv2 detector: {count} tokens, "
                f"at most {limit - 2} fit in one of its queries; shorten it"
            )


# ----------------------------------------------------------------------------------------------
# The parts
# ----------------------------------------------------------------------------------------------
def build_prompt_backend(config: GenerationConfig, device: str) -> PromptBackend:
    """The prompt backend of ``config.prompt_backend`` (for ``transformers``, with its LLM loaded
    on ``device``)."""
    _require_resolved(config)
    if config.prompt_backend == "template":
        return TemplatePromptBackend()
    if config.prompt_backend == "transformers":
        model, tokenizer = load_causal_lm(
            config.prompt_model, config.prompt_model_revision, dtype=config.dtype, device=device
        )
        return TransformersPromptBackend(model, tokenizer, prompts_per_request=config.prompts_per_request)
    return OpenAIPromptBackend(
        base_url=config.openai_base_url,
        model=config.prompt_model,
        prompts_per_request=config.prompts_per_request,
    )


def build_pair_generator(config: GenerationConfig, device: str) -> PairImageGenerator:
    """The text-to-image pipeline (and the inpainting one, where the mode uses it) on ``device``,
    in a :class:`PairImageGenerator` with the run's steps, guidance and size."""
    _require_resolved(config)
    pipe = load_diffusion_pipeline(
        config.diffusion_model,
        config.diffusion_model_revision,
        dtype=config.dtype,
        device=device,
        safety_checker=config.safety_checker,
    )
    inpaint_pipe = None
    if counterfactual_mode(config.counterfactual).uses_inpainting_model:
        inpaint_pipe = load_diffusion_pipeline(
            config.inpainting_model,
            config.inpainting_model_revision,
            inpainting=True,
            dtype=config.dtype,
            device=device,
            safety_checker=config.safety_checker,
        )
    family = diffusion_model_info(config.diffusion_model, config.diffusion_model_revision).family
    return PairImageGenerator(
        pipe,
        inpaint_pipe=inpaint_pipe,
        inpaint_guidance_scale=inpainting_guidance(family, inpaint_pipe),
        num_inference_steps=config.num_inference_steps,
        guidance_scale=config.guidance_scale,
        height=config.height,
        width=config.width,
        family=family,
        max_sequence_length=config.max_sequence_length,
    )


def inpainting_guidance(family: DiffusionFamily, inpaint_pipe: Any) -> float | None:
    """The guidance scale of ``inpaint_pipe``: the family's dedicated inpainting model's own (FLUX.1
    Fill runs at 30) when it is one, else None (the text-to-image guidance)."""
    if inpaint_pipe is None or family.inpainting_guidance_scale is None:
        return None
    return family.inpainting_guidance_scale if type(inpaint_pipe).__name__ == family.inpainting[0] else None


def build_annotator(config: GenerationConfig, device: str) -> Annotator:
    """The detector and segmenter of ``config`` loaded on ``device`` (in ``config.dtype``), with the
    run's thresholds and box cap, in an :class:`Annotator`."""
    _require_resolved(config)
    model, processor = load_detector(
        config.detector, config.detector_model, config.detector_model_revision, device=device, dtype=config.dtype
    )
    detector_class: type = {
        "owlv2": Owlv2Detector,
        "mm-grounding-dino": MMGroundingDinoDetector,
        "grounding-dino": GroundingDinoDetector,
    }[config.detector]
    detector: Detector = detector_class(model, processor, device)

    sam, sam_processor = load_segmenter(
        config.segmenter,
        config.segmenter_model,
        config.segmenter_model_revision,
        sam_checkpoint=config.sam_checkpoint,
        sam_model_type=config.sam_model_type,
        device=device,
        dtype=config.dtype,
    )
    segmenter: Segmenter
    if config.segmenter == "segment-anything":
        segmenter = SegmentAnythingSegmenter(sam, device)
    elif config.segmenter == "sam2":
        segmenter = Sam2Segmenter(sam, sam_processor, device)
    else:
        segmenter = TransformersSamSegmenter(sam, sam_processor, device)
    logger.info(
        "annotator: detector %s %s, segmenter %s %s (box >= %s, text >= %s)",
        config.detector, config.detector_model, config.segmenter, config.sam_checkpoint or config.segmenter_model,
        config.box_threshold, config.text_threshold,
    )
    return Annotator(
        detector, segmenter, config.box_threshold, config.text_threshold, max_detections=config.max_boxes
    )


def build_class_scorer(config: GenerationConfig, device: str) -> ClassScorer:
    """The CLIP of ``config.class_score_model`` on ``device`` (in ``config.dtype``) in a
    :class:`ClassScorer`: it fills the ``class_scores`` column whether or not the check drops pairs."""
    _require_resolved(config)
    model, processor = load_clip_scorer(
        config.class_score_model, config.class_score_model_revision, device=device, dtype=config.dtype
    )
    return ClassScorer(model, processor, device)


@dataclass
class Components:
    """The loaded parts of a run, built once per process by :func:`build_components`."""

    prompt_backend: PromptBackend
    images: PairImageGenerator
    annotator: Annotator
    mode: CounterfactualMode
    class_scorer: ClassScorer


def build_components(config: GenerationConfig, device: str) -> Components:
    """Every part of a run from its resolved config, models loaded on ``device``.

    Raises:
        ValueError: ``config`` is not resolved (call :meth:`GenerationConfig.resolved` first).
        ModelLoadError: a model cannot be loaded.
    """
    _require_resolved(config)
    return Components(
        prompt_backend=build_prompt_backend(config, device),
        images=build_pair_generator(config, device),
        annotator=build_annotator(config, device),
        mode=counterfactual_mode(config.counterfactual),
        class_scorer=build_class_scorer(config, device),
    )
