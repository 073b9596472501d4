"""Annotation: open-vocabulary detector boxes -> SAM masks -> per-class label maps.

One small function per step:

* a detector (:class:`GroundingDinoDetector`, :class:`MMGroundingDinoDetector` or
  :class:`Owlv2Detector`) runs a whole list of images in ONE batched forward and returns, per
  image, :class:`Detections` whose ``labels`` index that image's class list;
* a segmenter (:class:`TransformersSamSegmenter`, :class:`Sam2Segmenter` or
  :class:`SegmentAnythingSegmenter`) turns ALL boxes of one image into masks in ONE call with ONE
  image embedding;
* :func:`label_map` paints the masks into a ``uint8`` map (0 background, ``i`` = class ``i-1``),
  overlaps going to the higher-scoring mask;
* :class:`Annotator` chains them, and scores counterfactual images with the same detector.

The detector, the segmenter and the thresholds are handed in: loading them from a run's settings
is the assembler's job (:func:`magicseg_hf.generation.components.build_annotator`).

Models run in their own dtype (float16/bfloat16 on GPU works: inputs are cast to it); outputs
are float32 / bool on the CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
@dataclass
class Detections:
    """Detections on one image.

    ``boxes`` (N, 4) float32 xyxy in pixels of the original image; ``scores`` (N,) float32;
    ``labels`` (N,) int64, an index into that image's class list.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            boxes=torch.zeros((0, 4), dtype=torch.float32),
            scores=torch.zeros((0,), dtype=torch.float32),
            labels=torch.zeros((0,), dtype=torch.int64),
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def top(self, k: int) -> Detections:
        """The ``k`` highest-scoring detections (all of them if there are fewer)."""
        if len(self) <= k:
            return self
        order = torch.argsort(self.scores, descending=True, stable=True)[:k]
        return Detections(self.boxes[order], self.scores[order], self.labels[order])


@dataclass
class Annotation:
    """The annotation of one image: ``label`` (H, W) uint8 (0 background, i = classes[i-1]) and
    the detections behind it (xyxy pixel boxes, class indices, detector scores)."""

    label: np.ndarray
    boxes: list[list[float]] = field(default_factory=list)
    box_labels: list[int] = field(default_factory=list)
    box_scores: list[float] = field(default_factory=list)


class Detector(Protocol):
    def detect(
        self,
        images: list[Image.Image],
        class_names: list[list[str]],
        box_threshold: float,
        text_threshold: float,
    ) -> list[Detections]: ...


class Segmenter(Protocol):
    def segment(self, image: Image.Image, boxes: torch.Tensor) -> torch.Tensor: ...


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------
def _model_device_dtype(model: torch.nn.Module, device: str | torch.device | None) -> tuple[torch.device, torch.dtype]:
    parameter = next(model.parameters())
    return (torch.device(device) if device is not None else parameter.device), parameter.dtype


def _to_model(inputs: Any, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Move every tensor to ``device``; floating-point tensors also to the model's ``dtype``."""
    moved: dict[str, Any] = {}
    for key, value in dict(inputs).items():
        if isinstance(value, torch.Tensor):
            value = value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)
        moved[key] = value
    return moved


def _cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def _pixel_boxes(boxes: torch.Tensor, scale: torch.Tensor | float, image_size: tuple[int, int]) -> torch.Tensor:
    """Normalised cxcywh boxes (N, 4) -> xyxy pixel boxes (N, 4) float32 clipped to the image.

    ``scale`` multiplies the normalised coordinates: ``(width, height, width, height)`` for boxes
    relative to the image, or one side length for boxes relative to a padded square.
    ``image_size`` is (height, width).
    """
    height, width = image_size
    limit = torch.tensor([width, height, width, height], dtype=torch.float32, device=boxes.device)
    xyxy = (_cxcywh_to_xyxy(boxes.float()) * scale).clamp(min=0)
    return torch.minimum(xyxy, limit)


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def _check_batch(images: Sequence[Image.Image], class_names: Sequence[Sequence[str]]) -> None:
    if len(images) != len(class_names):
        raise ValueError(f"got {len(images)} images but {len(class_names)} class lists")
    for names in class_names:
        if not names:
            raise ValueError("every image needs at least one class name")


# ----------------------------------------------------------------------------------------------
# Grounding DINO
# ----------------------------------------------------------------------------------------------
def grounding_dino_text(class_names: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The detector text ``"cat. dog."`` and each class's character span ``[start, end)`` in it."""
    text, spans = "", []
    for name in class_names:
        name = " ".join(name.lower().split())
        start = len(text)
        text += name
        spans.append((start, len(text)))
        text += ". "
    return text.rstrip(), spans


def token_class_map(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(C, T) bool: token ``t`` belongs to class ``c`` when its character offsets lie in the class span.

    ``offsets`` are the tokenizer's per-token ``(start, end)`` (``(0, 0)`` for special and padding
    tokens, which belong to no class).
    """
    membership = torch.zeros((len(spans), len(offsets)), dtype=torch.bool)
    for t, (start, end) in enumerate(offsets):
        if end <= start:
            continue
        for c, (span_start, span_end) in enumerate(spans):
            if start >= span_start and end <= span_end:
                membership[c, t] = True
    return membership


def assign_grounding_dino_boxes(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    membership: torch.Tensor,
    image_size: tuple[int, int],
    box_threshold: float,
    text_threshold: float,
) -> Detections:
    """Turn one image's Grounding DINO outputs into :class:`Detections` with class ids.

    ``logits`` (Q, T) token logits per query (padding positions -inf), ``boxes`` (Q, 4) normalised
    cxcywh, ``membership`` (C, T) from :func:`token_class_map`, ``image_size`` (height, width).

    Per query: the class score is the max token probability over that class's span; the box goes
    to the class with the highest span score and that is its score. As in Grounding DINO's own
    post-processing, a box is kept when its best token probability over the whole text is at
    least ``box_threshold``; it must also have a span score of at least ``text_threshold``
    (i.e. some token of the class passes the text threshold).
    """
    probs = logits.float().sigmoid()  # (Q, T)
    num_tokens = min(probs.shape[-1], membership.shape[-1])
    probs, membership = probs[:, :num_tokens], membership[:, :num_tokens].to(probs.device)
    # (Q, C): max over each class's tokens; a class with no token (truncated away) scores 0.
    span = torch.where(membership[None], probs[:, None, :], torch.zeros((), device=probs.device)).amax(-1)
    scores, labels = span.max(dim=-1)
    objectness = probs.amax(dim=-1)
    keep = (objectness >= box_threshold) & (scores >= text_threshold) & membership.any(-1)[labels]
    height, width = image_size
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=boxes.device)
    xyxy = _pixel_boxes(boxes, scale, image_size)
    return Detections(
        boxes=xyxy[keep].cpu().to(torch.float32),
        scores=scores[keep].cpu().to(torch.float32),
        labels=labels[keep].cpu().to(torch.int64),
    )


class _ModelWithProcessor:
    """A transformers model and its processor, run on the model's device and dtype."""

    def __init__(self, model: Any, processor: Any, device: str | torch.device | None = None) -> None:
        self.model = model.eval()
        self.processor = processor
        self.device, self.dtype = _model_device_dtype(model, device)


class GroundingDinoDetector(_ModelWithProcessor):
    """Grounding DINO (``GroundingDinoForObjectDetection`` + its processor) on a batch of images.

    Each image gets the text ``"name1. name2."`` of its own classes; texts are padded to the
    longest and the whole batch runs in one forward. Boxes are assigned to class ids from the
    token logits and the classes' token spans (:func:`assign_grounding_dino_boxes`).
    """

    @torch.inference_mode()
    def detect(
        self,
        images: list[Image.Image],
        class_names: list[list[str]],
        box_threshold: float,
        text_threshold: float,
    ) -> list[Detections]:
        """One batched forward over ``images``; returns one :class:`Detections` per image."""
        _check_batch(images, class_names)
        if not images:
            return []
        texts, spans = zip(*(grounding_dino_text(names) for names in class_names))
        encoding = self.processor.tokenizer(
            list(texts), padding=True, return_offsets_mapping=True, return_tensors="pt"
        )
        offsets = encoding.pop("offset_mapping").tolist()
        pixels = self.processor.image_processor([_rgb(image) for image in images], return_tensors="pt")
        inputs = _to_model({**encoding, **pixels}, self.device, self.dtype)
        outputs = self.model(**inputs)
        results = []
        for i, image in enumerate(images):
            membership = token_class_map(offsets[i], spans[i])
            results.append(
                assign_grounding_dino_boxes(
                    outputs.logits[i],
                    outputs.pred_boxes[i],
                    membership,
                    (image.height, image.width),
                    box_threshold,
                    text_threshold,
                )
            )
        return results


class MMGroundingDinoDetector(GroundingDinoDetector):
    """MM-Grounding-DINO (``MMGroundingDinoForObjectDetection`` + its ``GroundingDinoProcessor``).

    MM-Grounding-DINO (Zhao et al., 2024) is Grounding DINO's architecture retrained by OpenMMLab on
    more grounding data; its class head adds a learnt bias to the query-token similarities. Its
    outputs are Grounding DINO's — ``logits`` (B, Q, 256) over the text tokens (padding ``-inf``)
    and ``pred_boxes`` (B, Q, 4) normalised cxcywh — and so is its processor, so the detection,
    the box-to-class assignment (:func:`assign_grounding_dino_boxes`) and the class-name length
    check are :class:`GroundingDinoDetector`'s, unchanged.
    """


# ----------------------------------------------------------------------------------------------
# OWLv2
# ----------------------------------------------------------------------------------------------
class Owlv2Detector(_ModelWithProcessor):
    """OWLv2 (``Owlv2ForObjectDetection`` + ``Owlv2Processor``) on a batch of images.

    One text query per class; query lists are padded to the longest with blank queries whose
    logits are ignored; one forward for the batch. Each box goes to its highest-scoring class.
    ``text_threshold`` does not apply (OWLv2 scores whole queries).
    """

    @torch.inference_mode()
    def detect(
        self,
        images: list[Image.Image],
        class_names: list[list[str]],
        box_threshold: float,
        text_threshold: float = 0.0,
    ) -> list[Detections]:
        """One batched forward over ``images``; returns one :class:`Detections` per image."""
        _check_batch(images, class_names)
        if not images:
            return []
        num_queries = max(len(names) for names in class_names)
        queries = [[" ".join(n.lower().split()) for n in names] + [" "] * (num_queries - len(names))
                   for names in class_names]
        inputs = self.processor(
            text=queries, images=[_rgb(image) for image in images], return_tensors="pt", truncation=True
        )
        outputs = self.model(**_to_model(inputs, self.device, self.dtype))
        logits = outputs.logits.float()  # (B, P, num_queries)
        results = []
        for i, image in enumerate(images):
            probs = logits[i, :, : len(class_names[i])].sigmoid()  # (P, C)
            scores, labels = probs.max(dim=-1)
            keep = scores >= box_threshold
            # OWLv2 predicts boxes relative to the image padded to a square (bottom/right).
            side = float(max(image.height, image.width))
            xyxy = _pixel_boxes(outputs.pred_boxes[i], side, (image.height, image.width))
            results.append(
                Detections(
                    boxes=xyxy[keep].cpu(),
                    scores=scores[keep].cpu(),
                    labels=labels[keep].cpu().to(torch.int64),
                )
            )
        return results


# ----------------------------------------------------------------------------------------------
# SAM
# ----------------------------------------------------------------------------------------------
class TransformersSamSegmenter(_ModelWithProcessor):
    """transformers ``SamModel`` + ``SamProcessor``: all boxes of an image, one image embedding."""

    @torch.inference_mode()
    def segment(self, image: Image.Image, boxes: torch.Tensor) -> torch.Tensor:
        """``boxes`` (N, 4) xyxy pixels -> masks (N, H, W) bool, one decoder call for all N boxes."""
        image = _rgb(image)
        if len(boxes) == 0:
            return torch.zeros((0, image.height, image.width), dtype=torch.bool)
        inputs = self.processor(images=image, input_boxes=[boxes.float().tolist()], return_tensors="pt")
        original_sizes = inputs.pop("original_sizes")
        reshaped_sizes = inputs.pop("reshaped_input_sizes")
        inputs = _to_model(inputs, self.device, self.dtype)
        embeddings = self.model.get_image_embeddings(inputs["pixel_values"])
        outputs = self.model(
            image_embeddings=embeddings, input_boxes=inputs["input_boxes"], multimask_output=False
        )
        masks = self.processor.image_processor.post_process_masks(
            outputs.pred_masks.float().cpu(), original_sizes, reshaped_sizes
        )[0]  # (N, 1, H, W)
        return masks[:, 0].bool()


class Sam2Segmenter(_ModelWithProcessor):
    """transformers ``Sam2Model`` + ``Sam2Processor`` (SAM 2): all boxes of an image, one image embedding.

    The processor resizes the image to the model's square input (no padding) and scales the boxes
    with it; the Hiera image encoder runs once, then the prompt encoder and mask decoder take all N
    boxes as one batch of prompts (one mask per box, ``multimask_output=False``), and the N
    low-resolution mask logits are resized to the image and thresholded at 0. Pixels run in the
    model's dtype; the boxes stay float32 (the prompt encoder casts them after normalising, so
    float16/bfloat16 do not round pixel coordinates).
    """

    @torch.inference_mode()
    def segment(self, image: Image.Image, boxes: torch.Tensor) -> torch.Tensor:
        """``boxes`` (N, 4) xyxy pixels -> masks (N, H, W) bool, one decoder call for all N boxes."""
        image = _rgb(image)
        if len(boxes) == 0:
            return torch.zeros((0, image.height, image.width), dtype=torch.bool)
        inputs = self.processor(images=image, input_boxes=[boxes.float().tolist()], return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(device=self.device, dtype=self.dtype)  # (1, 3, S, S)
        input_boxes = inputs["input_boxes"].to(self.device)  # (1, N, 4) xyxy in the S x S input
        # SAM 2's image embedding is a list: two high-resolution FPN maps and the (1, C, S/16, S/16) one.
        embeddings = self.model.get_image_embeddings(pixel_values)
        outputs = self.model(image_embeddings=embeddings, input_boxes=input_boxes, multimask_output=False)
        masks = self.processor.post_process_masks(
            outputs.pred_masks.float().cpu(), inputs["original_sizes"]
        )[0]  # (N, 1, H, W) bool
        return masks[:, 0]


class SegmentAnythingSegmenter:
    """The segment-anything package's ``Sam``: all boxes of an image, one image embedding.

    Runs the model's parts directly (what ``SamPredictor`` does) so that pixels can be cast to the
    model's dtype. segment-anything's prompt encoder computes its positional encoding in float32
    whatever the weights' dtype, so it is kept in float32 (it is tiny) and its outputs are cast
    to the image encoder's dtype for the mask decoder: float16/bfloat16 SAM works.
    """

    def __init__(self, sam_model: Any, device: str | torch.device | None = None) -> None:
        from segment_anything.utils.transforms import ResizeLongestSide

        self.model = sam_model.eval()
        self.model.prompt_encoder.float()
        self.device, self.dtype = _model_device_dtype(sam_model.image_encoder, device)
        self.transform = ResizeLongestSide(sam_model.image_encoder.img_size)

    @torch.inference_mode()
    def embed(self, image: Image.Image) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
        """(1, C, h, w) image embedding, the resized input size and the original size (H, W)."""
        array = np.asarray(_rgb(image))
        resized = self.transform.apply_image(array)
        pixels = torch.as_tensor(resized, device=self.device).permute(2, 0, 1)[None].to(self.dtype)
        embedding = self.model.image_encoder(self.model.preprocess(pixels))
        return embedding, tuple(resized.shape[:2]), tuple(array.shape[:2])

    @torch.inference_mode()
    def decode(
        self,
        embedding: torch.Tensor,
        boxes: torch.Tensor,
        input_size: tuple[int, int],
        original_size: tuple[int, int],
    ) -> torch.Tensor:
        """Masks (N, H, W) bool for ``boxes`` (N, 4) xyxy pixels on an embedded image."""
        prompts = self.transform.apply_boxes_torch(boxes.float(), original_size).to(self.device)
        sparse, dense = self.model.prompt_encoder(points=None, boxes=prompts, masks=None)
        low_res, _ = self.model.mask_decoder(
            image_embeddings=embedding,
            image_pe=self.model.prompt_encoder.get_dense_pe().to(self.dtype),
            sparse_prompt_embeddings=sparse.to(self.dtype),
            dense_prompt_embeddings=dense.to(self.dtype),
            multimask_output=False,
        )
        masks = self.model.postprocess_masks(low_res.float(), input_size, original_size)
        return (masks[:, 0] > self.model.mask_threshold).cpu()

    def segment(self, image: Image.Image, boxes: torch.Tensor) -> torch.Tensor:
        """``boxes`` (N, 4) xyxy pixels -> masks (N, H, W) bool, one decoder call for all N boxes."""
        if len(boxes) == 0:
            return torch.zeros((0, image.height, image.width), dtype=torch.bool)
        embedding, input_size, original_size = self.embed(image)
        return self.decode(embedding, boxes, input_size, original_size)


# ----------------------------------------------------------------------------------------------
# Label maps and the annotator
# ----------------------------------------------------------------------------------------------
def label_map(
    masks: torch.Tensor | np.ndarray,
    box_labels: torch.Tensor | np.ndarray | Sequence[int],
    scores: torch.Tensor | np.ndarray | Sequence[float],
    num_classes: int,
) -> np.ndarray:
    """Paint masks (N, H, W) bool into a label map (H, W) uint8.

    Pixel value 0 is background and ``box_labels[n] + 1`` marks mask ``n``'s class; where masks
    overlap the pixel goes to the mask with the higher score (ties: the earlier mask).
    ``num_classes`` (at most 254) bounds the labels; 255 stays reserved for "unknown".
    """
    masks = torch.as_tensor(np.asarray(masks) if not isinstance(masks, torch.Tensor) else masks).bool().cpu()
    labels = torch.as_tensor(box_labels, dtype=torch.int64).reshape(-1).cpu()
    scores = torch.as_tensor(scores, dtype=torch.float32).reshape(-1).cpu()
    if masks.ndim != 3 or not (len(masks) == len(labels) == len(scores)):
        raise ValueError(
            f"need masks (N, H, W) with N labels and N scores; got {tuple(masks.shape)}, {len(labels)}, {len(scores)}"
        )
    if not 0 < num_classes < 255:
        raise ValueError(f"num_classes must be in 1..254 (got {num_classes})")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"box labels must be in 0..{num_classes - 1} (got {labels.tolist()})")
    out = torch.zeros(masks.shape[1:], dtype=torch.uint8)
    # Paint lowest score first so that higher scores overwrite; the stable sort on the negated
    # scores reversed keeps "earlier mask wins" for ties.
    order = torch.argsort(-scores, stable=True).flip(0)
    for n in order.tolist():
        out[masks[n]] = int(labels[n]) + 1
    return out.numpy()


class Annotator:
    """Detector + segmenter: images and their class lists -> :class:`Annotation` per image.

    ``max_detections`` optionally keeps only the top-scoring boxes of each image before SAM.
    """

    def __init__(
        self,
        detector: Detector,
        segmenter: Segmenter,
        box_threshold: float,
        text_threshold: float,
        max_detections: int | None = None,
    ) -> None:
        self.detector = detector
        self.segmenter = segmenter
        self.box_threshold = box_threshold
        self.text_threshold = text_threshold
        self.max_detections = max_detections

    def annotate(self, images: list[Image.Image], class_names: list[list[str]]) -> list[Annotation]:
        """Batched detection, then one SAM call per image with all of its boxes."""
        detections = self.detector.detect(images, class_names, self.box_threshold, self.text_threshold)
        annotations = []
        for image, names, found in zip(images, class_names, detections):
            if self.max_detections is not None:
                found = found.top(self.max_detections)
            if len(found) == 0:
                annotations.append(Annotation(label=np.zeros((image.height, image.width), dtype=np.uint8)))
                continue
            masks = self.segmenter.segment(image, found.boxes)
            annotations.append(
                Annotation(
                    label=label_map(masks, found.labels, found.scores, len(names)),
                    boxes=found.boxes.tolist(),
                    box_labels=found.labels.tolist(),
                    box_scores=found.scores.tolist(),
                )
            )
        logger.debug("annotated %d images, %d boxes", len(images), sum(len(a.boxes) for a in annotations))
        return annotations

    def score_counterfactual(self, images: list[Image.Image], class_names: list[list[str]]) -> list[float]:
        """Per image, the highest detector score for any of its classes, with no threshold
        (0.0 when the detector returns no box). One batched detector forward."""
        detections = self.detector.detect(images, class_names, float("-inf"), float("-inf"))
        return [float(found.scores.max()) if len(found) else 0.0 for found in detections]
