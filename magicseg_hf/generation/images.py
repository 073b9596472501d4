"""Paired images: a positive and a counterfactual of the same scene, from shared noise.

The diffusers pipelines are handed in (:mod:`magicseg_hf.loading` builds them); this module runs
them for batches of pairs, with three calls:

- :meth:`PairImageGenerator.generate_pairs`: positive and counterfactual start from the same
  initial latents (one seed per pair) and go through the UNet in one batch of ``2 * B``; the
  counterfactual gets its negative prompt (``prompt`` mode).
- :meth:`PairImageGenerator.generate_images`: independent images, one seed each.
- :meth:`PairImageGenerator.inpaint`: repaint each positive's mask region from the pair's noise,
  pixel-aligned outside it (``inpaint`` mode).

Which call a counterfactual mode makes, with what, is decided in :mod:`magicseg_hf.generation.modes`.

Example:
    >>> from magicseg_hf.loading import load_diffusion_pipeline
    >>> pipe = load_diffusion_pipeline("tiny:stable-diffusion")
    >>> maker = PairImageGenerator(pipe, num_inference_steps=4, height=128, width=128)
    >>> out = maker.generate_pairs(["a cat on a sofa"], ["on a sofa"], ["cat"], seeds=[7])
    >>> out.positives[0].size
    (128, 128)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

#: A picture whose brightest pixel is below this (0..1) is blank: the safety checker's black output.
BLANK_MAX_VALUE = 0.02


def initial_latents(pipe, seeds: Sequence[int], height: int, width: int) -> torch.Tensor:
    """Initial noise for each seed, drawn on the CPU so it is the same on every device.

    Returns:
        ``(len(seeds), C, height // s, width // s)`` float32, ``C`` the UNet's latent channels and
        ``s`` the VAE scale factor.
    """
    channels = pipe.vae.config.latent_channels
    scale = pipe.vae_scale_factor
    shape = (1, channels, height // scale, width // scale)
    noise = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(s))) for s in seeds]
    return torch.cat(noise)  # (B, C, h, w)


def is_blank(image: np.ndarray) -> bool:
    """True for an (H, W, 3) float image in [0, 1] that is (almost) all black."""
    return float(image.max()) < BLANK_MAX_VALUE


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
        pipe: a diffusers ``StableDiffusionPipeline`` (or compatible) already on its device.
        inpaint_pipe: a ``StableDiffusionInpaintPipeline`` for ``inpaint`` mode.
        num_inference_steps, guidance_scale, height, width: the usual diffusers settings.
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
    ) -> None:
        self.pipe = pipe
        self.inpaint_pipe = inpaint_pipe
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.height = height
        self.width = width

    def _run(self, pipe, latents: torch.Tensor, **inputs: Any) -> tuple[Any, np.ndarray]:
        """Call ``pipe`` with this generator's settings from ``latents`` (B, C, h, w), moved to the
        pipe's device and UNet dtype, and ``inputs`` (prompts, images, ...).

        Returns:
            The pipe's output and its images, (B, H, W, 3) float32 in [0, 1].
        """
        output = pipe(
            **inputs,
            latents=latents.to(pipe.device, pipe.unet.dtype),
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
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
        """``prompt`` mode: positive and counterfactual from the same seed, in one UNet batch.

        Args:
            prompts: B positive prompts.
            counterfactual_prompts: B prompts with the classes removed.
            negative_prompts: B negative prompts for the counterfactuals (the class names).
            seeds: B noise seeds, one per pair.
        """
        batch = len(prompts)
        latents = initial_latents(self.pipe, seeds, self.height, self.width)  # (B, C, h, w)
        output, images = self._run(
            self.pipe,
            torch.cat([latents, latents]),  # (2B, C, h, w): pair i shares noise i
            prompt=list(prompts) + list(counterfactual_prompts),
            negative_prompt=[""] * batch + list(negative_prompts),
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
        latents = initial_latents(self.pipe, seeds, self.height, self.width)  # (B, C, h, w)
        negatives = list(negative_prompts) if negative_prompts is not None else [""] * len(prompts)
        output, images = self._run(self.pipe, latents, prompt=list(prompts), negative_prompt=negatives)
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
        latents = initial_latents(pipe, seeds, self.height, self.width)  # (B, C, h, w)
        mask_images = [Image.fromarray(np.where(m, 255, 0).astype(np.uint8), mode="L") for m in masks]
        output, array = self._run(
            pipe,
            latents,
            prompt=list(counterfactual_prompts),
            negative_prompt=list(negative_prompts),
            image=list(images),
            mask_image=mask_images,
            # The masked image's VAE latents are sampled too: seed that draw per pair as well,
            # or the global RNG makes the counterfactual differ from run to run.
            generator=[torch.Generator().manual_seed(int(seed)) for seed in seeds],
            strength=1.0,
        )  # array: (B, H, W, 3)
        flags = _flags(output, len(images), array)
        # Outside the mask the pair stays pixel-identical: paste the repainted region only.
        originals = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images])
        region = np.stack(masks)[..., None]  # (B, H, W, 1) bool
        return _to_pil(np.where(region, array, originals)), flags
