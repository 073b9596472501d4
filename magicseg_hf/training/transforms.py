"""Augmentation of a training pair: one set of random parameters for image, counterfactual and label.

The counterfactual loss compares the [CLS] embeddings of a scene with and without its target
classes; if the two images were augmented differently (another crop, another colour jitter),
the model could tell them apart by the augmentation alone. So every random parameter — the
resize scale, the crop window, the flip and the photometric distortion — is drawn once per pair
and applied to the image, the counterfactual and (geometric parameters only) the label.

torchvision's ``transforms.v2`` does exactly that when the three are passed to one call as
``tv_tensors.Image`` / ``tv_tensors.Mask`` (masks are resized with nearest interpolation and
padded with their own fill value). The draws come from torch's RNG seeded per pair, so a pair's
augmentation is a pure function of its seed (see :class:`PairTransform`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from magicseg_hf.labels import UNKNOWN


@dataclass(frozen=True)
class AugmentationSettings:
    """The paper's training augmentation (mmsegmentation's ZegCLIP pipeline), as numbers.

    ``scale_range`` multiplies the crop size to give the short side after resizing (0.5-2.0);
    ``photometric`` turns on brightness/contrast/saturation/hue jitter with mmseg's
    ``PhotoMetricDistortion`` ranges (brightness +-32/255, contrast and saturation 0.5-1.5, hue +-18
    of OpenCV's 180 steps = +-0.05 of a turn).
    """

    scale_range: tuple[float, float] = (0.5, 2.0)
    flip_probability: float = 0.5
    photometric: bool = True
    brightness: float = 32 / 255
    contrast: float = 0.5
    saturation: float = 0.5
    hue: float = 0.05


class PairTransform:
    """Image + counterfactual + label -> model tensors, with shared random parameters.

    Args:
        size: side of the square output (the crop size; the model's ``image_size`` by default).
        mean, std: normalisation of the image processor (CLIP's).
        train: random resize/crop/flip/photometric when True; a deterministic resize of the short
            side to ``size`` and a centre crop when False.
        settings: the augmentation ranges.

    Calling it with ``seed`` returns ``(pixel_values (3, S, S) float32, counterfactual (3, S, S)
    float32 or None, label (S, S) uint8)``; crop padding in the label is ``UNKNOWN`` (255), which
    the collator turns into the ignore label.
    """

    def __init__(
        self,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool = True,
        settings: AugmentationSettings | None = None,
    ) -> None:
        if size <= 0:
            raise ValueError(f"size must be positive (got {size})")
        self.size = int(size)
        self.train = train
        self.settings = settings or AugmentationSettings()
        s = self.settings
        if train:
            low, high = s.scale_range
            if not 0 < low <= high:
                raise ValueError(f"scale_range must satisfy 0 < low <= high (got {s.scale_range})")
            self.geometric = v2.Compose([
                v2.RandomResize(max(1, round(low * size)), max(2, round(high * size)) + 1, antialias=True),
                v2.RandomCrop(size, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: UNKNOWN}),
                v2.RandomHorizontalFlip(s.flip_probability),
            ])
            self.photometric = (
                v2.ColorJitter(
                    brightness=(max(0.0, 1 - s.brightness), 1 + s.brightness),
                    contrast=s.contrast, saturation=s.saturation, hue=s.hue,
                )
                if s.photometric
                else None
            )
        else:
            self.geometric = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)])
            self.photometric = None
        self.normalize = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])

    def __call__(
        self,
        image: Image.Image,
        counterfactual: Image.Image | None,
        label: Image.Image | np.ndarray,
        seed: int,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Augment one pair under ``seed`` (the same seed gives the same output)."""
        inputs = [tv_tensors.Image(v2.functional.pil_to_tensor(image.convert("RGB")))]
        if counterfactual is not None:
            inputs.append(tv_tensors.Image(v2.functional.pil_to_tensor(counterfactual.convert("RGB"))))
        mask = torch.from_numpy(np.array(label, dtype=np.uint8, copy=True))  # (H, W)
        if mask.shape != inputs[0].shape[-2:]:
            raise ValueError(f"label size {tuple(mask.shape)} differs from image size {tuple(inputs[0].shape[-2:])}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            *images, mask = self.geometric(*inputs, tv_tensors.Mask(mask))
            if self.photometric is not None:
                images = self.photometric(*images)
                images = list(images) if isinstance(images, tuple) else [images]
        pixels = [self.normalize(image) for image in images]
        return pixels[0], (pixels[1] if len(pixels) > 1 else None), mask.as_subclass(torch.Tensor)
