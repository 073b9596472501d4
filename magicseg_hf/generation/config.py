"""`GenerationConfig`: every setting of a generation run, in one dataclass.

The CLI flags of ``magicseg generate``, the ``MagicSeg`` dataset-builder config and the
``generation.json`` written beside the data are all derived from the fields below (each
field's ``metadata["help"]`` is its ``--help`` text), so there is one list of settings.

Fields left at ``None`` take the preset's value when the config is resolved
(:meth:`GenerationConfig.resolved`). ``generate()`` resolves its config once, on entry; the
resolved config is what the component assembler builds from and what ``generation.json`` records.
This module reads only the preset tables (:mod:`magicseg_hf.presets`) and the URL rules of
:mod:`magicseg_hf.hub_access`: importing it, or resolving a config, imports no model library.

Checks: every field's type when the config is made (:func:`check_field_types`: ``classes="cat"``
or ``num_pairs=2.5`` is an :class:`InputError` naming the field), every bound when it is resolved
(:meth:`GenerationConfig.validate`; the bounds are in each flag's help). Both run before
``generate()`` writes anything.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from magicseg_hf.errors import InputError
from magicseg_hf.families import check_pairing, diffusion_model_info
from magicseg_hf.hub_access import url_has_credentials
from magicseg_hf.presets import (
    PRESETS,
    detector_model_for,
    generation_defaults,
    inpainting_model_for,
    is_tiny,
    segmenter_model_for,
)
from magicseg_hf.runtime import DTYPES

COUNTERFACTUAL_MODES = ("prompt", "inpaint", "paper")
#: Where the pairs come from: the diffusion models, or drawn scenes (:mod:`magicseg_hf.generation.procedural`).
SOURCES = ("diffusion", "procedural")
#: Picture side of --source procedural when --height/--width are not given.
PROCEDURAL_SIZE = 64
#: Smallest side of a procedural picture that still shows an object's parts.
PROCEDURAL_MIN_SIZE = 32
#: Counterfactual modes that load the inpainting model.
INPAINTING_MODES = ("inpaint",)
PROMPT_BACKENDS = ("template", "transformers", "openai")
DETECTORS = ("grounding-dino", "mm-grounding-dino", "owlv2")
SEGMENTERS = ("transformers", "sam2", "segment-anything")

#: Most rows one run may be asked for (a larger --num-pairs is refused up front, not run until killed).
MAX_NUM_PAIRS = 10_000_000
#: Most attempts one run may make (--max-attempts).
MAX_ATTEMPTS = 1_000_000_000
#: Most classes one prompt may name (a label map holds ids 1..254; 255 is "unknown").
MAX_CLASSES_PER_PROMPT = 254
#: Most denoising steps (diffusers schedulers are trained on 1000 timesteps).
MAX_INFERENCE_STEPS = 1000


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
    num_pairs: int = _f(8, f"Number of rows (image pairs) to write, 1..{MAX_NUM_PAIRS:,}.")
    max_attempts: int | None = _f(
        None, f"Upper bound on attempts, --num-pairs..{MAX_ATTEMPTS:,}; default 4 x --num-pairs."
    )
    seed: int = _f(0, "Master seed: attempt k uses a seed derived from (seed, k).")
    max_classes_per_prompt: int = _f(
        2, f"Each prompt names 1..this many classes (paper: 1-2; at most {MAX_CLASSES_PER_PROMPT})."
    )
    source: str = _f(
        "diffusion", "Where the pairs come from: diffusion (prompts -> diffusion model -> detector + SAM) or "
        f"procedural (drawn scenes of named objects with exact labels, no model; {PROCEDURAL_SIZE} px by default).",
        choices=SOURCES,
    )
    context_bias: float = _f(
        0.0, "--source procedural: probability in [0, 1] that an object sits on its class's own context "
        "texture (0: the context is independent of the class)."
    )
    preset: str = _f(
        "paper", "Component set: 'paper' (the published models), 'quality' (current models: FLUX.1, "
        "MM-Grounding-DINO, SAM 2) or 'tiny' (random, offline).",
        choices=PRESETS,
    )

    # --- prompts ------------------------------------------------------------------------
    prompt_backend: str | None = _f(
        None, "How scene prompts are written: template (offline), transformers (local LLM), openai.",
        choices=PROMPT_BACKENDS,
    )
    prompt_model: str | None = _f(None, "LLM for --prompt-backend transformers/openai (Hub id or folder).")
    prompt_model_revision: str | None = _f(None, "Revision of --prompt-model.")
    openai_base_url: str | None = _f(
        None, "OpenAI-compatible endpoint, an http(s) URL without credentials; the key is read from OPENAI_API_KEY only."
    )
    prompts_per_request: int = _f(10, "Scene descriptions asked of the LLM per request (paper: 10).")

    # --- diffusion ------------------------------------------------------------------------
    diffusion_model: str | None = _f(
        None, "Text-to-image diffusers pipeline: Stable Diffusion 1.x/2.x, SDXL, SD3/3.5 or FLUX.1 "
        "(Hub id, folder, or tiny:stable-diffusion|sdxl|sd3|flux); its family sets the defaults below."
    )
    diffusion_model_revision: str | None = _f(None, "Revision of --diffusion-model.")
    inpainting_model: str | None = _f(
        None, "Inpainting pipeline for --counterfactual inpaint, of the --diffusion-model's family "
        "(SD inpainting, SDXL inpainting, SD3, FLUX Fill); default: the preset's for that family."
    )
    inpainting_model_revision: str | None = _f(None, "Revision of --inpainting-model.")
    counterfactual: str = _f(
        "prompt",
        "Counterfactual mode: prompt (same noise, classes removed), inpaint (repaint the "
        "positive's mask), paper (the released code: independent sample, class -> 'nothing').",
        choices=COUNTERFACTUAL_MODES,
    )
    num_inference_steps: int | None = _f(
        None, f"Denoising steps, 1..{MAX_INFERENCE_STEPS} (default: the generator family's, e.g. SD 50, FLUX 28)."
    )
    guidance_scale: float | None = _f(
        None, "Guidance scale, a finite number >= 0 (default: the family's, e.g. SD 7.5, SDXL 5, FLUX 3.5); "
        "for classifier-free guidance <= 1 turns it off, and with it the negative prompt."
    )
    height: int | None = _f(None, "Image height in pixels, a multiple of 8 (16 for SD3/FLUX); default: the family's.")
    width: int | None = _f(None, "Image width in pixels, a multiple of 8 (16 for SD3/FLUX); default: the family's.")
    max_sequence_length: int | None = _f(
        None, "Text tokens of the T5 encoder of SD3/FLUX, 1..512 (default: the family's, SD3 256, FLUX 512); "
        "not used by SD/SDXL."
    )
    safety_checker: bool = _f(True, "Keep the pipeline's safety checker (blank images are dropped).")

    # --- annotation -------------------------------------------------------------------------
    detector: str | None = _f(
        None, "Open-vocabulary detector.",
        choices=DETECTORS,
    )
    detector_model: str | None = _f(None, "Detector checkpoint (Hub id or folder).")
    detector_model_revision: str | None = _f(None, "Revision of --detector-model.")
    segmenter: str | None = _f(
        None, "Segmenter: transformers (SAM), sam2 (SAM 2) or segment-anything (the SAM package).",
        choices=SEGMENTERS,
    )
    segmenter_model: str | None = _f(None, "SAM or SAM 2 checkpoint (Hub id or folder) for --segmenter transformers/sam2.")
    segmenter_model_revision: str | None = _f(None, "Revision of --segmenter-model.")
    sam_checkpoint: str | None = _f(None, "segment-anything .pth file (loaded with weights_only=True).")
    sam_model_type: str = _f("vit_h", "segment-anything model type for --sam-checkpoint.")
    box_threshold: float | None = _f(None, "Minimum detector box score, in [0, 1].")
    text_threshold: float | None = _f(None, "Minimum score of the matched class text (Grounding DINO), in [0, 1].")
    max_boxes: int = _f(
        50, "Keep at most this many detections per image, highest scores first (bounds SAM's memory)."
    )
    min_mask_area: float | None = _f(
        None, "Drop a pair whose labelled area is below this fraction of the image (0 <= min < max <= 1)."
    )
    max_mask_area: float | None = _f(None, "Drop a pair whose labelled area is above this fraction of the image.")
    class_score_model: str | None = _f(
        None, "CLIP model that scores each class's masked crop against its name (the class_scores column)."
    )
    class_score_model_revision: str | None = _f(None, "Revision of --class-score-model.")
    class_score_threshold: float | None = _f(
        None, "Drop a pair where a labelled class's masked crop scores below this CLIP cosine similarity "
        "with its name, in [-1, 1]; -1 turns the check off."
    )
    counterfactual_threshold: float | None = _f(
        None, "Drop a pair whose counterfactual still scores above this for a target class, >= 0 "
        "(scores lie in [0, 1]: 1 or more keeps every pair)."
    )

    # --- execution ---------------------------------------------------------------------------
    batch_size: int = _f(4, "Pairs per diffusion batch (a batch never crosses a shard).")
    shard_size: int = _f(64, "Attempts per shard (one parquet file per shard).")
    dtype: str = _f("auto", "Model dtype: auto (fp16 on CUDA, fp32 on CPU), float32, float16, bfloat16.",
                    choices=DTYPES)
    device: str | None = _f(
        None, "Device: cpu, cuda, cuda:N or mps, checked before anything is written "
        "(default: cuda for this process if available, else cpu)."
    )

    # ------------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        """Check every field's type at construction (:func:`check_field_types`)."""
        check_field_types(self)

    def validate(self) -> None:
        """Raise :class:`InputError` with one clear line when a setting is unusable.

        Bounds: ``1 <= num_pairs <= MAX_NUM_PAIRS``; ``num_pairs <= max_attempts <= MAX_ATTEMPTS``;
        box and text thresholds in [0, 1], the counterfactual threshold >= 0; ``guidance_scale``
        >= 0; ``0 <= min_mask_area < max_mask_area <= 1``; every float finite; heights and widths
        positive multiples of 8; an ``openai_base_url``
        that is an http(s) URL without credentials.
        """
        if not self.classes and not self.vocabulary:
            raise InputError("no classes given: pass `classes` NAME [NAME ...] or `vocabulary` lvis|voc|context|coco|FILE")
        if self.classes is not None and any(not c or not c.strip() for c in self.classes):
            raise InputError(f"empty class name in `classes` (got {self.classes!r})")
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(f"{_flag(item.name)} must be a finite number (got {value})")
        if not 1 <= self.num_pairs <= MAX_NUM_PAIRS:
            raise InputError(f"`num_pairs` must be a positive integer of at most {MAX_NUM_PAIRS:,} (got {self.num_pairs})")
        if self.max_attempts is not None and self.max_attempts < self.num_pairs:
            raise InputError(
                f"`max_attempts` must be at least `num_pairs` (got {self.max_attempts} < {self.num_pairs})"
            )
        if self.max_attempts is not None and self.max_attempts > MAX_ATTEMPTS:
            raise InputError(f"`max_attempts` must be at most {MAX_ATTEMPTS:,} (got {self.max_attempts})")
        for name in ("batch_size", "shard_size", "max_classes_per_prompt", "prompts_per_request", "max_boxes"):
            if getattr(self, name) <= 0:
                raise InputError(f"{_flag(name)} must be positive (got {getattr(self, name)})")
        if self.max_classes_per_prompt > MAX_CLASSES_PER_PROMPT:
            raise InputError(
                f"`max_classes_per_prompt` must be at most {MAX_CLASSES_PER_PROMPT} (got {self.max_classes_per_prompt})"
            )
        if self.num_inference_steps is not None and not 1 <= self.num_inference_steps <= MAX_INFERENCE_STEPS:
            raise InputError(
                f"`num_inference_steps` must be in 1..{MAX_INFERENCE_STEPS} (got {self.num_inference_steps})"
            )
        for name in ("height", "width"):
            value = getattr(self, name)
            if value is not None and (value <= 0 or value % 8):
                raise InputError(f"{_flag(name)} must be a positive multiple of 8 (got {value})")
        if self.max_sequence_length is not None and not 1 <= self.max_sequence_length <= 512:
            raise InputError(f"`max_sequence_length` must be in 1..512 (got {self.max_sequence_length})")
        if self.class_score_threshold is not None and not -1.0 <= self.class_score_threshold <= 1.0:
            raise InputError(
                f"`class_score_threshold` must be in [-1, 1] (got {self.class_score_threshold}): it is a cosine "
                "similarity; -1 turns the check off"
            )
        if self.guidance_scale is not None and self.guidance_scale < 0:
            raise InputError(f"`guidance_scale` must be >= 0 (got {self.guidance_scale})")
        for name in ("box_threshold", "text_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise InputError(f"{_flag(name)} must be in [0, 1] (got {value})")
        if self.counterfactual_threshold is not None and self.counterfactual_threshold < 0:
            raise InputError(
                f"`counterfactual_threshold` must be >= 0 (got {self.counterfactual_threshold}): scores lie in "
                "[0, 1], so a negative threshold would drop every pair"
            )
        low = 0.0 if self.min_mask_area is None else self.min_mask_area
        high = 1.0 if self.max_mask_area is None else self.max_mask_area
        if not 0.0 <= low < high <= 1.0:
            raise InputError(f"need 0 <= `min_mask_area` < `max_mask_area` <= 1 (got {low}, {high})")
        if not math.isfinite(self.context_bias) or not 0.0 <= self.context_bias <= 1.0:
            raise InputError(f"`context_bias` must be a probability in [0, 1] (got {self.context_bias})")
        if self.context_bias and self.source != "procedural":
            raise InputError(f"`context_bias` applies to `source` procedural (got `source` {self.source})")
        if self.source == "procedural":
            for name in ("height", "width"):
                value = getattr(self, name)
                if value is not None and value < PROCEDURAL_MIN_SIZE:
                    raise InputError(f"`{name}` must be at least {PROCEDURAL_MIN_SIZE} for `source` procedural "
                                     f"(got {value})")
            if self.height is not None and self.width is not None and self.height != self.width:
                raise InputError(f"`source` procedural draws square pictures: `height` must equal `width` "
                                 f"(got {self.height} x {self.width})")
        choices = {
            "source": SOURCES,
            "counterfactual": COUNTERFACTUAL_MODES,
            "dtype": DTYPES,
            "preset": PRESETS,
        }
        optional_choices = {"prompt_backend": PROMPT_BACKENDS, "detector": DETECTORS, "segmenter": SEGMENTERS}
        choices.update({name: allowed for name, allowed in optional_choices.items() if getattr(self, name) is not None})
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InputError(f"{_flag(name)} must be one of {', '.join(allowed)} (got {getattr(self, name)!r})")
        if self.prompt_backend == "openai" and not self.openai_base_url:
            raise InputError(
                "`prompt_backend` openai needs `openai_base_url` (and OPENAI_API_KEY in the environment)"
            )
        if self.openai_base_url is not None:
            check_base_url(self.openai_base_url)
        if self.device is not None and not self.device.strip():
            raise InputError(f"`device` must name a device such as cpu, cuda or cuda:0 (got {self.device!r})")

    def _fill_defaults(self, values: dict[str, Any]) -> dict[str, Any]:
        """Fill the ``None`` preset- and family-dependent fields of ``values`` in place, in the order
        they depend on each other; returns every default that applied (field -> value).

        Order: the preset's own values (generator, prompt and class-check models, thresholds, the
        detector and segmenter kinds); the preset's checkpoint of the chosen detector and segmenter
        kind; the generator's family defaults (steps, guidance, size, text length; small ones
        under the ``tiny`` preset or for a ``tiny:`` generator); the inpainting model of the generator's family. A revision default
        applies only where the model is the default one.
        """
        preset = values["preset"]
        used: dict[str, Any] = {}

        def fill(role: str, default: Any) -> None:
            used[role] = default
            if values.get(role) is None:
                values[role] = default

        def fill_model(role: str, model: tuple[str, str | None]) -> None:
            fill(role, model[0])
            if values[role] == model[0]:
                fill(f"{role}_revision", model[1])

        for key, value in generation_defaults(preset).items():
            if key.endswith("_model_revision"):
                continue
            if key.endswith("_model"):
                fill_model(key, (value, generation_defaults(preset)[f"{key}_revision"]))
            else:
                fill(key, value)
        fill_model("detector_model", detector_model_for(preset, values["detector"]))
        fill_model("segmenter_model", segmenter_model_for(preset, values["segmenter"]))
        if values.get("source") == "procedural":  # drawn pictures: their own size, not the generator's
            fill("height", PROCEDURAL_SIZE)
            fill("width", PROCEDURAL_SIZE)
        info = diffusion_model_info(values["diffusion_model"], values["diffusion_model_revision"])
        small = preset == "tiny" or is_tiny(values["diffusion_model"])
        for key, value in info.family.defaults(tiny=small).items():
            if values.get("source") == "procedural" and key in ("height", "width"):
                continue
            fill(key, value)
        fill_model(
            "inpainting_model",
            inpainting_model_for(preset, info.family.name, info.family.tiny_inpainting_id, values["diffusion_model"]),
        )
        return used

    def resolved(self) -> GenerationConfig:
        """A validated copy with every ``None`` preset-dependent field filled.

        From the preset: the models, thresholds and the detector/segmenter kinds, the checkpoint of
        the chosen kind; from the generator's family (:mod:`magicseg_hf.families`, read from the
        model's ``model_index.json`` unless it is a ``tiny:`` twin or a known checkpoint): steps,
        guidance, size and T5 text length (small ones under the ``tiny`` preset or for a ``tiny:``
        generator), and the inpainting model. ``max_attempts`` defaults to
        ``4 * num_pairs``. Resolving a resolved config changes nothing.

        Raises:
            InputError: a setting is unusable (see :meth:`validate`), the generator is not of a
                supported family, the inpainting model is of another family than the generator,
                or a size or text length does not fit the family.
            ModelLoadError: the generator's ``model_index.json`` cannot be read.
        """
        self.validate()
        values = self.to_dict()
        self._fill_defaults(values)
        if values["max_attempts"] is None:
            values["max_attempts"] = min(4 * self.num_pairs, MAX_ATTEMPTS)
        config = GenerationConfig(**values)
        config._check_family()
        return config

    def _check_family(self) -> None:
        """The checks that need the generator's family (on a filled config)."""
        info = diffusion_model_info(self.diffusion_model, self.diffusion_model_revision)
        family = info.family
        for name in ("height", "width"):
            value = getattr(self, name)
            if value % family.size_multiple:
                raise InputError(
                    f"{_flag(name)} must be a multiple of {family.size_multiple} for a {family.title} generator (got {value})"
                )
        if self.max_sequence_length is not None and family.max_sequence_length is None:
            raise InputError(
                f"`max_sequence_length` applies to generators with a T5 text encoder (SD3, FLUX); "
                f"{self.diffusion_model!r} is {family.title} (got {self.max_sequence_length})"
            )
        if self.counterfactual in INPAINTING_MODES:
            inpainting = diffusion_model_info(self.inpainting_model, self.inpainting_model_revision, inpainting=True)
            check_pairing(info, inpainting, self.diffusion_model, self.inpainting_model)

    def unresolved(self) -> GenerationConfig:
        """A copy with every preset- or family-dependent field that holds its default (and a
        ``max_attempts`` that is the default multiple) back at ``None``: the settings a user gave.

        ``unresolved().resolved()`` equals ``resolved()``; it is how saved settings are combined with
        flags given on resume (:func:`settings_for_resume`), so that a changed ``--preset`` or
        ``--num-pairs`` takes its own defaults instead of the saved ones.
        """
        values = self.resolved().to_dict()
        defaults = self._fill_defaults(dict(values))
        for key, default in defaults.items():
            if values.get(key) == default:
                values[key] = None
        if values["max_attempts"] == min(4 * self.num_pairs, MAX_ATTEMPTS):
            values["max_attempts"] = None
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


def settings_for_resume(saved: dict[str, Any], given: dict[str, Any]) -> GenerationConfig:
    """The settings of a resumed run: the ``saved`` settings (``generation.json``'s ``"config"``)
    with the ``given`` ones (flags named on the command line) on top.

    Saved values that came from the saved preset are left to resolve again, so a given
    ``--preset`` (or ``--detector``, ``--num-pairs``) brings its own defaults.

    Raises:
        InputError: the saved settings name an unknown field or hold a value of the wrong type.
    """
    base = GenerationConfig.from_dict(saved).unresolved().to_dict()
    return GenerationConfig.from_dict({**base, **given})


# ----------------------------------------------------------------------------------------------
# Checks of single values
# ----------------------------------------------------------------------------------------------
def _flag(name: str) -> str:
    """How a message names a setting: the parameter in backticks (the command line writes its flag)."""
    return f"`{name}`"


_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "True or False", "str": "a string",
               "list[str]": "a list of class names"}


def _annotation(item: dataclasses.Field) -> tuple[str, bool]:
    """(base type name, whether None is allowed) of a field annotated like ``int | None``."""
    parts = [part.strip() for part in str(item.type).split("|")]
    return parts[0], "None" in parts


def check_field_types(config: Any) -> None:
    """Raise :class:`InputError` naming the first field of ``config`` whose value has the wrong type.

    Integers (not bools) for ``int`` fields, numbers for ``float`` fields, ``True``/``False`` for
    ``bool`` fields, strings (or paths, turned into strings) for ``str`` fields, a list of strings
    (a tuple is turned into a list) for ``classes``; ``None`` where the field allows it. NumPy
    scalars are turned into Python numbers.
    """
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        kind, optional = _annotation(item)
        if value is None:
            if optional:
                continue
        elif kind == "bool":
            if isinstance(value, bool):
                continue
        elif kind == "int":
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                setattr(config, item.name, int(value))
                continue
        elif kind == "float":
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                if not isinstance(value, (int, float)):
                    setattr(config, item.name, float(value))
                continue
        elif kind == "str":
            if isinstance(value, str):
                continue
            if isinstance(value, os.PathLike):
                setattr(config, item.name, os.fspath(value))
                continue
        elif kind == "list[str]":
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                setattr(config, item.name, list(value))
                continue
        else:  # pragma: no cover - a field of a new type must be added above
            raise TypeError(f"no type check for field {item.name!r} annotated {item.type!r}")
        expected = _TYPE_WORDS[kind] + (" or None" if optional else "")
        raise InputError(
            f"{type(config).__name__}.{item.name} must be {expected} (got {value!r}, a {type(value).__name__})"
        )


def check_base_url(url: str) -> None:
    """Raise :class:`InputError` unless ``url`` is an ``http(s)://host[:port]/...`` URL without
    credentials (no ``user:password@``, no key or token in the query: the key belongs in
    ``OPENAI_API_KEY``, because the URL is written into ``generation.json`` and published)."""
    try:
        parsed = urlparse(url)
        port_ok = parsed.port is None or 0 < parsed.port < 65536
    except ValueError:
        parsed, port_ok = None, False
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname or not port_ok:
        raise InputError(
            f"`openai_base_url` must be an http(s) URL such as http://localhost:8000/v1 (got {url!r})"
        )
    if url_has_credentials(url) or parsed.username is not None or parsed.password is not None:
        raise InputError(
            "`openai_base_url` must not carry credentials (user:password@ or a key in the query): it is "
            "written into generation.json; put the key in OPENAI_API_KEY"
        )
