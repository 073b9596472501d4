"""The class check: does the positive image really show each class its label map names?

An open-vocabulary detector is known to report boxes for objects that are not in the picture, and
SAM then turns such a box into a confident mask. Following DiverGen (Fan et al., CVPR 2024), which
filters generated instances by the CLIP similarity of the instance with its category name, each
class of a labelled positive is scored by CLIP:

1. the class's *masked crop* (:func:`masked_crop`): the image cropped to the bounding box of the
   class's pixels, every pixel outside the class's mask set to a neutral fill (CLIP's mean pixel,
   which normalises to zero), padded with the same fill to a square so that CLIP's resize and
   centre crop keep all of it;
2. CLIP's image embedding of the crop and CLIP's text embedding of ``"a photo of a {name}."``;
3. the class score is their cosine similarity, in [-1, 1]: higher means CLIP sees the named class
   in the masked pixels. A class with no pixel in the label map has no crop and scores NaN.

:class:`ClassScorer` scores a whole batch of positives with ONE batched image forward (every crop
of every image) and caches each name's text embedding (one text forward per new name, alone, so
that an embedding does not depend on the names it was batched with: rows stay bit-identical
between a straight, a resumed and a multi-process run). :func:`fails_class_check` is the filter
the run applies with ``--class-score-threshold``.

What the score is worth depends on the CLIP: with the tiny preset's random CLIP (``tiny:clip``) it
is a deterministic number that proves the plumbing, not that a class is shown.

Example:
    >>> from magicseg_hf.twins import tiny_clip
    >>> model, processor = tiny_clip()
    >>> scorer = ClassScorer(model, processor, device="cpu")
    >>> image = Image.new("RGB", (64, 64), (200, 30, 30))
    >>> label = np.zeros((64, 64), dtype=np.uint8); label[8:40, 8:40] = 1
    >>> [[round(s, 3) for s in row] for row in scorer.score([image], [label], [["cat", "dog"]])]  # doctest: +SKIP
    [[0.123, nan]]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

#: The text each class name is embedded in (CLIP's zero-shot prompt).
CLASS_PROMPT = "a photo of a {name}."
#: The fill of masked-out and padding pixels when the processor names no ``image_mean``.
DEFAULT_FILL = (128, 128, 128)
#: ``--class-score-threshold`` value that turns the check off (no cosine similarity is below it).
CHECK_OFF = -1.0


def neutral_fill(processor: Any) -> tuple[int, int, int]:
    """The RGB colour that ``processor`` normalises to zero: its ``image_mean`` times 255, rounded
    (CLIP's mean pixel ``(122, 116, 104)``), or :data:`DEFAULT_FILL` when it names none."""
    image_processor = getattr(processor, "image_processor", processor)
    mean = getattr(image_processor, "image_mean", None)
    if mean is None or len(mean) != 3:
        return DEFAULT_FILL
    return tuple(int(round(float(v) * 255)) for v in mean)  # type: ignore[return-value]


def masked_crop(
    image: Image.Image, label: np.ndarray, class_id: int, fill: tuple[int, int, int] = DEFAULT_FILL
) -> Image.Image | None:
    """The masked crop of class ``class_id`` (label value) of ``image``: a square RGB image.

    Args:
        image: the positive, ``W x H``.
        label: (H, W) uint8 label map (0 background, ``i`` = ``classes[i-1]``, 255 unknown).
        class_id: the label value of the class, 1..len(classes).
        fill: RGB colour of the pixels outside the class's mask and of the padding.

    Returns:
        An RGB image of side ``max(h, w)``, where (h, w) is the bounding box of the class's pixels:
        the box's pixels where ``label == class_id``, ``fill`` elsewhere, the box centred (the
        padding split evenly, the odd pixel after). ``None`` when the class has no pixel.
    """
    mask = np.asarray(label) == class_id  # (H, W) bool
    if mask.shape != (image.height, image.width):
        raise ValueError(f"label map of shape {mask.shape} does not fit a {image.width}x{image.height} image "
                         f"(expected ({image.height}, {image.width}))")
    if not mask.any():
        return None
    rows, columns = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1
    pixels = np.asarray(image.convert("RGB"))[y0:y1, x0:x1]  # (h, w, 3) uint8
    inside = mask[y0:y1, x0:x1, None]  # (h, w, 1)
    colour = np.asarray(fill, dtype=np.uint8)  # (3,)
    height, width = y1 - y0, x1 - x0
    side = max(height, width)
    square = np.empty((side, side, 3), dtype=np.uint8)  # (side, side, 3)
    square[:] = colour
    top, left = (side - height) // 2, (side - width) // 2
    square[top:top + height, left:left + width] = np.where(inside, pixels, colour)
    return Image.fromarray(square, "RGB")


def fails_class_check(scores: Sequence[float], threshold: float) -> bool:
    """Whether a positive fails the class check: some class's score (NaN ones aside: classes with
    no pixel) is below ``threshold``. ``threshold`` -1 (:data:`CHECK_OFF`) never fails."""
    if threshold <= CHECK_OFF:
        return False
    return any(not math.isnan(score) and score < threshold for score in scores)


def _embedding(output: Any) -> torch.Tensor:
    """The projected embedding of ``get_image_features`` / ``get_text_features``: a ModelOutput's
    ``pooler_output`` (transformers 5) or the tensor itself (transformers 4)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClassScorer:
    """CLIP similarity of each class's masked crop with the class's name (the ``class_scores`` column).

    Args:
        model: a ``CLIPModel`` (or any model with ``get_image_features`` / ``get_text_features``
            returning projected embeddings), in eval mode on ``device``, in any dtype.
        processor: its ``CLIPProcessor`` (``image_processor`` + ``tokenizer``).
        device: where the model is.
        prompt: the text each class name is embedded in; ``{name}`` is replaced by the bare name.
    """

    def __init__(self, model: Any, processor: Any, device: str | torch.device, prompt: str = CLASS_PROMPT) -> None:
        if "{name}" not in prompt:
            raise ValueError(f"the class prompt must contain '{{name}}' (got {prompt!r})")
        self.model = model
        self.processor = processor
        self.device = torch.device(device)
        self.prompt = prompt
        self.fill = neutral_fill(processor)
        self._text: dict[str, torch.Tensor] = {}  # name -> (D,) float32 unit vector, on the CPU

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # ---- embeddings -----------------------------------------------------------------------------
    @torch.inference_mode()
    def image_embeddings(self, crops: list[Image.Image]) -> torch.Tensor:
        """Unit-norm CLIP embeddings of ``crops`` in ONE batched forward: (N, D) float32 on the CPU."""
        pixel_values = self.processor(images=crops, return_tensors="pt")["pixel_values"]  # (N, 3, S, S)
        pixel_values = pixel_values.to(self.device, dtype=self.dtype)
        embeddings = _embedding(self.model.get_image_features(pixel_values=pixel_values)).float().cpu()  # (N, D)
        return torch.nn.functional.normalize(embeddings, dim=-1)

    @torch.inference_mode()
    def text_embedding(self, name: str) -> torch.Tensor:
        """Unit-norm CLIP embedding of :attr:`prompt` with ``name``: (D,) float32 on the CPU, cached.

        Each name is encoded alone (no padding), so its embedding does not depend on which names
        came before it.
        """
        if name not in self._text:
            tokens = self.processor.tokenizer([self.prompt.format(name=name)], truncation=True, return_tensors="pt")
            tokens = {key: value.to(self.device) for key, value in tokens.items()}  # input_ids (1, T)
            embedding = _embedding(self.model.get_text_features(**tokens)).float().cpu()[0]  # (D,)
            self._text[name] = torch.nn.functional.normalize(embedding, dim=-1)
        return self._text[name]

    # ---- scores ---------------------------------------------------------------------------------
    def crops(self, image: Image.Image, label: np.ndarray, num_classes: int) -> list[Image.Image | None]:
        """The masked crop (:func:`masked_crop`) of classes 1..``num_classes`` of one image; None
        for a class with no pixel."""
        return [masked_crop(image, label, class_id, self.fill) for class_id in range(1, num_classes + 1)]

    def score(
        self, images: Sequence[Image.Image], labels: Sequence[np.ndarray], names: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        """Class scores of a batch of positives.

        Args:
            images: the positives, each ``W x H``.
            labels: their (H, W) uint8 label maps (0 background, ``i`` = ``names[k][i-1]``, 255 unknown).
            names: each image's bare class names, in label-id order.

        Returns:
            Per image, one float per class in order: the cosine similarity, in [-1, 1], of the
            class's masked crop with its name; NaN for a class with no pixel in the label map.
            Every crop of the batch goes through CLIP's image tower in one forward.
        """
        if not len(images) == len(labels) == len(names):
            raise ValueError(f"{len(images)} images, {len(labels)} label maps and {len(names)} class lists; "
                             "expected one of each per image")
        results = [[math.nan] * len(classes) for classes in names]
        crops: list[Image.Image] = []
        where: list[tuple[int, int]] = []  # (image, class position) of each crop
        for index, (image, label, classes) in enumerate(zip(images, labels, names)):
            for position, crop in enumerate(self.crops(image, label, len(classes))):
                if crop is not None:
                    crops.append(crop)
                    where.append((index, position))
        if not crops:
            return results
        image_embeddings = self.image_embeddings(crops)  # (N, D)
        text_embeddings = torch.stack([self.text_embedding(names[i][p]) for i, p in where])  # (N, D)
        similarities = (image_embeddings * text_embeddings).sum(dim=-1).clamp(-1.0, 1.0)  # (N,)
        for (index, position), value in zip(where, similarities.tolist()):
            results[index][position] = float(value)
        return results
