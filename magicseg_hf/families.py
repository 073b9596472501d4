"""Diffusion pipeline families: which diffusers pipelines belong together, and their defaults.

A *family* is a set of diffusers pipelines that share a latent space and a denoiser interface:
a text-to-image pipeline and the inpainting pipelines that may make its counterfactuals (a pair
shares its initial noise, so both must draw it in the same latent shape). Each family carries the
defaults a run of it takes unless a flag says otherwise (steps, guidance, native size, text length),
and says how the counterfactual is steered: with a negative prompt under classifier-free guidance,
or — where the pipeline has none (FLUX's distilled guidance) — by the edited prompt alone.

This module is tables plus one file read: it imports no model library, so resolving a generation
config (which needs the family's defaults) does not pay for torch. The family of a checkpoint is
read from its ``model_index.json`` (``_class_name``): from a local folder, the local Hub cache, or
the Hub; the ``tiny:`` twins and the presets' checkpoints are known without reading anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magicseg_hf.errors import InputError, ModelLoadError, first_line

__all__ = [
    "FAMILIES",
    "KNOWN_DIFFUSION_MODELS",
    "TINY_DIFFUSION_MODELS",
    "DiffusionFamily",
    "DiffusionModelInfo",
    "check_pairing",
    "diffusion_model_info",
    "family_of_class",
]


@dataclass(frozen=True)
class DiffusionFamily:
    """One family of diffusers pipelines and the settings a run of it defaults to."""

    #: Short name: ``stable-diffusion`` (1.x/2.x), ``sdxl``, ``sd3``, ``flux``.
    name: str
    #: What users call it, for messages and the README.
    title: str
    #: diffusers class names of its text-to-image pipelines.
    text_to_image: tuple[str, ...]
    #: diffusers class names of its inpainting pipelines.
    inpainting: tuple[str, ...]
    num_inference_steps: int
    guidance_scale: float
    #: Native (square) resolution in pixels.
    size: int
    #: Text tokens of the long text encoder (T5) where the family has one, else None.
    max_sequence_length: int | None
    #: Whether the pipeline takes a negative prompt under classifier-free guidance; without one the
    #: counterfactual relies on the edited prompt alone.
    negative_prompt: bool
    #: ``classifier-free`` (two denoiser passes per step, scaled by ``guidance_scale``) or
    #: ``distilled`` (the guidance scale is an input of one pass; no negative prompt).
    guidance: str
    #: Heights and widths must be multiples of this.
    size_multiple: int
    #: Whether the pipeline's ``latents`` argument takes packed (sequence) latents. (FLUX: true of
    #: ``FluxPipeline`` and ``FluxFillPipeline``; diffusers' ``FluxInpaintPipeline`` takes them
    #: unpacked and packs them itself, which ``generation.images`` accounts for.)
    packed_latents: bool
    #: The ``tiny:`` twins of the family (text-to-image, inpainting).
    tiny_id: str
    tiny_inpainting_id: str
    #: Guidance of the family's dedicated inpainting pipeline (the first of ``inpainting``) where it
    #: differs from the text-to-image model's: FLUX.1 Fill [dev] is run at 30 (``FluxFillPipeline``'s
    #: default and its model card's), while a FLUX text-to-image checkpoint loaded as
    #: ``FluxInpaintPipeline`` keeps the text-to-image guidance. ``None``: the same.
    inpainting_guidance_scale: float | None = None

    def defaults(self, tiny: bool) -> dict[str, Any]:
        """The generation settings this family's model takes unless a flag sets them.

        ``tiny``: small settings (4 steps, 128 px, 77 text tokens: a template prompt fits the tiny
        tokenizer, whose unknown words split into letters), for the ``tiny:`` twins and the
        ``tiny`` preset.
        """
        if tiny:
            return {
                "num_inference_steps": 4,
                "guidance_scale": self.guidance_scale,
                "height": 128,
                "width": 128,
                "max_sequence_length": 77 if self.max_sequence_length is not None else None,
            }
        return {
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "height": self.size,
            "width": self.size,
            "max_sequence_length": self.max_sequence_length,
        }

    def uses_negative_prompt(self, guidance_scale: float) -> bool:
        """Whether a counterfactual's negative prompt takes effect at ``guidance_scale``
        (classifier-free guidance is off at a scale of 1 or less)."""
        return self.negative_prompt and guidance_scale > 1.0


# Defaults: the diffusers pipelines' own defaults, or the model card's recommendation where the
# pipeline's default is for an older member of the family (SD 3.5 Large: 28 steps, guidance 3.5).
FAMILIES: dict[str, DiffusionFamily] = {
    family.name: family
    for family in (
        DiffusionFamily(
            name="stable-diffusion",
            title="Stable Diffusion 1.x/2.x",
            text_to_image=("StableDiffusionPipeline",),
            inpainting=("StableDiffusionInpaintPipeline",),
            num_inference_steps=50,
            guidance_scale=7.5,
            size=512,
            max_sequence_length=None,
            negative_prompt=True,
            guidance="classifier-free",
            size_multiple=8,
            packed_latents=False,
            tiny_id="tiny:stable-diffusion",
            tiny_inpainting_id="tiny:stable-diffusion-inpainting",
        ),
        DiffusionFamily(
            name="sdxl",
            title="Stable Diffusion XL",
            text_to_image=("StableDiffusionXLPipeline",),
            inpainting=("StableDiffusionXLInpaintPipeline",),
            num_inference_steps=50,
            guidance_scale=5.0,
            size=1024,
            max_sequence_length=None,
            negative_prompt=True,
            guidance="classifier-free",
            size_multiple=8,
            packed_latents=False,
            tiny_id="tiny:sdxl",
            tiny_inpainting_id="tiny:sdxl-inpainting",
        ),
        DiffusionFamily(
            name="sd3",
            title="Stable Diffusion 3/3.5",
            text_to_image=("StableDiffusion3Pipeline",),
            inpainting=("StableDiffusion3InpaintPipeline",),
            num_inference_steps=28,
            guidance_scale=3.5,
            size=1024,
            max_sequence_length=256,
            negative_prompt=True,
            guidance="classifier-free",
            size_multiple=16,
            packed_latents=False,
            tiny_id="tiny:sd3",
            tiny_inpainting_id="tiny:sd3-inpainting",
        ),
        DiffusionFamily(
            name="flux",
            title="FLUX.1",
            text_to_image=("FluxPipeline",),
            inpainting=("FluxFillPipeline", "FluxInpaintPipeline"),
            num_inference_steps=28,
            guidance_scale=3.5,
            size=1024,
            max_sequence_length=512,
            negative_prompt=False,
            guidance="distilled",
            size_multiple=16,
            packed_latents=True,
            tiny_id="tiny:flux",
            tiny_inpainting_id="tiny:flux-fill",
            inpainting_guidance_scale=30.0,
        ),
    )
}


@dataclass(frozen=True)
class DiffusionModelInfo:
    """What a diffusion model id names: its family, its diffusers pipeline class, and whether that
    pipeline inpaints."""

    family: DiffusionFamily
    pipeline_class: str
    inpainting: bool


def family_of_class(class_name: str) -> DiffusionModelInfo | None:
    """The family of diffusers pipeline class ``class_name`` (None when no supported family has it)."""
    for family in FAMILIES.values():
        if class_name in family.text_to_image:
            return DiffusionModelInfo(family, class_name, inpainting=False)
        if class_name in family.inpainting:
            return DiffusionModelInfo(family, class_name, inpainting=True)
    return None


#: ``tiny:`` id -> the diffusers class of its twin (see :mod:`magicseg_hf.twins`).
TINY_DIFFUSION_MODELS: dict[str, str] = {
    "tiny:stable-diffusion": "StableDiffusionPipeline",
    "tiny:stable-diffusion-inpainting": "StableDiffusionInpaintPipeline",
    "tiny:sdxl": "StableDiffusionXLPipeline",
    "tiny:sdxl-inpainting": "StableDiffusionXLInpaintPipeline",
    "tiny:sd3": "StableDiffusion3Pipeline",
    "tiny:sd3-inpainting": "StableDiffusion3InpaintPipeline",
    "tiny:flux": "FluxPipeline",
    "tiny:flux-fill": "FluxFillPipeline",
}

#: Pipeline classes of the presets' checkpoints (and other well-known ones), so that resolving a
#: preset reads no file and needs no network.
KNOWN_DIFFUSION_MODELS: dict[str, str] = {
    "stable-diffusion-v1-5/stable-diffusion-v1-5": "StableDiffusionPipeline",
    "stable-diffusion-v1-5/stable-diffusion-inpainting": "StableDiffusionInpaintPipeline",
    "stabilityai/stable-diffusion-2-1": "StableDiffusionPipeline",
    "stabilityai/stable-diffusion-2-inpainting": "StableDiffusionInpaintPipeline",
    "stabilityai/stable-diffusion-xl-base-1.0": "StableDiffusionXLPipeline",
    "diffusers/stable-diffusion-xl-1.0-inpainting-0.1": "StableDiffusionXLInpaintPipeline",
    "stabilityai/stable-diffusion-3-medium-diffusers": "StableDiffusion3Pipeline",
    "stabilityai/stable-diffusion-3.5-medium": "StableDiffusion3Pipeline",
    "stabilityai/stable-diffusion-3.5-large": "StableDiffusion3Pipeline",
    "black-forest-labs/FLUX.1-dev": "FluxPipeline",
    "black-forest-labs/FLUX.1-schnell": "FluxPipeline",
    "black-forest-labs/FLUX.1-Fill-dev": "FluxFillPipeline",
}

_SUPPORTED = "; ".join(
    f"{f.title} ({', '.join(f.text_to_image + f.inpainting)})" for f in FAMILIES.values()
)


def _read_model_index(model_id: str, revision: str | None, what: str) -> dict[str, Any]:
    """``model_index.json`` of a local folder, a cached Hub repo or (when online) the Hub."""
    path = Path(model_id).expanduser()
    if path.exists():
        index = path / "model_index.json"
        if not index.is_file():
            raise InputError(
                f"{what} {model_id!r} is not a diffusers pipeline folder (no model_index.json in it)"
            )
        try:
            return json.loads(index.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise InputError(f"{what} {model_id!r}: unreadable model_index.json ({first_line(error)})") from None
    from huggingface_hub import hf_hub_download

    from magicseg_hf import hub_access

    hub_access.check_model_available(model_id, revision, what)
    try:
        file = hf_hub_download(model_id, "model_index.json", revision=revision, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached: ask the Hub below, if we may
        file = None
    if file is None:
        if hub_access.hub_offline():
            raise ModelLoadError(
                f"{what} {model_id!r} is not in the local cache and HF_HUB_OFFLINE=1; "
                "download it first or pass a local folder"
            )
        try:
            file = hf_hub_download(model_id, "model_index.json", revision=revision)
        except Exception as error:  # noqa: BLE001 - any failure is one line for the user
            message = hub_access.redact(first_line(error))
            if "404" in message or "EntryNotFound" in type(error).__name__:
                raise InputError(
                    f"{what} {model_id!r} is not a diffusers pipeline (it has no model_index.json)"
                ) from None
            raise ModelLoadError(f"cannot read {what} {model_id!r}: {message}") from None
    try:
        return json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"{what} {model_id!r}: unreadable model_index.json ({first_line(error)})") from None


def diffusion_model_info(model_id: str, revision: str | None = None, *, inpainting: bool = False) -> DiffusionModelInfo:
    """The family and pipeline class of diffusion model ``model_id`` (a ``tiny:`` id, a known
    checkpoint, a local folder or a Hub id), checked for the role it is given.

    Raises:
        InputError: the model is not a pipeline of a supported family, or is an inpainting pipeline
            given as the text-to-image model (or the other way round).
        ModelLoadError: its ``model_index.json`` cannot be read (offline and not cached, unreachable).
    """
    what = "inpainting model" if inpainting else "diffusion model"
    flag = "`inpainting_model`" if inpainting else "`diffusion_model`"
    if model_id.startswith("tiny:"):
        if model_id not in TINY_DIFFUSION_MODELS:
            wanted = [k for k, v in TINY_DIFFUSION_MODELS.items() if family_of_class(v).inpainting == inpainting]
            raise InputError(f"unknown tiny {what} {model_id!r}; the tiny twins are {', '.join(wanted)}")
        class_name = TINY_DIFFUSION_MODELS[model_id]
    elif model_id in KNOWN_DIFFUSION_MODELS:
        class_name = KNOWN_DIFFUSION_MODELS[model_id]
    else:
        class_name = str(_read_model_index(model_id, revision, what).get("_class_name", ""))
    info = family_of_class(class_name)
    if info is None:
        raise InputError(
            f"{flag} {model_id!r} is a {class_name or 'pipeline without a class name'}, which is not a supported "
            f"family; supported: {_SUPPORTED}"
        )
    if info.inpainting != inpainting:
        other = "`diffusion_model`" if inpainting else "`inpainting_model`"
        kind = "text-to-image" if not info.inpainting else "inpainting"
        raise InputError(f"{flag} {model_id!r} is a {kind} pipeline ({class_name}); pass it as {other}")
    return info


def check_pairing(diffusion: DiffusionModelInfo, inpainting: DiffusionModelInfo, diffusion_id: str, inpainting_id: str) -> None:
    """Refuse an inpainting model of another family than the text-to-image model: a pair's
    counterfactual is repainted from the positive's initial noise, drawn in the family's latent shape.

    Raises:
        InputError: the two families differ.
    """
    if diffusion.family.name != inpainting.family.name:
        raise InputError(
            f"`inpainting_model` {inpainting_id!r} ({inpainting.family.title}) does not fit `diffusion_model` "
            f"{diffusion_id!r} ({diffusion.family.title}): a pair shares its initial noise, so both must be of "
            f"one family (for this generator, e.g. {diffusion.family.tiny_inpainting_id!r} or a "
            f"{'/'.join(diffusion.family.inpainting)} checkpoint)"
        )
