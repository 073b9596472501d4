"""The one inference path of `CLIPForOpenSegmentation`: resize, slide, average, resize back, decide.

Every caller segments through `segment_images` — the `open-vocabulary-segmentation` pipeline, `magicseg predict`,
the Space and `magicseg evaluate` — so one picture gets one answer whichever door it comes in by:

1. **resize** (`InferenceGeometry.resized_size`): the short side to `short_side` with the aspect ratio kept,
   unless the long side would pass `max_long_side` (then the long side to it), as mmsegmentation's
   `Resize(scale=(max_long_side, short_side), keep_ratio=True)`; bilinear without antialiasing, rounded to 8-bit
   values (what `cv2.resize` returns), then CLIP's normalisation;
2. **slide** `window`-pixel windows every `stride` pixels (mmseg's grid; an image smaller than a window is padded
   with the mean colour), or, with `mode="whole"`, one forward of the whole image (padded to a multiple of the
   patch size). Windows are batched `window_batch_size` at a time across windows *and* images; the vision tower
   runs once per window and the decoder runs on the classes a chunk at a time, so its patch-grid logits
   `(Q, h/16, w/16)` are all that is kept per window;
3. **average as probabilities**: each window's logits are upsampled to the window (as `forward` does), turned into
   per-class probabilities (sigmoid) and averaged over the windows covering a pixel — ZegCLIP's slide inference
   averages sigmoid scores, not logits;
4. **resize back** bilinearly to the original image (optionally refined, e.g. PAMR, by a `refine` callable);
5. **decide** each pixel with one named rule (`Decision`):
   - `threshold` (the default, at the score the model was trained to separate at: sigmoid 0.5): the best class
     if its probability reaches the threshold, else no class (-1);
   - `background-class`: background text queries compete in the argmax; a pixel they win has no class (-1);
     an optional threshold also applies;
   - `argmax`: every pixel takes its best class (no background; e.g. PASCAL Context 59).
   Optionally, classes holding at most `area_threshold` of the pixels the classes (not background) win in the
   argmax are dropped — their probabilities set to 0 — and every pixel decided again (SCLIP's `area_thd`: one
   pass, before the threshold).

Steps 3-5 run a chunk of classes at a time (`score_budget` probabilities held at once), folding each chunk into
a running best, so a 1,203-class LVIS vocabulary on a large photo needs bounded memory.

Self-contained: imports only torch, numpy and PIL, so this folder can be pushed to the Hub as remote code.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

#: The decision rules (see the module docstring).
DECISION_RULES = ("threshold", "background-class", "argmax")
#: The rule a user gets by default: unnamed pixels stay unlabelled.
DEFAULT_DECISION = "threshold"
#: The default threshold: each class's sigmoid is trained (focal loss) to separate at 0.5.
DEFAULT_THRESHOLD = 0.5
#: Slide over windows, or one forward of the whole image.
INFERENCE_MODES = ("slide", "whole")
#: How window scores are combined (recorded by callers, e.g. in results files; the only one implemented).
SCORE_AVERAGING = "sigmoid probabilities averaged over the windows covering a pixel, then resized bilinearly"
#: How a class's synonyms combine: `max` of their probabilities (SCLIP, NACLIP) or `mean` of their embeddings.
SYNONYM_RULES = ("max", "mean")
#: Probabilities held at once while classes are decided (classes x pixels, float32): bounds memory.
DEFAULT_SCORE_BUDGET = 1 << 22
#: Windows per model forward by default.
DEFAULT_WINDOW_BATCH_SIZE = 8
#: Largest number of class positions a call may hold (a label map is written as 16-bit PNG at most).
MAX_CLASSES = 65534
#: Position of "no class" in a result.
NO_CLASS = -1

T = TypeVar("T")


# ----------------------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------------------
def keep_ratio_size(height: int, width: int, short_side: int, max_long_side: int | None) -> tuple[int, int]:
    """mmseg's keep-ratio rescale: `scale = min(max_long_side / long, short_side / short)` (no cap when None),
    each side `int(side * scale + 0.5)`, at least 1 pixel."""
    scale = short_side / min(height, width)
    if max_long_side is not None:
        scale = min(scale, max_long_side / max(height, width))
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer (got {value!r})")


@dataclass(frozen=True)
class InferenceGeometry:
    """How an image is resized and tiled for the model.

    Attributes:
        short_side: the short side after resizing (px).
        max_long_side: the long side never passes it after resizing (mmseg's 2048); None: no cap (ZegCLIP's
            `min_size` resize).
        window: side of the square sliding window (px), a multiple of the patch size.
        stride: step between windows (px), at most `window`.
        mode: `slide` or `whole` (one forward of the whole resized image).
    """

    short_side: int = 512
    max_long_side: int | None = 2048
    window: int = 512
    stride: int = 426
    mode: str = "slide"

    def __post_init__(self) -> None:
        for name in ("short_side", "window", "stride"):
            _positive_int(name, getattr(self, name))
        if self.max_long_side is not None:
            _positive_int("max_long_side", self.max_long_side)
        if self.mode not in INFERENCE_MODES:
            raise ValueError(f"mode must be one of {', '.join(INFERENCE_MODES)} (got {self.mode!r})")
        if self.stride > self.window:
            raise ValueError(
                f"stride must not exceed window, or pixels between windows go unpredicted (got stride "
                f"{self.stride} and window {self.window})"
            )
        if self.max_long_side is not None and self.max_long_side < self.short_side:
            raise ValueError(
                f"max_long_side must be at least short_side (got {self.max_long_side} and {self.short_side})"
            )
        if self.mode == "slide" and self.window > self.short_side:
            raise ValueError(
                f"window {self.window} is larger than the resized image's short side {self.short_side}: every "
                "window would be mostly padding; use a window of at most the short side"
            )

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> InferenceGeometry:
        """The model's own geometry (`slide_crop_size`/`slide_stride`, short side = window), with overrides."""
        window = int(getattr(config, "slide_crop_size", 512))
        values = {
            "short_side": window,
            "max_long_side": int(getattr(config, "inference_max_long_side", 2048)),
            "window": window,
            "stride": int(getattr(config, "slide_stride", 426)),
            "mode": "slide",
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """`(height, width)` after the keep-ratio resize (mmseg's `rescale_size`, rounded half up, at least 1)."""
        return keep_ratio_size(height, width, self.short_side, self.max_long_side)

    def window_boxes(self, height: int, width: int, patch_size: int) -> list[tuple[int, int, int, int]]:
        """Boxes `(top, left, bottom, right)` over a `(height, width)` image padded as `padded_size` says."""
        padded_height, padded_width = self.padded_size(height, width, patch_size)
        if self.mode == "whole":
            return [(0, 0, padded_height, padded_width)]
        return sliding_windows(padded_height, padded_width, self.window, self.stride)

    def padded_size(self, height: int, width: int, patch_size: int) -> tuple[int, int]:
        """Slide: at least one window; whole: the next multiple of the patch size."""
        if self.mode == "whole":
            return math.ceil(height / patch_size) * patch_size, math.ceil(width / patch_size) * patch_size
        return max(height, self.window), max(width, self.window)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Decision:
    """How each pixel's class is decided from the class probabilities.

    Attributes:
        rule: one of `DECISION_RULES`.
        threshold: the lowest probability the best class needs (required by `threshold`, optional with
            `background-class`, not allowed with `argmax`).
        area_threshold: drop classes holding at most this share of the labelled pixels, then decide again.
    """

    rule: str = DEFAULT_DECISION
    threshold: float | None = DEFAULT_THRESHOLD
    area_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.rule not in DECISION_RULES:
            raise ValueError(f"decision rule must be one of {', '.join(DECISION_RULES)} (got {self.rule!r})")
        for name in ("threshold", "area_threshold"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not 0.0 <= float(value) <= 1.0):
                raise ValueError(f"{name} must lie in [0, 1] (got {value!r})")
        if self.rule == "threshold" and self.threshold is None:
            raise ValueError("the threshold rule needs a threshold (got none)")
        if self.rule == "argmax" and self.threshold is not None:
            raise ValueError(
                f"the argmax rule gives every pixel a class and takes no threshold (got {self.threshold}); "
                "use the threshold rule"
            )

    @classmethod
    def named(cls, rule: str | None = None, threshold: float | None = None, **kwargs: Any) -> Decision:
        """A rule by name with its usual threshold: `threshold` -> 0.5 unless given, others -> the given one."""
        rule = rule or DEFAULT_DECISION
        if rule == "threshold" and threshold is None:
            threshold = DEFAULT_THRESHOLD
        return cls(rule=rule, threshold=threshold, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Queries:
    """Text queries and the class position each stands for.

    Attributes:
        embeds: `(Q, D)` L2-normalised text embeddings.
        positions: `(Q,)` int64: the class position a query votes for, or -1 for a background query.
        names: the class names, in position order (`names[p]` is position `p`).
        background: the background queries' texts.
    """

    embeds: torch.Tensor
    positions: torch.Tensor
    names: tuple[str, ...]
    background: tuple[str, ...] = ()

    @classmethod
    def encode(
        cls,
        model: Any,
        classes: Sequence[str | Sequence[str]],
        background: Sequence[str] = (),
        synonyms: str = "max",
        tokenizer: Any = None,
    ) -> Queries:
        """Encode class names (each a name or a list of synonyms) and background texts.

        Queries are ordered classes first (each class's synonyms in order), then the background texts, so every
        caller asking the same question runs the same computation.

        Args:
            model: a `CLIPForOpenSegmentation` (`encode_classes`, cached per name).
            classes: per class position, its name or its synonyms (the first is its display name).
            background: texts that mean "no class" (the `background-class` rule).
            synonyms: `max` (one query per synonym; the best one speaks for the class) or `mean` (the synonyms'
                embeddings averaged into one query).
            tokenizer: the CLIP tokenizer (default: the model's).
        """
        if synonyms not in SYNONYM_RULES:
            raise ValueError(f"synonyms must be one of {', '.join(SYNONYM_RULES)} (got {synonyms!r})")
        groups = [[item] if isinstance(item, str) else list(item) for item in classes]
        names = check_class_names([group[0] if group else "" for group in groups], "class names")
        for group in groups:
            check_class_names(group, f"synonyms of {group[0]!r}")
        background = tuple(check_class_names(list(background), "background texts", allow_empty=True))
        if len(names) > MAX_CLASSES:
            raise ValueError(f"at most {MAX_CLASSES} classes per call (got {len(names)})")
        every = [name for group in groups for name in group] + list(background)
        embeds = model.encode_classes(every, tokenizer=tokenizer).float()  # (S, D)
        owners = [position for position, group in enumerate(groups) for _ in group] + [NO_CLASS] * len(background)
        owners_t = torch.tensor(owners, dtype=torch.long, device=embeds.device)  # (S,)
        if synonyms == "mean" and any(len(group) > 1 for group in groups):
            keep = owners_t >= 0
            sums = embeds.new_zeros((len(groups), embeds.shape[1])).index_add_(0, owners_t[keep], embeds[keep])
            embeds = torch.cat([F.normalize(sums, dim=-1), embeds[~keep]])  # (C + B, D)
            owners_t = torch.cat(
                [torch.arange(len(groups), device=embeds.device), owners_t[~keep]]
            )
        return cls(embeds=embeds, positions=owners_t, names=tuple(names), background=background)

    def __len__(self) -> int:
        return int(self.positions.shape[0])


def check_class_names(names: Any, what: str = "class names", allow_empty: bool = False) -> list[str]:
    """Names as a list: strings, not blank, each once; at least one unless `allow_empty`. ValueError otherwise.

    A single string is one name.
    """
    if isinstance(names, str):
        names = [names]
    names = list(names) if names is not None else []
    if not names and not allow_empty:
        raise ValueError(f"{what} must hold at least one class name (got an empty list)")
    bad = [name for name in names if not isinstance(name, str) or not name.strip()]
    if bad:
        raise ValueError(f"{what} must be non-empty strings (got {bad!r})")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{what} must name each class once (got duplicates: {duplicates})")
    return names


@dataclass
class SegmentationResult:
    """One image's answer.

    Attributes:
        labels: `(H, W)` int64 class positions at the image's size, -1 where no class was chosen.
        scores: `(H, W)` float32 probability of the query that won the pixel (its class's or background's).
    """

    labels: torch.Tensor
    scores: torch.Tensor


# ----------------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------------
def as_rgb(image: Any, what: str = "image") -> Image.Image:
    """A PIL image as 8-bit RGB, the way a viewer shows it.

    EXIF orientation is applied (`ImageOps.exif_transpose`), palette/grey/CMYK/RGBA images are converted (alpha
    dropped), 16-bit images scaled to 8 bits. Numpy arrays `(H, W)` / `(H, W, 3)` of uint8 are accepted.

    Raises:
        ValueError: not an image, an empty image, a float image, or one over PIL's decompression-bomb limit.
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
            raise ValueError(
                f"{what} as an array must be uint8 of shape (H, W) or (H, W, 3) (got {image.dtype} {image.shape})"
            )
        image = Image.fromarray(image.squeeze(-1) if image.ndim == 3 and image.shape[2] == 1 else image)
    if not isinstance(image, Image.Image):
        raise ValueError(f"{what} must be a PIL image, a path or a URL (got {type(image).__name__})")
    width, height = image.size
    if width < 1 or height < 1:
        raise ValueError(f"{what} is empty ({width}x{height} pixels)")
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise ValueError(
            f"{what} has {width}x{height} = {width * height:,} pixels, over the limit of {limit:,} "
            "(PIL's Image.MAX_IMAGE_PIXELS); resize it first"
        )
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        maximum = 65535.0 if image.mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(np.rint(array * (255.0 / maximum)), 0, 255).astype(np.uint8), mode="L")
    elif image.mode == "F":
        raise ValueError(f"{what} is a floating-point image (mode F); save it as an 8- or 16-bit image")
    return image.convert("RGB")


def prepare_image(
    image: Image.Image,
    size: tuple[int, int],
    image_mean: Sequence[float],
    image_std: Sequence[float],
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """An RGB image resized to `size` and normalised: `(3, h, w)` float32.

    Bilinear, half-pixel centres, no antialiasing (as `cv2.resize`), rounded to 0..255, then `(x/255 - mean)/std`.
    """
    array = np.array(image.convert("RGB"), dtype=np.uint8)  # (H, W, 3), a writable copy
    pixels = torch.from_numpy(array).to(device).permute(2, 0, 1).float()  # (3, H, W), 0..255
    if tuple(pixels.shape[-2:]) != tuple(size):
        pixels = F.interpolate(pixels[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
        pixels = pixels.round().clamp(0, 255)  # (3, h, w), 8-bit values
    mean = torch.tensor(image_mean, dtype=torch.float32, device=pixels.device).view(3, 1, 1)
    std = torch.tensor(image_std, dtype=torch.float32, device=pixels.device).view(3, 1, 1)
    return (pixels / 255.0 - mean) / std


def sliding_windows(height: int, width: int, crop_size: int, stride: int) -> list[tuple[int, int, int, int]]:
    """Window boxes `(top, left, bottom, right)` covering a `height x width` image (mmseg's slide grid).

    The last window of each row/column is shifted back so that it ends at the border; windows are clipped to the
    image when it is smaller than `crop_size`.
    """
    if crop_size <= 0 or stride <= 0:
        raise ValueError(f"crop_size and stride must be positive (got crop_size={crop_size}, stride={stride})")
    rows = max(height - crop_size + stride - 1, 0) // stride + 1
    cols = max(width - crop_size + stride - 1, 0) // stride + 1
    boxes = []
    for row in range(rows):
        for col in range(cols):
            bottom, right = min(row * stride + crop_size, height), min(col * stride + crop_size, width)
            top, left = max(bottom - crop_size, 0), max(right - crop_size, 0)
            boxes.append((top, left, bottom, right))
    return boxes


# ----------------------------------------------------------------------------------------------------------
# Windows through the model, batched across images
# ----------------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Pending(Generic[T]):
    """One image whose windows are going through the model."""

    payload: T
    image: Image.Image
    pixel_values: torch.Tensor  # (3, H', W') padded
    size: tuple[int, int]  # (h, w) resized, before padding
    boxes: list[tuple[int, int, int, int]]
    window_logits: list[torch.Tensor | None] = field(default_factory=list)  # per box (Q, gh, gw)
    left: int = 0


def _box_shape(entry: tuple[_Pending[Any], int]) -> tuple[int, int]:
    top, left, bottom, right = entry[0].boxes[entry[1]]
    return bottom - top, right - left


def classes_per_chunk(num_queries: int, num_pixels: int, score_budget: int) -> int:
    """Queries per chunk so that `chunk x num_pixels` probabilities stay within `score_budget`."""
    return max(1, min(num_queries, score_budget // max(1, num_pixels)))


def window_logits_stream(
    model: Any,
    images: Iterable[tuple[T, Image.Image]],
    queries: Queries,
    geometry: InferenceGeometry,
    image_mean: Sequence[float],
    image_std: Sequence[float],
    window_batch_size: int = DEFAULT_WINDOW_BATCH_SIZE,
    score_budget: int = DEFAULT_SCORE_BUDGET,
) -> Iterator[_Pending[T]]:
    """Each image with its windows' patch-grid logits, in input order.

    Windows of consecutive images share forwards (`window_batch_size` per forward), so small images do not leave
    batches half empty. The vision tower runs once per window; `model.mask_logits` decodes the queries in chunks.
    """
    _positive_int("window_batch_size", window_batch_size)
    device = model.device
    dtype = model.dtype
    patch = model.config.clip_config.vision_config.patch_size
    if geometry.mode == "slide" and geometry.window % patch:
        raise ValueError(f"window must be a multiple of the model's patch size {patch} (got {geometry.window})")
    grid_pixels = (geometry.window // patch) ** 2
    decoder_chunk = classes_per_chunk(len(queries), window_batch_size * grid_pixels * 8, score_budget)
    embeds = queries.embeds.to(device=device, dtype=dtype)
    pending: deque[_Pending[T]] = deque()
    queue: deque[tuple[_Pending[T], int]] = deque()

    def forward(count: int) -> None:
        chunk = [queue.popleft() for _ in range(count)]
        groups: list[list[tuple[_Pending[T], int]]] = []  # consecutive windows of one size share a forward
        for entry in chunk:
            if groups and _box_shape(groups[-1][0]) == _box_shape(entry):
                groups[-1].append(entry)
            else:
                groups.append([entry])
        for group in groups:
            crops = torch.stack(
                [item.pixel_values[:, top:bottom, left:right]
                 for item, index in group for top, left, bottom, right in [item.boxes[index]]]
            ).to(dtype)  # (n, 3, window, window)
            with torch.no_grad():
                logits = model.mask_logits(crops, embeds, classes_per_chunk=decoder_chunk)  # (n, Q, gh, gw)
            for (item, index), item_logits in zip(group, logits.float()):
                item.window_logits[index] = item_logits
                item.left -= 1

    def finished() -> Iterator[_Pending[T]]:
        while pending and pending[0].left == 0:
            yield pending.popleft()

    for payload, image in images:
        height, width = geometry.resized_size(image.height, image.width)
        pixel_values = prepare_image(image, (height, width), image_mean, image_std, device)  # (3, h, w)
        padded_height, padded_width = geometry.padded_size(height, width, patch)
        pixel_values = F.pad(pixel_values, (0, padded_width - width, 0, padded_height - height))  # mean colour
        boxes = geometry.window_boxes(height, width, patch)
        item = _Pending(payload, image, pixel_values, (height, width), boxes, [None] * len(boxes), len(boxes))
        pending.append(item)
        queue.extend((item, index) for index in range(len(boxes)))
        while len(queue) >= window_batch_size:
            forward(window_batch_size)
            yield from finished()
    while queue:
        forward(min(window_batch_size, len(queue)))
        yield from finished()


# ----------------------------------------------------------------------------------------------------------
# Scores and the decision
# ----------------------------------------------------------------------------------------------------------
def chunk_probabilities(
    item: _Pending[Any], start: int, stop: int, output_size: tuple[int, int], sigmoid: bool = True
) -> torch.Tensor:
    """Queries `start:stop` of one image: `(c, H, W)` window-averaged sigmoid probabilities at `output_size`
    (`sigmoid=False`: the window logits themselves averaged, as the training-free CLIP harnesses average cosines)."""
    height, width = item.size
    padded_height, padded_width = item.pixel_values.shape[-2:]
    first = item.window_logits[0]
    assert first is not None
    total = first.new_zeros((stop - start, padded_height, padded_width))  # (c, H', W')
    counts = first.new_zeros((1, padded_height, padded_width))
    shapes = {(bottom - top, right - left) for top, left, bottom, right in item.boxes}
    if len(shapes) == 1:  # slide mode: every window one size, upsampled in one call
        stacked = torch.stack([logits[start:stop] for logits in item.window_logits])  # (n, c, gh, gw)
        windows = F.interpolate(stacked, size=shapes.pop(), mode="bilinear", align_corners=False)
        windows = windows.sigmoid_() if sigmoid else windows
    else:
        windows = [
            _maybe_sigmoid(F.interpolate(logits[None, start:stop], size=(bottom - top, right - left),
                                         mode="bilinear", align_corners=False)[0], sigmoid)
            for (top, left, bottom, right), logits in zip(item.boxes, item.window_logits)
        ]  # fmt: skip
    for (top, left, bottom, right), window in zip(item.boxes, windows):  # window: (c, h_w, w_w), as `forward`
        total[:, top:bottom, left:right] += window
        counts[:, top:bottom, left:right] += 1
    probabilities = (total / counts)[:, :height, :width]  # (c, h, w)
    if (height, width) != tuple(output_size):
        probabilities = F.interpolate(
            probabilities[None], size=tuple(output_size), mode="bilinear", align_corners=False
        )[0]  # (c, H, W)
    return probabilities


def _maybe_sigmoid(logits: torch.Tensor, sigmoid: bool) -> torch.Tensor:
    return logits.sigmoid_() if sigmoid else logits


def decide(
    item: _Pending[Any],
    queries: Queries,
    decision: Decision,
    output_size: tuple[int, int],
    score_budget: int = DEFAULT_SCORE_BUDGET,
    refine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    excluded: frozenset[int] = frozenset(),
    softmax_scale: float | None = None,
) -> SegmentationResult:
    """The decision for one image, a chunk of queries at a time (see the module docstring).

    `softmax_scale`: None (this model's sigmoids), or the training-free harnesses' score: window logits averaged,
    resized (and refined), then `softmax(logits x softmax_scale)` over all queries at once (one chunk).
    """
    positions = queries.positions.to(item.pixel_values.device)  # (Q,)
    height, width = output_size
    chunk = classes_per_chunk(len(queries), height * width, score_budget) if softmax_scale is None else len(queries)
    guide = None
    if refine is not None:
        real = item.pixel_values[:, : item.size[0], : item.size[1]]
        guide = F.interpolate(real[None], size=output_size, mode="bilinear", align_corners=False)  # (1, 3, H, W)
    best_score = item.pixel_values.new_full((height, width), -1.0)
    best_position = torch.full((height, width), NO_CLASS, dtype=torch.long, device=item.pixel_values.device)
    for start in range(0, len(queries), chunk):
        stop = min(start + chunk, len(queries))
        probabilities = chunk_probabilities(item, start, stop, output_size, softmax_scale is None)  # (c, H, W)
        if guide is not None:
            probabilities = refine(guide, probabilities[None])[0]
        if softmax_scale is not None:
            probabilities = (probabilities * softmax_scale).softmax(dim=0)
        if excluded:  # dropped classes' probabilities are 0 everywhere (SCLIP's area_thd)
            dropped = torch.tensor([int(p) in excluded for p in positions[start:stop].tolist()], device=positions.device)
            probabilities[dropped] = 0.0
        score, index = probabilities.max(dim=0)  # (H, W) each
        better = score > best_score  # strictly: ties keep the earlier query, as one argmax over all does
        best_score = torch.where(better, score, best_score)
        best_position = torch.where(better, positions[start:stop][index], best_position)
    if decision.area_threshold is not None and not excluded:
        # Areas of the argmax before the threshold, background wins left out; one pass, as SCLIP does.
        small = small_classes(best_position, decision.area_threshold)
        if small:
            return decide(item, queries, decision, output_size, score_budget, refine, frozenset(small), softmax_scale)
    best_position = apply_threshold(best_position, best_score, decision.threshold)
    return SegmentationResult(labels=best_position, scores=best_score.clamp(min=0.0))


def apply_threshold(positions: torch.Tensor, scores: torch.Tensor, threshold: float | None) -> torch.Tensor:
    """`positions` `(H, W)` with -1 where the winning probability `scores` `(H, W)` is below `threshold` (None: as is)."""
    if threshold is None:
        return positions
    return torch.where(scores >= threshold, positions, torch.full_like(positions, NO_CLASS))


def small_classes(labels: torch.Tensor, area_threshold: float) -> set[int]:
    """Class positions holding at most `area_threshold` of the pixels that took a class (-1 left out)."""
    present = labels[labels >= 0]
    if present.numel() == 0:
        return set()
    values, counts = torch.unique(present, return_counts=True)
    return {int(v) for v, n in zip(values.tolist(), counts.tolist()) if n <= area_threshold * present.numel()}


def segment_images(
    model: Any,
    images: Iterable[tuple[T, Image.Image]],
    queries: Queries,
    geometry: InferenceGeometry | None = None,
    decision: Decision | None = None,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    window_batch_size: int = DEFAULT_WINDOW_BATCH_SIZE,
    score_budget: int = DEFAULT_SCORE_BUDGET,
    refine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    softmax_scale: float | None = None,
) -> Iterator[tuple[T, SegmentationResult]]:
    """Segment a stream of images: `(payload, RGB PIL image)` in, `(payload, SegmentationResult)` out, in order.

    Args:
        model: a `CLIPForOpenSegmentation` (eval mode is the caller's business; no gradients are taken).
        images: `(payload, image)` pairs; the payload (an id, a path, a benchmark sample) is handed back.
        queries: `Queries.encode(model, classes, background)`.
        geometry: resize and windows (default: the model's own, `InferenceGeometry.from_config`).
        decision: the rule (default: `threshold` at 0.5).
        image_mean, image_std: normalisation (default CLIP's, as the image processor's).
        window_batch_size: windows per forward, across images.
        score_budget: probabilities held at once per chunk of classes.
        refine: optional `(guide (1, 3, H, W), probabilities (1, c, H, W)) -> (1, c, H, W)` (e.g. PAMR), applied
            at the output size before the decision.
        softmax_scale: None (default: per-class sigmoids averaged over windows), or the training-free CLIP
            harnesses' score (SCLIP, NACLIP, ClearCLIP): the model's window logits (cosines) averaged over windows,
            resized, refined, then a softmax over all queries of `logits x softmax_scale`.
    """
    geometry = geometry or InferenceGeometry.from_config(model.config)
    decision = decision or Decision()
    image_mean = image_mean if image_mean is not None else (0.48145466, 0.4578275, 0.40821073)
    image_std = image_std if image_std is not None else (0.26862954, 0.26130258, 0.27577711)
    _positive_int("score_budget", score_budget)
    has_background = bool((queries.positions < 0).any())
    if decision.rule == "background-class" and not has_background:
        raise ValueError("the background-class rule needs at least one background text (got none)")
    if decision.rule != "background-class" and has_background:
        raise ValueError(f"background texts are only used by the background-class rule (got rule {decision.rule!r})")
    stream = window_logits_stream(
        model, images, queries, geometry, image_mean, image_std, window_batch_size, score_budget
    )
    for item in stream:
        output_size = (item.image.height, item.image.width)
        result = decide(item, queries, decision, output_size, score_budget, refine, softmax_scale=softmax_scale)
        yield item.payload, result


def class_statistics(result: SegmentationResult, num_classes: int) -> list[tuple[int, int, float]]:
    """`(position, pixels, score)` per class present, in position order; score = mean probability over its pixels.

    One pass of `bincount` over the label map (no per-class scan of the picture).
    """
    labels = result.labels.flatten() + 1  # -1 (no class) -> 0
    pixels = torch.bincount(labels, minlength=num_classes + 1)  # (C + 1,)
    sums = torch.bincount(labels, weights=result.scores.flatten().double(), minlength=num_classes + 1)
    present = torch.nonzero(pixels[1:]).flatten().tolist()
    return [(p, int(pixels[p + 1]), float(sums[p + 1] / pixels[p + 1])) for p in present]


def segments_from_result(
    result: SegmentationResult, names: Sequence[str]
) -> list[tuple[int, torch.Tensor, float]]:
    """`(position, mask (H, W) bool, score)` per class present, in position order; score = mean probability."""
    return [
        (position, result.labels == position, score)
        for position, _, score in class_statistics(result, len(names))
    ]


__all__ = [
    "DECISION_RULES",
    "DEFAULT_DECISION",
    "DEFAULT_THRESHOLD",
    "DEFAULT_WINDOW_BATCH_SIZE",
    "INFERENCE_MODES",
    "MAX_CLASSES",
    "NO_CLASS",
    "SCORE_AVERAGING",
    "SYNONYM_RULES",
    "Decision",
    "InferenceGeometry",
    "Queries",
    "SegmentationResult",
    "apply_threshold",
    "as_rgb",
    "check_class_names",
    "class_statistics",
    "decide",
    "prepare_image",
    "segment_images",
    "segments_from_result",
    "sliding_windows",
]
