"""Counterfactual modes: each mode's steps in one place.

A mode decides four things about a pair, and nothing else does:

* the counterfactual's noise seed (:meth:`CounterfactualMode.counterfactual_seed`);
* the counterfactual's prompt (:meth:`CounterfactualMode.counterfactual_prompt`);
* the pictures made before annotation (:meth:`CounterfactualMode.first_images`): the positives,
  and the counterfactuals where the mode makes them together with the positives;
* the pictures made after annotation (:meth:`CounterfactualMode.repaint`): ``inpaint`` repaints
  the positive's own mask, which is why the counterfactual comes after annotation in the pipeline.

The three modes (``--counterfactual``):

* ``prompt`` (:class:`PromptMode`): the same initial noise, the classes removed from the prompt and
  named in the negative prompt; positive and counterfactual go through the UNet in one batch.
* ``inpaint`` (:class:`InpaintMode`): the positive alone, then its labelled region (grown by ~2%)
  repainted from the same noise: a pixel-aligned pair. Loads an inpainting model.
* ``paper`` (:class:`PaperMode`): the released code — an independent sample from its own seed,
  with every class word replaced by "nothing".

The diffusion work itself is :class:`~magicseg_hf.generation.images.PairImageGenerator`'s; a mode
only says which of its calls to make, with what.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol

import numpy as np
from PIL import Image
from scipy.ndimage import binary_dilation

from magicseg_hf.generation.counterfactual import counterfactual_prompt, replace_mentions
from magicseg_hf.generation.images import PairImageGenerator, PairImages

__all__ = ["MODES", "CounterfactualMode", "InpaintMode", "PairSpec", "PaperMode", "PromptMode", "counterfactual_mode"]


class PairSpec(Protocol):
    """What a mode reads of one attempt (the pipeline's attempt records have these fields)."""

    #: Bare class names, as used in text.
    names: list[str]
    prompt: str
    counterfactual_prompt: str
    seed: int
    counterfactual_seed: int


def negative_prompt(pair: PairSpec) -> str:
    """The counterfactual's negative prompt: the pair's class names, ``"cat, traffic light"``."""
    return ", ".join(pair.names)


class CounterfactualMode(ABC):
    """The steps of one counterfactual mode (stateless; one shared instance per mode)."""

    #: The ``--counterfactual`` value.
    name: ClassVar[str]
    #: Whether the mode needs the inpainting model (loaded, checked and recorded only then).
    uses_inpainting_model: ClassVar[bool] = False

    def counterfactual_seed(self, seed: int, stream_seed: Callable[[str], int]) -> int:
        """The counterfactual's noise seed of an attempt whose positive uses ``seed``.

        ``stream_seed(stream)`` is the attempt's seed of a named stream, derived from the run seed
        and the attempt index. Default: the positive's own seed (the pair shares its noise).
        """
        return seed

    def counterfactual_prompt(self, prompt: str, classes: Sequence[str]) -> str:
        """The counterfactual's prompt: ``prompt`` without any mention of ``classes``."""
        return counterfactual_prompt(prompt, list(classes))

    @abstractmethod
    def first_images(self, images: PairImageGenerator, pairs: Sequence[PairSpec]) -> PairImages:
        """The pictures made before annotation, one entry per pair.

        ``counterfactuals[i]`` is ``None`` where the counterfactual is made by :meth:`repaint`;
        ``blank[i]`` is True where a picture made here came out blank.
        """

    def repaint(
        self,
        images: PairImageGenerator,
        positives: Sequence[Image.Image],
        labels: Sequence[np.ndarray],
        pairs: Sequence[PairSpec],
    ) -> tuple[list[Image.Image], list[bool]] | None:
        """The counterfactuals made after annotation, from the positives and their (H, W) uint8
        label maps, with blank flags; ``None`` when :meth:`first_images` already made them."""
        return None


class PromptMode(CounterfactualMode):
    """Same noise, classes removed from the prompt and named as negative prompt; one UNet batch."""

    name = "prompt"

    def first_images(self, images: PairImageGenerator, pairs: Sequence[PairSpec]) -> PairImages:
        return images.generate_pairs(
            [p.prompt for p in pairs],
            [p.counterfactual_prompt for p in pairs],
            [negative_prompt(p) for p in pairs],
            [p.seed for p in pairs],
        )


class InpaintMode(CounterfactualMode):
    """The positive first; after annotation its labelled region is repainted from the same noise."""

    name = "inpaint"
    uses_inpainting_model = True
    #: The repainted region is the label grown by this fraction of the image's longer side.
    dilation = 0.02

    def first_images(self, images: PairImageGenerator, pairs: Sequence[PairSpec]) -> PairImages:
        return images.generate_images([p.prompt for p in pairs], [p.seed for p in pairs])

    def repaint(
        self,
        images: PairImageGenerator,
        positives: Sequence[Image.Image],
        labels: Sequence[np.ndarray],
        pairs: Sequence[PairSpec],
    ) -> tuple[list[Image.Image], list[bool]]:
        masks = [self.grow(label > 0) for label in labels]  # (H, W) bool each
        return images.inpaint(
            list(positives),
            masks,
            [p.counterfactual_prompt for p in pairs],
            [negative_prompt(p) for p in pairs],
            [p.seed for p in pairs],
        )

    def grow(self, mask: np.ndarray) -> np.ndarray:
        """Grow an (H, W) bool mask by ``dilation`` of the longer side (at least one pixel), so the
        repainted region covers the objects' borders."""
        radius = max(1, round(self.dilation * max(mask.shape)))
        return binary_dilation(mask, iterations=radius)


class PaperMode(CounterfactualMode):
    """The released code: an independent sample from its own seed, class words -> "nothing"."""

    name = "paper"

    def counterfactual_seed(self, seed: int, stream_seed: Callable[[str], int]) -> int:
        return stream_seed("counterfactual-noise")

    def counterfactual_prompt(self, prompt: str, classes: Sequence[str]) -> str:
        return replace_mentions(prompt, list(classes), "nothing")

    def first_images(self, images: PairImageGenerator, pairs: Sequence[PairSpec]) -> PairImages:
        batch = len(pairs)
        both = images.generate_images(
            [p.prompt for p in pairs] + [p.counterfactual_prompt for p in pairs],
            [p.seed for p in pairs] + [p.counterfactual_seed for p in pairs],
        )
        return PairImages(
            positives=both.positives[:batch],
            counterfactuals=both.positives[batch:],
            blank=[both.blank[i] or both.blank[batch + i] for i in range(batch)],
        )


#: ``--counterfactual`` value -> its mode.
MODES: dict[str, CounterfactualMode] = {mode.name: mode for mode in (PromptMode(), InpaintMode(), PaperMode())}


def counterfactual_mode(name: str) -> CounterfactualMode:
    """The mode called ``name`` (``"prompt"``, ``"inpaint"`` or ``"paper"``)."""
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"counterfactual mode must be one of {', '.join(MODES)} (got {name!r})") from None
