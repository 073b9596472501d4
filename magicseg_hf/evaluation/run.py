"""``magicseg evaluate``: zero-shot mIoU of a ``CLIPForOpenSegmentation`` on a benchmark, under a protocol.

Importing this module is cheap (no torch); the verb's flags and dispatch (one evaluation or a
``--suite``) are in :mod:`magicseg_hf.evaluation.command`. The run (:func:`evaluate_benchmark`) reads the benchmark (:mod:`~magicseg_hf.evaluation.benchmarks`),
predicts it with :class:`~magicseg_hf.evaluation.inference.BenchmarkPredictor`, accumulates the
metric (:class:`~magicseg_hf.evaluation.metric.MeanIoUAccumulator`) and writes, at the very end and
atomically, one results file: the metric values (``mean_iou`` as a fraction, as the ``mean_iou``
metric returns it), a per-class table, every protocol value, the benchmark's split, source and image
count, the model's id and revision, package versions and timings. A run that stops early (bad
input, Ctrl-C) writes no results file. ``--update-card`` copies the results into the model folder
as ``results-<benchmark>-<protocol>.json`` and re-renders its card (``model-index``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magicseg_hf.errors import InputError
from magicseg_hf.evaluation.protocols import (
    DEFAULT_PROTOCOLS,
    METHODS,
    MODES,
    PROTOCOLS,
    REFINEMENTS,
    RULES,
    SYNONYM_RULES,
    Protocol,
    check_method,
    get_protocol,
)
from magicseg_hf.labels import UNKNOWN
from magicseg_hf.runtime import (
    AUTO,
    DTYPE_NAMES,
    check_device_name,
    check_dtype_name,
    device_spellings,
    package_versions,
    resolve_device,
    resolve_dtype,
)

logger = logging.getLogger(__name__)

#: Results files ``--update-card`` writes into the model folder start with this.
CARD_RESULTS_PREFIX = "results-"
#: The results file format (bump when keys change meaning).
RESULTS_FORMAT_VERSION = 1


@dataclass
class EvaluationConfig:
    """Every setting of ``magicseg evaluate`` (one flag each; ``None`` = the protocol's or the default)."""

    model: str = field(metadata={
        "help": "A saved CLIPForOpenSegmentation folder or Hub repo id; for a training-free --method, any CLIPModel."})
    benchmark: str = field(metadata={
        "help": "voc21, voc20, context60, context59, coco-object, or a dataset folder written by `magicseg generate`.",
        "metavar": "NAME|DIR"})
    output: str = field(metadata={
        "help": "Results file to write (JSON); with --suite, a folder.", "required": True})
    data_dir: str | None = field(default=None, metadata={"help": "Where the benchmark's layout is (see above)."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit) of --model."})
    split: str | None = field(default=None, metadata={
        "help": "Split list or folder (default: val; val2017 for coco-object)."})
    protocol: str | None = field(default=None, metadata={
        "help": "Named harness: its resize, windows, class names, synonym rule, background rule and PAMR, per "
                "benchmark (default: the method's own; zegclip for magicseg).",
        "metavar": "|".join(PROTOCOLS)})
    method: str = field(default="magicseg", metadata={
        "help": "magicseg (a trained CLIPForOpenSegmentation) or a training-free method on a CLIP checkpoint.",
        "metavar": "|".join(METHODS)})
    short_side: int | None = field(default=None, metadata={"help": "Override: short side after resizing (px)."})
    max_long_side: str | None = field(default=None, metadata={
        "help": "Override: the long side's cap after resizing (mmseg's 2048; none: no cap, as zegclip).",
        "metavar": "PX|none"})
    window: int | None = field(default=None, metadata={"help": "Override: sliding-window side (px)."})
    stride: int | None = field(default=None, metadata={"help": "Override: sliding-window step (px)."})
    mode: str | None = field(default=None, metadata={
        "help": "Override: slide windows or the whole image.", "choices": MODES})
    threshold: float | None = field(default=None, metadata={
        "help": "Override: lowest sigmoid probability of the best class (a training-free method: its softmax "
                "probability, the harness's prob_thd); below it a pixel is background."})
    decision: str | None = field(default=None, metadata={
        "help": "Override: background-class (background texts compete), threshold (background below --threshold) "
                "or argmax (no background). Benchmarks without background always take argmax.",
        "choices": RULES})
    area_threshold: float | None = field(default=None, metadata={
        "help": "Override: drop classes holding at most this share of an image's labelled pixels (SCLIP)."})
    synonyms: str | None = field(default=None, metadata={
        "help": "Override: a class's synonyms: best one (max) or embeddings averaged (mean).",
        "choices": SYNONYM_RULES})
    class_names: str | None = field(default=None, metadata={
        "help": "Override: whose class-name file to query: benchmark, zegclip, groupvit, sclip or naclip."})
    refine: str | None = field(default=None, metadata={
        "help": "Override: refine the probabilities with PAMR (10 iterations, dilations 8 and 16, as NACLIP), or none.",
        "choices": (*REFINEMENTS, "none")})
    coco_object_source: str = field(default="stuffthingmaps", metadata={
        "help": "COCO-Object labels from COCO-Stuff's maps, or instance masks merged per category (pycocotools).",
        "choices": ("stuffthingmaps", "instances")})
    coco_object_unlabeled: str = field(default="background", metadata={
        "help": "COCO-Stuff's unlabeled pixels (255): background and scored, as the reference harnesses' "
                "convert_coco_object scripts make them (default), or ignored.",
        "choices": ("background", "ignore")})
    limit: int | None = field(default=None, metadata={"help": "Evaluate only the first N images."})
    batch_size: int = field(default=16, metadata={
        "help": "Sliding windows per forward pass (windows of consecutive images share batches)."})
    overlays: int = field(default=0, metadata={
        "help": "Save image | ground truth | prediction pictures of the first K images beside --output, and "
                "their predicted label maps (PNG of label ids).",
        "metavar": "K"})
    update_card: bool = field(default=False, metadata={
        "help": "Also save the results into the model folder and re-render its card (model-index)."})
    device: str = field(default=AUTO, metadata={
        "help": f"{device_spellings()}; auto: CUDA when available, else the CPU."})
    dtype: str = field(default="float32", metadata={"help": "Model weights' type.", "choices": DTYPE_NAMES})

    def __post_init__(self) -> None:
        check_method(self.method)
        if self.protocol is None:
            self.protocol = DEFAULT_PROTOCOLS[self.method]
        check_device_name(self.device)
        check_dtype_name(self.dtype, auto=False)

    def resolved_protocol(self, benchmark: str | None = None) -> Protocol:
        """The named protocol's values for ``benchmark`` with this run's overrides (InputError for an
        unknown name or a bad value)."""
        protocol = get_protocol(self.protocol, _benchmark_key(benchmark or self.benchmark))
        return protocol.with_overrides(
            short_side=self.short_side,
            max_long_side=self.max_long_side,
            window=self.window,
            stride=self.stride,
            mode=self.mode,
            threshold=self.threshold,
            rule=self.decision,
            area_threshold=self.area_threshold,
            synonyms=self.synonyms,
            class_names=self.class_names,
            refine=self.refine,
        )


def _benchmark_key(benchmark: str) -> str:
    """A named benchmark as is; a dataset folder as ``folder`` (protocols have no values of their own for it)."""
    from magicseg_hf.evaluation.benchmarks import BENCHMARK_NAMES

    return benchmark if benchmark in BENCHMARK_NAMES else "folder"


# ----------------------------------------------------------------------------------------------
# Checks before anything heavy is loaded
# ----------------------------------------------------------------------------------------------
def _check_settings(config: EvaluationConfig) -> tuple[Protocol, Path]:
    """The protocol and the output path, or InputError for a bad value (before any model is loaded)."""
    protocol = config.resolved_protocol()
    protocol.geometry()  # the same checks the model's inference path makes, before anything is loaded
    if config.batch_size < 1:
        raise InputError(f"--batch-size must be a positive integer (got {config.batch_size})")
    if config.overlays < 0:
        raise InputError(f"--overlays must be a non-negative integer (got {config.overlays})")
    if config.limit is not None and config.limit < 1:
        raise InputError(f"--limit must be a positive integer (got {config.limit})")
    from magicseg_hf.folder import check_output_file

    output = Path(config.output).expanduser()
    check_output_file(output, "--output")
    if config.update_card and not Path(config.model).expanduser().is_dir():
        raise InputError(
            f"--update-card needs a local model folder (got {config.model!r}, not a folder: "
            "download the model, evaluate the folder, then push it)"
        )
    return protocol, output


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------
def evaluate_benchmark(config: EvaluationConfig) -> dict[str, Any]:
    """Run ``magicseg evaluate`` with ``config``: predict, score, write the results file (and card).

    Returns:
        The results as written to ``config.output`` (see :func:`results_dict`).

    Raises:
        InputError: a bad setting, benchmark layout or file (before or during the run; no results
            file is written then).
        ModelLoadError: the model cannot be loaded.
    """
    import torch
    from tqdm.auto import tqdm

    from magicseg_hf.console import checks_passed
    from magicseg_hf.evaluation.benchmarks import load_benchmark
    from magicseg_hf.evaluation.inference import BenchmarkPredictor
    from magicseg_hf.evaluation.methods import check_checkpoint
    from magicseg_hf.evaluation.metric import MeanIoUAccumulator
    from magicseg_hf.folder import atomic_write_json, remove_stale_temporaries

    start = time.perf_counter()
    protocol, output = _check_settings(config)
    check_checkpoint(config.model, config.revision, config.method)
    benchmark = load_benchmark(
        config.benchmark, config.data_dir, config.split, config.coco_object_source, config.limit,
        coco_object_unlabeled=config.coco_object_unlabeled,
    )
    num_images = len(benchmark)
    if num_images == 0:
        raise InputError(f"benchmark {benchmark.name} has no images in split {benchmark.split} under {benchmark.root}")
    device = resolve_device(config.device)
    model, processor = load_method_model(config.model, config.revision, config.method)
    model = model.to(device=device, dtype=resolve_dtype(config.dtype, device)).eval()
    predictor = BenchmarkPredictor.for_benchmark(
        model, processor, benchmark, protocol, batch_size=config.batch_size, method=config.method,
        threshold=config.threshold if config.method != "magicseg" else None,
    )
    logger.info(
        "evaluating %s on %s (%d images, %d labels; %d text queries) with protocol %s: %s",
        config.model, benchmark.name, num_images, benchmark.num_labels, len(predictor.queries.label_ids),
        protocol.name, protocol.to_dict(),
    )
    accumulator = MeanIoUAccumulator(benchmark.num_labels, benchmark.ignore_index)
    kept: list[tuple[Any, Any]] = []  # the first --overlays (sample, prediction), drawn with the results
    inference_start = time.perf_counter()
    labelled = False  # a labelled pixel was scored: the run will report a figure, the terminal shows it (console.py)
    with tqdm(total=num_images, unit="img", desc=f"evaluate {Path(benchmark.name).name}", file=sys.stderr) as bar:
        for index, (sample, prediction) in enumerate(predictor.predict(benchmark)):
            accumulator.update(prediction, sample.label)
            if not labelled and int(accumulator.area_reference.sum()) > 0:
                labelled = True
                checks_passed()
            if index < config.overlays:
                kept.append((sample, prediction))
            bar.update(1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    inference_seconds = time.perf_counter() - inference_start
    check_something_scored(benchmark, accumulator)
    # Pictures and results are written together at the end: a run that stops early leaves neither
    # (nor the output folder it would have made).
    output.parent.mkdir(parents=True, exist_ok=True)
    overlay_paths = [
        _save_overlay(output, index, sample, prediction, benchmark) for index, (sample, prediction) in enumerate(kept)
    ]
    results = results_dict(
        config, benchmark, protocol, predictor, accumulator, model,
        wall_time_seconds=time.perf_counter() - start, inference_seconds=inference_seconds,
        overlays=[path.name for path in overlay_paths],
    )
    remove_stale_temporaries(output)  # what a killed earlier run left beside it
    atomic_write_json(output, results)
    logger.info(
        "%s: mIoU %s %% over %d images (protocol %s%s) -> %s",
        benchmark.name, _percent_text(results["mean_iou"]), accumulator.num_images, protocol.name,
        f" + {predictor.refine}" if predictor.refine else "", output,
    )
    if config.update_card:
        card = update_model_card(Path(config.model).expanduser(), results)
        logger.info("model card updated: %s", card)
    return results


def check_something_scored(benchmark: Any, accumulator: Any) -> None:
    """Refuse a run whose images held no labelled pixel (every pixel ignore): its mIoU would be undefined."""
    if int(accumulator.area_reference.sum()) == 0:
        raise InputError(
            f"{benchmark.name}: no labelled pixel in {accumulator.num_images} images (every pixel is ignore, "
            f"{benchmark.ignore_index}): there is nothing to score"
        )


def load_method_model(model_id: str, revision: str | None, method: str) -> tuple[Any, Any]:
    """``(model, processor)`` for ``method``: a CLIPForOpenSegmentation and its processor (magicseg), or a
    :class:`~magicseg_hf.evaluation.methods.TrainingFreeCLIP` and its normalisation (the others)."""
    if method == "magicseg":
        from magicseg_hf.loading import load_open_seg

        return load_open_seg(model_id, revision)
    from types import SimpleNamespace

    from magicseg_hf.evaluation.methods import load_training_free

    model, mean, std = load_training_free(model_id, method, revision)
    return model, SimpleNamespace(image_mean=mean, image_std=std, tokenizer=None)


def _percent_text(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


# ----------------------------------------------------------------------------------------------
# The results file
# ----------------------------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    """A JSON number: NaN (a class with an empty union) becomes null."""
    number = float(value)
    return None if math.isnan(number) else number


def results_dict(
    config: EvaluationConfig,
    benchmark: Any,
    protocol: Protocol,
    predictor: Any,
    accumulator: Any,
    model: Any,
    wall_time_seconds: float,
    inference_seconds: float,
    overlays: list[str],
) -> dict[str, Any]:
    """The results file's content (plain JSON values; NaN written as null).

    Keys: ``complete``, ``mean_iou``/``mean_accuracy``/``overall_accuracy`` (fractions, as the
    ``mean_iou`` metric returns them) and ``mean_iou_percent``, ``per_class`` (id, name, synonyms,
    IoU, accuracy, labelled and predicted pixels), the benchmark (``benchmark``, ``split``,
    ``source``, ``data_dir``, ``num_images``, ``num_labels``, ``ignore_index``, ``has_background``),
    ``protocol`` (every value and the overrides), ``refine``, ``queries`` (the text queries and the
    label each predicts), ``model`` (id, revision, commit, device, dtype), ``batch_size``,
    ``package_versions``, ``wall_time_seconds``, ``inference_seconds``, ``images_per_second``,
    ``overlays`` and ``settings`` (every flag).
    """
    from magicseg_hf.modeling.inference_clip_open_seg import SCORE_AVERAGING as score_averaging

    metrics = accumulator.compute()
    predicted, labelled = accumulator.area_prediction, accumulator.area_reference
    per_class = [
        {
            "id": index,
            "name": synonyms[0],
            "synonyms": list(synonyms),
            "iou": _number(metrics["per_category_iou"][index]),
            "accuracy": _number(metrics["per_category_accuracy"][index]),
            "labelled_pixels": int(labelled[index]),
            "predicted_pixels": int(predicted[index]),
        }
        for index, synonyms in enumerate(benchmark.class_synonyms)
    ]
    mean_iou = _number(metrics["mean_iou"])
    described = benchmark.describe()
    described.pop("class_names", None)  # the per-class table names them
    described["num_images"] = accumulator.num_images
    queries = predictor.queries
    return {
        "format_version": RESULTS_FORMAT_VERSION,
        "complete": True,
        "method": config.method,
        "mean_iou": mean_iou,
        "mean_iou_percent": None if mean_iou is None else round(100 * mean_iou, 2),
        "mean_accuracy": _number(metrics["mean_accuracy"]),
        "overall_accuracy": _number(metrics["overall_accuracy"]),
        **described,
        "protocol": protocol.to_dict(),
        "refine": predictor.refine,
        "decision": queries.decision.to_dict(),
        "score_averaging": score_averaging if predictor.softmax_scale is None else (
            f"window cosines averaged, resized bilinearly, then softmax over all queries of cosine x "
            f"{predictor.softmax_scale:g} (the training-free harness's score)"
        ),
        "class_names_digest": queries.digest(),
        "queries": queries.to_dict(),
        "per_class": per_class,
        "model": {
            "id": config.model,
            "revision": config.revision,
            "commit": getattr(model.config, "_commit_hash", None),
            "device": str(predictor.device),
            "dtype": config.dtype,
        },
        "batch_size": config.batch_size,
        "package_versions": package_versions(
            ("pycocotools",) if getattr(benchmark, "source", None) == "instances" else ()
        ),
        "wall_time_seconds": round(wall_time_seconds, 2),
        "inference_seconds": round(inference_seconds, 2),
        "images_per_second": round(accumulator.num_images / inference_seconds, 3) if inference_seconds > 0 else None,
        "overlays": overlays,
        "settings": dataclasses.asdict(config),
    }


def card_results_name(results: dict[str, Any]) -> str:
    """``results-<benchmark>-<protocol>.json`` (a dataset folder by its name); ``-pamr`` when refined and
    ``-<8 hex digits>`` of the overridden values when the protocol's values were changed, so that
    different settings never overwrite each other's file."""
    protocol = results["protocol"]
    parts = [Path(str(results["benchmark"])).name or "benchmark", str(protocol["name"])]
    if results.get("method", "magicseg") != "magicseg":  # a training-free baseline beside the model's own
        parts.append(str(results["method"]))
    if results.get("refine"):
        parts.append(str(results["refine"]))
    if protocol.get("overrides"):
        digest = hashlib.sha256(json.dumps(protocol["overrides"], sort_keys=True).encode()).hexdigest()
        parts.append(digest[:8])
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts))
    return f"{CARD_RESULTS_PREFIX}{slug}.json"


def update_model_card(model_dir: Path, results: dict[str, Any]) -> Path:
    """Save ``results`` into ``model_dir`` (:func:`card_results_name`) and re-render its card; returns the card."""
    from magicseg_hf.cards.model import write_model_card
    from magicseg_hf.folder import atomic_write_json

    atomic_write_json(model_dir / card_results_name(results), results)
    return write_model_card(model_dir)


# ----------------------------------------------------------------------------------------------
# Overlays
# ----------------------------------------------------------------------------------------------
def display_labels(
    ground_truth: Any, prediction: Any, has_background: bool, ignore_index: int, class_names: tuple[str, ...]
) -> tuple[Any, Any, list[str]]:
    """Benchmark label maps in the picture convention of :mod:`magicseg_hf.visualization`.

    Returns ``(ground_truth, prediction, classes)``: two (H, W) uint8 maps with 0 background,
    ``i`` = ``classes[i-1]`` and 255 ignored. With a background class the ids stay (``classes`` =
    the names after background); without one every id moves up by one. When ids would pass 254
    (a large vocabulary), the ids present are renumbered 1..k.
    """
    import numpy as np

    offset = 0 if has_background else 1
    classes = list(class_names[1:] if has_background else class_names)
    shown = [
        np.where(np.asarray(label) == ignore_index, -1, np.asarray(label).astype(np.int64) + offset)
        for label in (ground_truth, prediction)
    ]  # -1: ignored
    if max(int(label.max(initial=0)) for label in shown) >= UNKNOWN:
        present = np.unique(np.concatenate([label[label > 0] for label in shown]))[: UNKNOWN - 1]  # (k,)
        classes = [class_names[int(value) - offset] for value in present]
        renumbered = []
        for label in shown:
            positions = np.searchsorted(present, label)  # (H, W)
            found = present[np.minimum(positions, len(present) - 1)] == label
            renumbered.append(np.where(label <= 0, label, np.where(found, positions + 1, -1)))
        shown = renumbered
    first, second = (np.where(label < 0, UNKNOWN, label).astype(np.uint8) for label in shown)
    return first, second, classes


def _save_overlay(output: Path, index: int, sample: Any, prediction: Any, benchmark: Any) -> Path:
    """``<output stem>-overlay-NNN-<id>.png`` (image | ground truth | prediction) and, beside it,
    ``<output stem>-prediction-NNN-<id>.png``: the predicted label ids as a PNG (8-bit, or 16-bit above 255
    labels), so the exact answer can be compared with ``magicseg predict --label-dir``'s."""
    import numpy as np
    from PIL import Image

    from magicseg_hf.folder import atomic_write_image, remove_stale_temporaries
    from magicseg_hf.visualization import prediction_triptych

    ground_truth, predicted, classes = display_labels(
        sample.label, prediction, benchmark.has_background, benchmark.ignore_index, benchmark.class_names
    )
    picture = prediction_triptych(sample.image, ground_truth, predicted, classes, title=str(sample.image_id))
    safe_id = re.sub(r"[^A-Za-z0-9._-]+", "_", str(sample.image_id))
    path = output.with_name(f"{output.stem}-overlay-{index:03d}-{safe_id}.png")
    for target, image in (
        (path, picture),
        (
            output.with_name(f"{output.stem}-prediction-{index:03d}-{safe_id}.png"),
            Image.fromarray(np.asarray(prediction).astype(np.uint8 if benchmark.num_labels <= UNKNOWN else np.uint16)),
        ),
    ):
        remove_stale_temporaries(target)  # what a killed earlier run left beside it
        atomic_write_image(target, image)
    return path


__all__ = [
    "EvaluationConfig",
    "card_results_name",
    "display_labels",
    "evaluate_benchmark",
    "package_versions",
    "results_dict",
    "update_model_card",
]
