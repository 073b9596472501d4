"""`GenerationConfig`: every setting of a generation run, in one dataclass.

The CLI flags of ``magicseg generate``, the ``MagicSeg`` dataset-builder config and the
``generation.json`` written beside the data are all derived from the fields below (each
field's ``metadata["help"]`` is its ``--help`` text), so there is one list of settings.

Fields left at ``None`` take the preset's value when the config is resolved
(:meth:`GenerationConfig.resolved`). ``generate()`` resolves its config once, on entry; the
resolved config is what the component assembler builds from and what ``generation.json`` records.
This module reads only the preset tables (:mod:`magicseg_hf.presets`): importing it, or resolving a
config, imports no model library.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from magicseg_hf.errors import InputError
from magicseg_hf.presets import PRESETS, generation_defaults, models_for

COUNTERFACTUAL_MODES = ("prompt", "inpaint", "paper")
PROMPT_BACKENDS = ("template", "transformers", "openai")
DETECTORS = ("grounding-dino", "owlv2")
SEGMENTERS = ("transformers", "segment-anything")
DTYPES = ("auto", "float32", "float16", "bfloat16")


def _f(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field carrying its CLI help text (and optional CLI ``choices``/``nargs``)."""
    metadata = {"help": help, **extra}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class GenerationConfig:
    """Every setting of ``generate()``; ``None`` means "the preset's value"."""

    # --- what to generate -------------------------------------------------------------
    classes: list[str] | None = _f(None, "Class names to generate, e.g. --classes cat dog.", nargs="+")
    vocabulary: str | None = _f(
        None, "A shipped vocabulary (lvis, voc, context, coco) or a text file with one class per line."
    )
    num_pairs: int = _f(8, "Number of rows (image pairs) to write.")
    max_attempts: int | None = _f(None, "Upper bound on attempts; default 4 x --num-pairs.")
    seed: int = _f(0, "Master seed: attempt k uses a seed derived from (seed, k).")
    max_classes_per_prompt: int = _f(2, "Each prompt names 1..this many classes (paper: 1-2).")
    preset: str = _f("paper", "Component set: 'paper' (real checkpoints) or 'tiny' (random, offline).",
                     choices=PRESETS)

    # --- prompts ------------------------------------------------------------------------
    prompt_backend: str | None = _f(
        None, "How scene prompts are written: template (offline), transformers (local LLM), openai.",
        choices=PROMPT_BACKENDS,
    )
    prompt_model: str | None = _f(None, "LLM for --prompt-backend transformers/openai (Hub id or folder).")
    prompt_model_revision: str | None = _f(None, "Revision of --prompt-model.")
    openai_base_url: str | None = _f(
        None, "OpenAI-compatible endpoint; the key is read from OPENAI_API_KEY only."
    )
    prompts_per_request: int = _f(10, "Scene descriptions asked of the LLM per request (paper: 10).")

    # --- diffusion ------------------------------------------------------------------------
    diffusion_model: str | None = _f(None, "Text-to-image Stable Diffusion model (Hub id or folder).")
    diffusion_model_revision: str | None = _f(None, "Revision of --diffusion-model.")
    inpainting_model: str | None = _f(None, "Inpainting model for --counterfactual inpaint.")
    inpainting_model_revision: str | None = _f(None, "Revision of --inpainting-model.")
    counterfactual: str = _f(
        "prompt",
        "Counterfactual mode: prompt (same noise, classes removed), inpaint (repaint the "
        "positive's mask), paper (the released code: independent sample, class -> 'nothing').",
        choices=COUNTERFACTUAL_MODES,
    )
    num_inference_steps: int | None = _f(None, "Denoising steps.")
    guidance_scale: float = _f(7.5, "Classifier-free guidance scale.")
    height: int | None = _f(None, "Image height in pixels (multiple of 8).")
    width: int | None = _f(None, "Image width in pixels (multiple of 8).")
    safety_checker: bool = _f(True, "Keep the pipeline's safety checker (blank images are dropped).")

    # --- annotation -------------------------------------------------------------------------
    detector: str = _f("grounding-dino", "Open-vocabulary detector.", choices=DETECTORS)
    detector_model: str | None = _f(None, "Detector checkpoint (Hub id or folder).")
    detector_model_revision: str | None = _f(None, "Revision of --detector-model.")
    segmenter: str = _f("transformers", "SAM backend: transformers SamModel or segment-anything.",
                        choices=SEGMENTERS)
    segmenter_model: str | None = _f(None, "SAM checkpoint for the transformers backend (Hub id or folder).")
    segmenter_model_revision: str | None = _f(None, "Revision of --segmenter-model.")
    sam_checkpoint: str | None = _f(None, "segment-anything .pth file (loaded with weights_only=True).")
    sam_model_type: str = _f("vit_h", "segment-anything model type for --sam-checkpoint.")
    box_threshold: float | None = _f(None, "Minimum detector box score.")
    text_threshold: float | None = _f(None, "Minimum score of the matched class text (Grounding DINO).")
    max_boxes: int = _f(
        50, "Keep at most this many detections per image, highest scores first (bounds SAM's memory)."
    )
    min_mask_area: float | None = _f(None, "Drop a pair whose labelled area is below this fraction of the image.")
    max_mask_area: float | None = _f(None, "Drop a pair whose labelled area is above this fraction of the image.")
    counterfactual_threshold: float | None = _f(
        None, "Drop a pair whose counterfactual still scores above this for a target class."
    )

    # --- execution ---------------------------------------------------------------------------
    batch_size: int = _f(4, "Pairs per diffusion batch (a batch never crosses a shard).")
    shard_size: int = _f(64, "Attempts per shard (one parquet file per shard).")
    dtype: str = _f("auto", "Model dtype: auto (fp16 on CUDA, fp32 on CPU), float32, float16, bfloat16.",
                    choices=DTYPES)
    device: str | None = _f(None, "Device (default: cuda for this process if available, else cpu).")

    # ------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`InputError` with one clear line when a setting is unusable."""
        if not self.classes and not self.vocabulary:
            raise InputError("no classes given: pass --classes NAME [NAME ...] or --vocabulary lvis|voc|context|coco|FILE")
        if self.classes is not None and any(not c or not c.strip() for c in self.classes):
            raise InputError(f"empty class name in --classes (got {self.classes!r})")
        if self.num_pairs <= 0:
            raise InputError(f"--num-pairs must be a positive integer (got {self.num_pairs})")
        if self.max_attempts is not None and self.max_attempts < self.num_pairs:
            raise InputError(
                f"--max-attempts must be at least --num-pairs (got {self.max_attempts} < {self.num_pairs})"
            )
        for name in ("batch_size", "shard_size", "max_classes_per_prompt", "prompts_per_request", "max_boxes"):
            if getattr(self, name) <= 0:
                raise InputError(f"--{name.replace('_', '-')} must be positive (got {getattr(self, name)})")
        if self.num_inference_steps is not None and self.num_inference_steps <= 0:
            raise InputError(f"--num-inference-steps must be positive (got {self.num_inference_steps})")
        for name in ("height", "width"):
            value = getattr(self, name)
            if value is not None and (value <= 0 or value % 8):
                raise InputError(f"--{name} must be a positive multiple of 8 (got {value})")
        low = 0.0 if self.min_mask_area is None else self.min_mask_area
        high = 1.0 if self.max_mask_area is None else self.max_mask_area
        if not 0.0 <= low < high <= 1.0:
            raise InputError(f"need 0 <= --min-mask-area < --max-mask-area <= 1 (got {low}, {high})")
        choices = {
            "counterfactual": COUNTERFACTUAL_MODES,
            "detector": DETECTORS,
            "segmenter": SEGMENTERS,
            "dtype": DTYPES,
            "preset": PRESETS,
        }
        if self.prompt_backend is not None:
            choices["prompt_backend"] = PROMPT_BACKENDS
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InputError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)} (got {getattr(self, name)!r})")
        if self.prompt_backend == "openai" and not self.openai_base_url:
            raise InputError(
                "--prompt-backend openai needs --openai-base-url (and OPENAI_API_KEY in the environment)"
            )

    def resolved(self) -> GenerationConfig:
        """A validated copy with every ``None`` preset-dependent field filled from the preset.

        The detector checkpoint is the preset's one for the chosen ``detector``; ``max_attempts``
        defaults to ``4 * num_pairs``. Resolving a resolved config changes nothing.

        Raises:
            InputError: a setting is unusable (see :meth:`validate`).
        """
        self.validate()
        defaults = generation_defaults(self.preset)
        if self.detector == "owlv2":
            defaults["detector_model"], defaults["detector_model_revision"] = models_for(self.preset)["owlv2_model"]
        values = self.to_dict()
        for key, value in defaults.items():
            if values.get(key) is None:
                values[key] = value
        if values["max_attempts"] is None:
            values["max_attempts"] = 4 * self.num_pairs
        return GenerationConfig(**values)

    def is_resolved(self) -> bool:
        """Whether every preset-dependent field is already filled (resolving would change nothing)."""
        return self == self.resolved()

    # --- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GenerationConfig:
        """Build from a dict, rejecting unknown keys with the list of known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown generation setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


def generation_fields() -> list[dataclasses.Field]:
    """The dataclass fields, in declaration order (used to derive CLI flags and builder configs)."""
    return list(dataclasses.fields(GenerationConfig))
