"""Augmentation of a training pair: one set of random parameters for image, counterfactual and label.

The counterfactual loss compares the [CLS] embeddings of a scene with and without its target
classes; if the two images were augmented differently (another crop, another colour jitter),
the model could tell them apart by the augmentation alone. So every random parameter — the
resize scale, the crop window, the flip and the photometric distortion — is drawn once per pair
and applied to the image, the counterfactual and (geometric parameters only) the label. The draws
come from a ``torch.Generator`` seeded per pair, so a pair's augmentation is a pure function of its
seed (see :class:`PairTransform`).

The training pipeline is the release's mmseg pipeline (``configs/_base_/datasets/magicseg_512x512.py``),
in its order: ``Resize(img_scale=(4S, S), ratio_range)`` -> ``RandomCrop(S, cat_max_ratio)`` ->
``RandomFlip`` -> ``PhotoMetricDistortion`` -> ``Normalize`` -> ``Pad(S, pad_val=0, seg_pad_val=255)``.
Three steps are options of :class:`AugmentationSettings` (the defaults are the release's; the
``tiny`` preset keeps the others, see :func:`augmentation_settings`):

- ``crop_padding``: ``"background"`` pads a crop smaller than S (scale < 1) at the bottom and right
  with background labels and the mean colour (0 after normalisation), as the release (its 255
  is its background, a negative for every class); ``"ignore"`` pads with ignored labels and black.
- ``cat_max_ratio``: mmseg's rule: redraw the crop window, up to ``cat_max_tries`` (10) times, while
  one class covers ``cat_max_ratio`` or more of the crop's labelled pixels or the crop holds fewer
  than two classes (background and unknown pixels are not counted: they are the release's ignore
  index 255). 1.0 turns it off.
- ``photometric_kind``: ``"mmseg"`` is mmseg's ``PhotoMetricDistortion`` written here
  (:func:`draw_photometric`, :func:`photometric_distortion`); ``"color_jitter"`` is torchvision's
  ``ColorJitter`` (all four operations always, multiplicative brightness).

The evaluation pipeline (``train=False``) resizes the short side to S and centre-crops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from magicseg_hf.labels import UNKNOWN

#: Dataset label of background (the collator maps it to the model's none label).
BACKGROUND = 0


@dataclass(frozen=True)
class AugmentationSettings:
    """The training augmentation, as numbers. The defaults are the release's (mmseg 0.24's ZegCLIP pipeline).

    ``scale_range`` multiplies the crop size to give the short side after resizing (0.5-2.0);
    ``photometric`` turns the photometric distortion on, ``photometric_kind`` picks it (``"mmseg"``:
    each operation with probability 0.5, brightness additive +-``brightness`` x 255, contrast and
    saturation in 1 +- ``contrast``/``saturation``, hue +- ``hue`` of a turn = +-18 of OpenCV's 180
    steps; ``"color_jitter"``: torchvision's ``ColorJitter`` with the same ranges, brightness
    multiplicative). ``crop_padding``, ``cat_max_ratio`` and ``cat_max_tries``: see the module docstring.
    """

    scale_range: tuple[float, float] = (0.5, 2.0)
    flip_probability: float = 0.5
    photometric: bool = True
    brightness: float = 32 / 255
    contrast: float = 0.5
    saturation: float = 0.5
    hue: float = 0.05
    photometric_kind: Literal["mmseg", "color_jitter"] = "mmseg"
    crop_padding: Literal["background", "ignore"] = "background"
    cat_max_ratio: float = 0.75
    cat_max_tries: int = 10

    def __post_init__(self) -> None:
        if self.photometric_kind not in ("mmseg", "color_jitter"):
            raise ValueError(f"photometric_kind must be 'mmseg' or 'color_jitter' (got {self.photometric_kind!r})")
        if self.crop_padding not in ("background", "ignore"):
            raise ValueError(f"crop_padding must be 'background' or 'ignore' (got {self.crop_padding!r})")
        if not 0 < self.cat_max_ratio <= 1:
            raise ValueError(f"cat_max_ratio must lie in (0, 1] (got {self.cat_max_ratio})")
        if self.cat_max_tries < 0:
            raise ValueError(f"cat_max_tries must be >= 0 (got {self.cat_max_tries})")


def augmentation_settings(preset: str, **overrides: object) -> AugmentationSettings:
    """The augmentation of ``magicseg train --preset preset`` (``paper``: the release's), with ``overrides``."""
    from magicseg_hf.presets import training_recipe

    recipe = training_recipe(preset)
    fields = {key: recipe[key] for key in ("crop_padding", "cat_max_ratio", "photometric_kind")}
    return replace(AugmentationSettings(), **{**fields, **overrides})


# ---- geometry -----------------------------------------------------------------------------------
def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """An integer in [low, high) (numpy's ``randint`` convention)."""
    return int(torch.randint(low, high, (), generator=generator))


def resized_size(height: int, width: int, size: int, ratio: float) -> tuple[int, int]:
    """mmseg ``Resize(img_scale=(4 size, size), ratio_range)`` with ``keep_ratio`` (mmcv ``imrescale``): the scale
    factor that fits the long side in ``int(4 size ratio)`` and the short side in ``int(size ratio)``, sizes rounded
    half up; returns (height, width)."""
    long_edge, short_edge = int(4 * size * ratio), int(size * ratio)  # mmseg's random_sample_ratio truncates
    factor = min(long_edge / max(height, width), short_edge / min(height, width))
    return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))


def crop_is_balanced(label: torch.Tensor, cat_max_ratio: float) -> bool:
    """mmseg ``RandomCrop``'s test: at least two classes, none covering ``cat_max_ratio`` or more of the counted
    pixels. Background (0) and unknown (255) pixels are not counted (the release's ignore index 255 is both).

    label: (h, w) dataset labels of the crop.
    """
    values, counts = torch.unique(label, return_counts=True)
    counts = counts[(values != BACKGROUND) & (values != UNKNOWN)]
    return len(counts) > 1 and float(counts.max()) / float(counts.sum()) < cat_max_ratio


def crop_window(
    label: torch.Tensor, size: int, cat_max_ratio: float = 1.0, max_tries: int = 10,
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """mmseg ``RandomCrop.get_crop_bbox`` with its ``cat_max_ratio`` retries: (top, left, height, width).

    The window is ``min(size, H) x min(size, W)`` at a uniform offset; with ``cat_max_ratio < 1`` it is
    redrawn up to ``max_tries`` times while :func:`crop_is_balanced` fails (the last draw is kept as it is).

    label: (H, W) dataset labels of the resized image.
    """
    generator = generator or torch.Generator().manual_seed(0)
    height, width = label.shape[-2:]
    crop_h, crop_w = min(size, height), min(size, width)

    def draw() -> tuple[int, int, int, int]:
        return _randint(generator, 0, height - crop_h + 1), _randint(generator, 0, width - crop_w + 1), crop_h, crop_w

    window = draw()
    if cat_max_ratio < 1.0:
        for _ in range(max_tries):
            top, left, h, w = window
            if crop_is_balanced(label[top:top + h, left:left + w], cat_max_ratio):
                break
            window = draw()
    return window


# ---- mmseg's PhotoMetricDistortion --------------------------------------------------------------
@dataclass(frozen=True)
class PhotometricDraw:
    """One draw of mmseg's ``PhotoMetricDistortion``: each value is ``None`` when its operation is skipped.

    brightness: added to every channel (0-255 scale); contrast: a factor on every channel; saturation: a factor
    on HSV saturation; hue: a shift in OpenCV's 180 hue steps (2 degrees each); contrast_first: contrast before
    the colour-space operations (mmseg's ``mode == 1``) rather than after them.
    """

    brightness: float | None
    contrast: float | None
    saturation: float | None
    hue: int | None
    contrast_first: bool


def draw_photometric(settings: AugmentationSettings, generator: torch.Generator) -> PhotometricDraw:
    """Draw mmseg's operations: each with probability 0.5, brightness in +-32, contrast and saturation in
    0.5-1.5, hue an integer in [-18, 18) (numpy's ``randint(-18, 18)``), the contrast position at random."""
    delta = settings.brightness * 255
    brightness = _uniform(generator, -delta, delta) if _randint(generator, 0, 2) else None
    contrast_first = bool(_randint(generator, 0, 2))
    contrast = (_uniform(generator, 1 - settings.contrast, 1 + settings.contrast)
                if _randint(generator, 0, 2) else None)
    saturation = (_uniform(generator, 1 - settings.saturation, 1 + settings.saturation)
                  if _randint(generator, 0, 2) else None)
    hue_steps = round(settings.hue * 360)  # a turn is 180 OpenCV steps: 0.05 -> 18
    hue = _randint(generator, -hue_steps, hue_steps) if _randint(generator, 0, 2) else None
    return PhotometricDraw(brightness, contrast, saturation, hue, contrast_first)


def _convert(values: torch.Tensor, alpha: float = 1.0, beta: float = 0.0) -> torch.Tensor:
    """mmseg's ``convert``: ``x * alpha + beta``, clipped to 0-255, truncated to integers (as ``astype(uint8)``)."""
    return (values * alpha + beta).clamp(0, 255).floor()


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB in [0, 1] -> (3, H, W) HSV, hue in [0, 1) turns, saturation and value in [0, 1]."""
    red, green, blue = rgb.unbind(0)
    value, _ = rgb.max(0)
    minimum, _ = rgb.min(0)
    chroma = value - minimum
    saturation = torch.where(value > 0, chroma / value.clamp(min=1e-12), torch.zeros_like(value))
    safe = chroma.clamp(min=1e-12)
    hue = torch.where(value == red, ((green - blue) / safe) % 6,
                      torch.where(value == green, (blue - red) / safe + 2, (red - green) / safe + 4))
    hue = torch.where(chroma > 0, hue / 6, torch.zeros_like(hue))
    return torch.stack([hue % 1.0, saturation, value])


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """(3, H, W) HSV as :func:`rgb_to_hsv` returns it -> (3, H, W) RGB in [0, 1]."""
    hue, saturation, value = hsv.unbind(0)
    sector = hue * 6
    k = torch.stack([(5 + sector) % 6, (3 + sector) % 6, (1 + sector) % 6])  # R, G, B
    weight = torch.minimum(k, 4 - k).clamp(0, 1)
    return value - value * saturation * weight


def photometric_distortion(image: torch.Tensor, draw: PhotometricDraw) -> torch.Tensor:
    """Apply one :class:`PhotometricDraw` as mmseg's ``PhotoMetricDistortion.__call__`` does.

    image: (3, H, W) uint8 RGB -> (3, H, W) uint8. Brightness and contrast act on the 0-255 values and are
    truncated to integers after each operation; saturation and hue act in HSV (computed in floating point:
    OpenCV's 8-bit HSV rounds differently by a step at most).
    """
    values = image.float()
    if draw.brightness is not None:
        values = _convert(values, beta=draw.brightness)
    if draw.contrast_first and draw.contrast is not None:
        values = _convert(values, alpha=draw.contrast)
    if draw.saturation is not None or draw.hue is not None:
        if draw.saturation is not None:
            hsv = rgb_to_hsv(values / 255)
            hsv[1] = (hsv[1] * draw.saturation).clamp(0, 1)
            values = (hsv_to_rgb(hsv) * 255).round()
        if draw.hue is not None:
            hsv = rgb_to_hsv(values / 255)
            hsv[0] = (hsv[0] + draw.hue / 180) % 1.0
            values = (hsv_to_rgb(hsv) * 255).round()
    if not draw.contrast_first and draw.contrast is not None:
        values = _convert(values, alpha=draw.contrast)
    return values.clamp(0, 255).to(torch.uint8)


# ---- the pair transform -------------------------------------------------------------------------
class PairTransform:
    """Image + counterfactual + label -> model tensors, with shared random parameters.

    Args:
        size: side of the square output (the crop size; the model's ``image_size`` by default).
        mean, std: normalisation of the image processor (CLIP's).
        train: the release's random resize/crop/flip/photometric/pad when True; a deterministic resize of the
            short side to ``size`` and a centre crop when False.
        settings: the augmentation ranges and options (default: the release's).

    Calling it with ``seed`` returns ``(pixel_values (3, S, S) float32, counterfactual (3, S, S)
    float32 or None, label (S, S) uint8)`` in dataset label values (0 background, 1..n classes,
    ``UNKNOWN`` 255); crop padding is background (0) or ``UNKNOWN`` per ``settings.crop_padding``.
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
        low, high = s.scale_range
        if train and not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high (got {s.scale_range})")
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(3, 1, 1)
        self.color_jitter = v2.ColorJitter(
            brightness=(max(0.0, 1 - s.brightness), 1 + s.brightness),
            contrast=s.contrast, saturation=s.saturation, hue=s.hue,
        )

    def _normalize(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) uint8 -> (3, H, W) float32, normalised."""
        return (image.float() / 255 - self.mean) / self.std

    def __call__(
        self,
        image: Image.Image,
        counterfactual: Image.Image | None,
        label: Image.Image | np.ndarray,
        seed: int,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Augment one pair under ``seed`` (the same seed gives the same output)."""
        images = [v2.functional.pil_to_tensor(image.convert("RGB"))]  # (3, H, W) uint8
        if counterfactual is not None:
            other = counterfactual.convert("RGB")
            if other.size != image.size:
                other = other.resize(image.size, Image.BILINEAR)
            images.append(v2.functional.pil_to_tensor(other))
        mask = torch.from_numpy(np.array(label, dtype=np.uint8, copy=True))  # (H, W)
        if mask.shape != images[0].shape[-2:]:
            raise ValueError(f"label size {tuple(mask.shape)} differs from image size {tuple(images[0].shape[-2:])}")
        if self.train:
            images, mask = self._augment(images, mask, seed)
        else:
            images = [v2.functional.center_crop(v2.functional.resize(x, self.size, antialias=True), self.size)
                      for x in images]
            mask = v2.functional.center_crop(
                v2.functional.resize(mask[None], self.size, interpolation=v2.InterpolationMode.NEAREST), self.size
            )[0]
            images = [self._normalize(x) for x in images]
        return images[0], (images[1] if len(images) > 1 else None), mask

    def _augment(
        self, images: list[torch.Tensor], mask: torch.Tensor, seed: int
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Resize -> crop -> flip -> photometric -> normalise -> pad, one draw for every image of the pair.

        images: (3, H, W) uint8 each; mask: (H, W) uint8. Returns (3, S, S) float32 images and an (S, S) mask.
        """
        s, size = self.settings, self.size
        generator = torch.Generator().manual_seed(int(seed) % (2**63))
        height, width = mask.shape
        new_h, new_w = resized_size(height, width, size, _uniform(generator, *s.scale_range))
        images = [v2.functional.resize(x, [new_h, new_w], antialias=True) for x in images]
        mask = v2.functional.resize(mask[None], [new_h, new_w], interpolation=v2.InterpolationMode.NEAREST)[0]

        top, left, crop_h, crop_w = crop_window(mask, size, s.cat_max_ratio, s.cat_max_tries, generator)
        images = [x[:, top:top + crop_h, left:left + crop_w] for x in images]
        mask = mask[top:top + crop_h, left:left + crop_w]

        if _uniform(generator, 0.0, 1.0) < s.flip_probability:
            images, mask = [x.flip(-1) for x in images], mask.flip(-1)

        if s.photometric and s.photometric_kind == "mmseg":
            draw = draw_photometric(s, generator)
            images = [photometric_distortion(x, draw) for x in images]
        elif s.photometric:
            with torch.random.fork_rng(devices=[]):  # ColorJitter draws from torch's global RNG
                torch.manual_seed(int(torch.randint(0, 2**62, (), generator=generator)))
                jittered = self.color_jitter(*[tv_tensors.Image(x) for x in images])
            jittered = list(jittered) if isinstance(jittered, tuple) else [jittered]
            images = [x.as_subclass(torch.Tensor) for x in jittered]

        images = [self._normalize(x) for x in images]
        pad_h, pad_w = size - crop_h, size - crop_w
        if pad_h or pad_w:  # bottom and right, as mmcv.impad
            if s.crop_padding == "background":
                image_fill, label_fill = 0.0, BACKGROUND  # 0 after normalisation: the mean colour
            else:
                image_fill, label_fill = None, UNKNOWN  # black
            padded = []
            for x in images:
                canvas = (torch.zeros(3, size, size) if image_fill is not None
                          else (-self.mean / self.std).expand(3, size, size).clone())
                canvas[:, :crop_h, :crop_w] = x
                padded.append(canvas)
            images = padded
            canvas = torch.full((size, size), label_fill, dtype=torch.uint8)
            canvas[:crop_h, :crop_w] = mask
            mask = canvas
        return images, mask.contiguous()
