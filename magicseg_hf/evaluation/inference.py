"""Zero-shot prediction of benchmark images with ``CLIPForOpenSegmentation``, as a protocol prescribes.

For one benchmark image of (H, W) pixels and Q text queries:

1. **resize** to ``protocol.resized_size(H, W) = (h, w)`` (bilinear, rounded to 8-bit values as
   mmsegmentation's ``cv2`` resize returns them) and normalise with CLIP's mean and std -> (3, h, w);
2. **slide** ``protocol.window``-pixel windows every ``protocol.stride`` pixels over the image (padded
   with zeros — the mean colour — up to one window where it is smaller; the grid of
   :func:`~magicseg_hf.modeling.pipeline_clip_open_seg.sliding_windows`). Windows of consecutive
   images are stacked into batches of ``batch_size`` windows, one model forward per batch;
3. **average** each window's (Q, window, window) logits into the image's (Q, h, w) canvas, divided by
   the number of windows that cover each pixel;
4. **upsample** bilinearly to the label's (Q, H, W) and, with ``refine="pamr"``, refine them with
   :func:`~magicseg_hf.evaluation.refine.pamr` guided by the (upsampled) normalised image;
5. **decide** each pixel's label with :func:`labels_from_logits` (below).

Queries are the benchmark's class lines: a line's synonyms are encoded one by one with
``model.encode_classes`` (each through the template ensemble), averaged and L2-normalised again. How
background is decided (:mod:`~magicseg_hf.evaluation.protocols`):

=====================  ===================================  ====================================================
benchmark              ``background="class"``               ``background="threshold"``
=====================  ===================================  ====================================================
with background        every line is queried, "background"  the background line is not queried; the best query
(voc21, context60,     included; argmax decides (and, when  wins where its sigmoid is >= threshold, else the
coco-object, DIR)      a threshold is set, pixels below it  pixel is background (0) — the "-1 -> 0, c -> c + 1"
                       are background too)                  of ``post_process_semantic_segmentation``
without background     every line is queried; plain argmax  the same: plain argmax (no class to fall back on)
(context59)
=====================  ===================================  ====================================================

Predictions are in the benchmark's label space: (H, W) int64 ids ``0..num_labels-1``.

Example::

    from magicseg_hf.evaluation.benchmarks import load_benchmark
    from magicseg_hf.evaluation.inference import BenchmarkPredictor
    from magicseg_hf.evaluation.protocols import get_protocol
    from magicseg_hf.loading import load_open_seg

    model, processor = load_open_seg("path/to/model")
    benchmark = load_benchmark("voc21", data_dir="data")
    predictor = BenchmarkPredictor.for_benchmark(model, processor, benchmark, get_protocol("sclip"))
    for sample, prediction in predictor.predict(benchmark):   # prediction: (H, W) int64 numpy
        ...
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from magicseg_hf.errors import InputError
from magicseg_hf.evaluation.benchmarks import Benchmark
from magicseg_hf.evaluation.protocols import Protocol
from magicseg_hf.evaluation.refine import pamr
from magicseg_hf.labels import BACKGROUND
from magicseg_hf.modeling.pipeline_clip_open_seg import sliding_windows

logger = logging.getLogger(__name__)

#: Post-refinements of the logits ``--refine`` accepts.
REFINEMENTS = ("pamr",)
#: Default number of sliding windows per model forward.
DEFAULT_BATCH_SIZE = 16

T = TypeVar("T")


# ----------------------------------------------------------------------------------------------
# Text queries
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassQueries:
    """The text queries of a benchmark and the label each one stands for.

    Attributes:
        embeds: (Q, D) L2-normalised class embeddings (synonyms averaged), float32.
        label_ids: (Q,) the benchmark label id each query predicts.
        names: (Q,) each query's display name.
        background_id: the label of "no query clears the threshold" (0), or None for a plain argmax.
        threshold: lowest sigmoid score the best query needs, or None.
    """

    embeds: torch.Tensor
    label_ids: tuple[int, ...]
    names: tuple[str, ...]
    background_id: int | None
    threshold: float | None


def synonym_embeddings(model: Any, class_synonyms: Sequence[Sequence[str]]) -> torch.Tensor:
    """One embedding per class line: its synonyms' embeddings averaged, then L2-normalised.

    Args:
        model: a ``CLIPForOpenSegmentation`` (``encode_classes`` with its tokenizer).
        class_synonyms: per class, one or more names.

    Returns:
        (C, D) float32 embeddings on the model's device.
    """
    names = [name for synonyms in class_synonyms for name in synonyms]  # S names in all
    owners = torch.tensor([c for c, synonyms in enumerate(class_synonyms) for _ in synonyms])  # (S,)
    embeds = model.encode_classes(names).float()  # (S, D)
    owners = owners.to(embeds.device)
    sums = embeds.new_zeros((len(class_synonyms), embeds.shape[1])).index_add_(0, owners, embeds)  # (C, D)
    return F.normalize(sums, dim=-1)  # dividing by the synonym count first changes nothing after this


def class_queries(
    model: Any,
    class_synonyms: Sequence[Sequence[str]],
    has_background: bool,
    background: str,
    threshold: float | None,
) -> ClassQueries:
    """The queries of a benchmark under a background mode (see the module docstring's table).

    Args:
        model: a ``CLIPForOpenSegmentation``.
        class_synonyms: the benchmark's class lines in label-id order (line 0 is "background" when
            ``has_background``).
        has_background: whether label 0 is background.
        background: ``class`` or ``threshold``.
        threshold: the protocol's threshold (None for none).
    """
    if not class_synonyms:
        raise InputError("a benchmark needs at least one class (got none)")
    if background not in ("class", "threshold"):
        raise InputError(f"background must be class or threshold (got {background!r})")
    if has_background and background == "threshold":
        label_ids = tuple(range(1, len(class_synonyms)))  # the background line is not queried
        if not label_ids:
            raise InputError("background by threshold needs at least one class besides background (got none)")
    else:
        label_ids = tuple(range(len(class_synonyms)))
    queried = [class_synonyms[i] for i in label_ids]
    decides_background = has_background and threshold is not None
    return ClassQueries(
        embeds=synonym_embeddings(model, queried),
        label_ids=label_ids,
        names=tuple(synonyms[0] for synonyms in queried),
        background_id=BACKGROUND if decides_background else None,
        threshold=threshold if decides_background else None,
    )


# ----------------------------------------------------------------------------------------------
# The decision
# ----------------------------------------------------------------------------------------------
def labels_from_logits(
    logits: torch.Tensor,
    label_ids: torch.Tensor | Sequence[int],
    background_id: int | None = None,
    threshold: float | None = None,
) -> torch.Tensor:
    """Each pixel's label from per-query logits.

    Args:
        logits: (Q, H, W) per-query mask logits (probability = sigmoid).
        label_ids: (Q,) the label each query stands for.
        background_id: label of pixels whose best query scores below ``threshold``; None (or no
            threshold) takes the plain argmax.
        threshold: lowest sigmoid score the best query needs to win a pixel.

    Returns:
        (H, W) int64 labels: ``label_ids[argmax_q logits]``, or ``background_id`` where
        ``sigmoid(max_q logits) < threshold``.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape (Q, H, W) (got {tuple(logits.shape)})")
    label_ids = torch.as_tensor(label_ids, dtype=torch.long, device=logits.device)
    if label_ids.shape != (logits.shape[0],):
        raise ValueError(f"label_ids must hold one label per query (got {tuple(label_ids.shape)} for {logits.shape[0]})")
    scores, best = logits.max(dim=0)  # (H, W) each
    labels = label_ids[best]  # (H, W)
    if background_id is not None and threshold is not None:
        labels = torch.where(scores.float().sigmoid() >= threshold, labels, torch.full_like(labels, background_id))
    return labels


# ----------------------------------------------------------------------------------------------
# Sliding windows, batched across images
# ----------------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Canvas(Generic[T]):
    """One image's accumulating logits while its windows go through the model."""

    payload: T
    pixel_values: torch.Tensor  # (3, H', W') padded to at least one window
    size: tuple[int, int]  # (h, w) before padding
    windows_left: int
    logits_sum: torch.Tensor | None = None  # (Q, H', W') float32
    counts: torch.Tensor | None = None  # (1, H', W') float32
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)


def sliding_window_logits(
    model: Any,
    images: Iterable[tuple[T, torch.Tensor]],
    class_embeds: torch.Tensor,
    window: int,
    stride: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[tuple[T, torch.Tensor]]:
    """Sliding-window logits of a stream of images, ``batch_size`` windows per model forward.

    Windows of consecutive images share batches (an image of 6 windows and the next one's first 10
    go through one forward at ``batch_size=16``), so small images do not leave batches half empty.

    Args:
        model: a ``CLIPForOpenSegmentation`` in eval mode.
        images: ``(payload, pixel_values)`` pairs; ``pixel_values`` (3, h, w) normalised, any size,
            on the model's device. The payload is handed back with the image's logits.
        class_embeds: (Q, D) query embeddings.
        window, stride: window side and step in pixels.
        batch_size: windows per forward (1: one window at a time).

    Yields:
        ``(payload, logits)`` in input order, ``logits`` (Q, h, w) float32: each pixel's logits
        averaged over the windows that cover it.
    """
    if batch_size < 1:
        raise InputError(f"batch size must be a positive integer (got {batch_size})")
    pending: deque[_Canvas[T]] = deque()  # images whose windows are not all predicted, in order
    queue: deque[tuple[_Canvas[T], tuple[int, int, int, int]]] = deque()  # windows not yet predicted
    num_queries = class_embeds.shape[0]

    def forward(count: int) -> None:
        chunk = [queue.popleft() for _ in range(count)]
        crops = torch.stack(
            [canvas.pixel_values[:, top:bottom, left:right] for canvas, (top, left, bottom, right) in chunk]
        )  # (n, 3, window, window)
        with torch.no_grad():
            logits = model(pixel_values=crops, class_embeds=class_embeds).logits.float()  # (n, Q, window, window)
        for (canvas, (top, left, bottom, right)), window_logits in zip(chunk, logits):
            if canvas.logits_sum is None or canvas.counts is None:
                _, height, width = canvas.pixel_values.shape
                canvas.logits_sum = logits.new_zeros((num_queries, height, width))
                canvas.counts = logits.new_zeros((1, height, width))
            canvas.logits_sum[:, top:bottom, left:right] += window_logits
            canvas.counts[:, top:bottom, left:right] += 1
            canvas.windows_left -= 1

    def finished() -> Iterator[tuple[T, torch.Tensor]]:
        while pending and pending[0].windows_left == 0:
            canvas = pending.popleft()
            assert canvas.logits_sum is not None and canvas.counts is not None
            height, width = canvas.size
            yield canvas.payload, (canvas.logits_sum / canvas.counts)[:, :height, :width]  # (Q, h, w)

    for payload, pixel_values in images:
        _, height, width = pixel_values.shape
        padded_height, padded_width = max(height, window), max(width, window)
        padded = F.pad(pixel_values, (0, padded_width - width, 0, padded_height - height))  # (3, H', W')
        boxes = sliding_windows(padded_height, padded_width, window, stride)
        canvas = _Canvas(payload, padded, (height, width), len(boxes), boxes=boxes)
        pending.append(canvas)
        queue.extend((canvas, box) for box in boxes)
        while len(queue) >= batch_size:
            forward(batch_size)
            yield from finished()
    while queue:
        forward(min(batch_size, len(queue)))
        yield from finished()


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------
def preprocess_image(
    image: Image.Image,
    size: tuple[int, int],
    image_mean: Sequence[float],
    image_std: Sequence[float],
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """An RGB image resized to ``size`` and normalised.

    Args:
        image: a PIL image (converted to RGB).
        size: (h, w) after resizing (e.g. :meth:`Protocol.resized_size`).
        image_mean, image_std: per-channel mean and std on the 0..1 scale (CLIP's).
        device: where the tensor goes (the resize runs there).

    Returns:
        (3, h, w) float32: bilinear resize (half-pixel centres, no antialiasing, as ``cv2``), rounded
        to 0..255 integers, then ``(x / 255 - mean) / std``.
    """
    array = np.array(image.convert("RGB"), dtype=np.uint8)  # (H, W, 3), a writable copy
    pixels = torch.from_numpy(array).to(device).permute(2, 0, 1).float()  # (3, H, W), 0..255
    if tuple(pixels.shape[-2:]) != tuple(size):
        pixels = F.interpolate(pixels[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
        pixels = pixels.round().clamp(0, 255)  # (3, h, w), 8-bit values
    mean = torch.tensor(image_mean, dtype=torch.float32, device=pixels.device).view(3, 1, 1)
    std = torch.tensor(image_std, dtype=torch.float32, device=pixels.device).view(3, 1, 1)
    return (pixels / 255.0 - mean) / std


# ----------------------------------------------------------------------------------------------
# A benchmark's predictor
# ----------------------------------------------------------------------------------------------
class BenchmarkPredictor:
    """Predicts benchmark images under a protocol (the steps of the module docstring).

    Args:
        model: a ``CLIPForOpenSegmentation`` (put in eval mode here).
        queries: the benchmark's :class:`ClassQueries`.
        protocol: resize, window, stride (its background rule is already in ``queries``).
        image_mean, image_std: normalisation (the processor's, CLIP's).
        refine: None or ``pamr``.
        batch_size: sliding windows per forward.
        device: where the model runs (default: the model's device).
    """

    def __init__(
        self,
        model: Any,
        queries: ClassQueries,
        protocol: Protocol,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        refine: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        device: torch.device | str | None = None,
    ) -> None:
        if refine is not None and refine not in REFINEMENTS:
            raise InputError(f"refine must be one of {', '.join(REFINEMENTS)} (got {refine!r})")
        if batch_size < 1:
            raise InputError(f"batch size must be a positive integer (got {batch_size})")
        patch = model.config.clip_config.vision_config.patch_size
        if protocol.window % patch:
            raise InputError(
                f"window must be a multiple of the model's patch size {patch} (got {protocol.window})"
            )
        self.model = model.eval()
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.queries = queries
        self.protocol = protocol
        self.image_mean = tuple(float(v) for v in image_mean)
        self.image_std = tuple(float(v) for v in image_std)
        self.refine = refine
        self.batch_size = batch_size
        self.class_embeds = queries.embeds.to(self.device)  # (Q, D)
        self.label_ids = torch.tensor(queries.label_ids, dtype=torch.long, device=self.device)  # (Q,)

    @classmethod
    def for_benchmark(
        cls,
        model: Any,
        processor: Any,
        benchmark: Benchmark,
        protocol: Protocol,
        refine: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        device: torch.device | str | None = None,
    ) -> BenchmarkPredictor:
        """A predictor of ``benchmark``'s classes, normalising as ``processor``'s image processor does."""
        queries = class_queries(
            model, benchmark.class_synonyms, benchmark.has_background, protocol.background, protocol.threshold
        )
        image_processor = getattr(processor, "image_processor", processor)
        return cls(
            model,
            queries,
            protocol,
            image_processor.image_mean,
            image_processor.image_std,
            refine=refine,
            batch_size=batch_size,
            device=device,
        )

    def _inputs(self, samples: Iterable[Any]) -> Iterator[tuple[Any, torch.Tensor]]:
        for sample in samples:
            size = self.protocol.resized_size(sample.image.height, sample.image.width)
            yield sample, preprocess_image(sample.image, size, self.image_mean, self.image_std, self.device)

    def predict_logits(self, samples: Iterable[Any]) -> Iterator[tuple[Any, torch.Tensor, torch.Tensor]]:
        """``(sample, pixel_values, logits)`` per sample, in order, at the resized size (h, w).

        ``pixel_values`` (3, h, w) is the normalised image (kept for PAMR), ``logits`` (Q, h, w).
        """
        dtype = next(self.model.parameters()).dtype
        images = (((sample, pixels), pixels.to(dtype)) for sample, pixels in self._inputs(samples))
        stream = sliding_window_logits(
            self.model, images, self.class_embeds, self.protocol.window, self.protocol.stride, self.batch_size
        )
        for (sample, pixel_values), logits in stream:
            yield sample, pixel_values, logits

    def predict(self, samples: Iterable[Any]) -> Iterator[tuple[Any, np.ndarray]]:
        """``(sample, prediction)`` per benchmark sample, in order; ``prediction`` (H, W) int64 numpy
        labels at the size of the sample's label."""
        for sample, pixel_values, logits in self.predict_logits(samples):
            labels = self.labels_at(logits, pixel_values, tuple(sample.label.shape[:2]))
            yield sample, labels.cpu().numpy()

    def labels_at(self, logits: torch.Tensor, pixel_values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(H, W) int64 labels from (Q, h, w) logits: upsampled to ``size``, refined, decided."""
        upsampled = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)  # (1, Q, H, W)
        if self.refine == "pamr":
            image = F.interpolate(
                pixel_values[None].float(), size=size, mode="bilinear", align_corners=False
            )  # (1, 3, H, W)
            upsampled = pamr(image, upsampled)
        return labels_from_logits(upsampled[0], self.label_ids, self.queries.background_id, self.queries.threshold)


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "REFINEMENTS",
    "BenchmarkPredictor",
    "ClassQueries",
    "class_queries",
    "labels_from_logits",
    "preprocess_image",
    "sliding_window_logits",
    "synonym_embeddings",
]
