"""``magicseg predict``: segment pictures with a trained ``CLIPForOpenSegmentation``.

The library part, :func:`predict_images`, runs a loaded model on PIL images through the model's
one inference path (``magicseg_hf.modeling.inference_clip_open_seg.segment_images``, which the
``open-vocabulary-segmentation`` pipeline and ``magicseg evaluate`` also call) and returns one
:class:`Prediction` per image: the class position of every pixel (or -1 where no class was chosen)
and, per class present, its area (fraction of the image) and score (mean probability inside its
mask). ``magicseg demo`` and the Gradio Space reuse it; the pictures come from
:mod:`magicseg_hf.visualization`.

Importing this module is cheap (no torch): ``magicseg predict --help`` answers at once; the model
libraries are imported when :func:`run` or :func:`predict_images` runs.

Example::

    from PIL import Image
    from magicseg_hf.loading import load_open_seg
    from magicseg_hf.predict import predict_images

    model, processor = load_open_seg("path/to/model")
    image = Image.open("street.jpg").convert("RGB")
    [prediction] = predict_images(model, processor, [image], ["car", "tree", "road"])  # threshold 0.5
    prediction.overlay(image).save("overlay.png")
    for segment in prediction.segments:
        print(segment.label, segment.area, segment.score)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from magicseg_hf import settings
from magicseg_hf.errors import InputError, first_line
from magicseg_hf.labels import UNKNOWN
from magicseg_hf.runtime import AUTO, device_spellings, resolve_device
from magicseg_hf.visualization import overlay_with_legend

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Runs a CLIPForOpenSegmentation model (a folder saved by `magicseg train`, or a Hub repo) on one
or more images, batched, and prints per image the area (share of the image) and score (mean
probability inside its mask) of each class found. --output / --output-dir save the overlay with
a legend; --json saves the table.

Classes default to the vocabulary saved with the model. A pixel takes its most probable class
when that class's probability reaches --threshold (0.5 by default, where the model's per-class
sigmoid is trained to separate); pixels no named class is sure of stay unlabelled. --decision
argmax gives every pixel its best class instead; --decision background-class queries
"background" (or --background-classes) beside the classes and leaves the pixels it wins
unlabelled. Images are resized (short side 512) and segmented with sliding windows, exactly as
the open-vocabulary-segmentation pipeline and `magicseg evaluate --protocol zegclip` do.

Examples:
  magicseg predict --model model --image photo.jpg --output overlay.png
  magicseg predict --model USER/NAME --image a.jpg b.jpg --classes cat dog \\
      --output-dir overlays --json segments.json --label-dir labels"""

#: Sliding windows per forward pass by default (the model's inference path's default).
DEFAULT_BATCH_SIZE = 8
#: File name of an image's overlay in ``--output-dir``: ``<image stem>_overlay.png``.
OVERLAY_SUFFIX = "_overlay.png"
#: File name of an image's label map in ``--label-dir``: ``<image stem>_label.png``.
LABEL_SUFFIX = "_label.png"
#: Tint strength of the overlay (as in the dataset preview).
OVERLAY_ALPHA = 0.55


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Segment:
    """One class found in an image."""

    #: The class name.
    label: str
    #: Its position in the class list the model was asked about.
    position: int
    #: Pixels assigned to it.
    pixels: int
    #: ``pixels`` as a fraction of the image's pixels.
    area: float
    #: Mean probability (sigmoid) of the class over its pixels.
    score: float

    def to_dict(self) -> dict[str, Any]:
        """The segment as JSON values."""
        return {"label": self.label, "area": self.area, "score": self.score, "pixels": self.pixels}


@dataclass
class Prediction:
    """The segmentation of one image.

    ``segmentation`` is a ``(height, width)`` int64 array at the image's size: per pixel the
    position of its class in ``classes``, or -1 where no class reaches ``threshold``.
    ``segments`` lists the classes present, largest first.
    """

    classes: list[str]
    segmentation: np.ndarray
    segments: list[Segment]
    threshold: float | None = None
    #: Where the image came from (a file path), when known.
    source: str | None = field(default=None)
    #: The decision rule that chose the classes (``threshold``, ``background-class`` or ``argmax``).
    decision: str = "threshold"

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the image, as PIL gives sizes."""
        height, width = self.segmentation.shape
        return width, height

    @property
    def unassigned_area(self) -> float:
        """Fraction of the pixels left without a class (0 under the ``argmax`` rule)."""
        return float((self.segmentation < 0).mean()) if self.segmentation.size else 0.0

    def mask(self, label: str | int) -> np.ndarray:
        """``(height, width)`` bool mask of a class, by name or by position in ``classes``."""
        position = self.classes.index(label) if isinstance(label, str) else int(label)
        return self.segmentation == position

    def label_map(self) -> tuple[np.ndarray, list[str]]:
        """The segmentation as a uint8 label map for :mod:`magicseg_hf.visualization`, and its names.

        Value 0 is "no class" and ``i >= 1`` is ``names[i - 1]``. With fewer than 255 classes,
        ``names`` is ``classes`` and value ``i`` is position ``i - 1``, so a class keeps its
        colour in every image of a call; with more, only the classes present are numbered.
        """
        if len(self.classes) < UNKNOWN:
            label = (self.segmentation + 1).astype(np.uint8)  # -1 -> 0, position p -> p + 1
            return label, list(self.classes)
        present = sorted(segment.position for segment in self.segments)[: UNKNOWN - 1]
        label = np.zeros(self.segmentation.shape, dtype=np.uint8)
        for value, position in enumerate(present, start=1):
            label[self.segmentation == position] = value
        return label, [self.classes[position] for position in present]

    def label_image(self) -> Image.Image:
        """The segmentation as a PNG-ready label image: 0 no class, ``i`` = ``classes[i - 1]``.

        Mode "L" below 255 classes, 16-bit ("I;16") above.
        """
        values = self.segmentation + 1  # -1 -> 0, position p -> p + 1
        if len(self.classes) < UNKNOWN:
            return Image.fromarray(values.astype(np.uint8), mode="L")
        return Image.fromarray(values.astype(np.uint16), mode="I;16")

    def overlay(self, image: Image.Image, alpha: float = OVERLAY_ALPHA) -> Image.Image:
        """``image`` with each class's pixels tinted in its colour and a legend on the right."""
        if image.size != self.size:
            raise ValueError(f"the image must have the prediction's size {self.size} (got {image.size})")
        label, names = self.label_map()
        return overlay_with_legend(image, label, names, alpha=alpha)

    def to_dict(self) -> dict[str, Any]:
        """The prediction as JSON values (no pixels): size, classes found, their areas and scores."""
        width, height = self.size
        return {
            "image": self.source,
            "width": width,
            "height": height,
            "unassigned_area": self.unassigned_area,
            "segments": [segment.to_dict() for segment in self.segments],
        }


# ----------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------
def check_classes(classes: Sequence[str] | None, vocabulary: Sequence[str]) -> list[str]:
    """The classes to segment: ``classes`` when given, else the model's saved ``vocabulary``.

    Raises:
        InputError: no classes at all, a blank name, or a name given twice.
    """
    from magicseg_hf.modeling import check_class_names

    if classes is None:
        if not vocabulary:
            raise InputError("the model has no saved vocabulary: name the classes with `classes`")
        classes = vocabulary
    elif isinstance(classes, str):
        classes = [classes]  # one class name, not a sequence of its characters
    try:
        return check_class_names(list(classes), what="`classes`")
    except ValueError as error:
        raise InputError(str(error)) from None


def check_decision(
    decision: str | None, threshold: float | None, background: Sequence[str] | None = None
) -> tuple[Any, list[str]]:
    """The decision rule and its background texts from the user's settings.

    ``threshold`` None means the rule's default (0.5 for ``threshold``); ``background`` defaults to
    ``["background"]`` for ``background-class`` and is refused with the other rules.

    Raises:
        InputError: an unknown rule, a threshold outside [0, 1] or one given to ``argmax``.
    """
    from magicseg_hf.modeling import Decision
    from magicseg_hf.modeling.pipeline_clip_open_seg import DEFAULT_BACKGROUND

    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0
    ):
        raise InputError(f"`threshold` must be a number in [0, 1] (got {threshold!r})")
    try:
        rule = Decision.named(decision, threshold)
    except ValueError as error:
        raise InputError(str(error)) from None
    if rule.rule == "background-class":
        texts = list(background) if background else list(DEFAULT_BACKGROUND)
    elif background:
        raise InputError(f"`background_classes` is only used with `decision` background-class (got {rule.rule})")
    else:
        texts = []
    return rule, texts


def predict_images(
    model: Any,
    processor: Any,
    images: Sequence[Image.Image],
    classes: Sequence[str] | None = None,
    threshold: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    sources: Sequence[str] | None = None,
    decision: str | None = None,
    background: Sequence[str] | None = None,
) -> list[Prediction]:
    """Segment ``images`` with ``model`` (a ``CLIPForOpenSegmentation``) and its ``processor``.

    A thin caller of the model's one inference path
    (:func:`magicseg_hf.modeling.inference_clip_open_seg.segment_images`): the same answer as
    ``pipeline("open-vocabulary-segmentation")`` and ``magicseg evaluate --protocol zegclip``.

    Args:
        model: the model, on the device to run on (put in eval mode here).
        processor: its ``CLIPOpenSegProcessor`` (tokenizer, normalisation).
        images: PIL images of any sizes and modes (EXIF-rotated, converted to RGB).
        classes: class names; default ``model.config.vocabulary``. Encoded once for all images.
        threshold: the lowest probability a pixel's best class needs; ``None``: the rule's
            default (0.5 for the ``threshold`` rule).
        batch_size: sliding windows per forward pass (windows of several images share one).
        sources: a name per image (e.g. its path), kept in :attr:`Prediction.source`.
        decision: ``threshold`` (default), ``background-class`` or ``argmax``.
        background: texts that mean "no class" under ``background-class`` (default ``background``).
    Returns:
        One :class:`Prediction` per image, in order.
    Raises:
        InputError: bad ``classes``, ``threshold``, ``decision``, ``batch_size`` or image.
    """
    import torch

    from magicseg_hf.modeling import InferenceGeometry, Queries, segment_images
    from magicseg_hf.modeling.inference_clip_open_seg import as_rgb

    names = check_classes(classes, list(getattr(model.config, "vocabulary", None) or []))
    rule, background_texts = check_decision(decision, threshold, background)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer (got {batch_size!r})")
    if sources is not None and len(sources) != len(images):
        raise ValueError(f"sources must name each image (got {len(sources)} for {len(images)} images)")
    try:
        pictures = [as_rgb(image, what=sources[i] if sources else f"image {i}") for i, image in enumerate(images)]
        queries = Queries.encode(model, names, background_texts, tokenizer=processor.tokenizer)
    except ValueError as error:
        raise InputError(str(error)) from None
    model.eval()
    image_processor = processor.image_processor
    predictions: list[Prediction] = []
    with torch.no_grad():
        results = segment_images(
            model, enumerate(pictures), queries, InferenceGeometry.from_config(model.config), rule,
            image_processor.image_mean, image_processor.image_std, window_batch_size=batch_size,
        )
        for index, result in results:
            prediction = _prediction(names, result, rule.threshold, sources[index] if sources else None)
            prediction.decision = rule.rule
            predictions.append(prediction)
    return predictions


def _prediction(names: list[str], result: Any, threshold: float | None, source: str | None) -> Prediction:
    """A :class:`Prediction` from one image's ``SegmentationResult`` (labels and winning probabilities)."""
    from magicseg_hf.modeling.inference_clip_open_seg import class_statistics

    total = result.labels.numel()
    segments = [
        Segment(names[position], position, pixels, pixels / total, score)
        for position, pixels, score in class_statistics(result, len(names))
    ]
    segments.sort(key=lambda segment: (-segment.pixels, segment.position))
    return Prediction(
        classes=list(names),
        segmentation=result.labels.cpu().numpy().astype(np.int64),
        segments=segments,
        threshold=threshold,
        source=source,
    )


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------
def load_image(path: str | Path) -> Image.Image:
    """The RGB picture in ``path`` (EXIF orientation applied; palette, CMYK, RGBA and 16-bit images
    converted as :func:`~magicseg_hf.modeling.inference_clip_open_seg.as_rgb` does).

    Raises:
        InputError: no such file, a folder, a file that is not a readable image, or one over PIL's
            decompression-bomb pixel limit.
    """
    from magicseg_hf.modeling.inference_clip_open_seg import as_rgb

    file = Path(path).expanduser()
    if not file.exists():
        raise InputError(f"`image` {path}: no such file")
    if not file.is_file():
        raise InputError(f"`image` {path}: not a file")
    try:
        with Image.open(file) as opened:  # as_rgb checks the pixel limit before decoding the pixels
            try:
                return as_rgb(opened, what=f"--image {path}")
            except ValueError as error:  # as_rgb's own refusal (a float image, over the limit): it names the file
                raise InputError(first_line(error)) from None
    except InputError:
        raise
    except Image.DecompressionBombError as error:
        raise InputError(
            f"`image` {path}: over twice PIL's limit of {Image.MAX_IMAGE_PIXELS:,} pixels ({first_line(error)}); "
            "resize it first"
        ) from None
    except UnidentifiedImageError:
        raise InputError(f"`image` {path}: not a readable image (unknown or broken image format)") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise InputError(f"`image` {path}: not a readable image ({first_line(error)})") from None


def overlay_paths(images: Sequence[str], output_dir: str | Path, suffix: str = OVERLAY_SUFFIX) -> list[Path]:
    """``output_dir/<stem><suffix>`` per image; a repeated stem gets ``_2``, ``_3``... after it."""
    folder = Path(output_dir)
    seen: dict[str, int] = {}
    paths = []
    for image in images:
        stem = Path(image).stem or "image"
        seen[stem] = seen.get(stem, 0) + 1
        name = stem if seen[stem] == 1 else f"{stem}_{seen[stem]}"
        paths.append(folder / f"{name}{suffix}")
    return paths


def _check_outputs(args: argparse.Namespace) -> tuple[list[Path | None], list[Path | None]]:
    """Where each image's overlay and label map go (None: not saved); refuses outputs that cannot work."""
    images = list(args.image)
    label_targets: list[Path | None] = [None] * len(images)
    if args.label_dir is not None:
        if Path(args.label_dir).exists() and not Path(args.label_dir).is_dir():
            raise InputError(f"--label-dir {args.label_dir}: exists and is not a folder")
        label_targets = list(overlay_paths(images, args.label_dir, LABEL_SUFFIX))
    if args.output is not None and args.output_dir is not None:
        raise InputError("pass either --output (one image) or --output-dir (any number), not both")
    if args.output is not None:
        if len(images) > 1:
            raise InputError(
                f"--output names one file but {len(images)} images were given; use --output-dir for several"
            )
        target = Path(args.output)
        if target.suffix.lower() not in Image.registered_extensions():
            raise InputError(f"--output must end with an image extension such as .png (got {args.output!r})")
        targets: list[Path | None] = [target]
    elif args.output_dir is not None:
        if Path(args.output_dir).exists() and not Path(args.output_dir).is_dir():
            raise InputError(f"--output-dir {args.output_dir}: exists and is not a folder")
        targets = list(overlay_paths(images, args.output_dir))
    else:
        targets = [None] * len(images)
    inputs = {Path(image).expanduser().resolve() for image in images}
    for target in [*targets, *label_targets]:
        if target is not None and target.expanduser().resolve() in inputs:
            raise InputError(f"{target} would overwrite one of the input images; choose another file")
    if args.json is not None and Path(args.json).expanduser().resolve() in inputs:
        raise InputError(f"--json {args.json} is one of the input images; choose another file")
    from magicseg_hf.folder import check_output_file, check_output_folder

    for flag, target in (("--json", args.json), ("--output", args.output)):
        if target is not None:
            check_output_file(target, flag)
    for flag, folder in (("--output-dir", args.output_dir), ("--label-dir", args.label_dir)):
        if folder is not None:
            check_output_folder(folder, flag)
    return targets, label_targets


def _check_model_source(model: str) -> None:
    """A local ``--model`` folder must hold a ``CLIPForOpenSegmentation`` (Hub ids are checked when loading)."""
    path = Path(model).expanduser()
    if not path.exists():
        return  # a Hub id, or a missing folder: load_open_seg says which, in one line
    problem = model_type_problem(path)
    if problem:
        raise InputError(f"--model {model}: {problem}")


def model_type_problem(folder: str | Path) -> str | None:
    """Why ``folder`` is not a saved ``CLIPForOpenSegmentation`` by its ``config.json``; None when it is one.

    Only the config's ``model_type`` is read (a cheap first check before loading anything).
    """
    from magicseg_hf.modeling import CLIPOpenSegConfig

    path = Path(folder)
    config_file = path / "config.json"
    if not path.is_dir():
        return "not a folder"
    if not config_file.is_file():
        return "no config.json (not a saved model folder)"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"config.json is not readable JSON ({first_line(error)})"
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != CLIPOpenSegConfig.model_type:
        return (
            f"config.json has model_type {model_type!r}, not a CLIPForOpenSegmentation "
            f"(expected {CLIPOpenSegConfig.model_type!r})"
        )
    return None


def format_table(prediction: Prediction) -> str:
    """A short text table of one prediction: each class's area (percent) and score, largest first."""
    width, height = prediction.size
    rows = [(segment.label, f"{100 * segment.area:.1f} %", f"{segment.score:.3f}") for segment in prediction.segments]
    if prediction.unassigned_area > 0:
        rows.append(("(no class)", f"{100 * prediction.unassigned_area:.1f} %", ""))
    name_width = max([len("class"), *(len(row[0]) for row in rows)])
    lines = [f"{prediction.source or 'image'} ({width}x{height})", f"  {'class':<{name_width}}  {'area':>7}  score"]
    lines += [f"  {name:<{name_width}}  {area:>7}  {score}".rstrip() for name, area, score in rows]
    return "\n".join(lines)


def predictions_json(
    predictions: Sequence[Prediction],
    model: str,
    overlays: Sequence[Path | None],
    label_files: Sequence[Path | None] | None = None,
) -> dict[str, Any]:
    """What ``--json`` writes: the model, classes, decision rule and threshold, and each image's segments."""
    label_files = label_files if label_files is not None else [None] * len(predictions)
    first = predictions[0] if predictions else None
    return {
        "model": model,
        "classes": list(first.classes) if first else [],
        "threshold": first.threshold if first else None,
        "decision": first.decision if first else None,
        "images": [
            {
                **prediction.to_dict(),
                "overlay": str(overlay) if overlay is not None else None,
                "label_map": str(label_file) if label_file is not None else None,
            }
            for prediction, overlay, label_file in zip(predictions, overlays, label_files)
        ],
    }


# ----------------------------------------------------------------------------------------------
# The verb
# ----------------------------------------------------------------------------------------------
@dataclass
class PredictSettings:
    """The flags of ``magicseg predict`` (one per field)."""

    model: str | None = field(default=None, metadata={
        "help": "A model folder saved by `magicseg train`, or a Hub model repo.", "metavar": "DIR|REPO",
        "required": True})
    image: list[str] | None = field(default=None, metadata={
        "help": "Image file(s) to segment.", "metavar": "IMG", "required": True})
    classes: list[str] | None = field(default=None, metadata={
        "help": "Class names to segment (default: the model's saved vocabulary).", "metavar": "NAME"})
    threshold: float | None = field(default=None, metadata={
        "help": "Leave pixels whose best class probability is below T unlabelled "
                "(default 0.5 with --decision threshold; not allowed with argmax).", "metavar": "T"})
    decision: str = field(default="threshold", metadata={
        "help": "threshold: best class if its probability reaches --threshold, else none "
                "(default); background-class: background texts compete and leave the pixels "
                "they win unlabelled; argmax: every pixel takes its best class.",
        "choices": ("threshold", "background-class", "argmax")})
    background_classes: list[str] | None = field(default=None, metadata={
        "help": 'Texts meaning "no class" for --decision background-class (default: background).', "metavar": "TEXT"})
    label_dir: str | None = field(default=None, metadata={
        "help": "Save each image's label map as DIR/<name>_label.png (0 no class, i = the i-th "
                "class; 16-bit above 254 classes).", "metavar": "DIR"})
    output: str | None = field(default=None, metadata={
        "help": "Save the overlay with its legend here (one image).", "metavar": "OVERLAY.png"})
    output_dir: str | None = field(default=None, metadata={
        "help": f"Save each image's overlay as DIR/<name>{OVERLAY_SUFFIX} (any number of images).", "metavar": "DIR"})
    json: str | None = field(default=None, metadata={
        "help": "Save every image's classes, areas and scores as JSON.", "metavar": "SEGMENTS.json"})
    batch_size: int = field(default=DEFAULT_BATCH_SIZE, metadata={
        "help": "Sliding windows per forward pass (windows of several images share one)."})
    device: str = field(default=AUTO, metadata={
        "help": f"{device_spellings()}; auto: CUDA when available, else the CPU."})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``magicseg predict``, one per :class:`PredictSettings` field."""
    settings.add_arguments(parser, PredictSettings)


def run(args: argparse.Namespace) -> int:
    """Segment ``args.image`` and report; returns 0. Bad input raises :class:`InputError` first."""
    from magicseg_hf.console import checks_passed
    from magicseg_hf.folder import atomic_write_image, atomic_write_json
    from magicseg_hf.loading import load_open_seg

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be a positive integer (got {args.batch_size})")
    check_decision(args.decision, args.threshold, args.background_classes)
    if args.classes is not None:
        check_classes(args.classes, [])
    overlays, label_files = _check_outputs(args)
    images = [load_image(path) for path in args.image]
    device = resolve_device(args.device)
    _check_model_source(args.model)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one table on stdout, no weight-loading bars around it
    model, processor = load_open_seg(args.model)
    model.to(device)
    logger.info("loaded %s on %s", args.model, device)
    checks_passed()  # images, outputs and model are read: the terminal shows the rest (console.py)

    start = time.perf_counter()
    predictions = predict_images(
        model, processor, images, args.classes, threshold=args.threshold, batch_size=args.batch_size,
        sources=list(args.image), decision=args.decision, background=args.background_classes,
    )
    logger.info("segmented %d image(s) for %d classes in %.1f s", len(images), len(predictions[0].classes),
                time.perf_counter() - start)
    from magicseg_hf.folder import remove_stale_temporaries

    for target in [*overlays, *label_files, args.json]:  # an earlier killed run's half-written files
        if target is not None and remove_stale_temporaries(target):
            logger.info("removed a killed run's temporary files beside %s", target)
    for image, prediction, target, label_file in zip(images, predictions, overlays, label_files):
        if target is not None:
            atomic_write_image(target, prediction.overlay(image))
        if label_file is not None:
            atomic_write_image(label_file, prediction.label_image())
    if args.json is not None:
        atomic_write_json(args.json, predictions_json(predictions, args.model, overlays, label_files))
    report = "\n\n".join(format_table(prediction) for prediction in predictions)
    sys.stdout.write(report + "\n")
    saved = [str(target) for target in [*overlays, *label_files] if target is not None]
    saved += [args.json] if args.json else []
    if saved:
        logger.info("wrote %s", ", ".join(saved))
    else:
        logger.info("pass --output or --output-dir to save the overlay, --json to save the table")
    return 0
