"""Image processor of `CLIPForOpenSegmentation`: CLIP normalisation, aspect-preserving resize + pad to the
model size, and `post_process_semantic_segmentation` (class position per pixel, -1 below the threshold).

Self-contained: imports only torch and transformers, so this folder can be pushed to the Hub as remote code.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_utils import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    PILImageResampling,
    get_image_size_for_max_height_width,
)
from transformers.utils import logging

from .inference_clip_open_seg import DEFAULT_THRESHOLD, apply_threshold

logger = logging.get_logger(__name__)


class CLIPOpenSegImageProcessor(TorchvisionBackend):
    r"""
    Prepares images for [`CLIPForOpenSegmentation`].

    Each image is resized so that it fits inside `size` (`{"max_height", "max_width"}`, aspect ratio kept; the
    longer side becomes 512 by default), normalised with CLIP's mean and std, and padded at the bottom/right to
    `pad_size` (512 x 512), so a batch stacks into `pixel_values` of shape `(batch_size, 3, 512, 512)`.
    `post_process_semantic_segmentation` undoes the padding and resizing of one forward and decides each pixel as
    the `threshold` rule does. This one-forward geometry is what `model(**processor(images))` and transformers'
    `image-segmentation` pipeline use; `segment_images` (the `open-vocabulary-segmentation` pipeline, `magicseg
    predict`, `magicseg evaluate`) resizes the short side and slides windows instead.
    """

    resample = PILImageResampling.BICUBIC
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    size = {"max_height": 512, "max_width": 512}
    pad_size = {"height": 512, "width": 512}
    default_to_square = False
    do_resize = True
    do_center_crop = False
    do_rescale = True
    do_normalize = True
    do_pad = True
    do_convert_rgb = True
    model_input_names = ["pixel_values"]

    def _valid_region(self, target_size: tuple[int, int]) -> tuple[int, int]:
        """Height and width that an image of `target_size` occupies inside the padded `pixel_values`."""
        height, width = int(target_size[0]), int(target_size[1])
        size = self.size
        if self.do_resize:
            if size.max_height and size.max_width:
                height, width = get_image_size_for_max_height_width(
                    (height, width), size.max_height, size.max_width
                )
            elif size.height and size.width:
                height, width = size.height, size.width
            else:
                raise ValueError(
                    f"post-processing supports size with max_height/max_width or height/width (got {size})"
                )
        return height, width

    def post_process_semantic_segmentation(
        self,
        outputs: Any,
        target_sizes: list[tuple[int, int]] | torch.Tensor | None = None,
        threshold: float | None = DEFAULT_THRESHOLD,
    ) -> list[torch.Tensor]:
        """Turn model outputs into one class map per image.

        Args:
            outputs: a [`CLIPOpenSegOutput`] (or dict) whose `logits` have shape `(batch_size, C, H, W)`.
            target_sizes: `(height, width)` of each original image. The padding added by this processor is
                removed and the logits are resized (bilinear) before the decision. `None` keeps `(H, W)`.
            threshold: pixels whose best class probability (sigmoid) is below it get -1 ("no class"); 0.5 by
                default, the score each class's sigmoid is trained to separate at (the `threshold` rule of
                `segment_images`). `None` takes the plain argmax (every pixel gets a class).
        Returns:
            A list of `(height, width)` int64 tensors: class position `0..C-1`, or -1 below the threshold.
        """
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits  # (B, C, H, W)
        if target_sizes is not None and len(target_sizes) != logits.shape[0]:
            raise ValueError(
                f"target_sizes must hold one (height, width) per image (got {len(target_sizes)} for "
                f"{logits.shape[0]} images)"
            )
        results = []
        for index in range(logits.shape[0]):
            image_logits = logits[index : index + 1].float()  # (1, C, H, W)
            if target_sizes is not None:
                target = tuple(int(v) for v in target_sizes[index])
                if self.do_pad:
                    valid_height, valid_width = self._valid_region(target)
                    image_logits = image_logits[..., :valid_height, :valid_width]
                image_logits = F.interpolate(image_logits, size=target, mode="bilinear", align_corners=False)
            scores, classes = image_logits[0].sigmoid().max(dim=0)  # (H, W) each
            results.append(apply_threshold(classes, scores, threshold))
        return results


__all__ = ["CLIPOpenSegImageProcessor"]
