"""Pipeline task `open-vocabulary-segmentation` and sliding-window inference for `CLIPForOpenSegmentation`.

Self-contained: imports only torch, transformers, PIL and numpy, so this folder can be pushed to the Hub as
remote code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import Pipeline
from transformers.image_utils import load_image
from transformers.utils import logging

from .processing_clip_open_seg import check_class_names

logger = logging.get_logger(__name__)

TASK = "open-vocabulary-segmentation"


def sliding_windows(height: int, width: int, crop_size: int, stride: int) -> list[tuple[int, int, int, int]]:
    """Window boxes `(top, left, bottom, right)` covering a `height x width` image (mmseg's slide grid).

    The last window of each row/column is shifted back so that it ends at the border; windows are clipped to
    the image when it is smaller than `crop_size`.
    """
    if crop_size <= 0 or stride <= 0:
        raise ValueError(
            f"crop_size and stride must be positive (got crop_size={crop_size}, stride={stride})"
        )
    rows = max(height - crop_size + stride - 1, 0) // stride + 1
    cols = max(width - crop_size + stride - 1, 0) // stride + 1
    boxes = []
    for row in range(rows):
        for col in range(cols):
            bottom, right = min(row * stride + crop_size, height), min(col * stride + crop_size, width)
            top, left = max(bottom - crop_size, 0), max(right - crop_size, 0)
            boxes.append((top, left, bottom, right))
    return boxes


@torch.no_grad()
def slide_inference(
    model: Any,
    pixel_values: torch.Tensor,
    class_embeds: torch.Tensor,
    crop_size: int | None = None,
    stride: int | None = None,
    window_batch_size: int = 4,
) -> torch.Tensor:
    """Sliding-window inference, batched over windows.

    Args:
        model: a [`CLIPForOpenSegmentation`].
        pixel_values: `(B, 3, H, W)` normalised images of any size (padded to `crop_size` where smaller).
        class_embeds: `(C, D)` shared classes or `(B, K, D)` per image (e.g. `model.encode_classes(names)`).
        crop_size, stride: window size and step (default `model.config.slide_crop_size` / `slide_stride`,
            512 / 426 in the paper).
        window_batch_size: windows per forward pass.
    Returns:
        `(B, C, H, W)` mask logits: each pixel's logits averaged over the windows that cover it.
    """
    crop_size = crop_size or model.config.slide_crop_size
    stride = stride or model.config.slide_stride
    if stride > crop_size:
        raise ValueError(
            f"stride must not exceed crop_size, or pixels are skipped (got {stride} > {crop_size})"
        )
    batch, _, height, width = pixel_values.shape
    padded_height, padded_width = max(height, crop_size), max(width, crop_size)
    # Zero after normalisation = the mean colour, as the image processor pads.
    pixel_values = F.pad(pixel_values, (0, padded_width - width, 0, padded_height - height))
    boxes = sliding_windows(padded_height, padded_width, crop_size, stride)
    windows = [(index, box) for index in range(batch) for box in boxes]
    num_classes = class_embeds.shape[-2]
    logits_sum = pixel_values.new_zeros(
        (batch, num_classes, padded_height, padded_width), dtype=torch.float32
    )
    counts = pixel_values.new_zeros((batch, 1, padded_height, padded_width), dtype=torch.float32)
    for start in range(0, len(windows), window_batch_size):
        chunk = windows[start : start + window_batch_size]
        crops = torch.stack(
            [pixel_values[i, :, top:bottom, left:right] for i, (top, left, bottom, right) in chunk]
        )  # (n, 3, crop, crop)
        embeds = class_embeds if class_embeds.dim() == 2 else class_embeds[[i for i, _ in chunk]]
        logits = model(pixel_values=crops, class_embeds=embeds).logits.float()  # (n, C, crop, crop)
        for (i, (top, left, bottom, right)), window_logits in zip(chunk, logits):
            logits_sum[i, :, top:bottom, left:right] += window_logits
            counts[i, :, top:bottom, left:right] += 1
    return (logits_sum / counts)[..., :height, :width]


class OpenVocabularySegmentationPipeline(Pipeline):
    r"""
    Segment the classes you name: `pipe(image, candidate_labels=["cat", "dog"], threshold=0.5)`.

    Returns, like `image-segmentation`, a list of `{"label", "score", "mask"}` — one per class that wins at least
    one pixel; `mask` is a PIL "L" image (255 inside) at the input size, `score` the class's mean probability
    inside its mask. Candidate labels default to the vocabulary saved with the model. Large images are resized
    (short side = crop size) and segmented with sliding windows.

    `threshold` defaults to `None`: every pixel takes its most probable candidate label (plain argmax), so no
    pixel is ever left without a label, even where every class's probability is low. With a threshold, pixels
    whose best class probability (sigmoid) is below it belong to no label and appear in no mask. Pass one
    whenever "none of these classes" is a possible answer (e.g. evaluation with a background class).

    Example:

    ```python
    >>> import magicseg_hf  # registers the task
    >>> from transformers import pipeline
    >>> segmenter = pipeline("open-vocabulary-segmentation", model="path/to/model")
    >>> segments = segmenter("street.jpg", candidate_labels=["car", "tree", "road"], threshold=0.5)
    >>> segments[0]["label"], segments[0]["mask"].size
    ```
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = True

    def _sanitize_parameters(
        self,
        candidate_labels: list[str] | None = None,
        threshold: float | None = None,
        crop_size: int | None = None,
        stride: int | None = None,
        window_batch_size: int | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> tuple[dict, dict, dict]:
        if kwargs:
            raise TypeError(f"unknown arguments for the {TASK} pipeline (got {sorted(kwargs)})")
        preprocess = {"candidate_labels": candidate_labels, "crop_size": crop_size, "timeout": timeout}
        forward = {"stride": stride, "window_batch_size": window_batch_size, "crop_size": crop_size}
        postprocess = {"threshold": threshold}
        return (
            {k: v for k, v in preprocess.items() if v is not None},
            {k: v for k, v in forward.items() if v is not None},
            {k: v for k, v in postprocess.items() if v is not None},
        )

    def __call__(
        self, inputs: Any = None, **kwargs: Any
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Segment one image (path, URL or PIL) or a list of them; see the class docstring."""
        if "images" in kwargs:
            inputs = kwargs.pop("images")
        if inputs is None:
            raise ValueError(f"the {TASK} pipeline needs an image (got none)")
        return super().__call__(inputs, **kwargs)

    def preprocess(
        self,
        image: Any,
        candidate_labels: list[str] | None = None,
        crop_size: int | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        if candidate_labels is None:
            candidate_labels = list(self.model.config.vocabulary)
            if not candidate_labels:
                raise ValueError(
                    "candidate_labels is empty and the model has no saved vocabulary: name the classes"
                )
        labels = check_class_names(candidate_labels, what="candidate_labels")
        image = load_image(image, timeout=timeout)
        crop_size = crop_size or self.model.config.slide_crop_size
        encoding = self.image_processor(
            image, size={"shortest_edge": crop_size}, do_pad=False, return_tensors="pt"
        )  # short side = crop size, aspect kept, CLIP normalisation
        class_embeds = self.model.encode_classes(labels, tokenizer=self.tokenizer)
        return {
            "pixel_values": encoding["pixel_values"].to(self.dtype)
            if self.dtype
            else encoding["pixel_values"],
            "class_embeds": class_embeds,
            "labels": labels,
            "target_size": (image.height, image.width),
        }

    def _forward(
        self,
        model_inputs: dict[str, Any],
        crop_size: int | None = None,
        stride: int | None = None,
        window_batch_size: int = 4,
    ) -> dict[str, Any]:
        logits = slide_inference(
            self.model,
            model_inputs["pixel_values"],
            model_inputs["class_embeds"],
            crop_size=crop_size,
            stride=stride,
            window_batch_size=window_batch_size,
        )
        return {
            "logits": logits,
            "labels": model_inputs["labels"],
            "target_size": model_inputs["target_size"],
        }

    def postprocess(
        self, model_outputs: dict[str, Any], threshold: float | None = None
    ) -> list[dict[str, Any]]:
        logits = model_outputs["logits"].float()  # (1, C, h, w)
        labels = model_outputs["labels"]
        logits = F.interpolate(
            logits, size=tuple(model_outputs["target_size"]), mode="bilinear", align_corners=False
        )
        probs = logits[0].sigmoid()  # (C, H, W)
        scores, classes = probs.max(dim=0)
        if threshold is not None:
            classes = torch.where(scores >= threshold, classes, torch.full_like(classes, -1))
        segments = []
        for position in torch.unique(classes).tolist():
            if position < 0:
                continue
            inside = classes == position
            mask = Image.fromarray(inside.numpy().astype(np.uint8) * 255, mode="L")
            score = float(probs[position][inside].mean())
            segments.append({"label": labels[position], "score": score, "mask": mask})
        return segments


__all__ = ["TASK", "OpenVocabularySegmentationPipeline", "slide_inference", "sliding_windows"]
