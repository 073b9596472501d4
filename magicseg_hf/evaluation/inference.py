"""Zero-shot prediction of benchmark images: the benchmark's classes as queries, the model's one inference path.

Benchmark images go through exactly the code the ``open-vocabulary-segmentation`` pipeline and
``magicseg predict`` run — :func:`magicseg_hf.modeling.inference_clip_open_seg.segment_images` (resize,
sliding windows batched across images, window probabilities averaged, resized back, one decision
rule) — with the protocol's geometry and rule. This module only turns a benchmark and a protocol
into the question (text queries, background texts, rule) and the answer (class positions) into the
benchmark's label ids:

====================  ==============================  ===============================================
rule                  queries                         a pixel's label
====================  ==============================  ===============================================
``background-class``  classes 1..N-1 + the            the winning class's id; 0 where a background
                      background line's texts         text wins (or, with a threshold, below it)
``threshold``         classes 1..N-1                  the best class's id if its probability reaches
                                                      the threshold, else 0 (background)
``argmax``            every class line (context59:    the best class's id
                      all 59; with background: 0..N)
====================  ==============================  ===============================================

A class line's synonyms are one query each and the best of them speaks for the class
(``synonyms="max"``, SCLIP's and NACLIP's rule), or their embeddings are averaged into one query
(``"mean"``). Predictions are (H, W) int64 label ids at the label's size.

Example::

    from magicseg_hf.evaluation.benchmarks import load_benchmark
    from magicseg_hf.evaluation.inference import BenchmarkPredictor
    from magicseg_hf.evaluation.protocols import get_protocol
    from magicseg_hf.loading import load_open_seg

    model, processor = load_open_seg("path/to/model")
    benchmark = load_benchmark("voc21", data_dir="data")
    protocol = get_protocol("sclip").for_benchmark("voc21")
    predictor = BenchmarkPredictor.for_benchmark(model, processor, benchmark, protocol)
    for sample, prediction in predictor.predict(benchmark):   # prediction: (H, W) int64 numpy
        ...
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from magicseg_hf.errors import InputError
from magicseg_hf.evaluation.protocols import Protocol
from magicseg_hf.evaluation.refine import pamr
from magicseg_hf.labels import BACKGROUND
from magicseg_hf.modeling.inference_clip_open_seg import (
    DEFAULT_WINDOW_BATCH_SIZE,
    Decision,
    InferenceGeometry,
    Queries,
    segment_images,
)

logger = logging.getLogger(__name__)

#: Post-refinements of the probabilities ``--refine`` accepts.
REFINEMENTS = ("pamr",)
#: Default number of sliding windows per model forward.
DEFAULT_BATCH_SIZE = DEFAULT_WINDOW_BATCH_SIZE


@dataclass(frozen=True)
class ClassQueries:
    """The question asked of the model for a benchmark, and how its answer maps to label ids.

    Attributes:
        classes: per queried class, its synonyms (the first is its name).
        label_ids: (C,) the benchmark label id of each queried class (position p -> ``label_ids[p]``).
        background: texts that stand for background (the ``background-class`` rule), else empty.
        background_id: label of pixels left without a class (0), or None (``argmax`` without background).
        decision: the rule, threshold and area threshold.
        synonyms: ``max`` or ``mean``.
    """

    classes: tuple[tuple[str, ...], ...]
    label_ids: tuple[int, ...]
    background: tuple[str, ...]
    background_id: int | None
    decision: Decision
    synonyms: str

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(synonyms[0] for synonyms in self.classes)

    def digest(self) -> str:
        """sha256 of the queried texts (class lines and background), as written into results files."""
        text = "\n".join([", ".join(line) for line in self.classes] + ["background: " + ", ".join(self.background)])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "synonyms": [list(line) for line in self.classes],
            "label_ids": list(self.label_ids),
            "background_texts": list(self.background),
            "background_id": self.background_id,
            "synonym_rule": self.synonyms,
            "decision": self.decision.to_dict(),
            "digest": self.digest(),
        }


def class_queries(
    class_synonyms: Sequence[Sequence[str]], has_background: bool, decision: Decision, synonyms: str = "max"
) -> ClassQueries:
    """The queries of a benchmark under a decision rule (see the module docstring's table).

    Args:
        class_synonyms: the class lines in label-id order (line 0 is background when ``has_background``).
        has_background: whether label 0 is background.
        decision: the rule; without background only ``argmax`` applies (any other is refused).
        synonyms: ``max`` or ``mean``.
    """
    lines = tuple(tuple(line) for line in class_synonyms)
    if not lines:
        raise InputError("a benchmark needs at least one class (got none)")
    if not has_background:
        if decision.rule != "argmax":
            raise InputError(
                f"a benchmark without background gives every pixel a class: use the argmax rule (got {decision.rule})"
            )
        return ClassQueries(lines, tuple(range(len(lines))), (), None, decision, synonyms)
    if decision.rule == "argmax":
        return ClassQueries(lines, tuple(range(len(lines))), (), None, decision, synonyms)
    if len(lines) < 2:
        raise InputError("a benchmark with background needs at least one other class (got none)")
    background = lines[0] if decision.rule == "background-class" else ()
    return ClassQueries(lines[1:], tuple(range(1, len(lines))), background, BACKGROUND, decision, synonyms)


@dataclass(frozen=True)
class UnpaddedWholeGeometry(InferenceGeometry):
    """The training-free harnesses' whole-image inference: the image is not padded; the patch grid is floored
    (the pixels past the last full patch feed no patch) and its logits are stretched over the whole image, as
    SCLIP's, NACLIP's and ClearCLIP's ``forward_feature`` do. Sliding windows are unchanged."""

    def padded_size(self, height: int, width: int, patch_size: int) -> tuple[int, int]:
        if self.mode == "whole":
            return height, width
        return super().padded_size(height, width, patch_size)


def _pamr(guide: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    return pamr(guide, probabilities)


class BenchmarkPredictor:
    """Predicts benchmark images under a protocol, through the model's one inference path.

    Args:
        model: a ``CLIPForOpenSegmentation`` (put in eval mode here).
        queries: the benchmark's :class:`ClassQueries`.
        protocol: the geometry (resize, windows).
        image_mean, image_std: normalisation (the processor's, CLIP's).
        tokenizer: the CLIP tokenizer (default: the model's).
        refine: None or ``pamr``.
        batch_size: sliding windows per forward (across images).
        softmax_scale: None (the trained model's sigmoids) or a training-free method's logit scale: window
            cosines averaged, then a softmax over all queries (see ``segment_images``).
    """

    def __init__(
        self,
        model: Any,
        queries: ClassQueries,
        protocol: Protocol,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        tokenizer: Any = None,
        refine: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        softmax_scale: float | None = None,
    ) -> None:
        if refine is not None and refine not in REFINEMENTS:
            raise InputError(f"refine must be one of {', '.join(REFINEMENTS)} (got {refine!r})")
        if batch_size < 1:
            raise InputError(f"batch size must be a positive integer (got {batch_size})")
        patch = model.config.clip_config.vision_config.patch_size
        if protocol.window % patch:
            raise InputError(f"window must be a multiple of the model's patch size {patch} (got {protocol.window})")
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.queries = queries
        self.protocol = protocol
        self.image_mean = tuple(float(v) for v in image_mean)
        self.image_std = tuple(float(v) for v in image_std)
        self.refine = refine
        self.batch_size = batch_size
        self.softmax_scale = softmax_scale
        try:
            self.encoded = Queries.encode(
                model, queries.classes, queries.background, synonyms=queries.synonyms, tokenizer=tokenizer
            )
        except ValueError as error:
            raise InputError(str(error)) from None
        self.label_table = torch.tensor(
            [*queries.label_ids, queries.background_id if queries.background_id is not None else -1],
            dtype=torch.long,
            device=self.device,
        )  # position p -> label_ids[p]; -1 (last entry) -> background

    @classmethod
    def for_benchmark(
        cls,
        model: Any,
        processor: Any,
        benchmark: Any,
        protocol: Protocol,
        refine: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        method: str = "magicseg",
        threshold: float | None = None,
    ) -> BenchmarkPredictor:
        """A predictor of ``benchmark``'s classes (the protocol's class-name file where it has one).

        ``method``: ``magicseg`` (a CLIPForOpenSegmentation, the protocol's rule for it) or a training-free one
        (``model`` a :class:`~magicseg_hf.evaluation.methods.TrainingFreeCLIP`; ``processor`` anything with
        ``image_mean``/``image_std``): the harness's softmax score, ``prob_thd`` (or ``threshold``), area
        threshold and logit scale (:meth:`Protocol.training_free_score`).
        """
        class_lines = protocol.class_lines(benchmark)
        softmax_scale = None
        if method == "magicseg":
            decision = protocol.decision(benchmark)
        else:
            score = protocol.training_free_score(benchmark, method, threshold)
            softmax_scale = score["logit_scale"]
            try:
                decision = Decision(score["rule"], score["threshold"], score["area_threshold"])
            except ValueError as error:
                raise InputError(str(error)) from None
        queries = class_queries(class_lines, benchmark.has_background, decision, protocol.synonyms)
        image_processor = getattr(processor, "image_processor", processor)
        return cls(
            model,
            queries,
            protocol,
            image_processor.image_mean,
            image_processor.image_std,
            tokenizer=getattr(processor, "tokenizer", None),
            refine=refine if refine is not None else protocol.refine,
            batch_size=batch_size,
            softmax_scale=softmax_scale,
        )

    def predict(self, samples: Iterable[Any]) -> Iterator[tuple[Any, np.ndarray]]:
        """``(sample, prediction)`` per benchmark sample, in order; ``prediction`` (H, W) int64 numpy label ids
        at the size of the sample's image (= its label's)."""
        geometry = self.protocol.geometry()
        if self.softmax_scale is not None:  # a training-free method: its harness's whole-image rule
            geometry = UnpaddedWholeGeometry(**geometry.to_dict())
        stream = segment_images(
            self.model,
            ((sample, sample.image) for sample in samples),
            self.encoded,
            geometry,
            self.queries.decision,
            self.image_mean,
            self.image_std,
            window_batch_size=self.batch_size,
            refine=_pamr if self.refine == "pamr" else None,
            softmax_scale=self.softmax_scale,
        )
        for sample, result in stream:
            labels = self.label_table[result.labels]  # (H, W): -1 indexes the last entry (background)
            yield sample, labels.cpu().numpy()


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "REFINEMENTS",
    "BenchmarkPredictor",
    "ClassQueries",
    "UnpaddedWholeGeometry",
    "class_queries",
]
