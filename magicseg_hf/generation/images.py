"""Paired images: a positive and a counterfactual of the same scene, from shared noise.

The diffusers pipelines are handed in (:mod:`magicseg_hf.loading` builds them); this module runs
them for batches of pairs, with three calls:

- :meth:`PairImageGenerator.generate_pairs`: positive and counterfactual start from the same
  initial latents (one seed per pair) and go through the denoiser in one batch of ``2 * B``; the
  counterfactual gets its edited prompt, and its negative prompt where the family has one
  (``prompt`` mode).
- :meth:`PairImageGenerator.generate_images`: independent images, one seed each.
- :meth:`PairImageGenerator.inpaint`: repaint each positive's mask region from the pair's noise,
  pixel-aligned outside it (``inpaint`` mode).

Every diffusers text-to-image family of :mod:`magicseg_hf.families` runs through the same calls
(Stable Diffusion 1.x/2.x, SDXL, SD3, FLUX). What differs is read from the family: the latent
shape the noise is drawn in (FLUX packs it into a sequence of 2 x 2 patches), whether a negative
prompt exists (FLUX's distilled guidance has none: its counterfactual relies on the edited prompt
alone) and whether the pipeline takes ``max_sequence_length`` (its T5 text encoder). The noise is
always drawn here, on the CPU, per seed, and handed to the pipeline as ``latents``: Stable Diffusion
and SDXL scale it by their scheduler's ``init_noise_sigma``, the flow-matching pipelines (SD3, FLUX)
start from it as it is — either way both images of a pair start from the same tensor.

Which call a counterfactual mode makes, with what, is decided in :mod:`magicseg_hf.generation.modes`.

Example:
    >>> from magicseg_hf.families import FAMILIES
    >>> from magicseg_hf.loading import load_diffusion_pipeline
    >>> pipe = load_diffusion_pipeline("tiny:flux")
    >>> maker = PairImageGenerator(pipe, num_inference_steps=4, height=128, width=128,
    ...                            guidance_scale=3.5, family=FAMILIES["flux"], max_sequence_length=32)
    >>> out = maker.generate_pairs(["a cat on a sofa"], ["on a sofa"], ["cat"], seeds=[7])
    >>> out.positives[0].size
    (128, 128)
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from magicseg_hf.families import FAMILIES, DiffusionFamily

#: A picture whose brightest pixel is below this (0..1) is blank: the safety checker's black output.
BLANK_MAX_VALUE = 0.02

#: Pipelines of a packed-latent family whose ``latents`` argument is nevertheless the unpacked
#: ``(B, C, h, w)`` noise (diffusers 0.42's ``FluxInpaintPipeline`` packs it itself).
_PACKS_ITS_OWN_LATENTS = frozenset({"FluxInpaintPipeline"})


def latent_shape(pipe: Any, height: int, width: int, family: DiffusionFamily | None = None) -> tuple[int, int, int]:
    """``(C, h, w)`` of one image's initial noise before any packing.

    ``C`` is the VAE's latent channels and ``h = height // s`` (``s`` the VAE scale factor); a
    packed-latent family (FLUX) rounds ``h`` and ``w`` down to even numbers, as its pipelines do,
    so that the latents split into 2 x 2 patches.
    """
    channels = pipe.vae.config.latent_channels
    scale = pipe.vae_scale_factor
    if family is not None and family.packed_latents:
        return channels, 2 * (height // (scale * 2)), 2 * (width // (scale * 2))
    return channels, height // scale, width // scale


def initial_latents(
    pipe: Any, seeds: Sequence[int], height: int, width: int, family: DiffusionFamily | None = None
) -> torch.Tensor:
    """Initial noise for each seed, drawn on the CPU so it is the same on every device.

    Returns:
        ``(len(seeds), C, h, w)`` float32 (see :func:`latent_shape`), unpacked; row ``i`` depends
        on ``seeds[i]`` only.
    """
    shape = (1, *latent_shape(pipe, height, width, family))
    noise = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(s))) for s in seeds]
    return torch.cat(noise)  # (B, C, h, w)


def pipeline_latents(pipe: Any, latents: torch.Tensor, family: DiffusionFamily) -> torch.Tensor:
    """``latents`` (B, C, h, w) in the layout ``pipe``'s ``latents`` argument takes: as they are,
    or — for a pipeline of a packed-latent family — packed by the pipeline's own ``_pack_latents``
    into ``(B, h/2 * w/2, 4C)`` (each token one 2 x 2 patch)."""
    if not family.packed_latents or _is_pipeline(pipe, _PACKS_ITS_OWN_LATENTS):
        return latents
    batch, channels, height, width = latents.shape
    return pipe._pack_latents(latents, batch, channels, height, width)  # (B, h/2 * w/2, 4C)


def denoiser(pipe: Any) -> torch.nn.Module:
    """The pipeline's denoising network: its ``unet`` (Stable Diffusion, SDXL) or its
    ``transformer`` (SD3, FLUX)."""
    unet = getattr(pipe, "unet", None)
    return unet if unet is not None else pipe.transformer


def is_blank(image: np.ndarray) -> bool:
    """True for an (H, W, 3) float image in [0, 1] that is (almost) all black."""
    return float(image.max()) < BLANK_MAX_VALUE


def _is_pipeline(pipe: Any, class_names: Sequence[str] | frozenset[str]) -> bool:
    """Whether ``pipe`` is (a subclass of) one of the diffusers pipeline classes ``class_names``."""
    return any(cls.__name__ in class_names for cls in type(pipe).__mro__)


def _takes(pipe: Any, argument: str) -> bool:
    """Whether ``pipe.__call__`` has a parameter called ``argument``."""
    return argument in inspect.signature(type(pipe).__call__).parameters


def _to_pil(images: np.ndarray) -> list[Image.Image]:
    """(B, H, W, 3) float in [0, 1] -> list of RGB PIL images (deterministic rounding)."""
    array = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
    return [Image.fromarray(a, mode="RGB") for a in array]


def _flags(output, count: int, images: np.ndarray) -> list[bool]:
    nsfw = getattr(output, "nsfw_content_detected", None) or [False] * count
    return [bool(n) or is_blank(img) for n, img in zip(nsfw, images)]


@dataclass
class PairImages:
    """The images of a batch of pairs, in request order."""

    positives: list[Image.Image]
    counterfactuals: list[Image.Image | None]
    #: True where the positive or the counterfactual came out blank (safety checker or black image).
    blank: list[bool] = field(default_factory=list)


class PairImageGenerator:
    """Runs a text-to-image pipeline (and optionally an inpainting one) for batches of pairs.

    Args:
        pipe: a diffusers text-to-image pipeline of ``family`` (``StableDiffusionPipeline``,
            ``StableDiffusionXLPipeline``, ``StableDiffusion3Pipeline``, ``FluxPipeline``), already
            on its device.
        num_inference_steps, guidance_scale, height, width: the usual diffusers settings.
        inpaint_pipe: an inpainting pipeline of the same family for ``inpaint`` mode
            (``StableDiffusionInpaintPipeline``, ``StableDiffusionXLInpaintPipeline``,
            ``StableDiffusion3InpaintPipeline``, ``FluxFillPipeline`` or ``FluxInpaintPipeline``).
        family: the pipelines' family (default: Stable Diffusion 1.x/2.x). It decides the noise's
            shape and layout and whether negative prompts and ``max_sequence_length`` are passed.
        max_sequence_length: text tokens of the family's T5 encoder (SD3, FLUX); ``None`` leaves the
            pipeline's default. Not passed to a family without one.
        inpaint_guidance_scale: guidance of ``inpaint_pipe`` where it differs from the text-to-image
            model's (FLUX Fill is trained for a distilled guidance of about 30); ``None``: the same.

    Raises:
        ValueError: a pipeline is not one of ``family``'s.
    """

    def __init__(
        self,
        pipe,
        *,
        num_inference_steps: int,
        height: int,
        width: int,
        guidance_scale: float = 7.5,
        inpaint_pipe=None,
        family: DiffusionFamily | None = None,
        max_sequence_length: int | None = None,
        inpaint_guidance_scale: float | None = None,
    ) -> None:
        self.family = family if family is not None else FAMILIES["stable-diffusion"]
        _check_family(pipe, self.family.text_to_image, self.family, "text-to-image")
        if inpaint_pipe is not None:
            _check_family(inpaint_pipe, self.family.inpainting, self.family, "inpainting")
        self.pipe = pipe
        self.inpaint_pipe = inpaint_pipe
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.inpaint_guidance_scale = guidance_scale if inpaint_guidance_scale is None else inpaint_guidance_scale
        self.height = height
        self.width = width
        self.max_sequence_length = max_sequence_length

    def _prompts(self, prompts: Sequence[str], negative_prompts: Sequence[str]) -> dict[str, Any]:
        """The prompt arguments of a call: ``prompt``, and ``negative_prompt`` where the family has
        one (FLUX has none: a counterfactual there is steered by its edited prompt alone)."""
        inputs: dict[str, Any] = {"prompt": list(prompts)}
        if self.family.negative_prompt:
            inputs["negative_prompt"] = list(negative_prompts)
        return inputs

    def _run(self, pipe, latents: torch.Tensor, guidance_scale: float, **inputs: Any) -> tuple[Any, np.ndarray]:
        """Call ``pipe`` with this generator's settings from ``latents`` (B, C, h, w) — put in the
        pipe's layout (:func:`pipeline_latents`), on its device and in its denoiser's dtype — and
        ``inputs`` (prompts, images, ...).

        Returns:
            The pipe's output and its images, (B, H, W, 3) float32 in [0, 1].
        """
        if self.max_sequence_length is not None and self.family.max_sequence_length is not None:
            inputs["max_sequence_length"] = self.max_sequence_length
        latents = pipeline_latents(pipe, latents, self.family)
        output = pipe(
            **inputs,
            latents=latents.to(pipe.device, denoiser(pipe).dtype),
            num_inference_steps=self.num_inference_steps,
            guidance_scale=guidance_scale,
            height=self.height,
            width=self.width,
            output_type="np",
        )
        return output, np.asarray(output.images, dtype=np.float32)

    def generate_pairs(
        self,
        prompts: Sequence[str],
        counterfactual_prompts: Sequence[str],
        negative_prompts: Sequence[str],
        seeds: Sequence[int],
    ) -> PairImages:
        """``prompt`` mode: positive and counterfactual from the same seed, in one denoiser batch.

        Args:
            prompts: B positive prompts.
            counterfactual_prompts: B prompts with the classes removed.
            negative_prompts: B negative prompts for the counterfactuals (the class names); unused
                by a family without negative prompts.
            seeds: B noise seeds, one per pair.
        """
        batch = len(prompts)
        latents = initial_latents(self.pipe, seeds, self.height, self.width, self.family)  # (B, C, h, w)
        output, images = self._run(
            self.pipe,
            torch.cat([latents, latents]),  # (2B, C, h, w): pair i shares noise i
            self.guidance_scale,
            **self._prompts(list(prompts) + list(counterfactual_prompts), [""] * batch + list(negative_prompts)),
        )
        flags = _flags(output, 2 * batch, images)
        pil = _to_pil(images)
        return PairImages(
            positives=pil[:batch],
            counterfactuals=pil[batch:],
            blank=[flags[i] or flags[batch + i] for i in range(batch)],
        )

    def generate_images(
        self, prompts: Sequence[str], seeds: Sequence[int], negative_prompts: Sequence[str] | None = None
    ) -> PairImages:
        """Independent images, one seed each (positives of ``inpaint``/``paper`` mode, and
        ``paper`` mode's counterfactuals). ``counterfactuals`` is left as ``None``."""
        latents = initial_latents(self.pipe, seeds, self.height, self.width, self.family)  # (B, C, h, w)
        negatives = list(negative_prompts) if negative_prompts is not None else [""] * len(prompts)
        output, images = self._run(self.pipe, latents, self.guidance_scale, **self._prompts(prompts, negatives))
        return PairImages(
            positives=_to_pil(images),
            counterfactuals=[None] * len(prompts),
            blank=_flags(output, len(prompts), images),
        )

    def inpaint(
        self,
        images: Sequence[Image.Image],
        masks: Sequence[np.ndarray],
        counterfactual_prompts: Sequence[str],
        negative_prompts: Sequence[str],
        seeds: Sequence[int],
    ) -> tuple[list[Image.Image], list[bool]]:
        """``inpaint`` mode: repaint each positive's own mask region from the pair's noise.

        Args:
            images: B positive images.
            masks: B boolean (H, W) arrays, True where the classes are (the region to repaint).
            counterfactual_prompts, negative_prompts, seeds: as in :meth:`generate_pairs`.

        Returns:
            The B counterfactual images and B blank flags.
        """
        if self.inpaint_pipe is None:
            raise ValueError("inpaint mode needs an inpainting pipeline (inpaint_pipe=None was given)")
        pipe = self.inpaint_pipe
        latents = initial_latents(pipe, seeds, self.height, self.width, self.family)  # (B, C, h, w)
        mask_images = [Image.fromarray(np.where(m, 255, 0).astype(np.uint8), mode="L") for m in masks]
        inputs = self._prompts(counterfactual_prompts, negative_prompts)
        if _takes(pipe, "strength"):
            inputs["strength"] = 1.0  # start from pure noise: the pair's own
        output, array = self._run(
            pipe,
            latents,
            self.inpaint_guidance_scale,
            image=list(images),
            mask_image=mask_images,
            # The masked image's VAE latents are sampled too: seed that draw per pair as well,
            # or the global RNG makes the counterfactual differ from run to run.
            generator=[torch.Generator().manual_seed(int(seed)) for seed in seeds],
            **inputs,
        )  # array: (B, H, W, 3)
        flags = _flags(output, len(images), array)
        # Outside the mask the pair stays pixel-identical: paste the repainted region only.
        originals = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images])
        region = np.stack(masks)[..., None]  # (B, H, W, 1) bool
        return _to_pil(np.where(region, array, originals)), flags


def _check_family(pipe: Any, class_names: Sequence[str], family: DiffusionFamily, role: str) -> None:
    """Refuse a pipeline that is not one of ``family``'s ``role`` pipelines ``class_names``."""
    if not _is_pipeline(pipe, class_names):
        raise ValueError(
            f"the {role} pipeline must be a {family.title} one ({', '.join(class_names)}); "
            f"got {type(pipe).__name__}"
        )
