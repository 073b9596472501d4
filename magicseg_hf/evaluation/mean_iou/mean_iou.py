"""Mean intersection-over-union over a whole dataset (mmsegmentation semantics), as an `evaluate` module.

This file is both a module of the package (``magicseg_hf.evaluation.metric`` imports the arithmetic
from here) and a standalone `evaluate` metric script: ``evaluate.load("<...>/evaluation/mean_iou")``
copies this one file and runs it on its own, so it imports only installed libraries, one per line.

Semantics (the Hub's ``mean_iou`` metric and mmsegmentation's ``IoUMetric``):

- per class, intersection, union, predicted area and labelled area are summed over every pixel of
  every image first, and only then divided: a dataset-level IoU, not a mean of per-image IoUs;
- pixels whose reference equals ``ignore_index`` are skipped (prediction and reference alike);
- a value outside ``0..num_labels-1`` counts for no class (a prediction of -1, "no class", at a
  labelled pixel is a miss);
- a class with an empty union (never predicted, never labelled) has IoU NaN and is left out of
  ``mean_iou``; a class never labelled has accuracy NaN and is left out of ``mean_accuracy``.

Example::

    import numpy as np
    from magicseg_hf.evaluation.mean_iou.mean_iou import MeanIoUAccumulator

    accumulator = MeanIoUAccumulator(num_labels=21, ignore_index=255)
    for prediction, reference in pairs:          # (H, W) integer arrays, numpy or torch
        accumulator.update(prediction, reference)
    print(accumulator.compute()["mean_iou"])
"""

from __future__ import annotations

import warnings

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Mean intersection-over-union of semantic segmentation maps, accumulated over the whole dataset as
mmsegmentation does: per class, intersection and union are summed over all pixels of all images and
divided once. Reference pixels equal to `ignore_index` are skipped. A class whose union is empty has
IoU NaN and is left out of the mean.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`List[ndarray]`): predicted label maps, each (H, W) of class ids.
    references (`List[ndarray]`): reference label maps, each the same shape as its prediction.
    num_labels (`int`): number of classes; ids 0..num_labels-1 are classes.
    ignore_index (`int`, defaults to 255): reference value of pixels that are not evaluated.
    nan_to_num (`float`, *optional*): replace NaN results (classes with an empty union) by this value.
    label_map (`dict`, *optional*): old id -> new id, applied to the references (from the original
        values: a mapped value is not mapped again).
    reduce_labels (`bool`, defaults to False): the references' 0 becomes 255 and every other id moves
        down by one (255 stays 255), as for datasets whose 0 means "other".
Returns:
    `mean_iou` (`float`), `mean_accuracy` (`float`), `overall_accuracy` (`float`),
    `per_category_iou` (`ndarray` of shape (num_labels,)), `per_category_accuracy` (same shape).
Examples:
    >>> import numpy as np
    >>> import evaluate
    >>> metric = evaluate.load("magicseg_hf/evaluation/mean_iou")
    >>> predicted = [np.array([[0, 1], [1, 255]])]
    >>> reference = [np.array([[0, 1], [0, 255]])]
    >>> results = metric.compute(predictions=predicted, references=reference, num_labels=2, ignore_index=255)
    >>> round(float(results["mean_iou"]), 4)
    0.5
"""

_CITATION = """\
@software{MMSegmentation_Contributors_OpenMMLab_Semantic_Segmentation_2020,
  author = {MMSegmentation Contributors},
  license = {Apache-2.0},
  title = {{OpenMMLab Semantic Segmentation Toolbox and Benchmark}},
  url = {https://github.com/open-mmlab/mmsegmentation},
  year = {2020}
}
"""

#: Result keys, in the order the Hub's ``mean_iou`` metric returns them.
RESULT_KEYS = ("mean_iou", "mean_accuracy", "overall_accuracy", "per_category_iou", "per_category_accuracy")


def _is_torch_tensor(value: object) -> bool:
    """Whether ``value`` is a torch tensor (duck-typed: this file must not need torch)."""
    return hasattr(value, "detach") and hasattr(value, "bincount")


def _to_numpy(value: object) -> np.ndarray:
    if _is_torch_tensor(value):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _map_reference(reference, label_map: dict[int, int] | None, reduce_labels: bool):
    """The reference with ``label_map`` then ``reduce_labels`` applied (a new array; input untouched).

    Works on numpy arrays and torch tensors alike (only ``==``, item assignment and ``-`` are used).
    Returns int64 values.
    """
    original = reference.long() if _is_torch_tensor(reference) else reference.astype(np.int64)
    mapped = original.clone() if _is_torch_tensor(original) else original.copy()
    if label_map:
        for old_id, new_id in label_map.items():
            mapped[original == old_id] = new_id
    if reduce_labels:
        mapped[mapped == 0] = 255
        mapped = mapped - 1
        mapped[mapped == 254] = 255
    return mapped


def intersect_and_union(
    prediction,
    reference,
    num_labels: int,
    ignore_index: int = 255,
    label_map: dict[int, int] | None = None,
    reduce_labels: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class pixel counts of one prediction against its reference.

    Args:
        prediction: (H, W) (or any shape) integer class ids, a numpy array or a torch tensor. When
            both inputs are torch tensors the counting runs on their device.
        reference: the same shape as ``prediction``; ``ignore_index`` marks pixels to skip.
        num_labels: number of classes (ids ``0..num_labels-1``).
        ignore_index: reference value of the pixels to skip.
        label_map: old id -> new id applied to the reference first.
        reduce_labels: reference 0 -> 255, other ids minus one (255 stays 255), after ``label_map``.

    Returns:
        ``(area_intersect, area_union, area_prediction, area_reference)``, each (num_labels,) int64.
    """
    if num_labels < 1:
        raise ValueError(f"num_labels must be a positive integer (got {num_labels})")
    on_device = _is_torch_tensor(prediction) and _is_torch_tensor(reference)
    if not on_device:
        prediction, reference = _to_numpy(prediction), _to_numpy(reference)
    if tuple(prediction.shape) != tuple(reference.shape):
        raise ValueError(
            f"prediction and reference must have the same shape (got {tuple(prediction.shape)} and "
            f"{tuple(reference.shape)})"
        )
    prediction = prediction.long() if on_device else prediction.astype(np.int64)
    reference = _map_reference(reference, label_map, reduce_labels)

    kept = reference != ignore_index
    prediction, reference = prediction[kept], reference[kept]
    predicted_class = (prediction >= 0) & (prediction < num_labels)
    labelled_class = (reference >= 0) & (reference < num_labels)

    def count(ids) -> np.ndarray:
        if on_device:
            return ids.bincount(minlength=num_labels).cpu().numpy().astype(np.int64)
        return np.bincount(ids, minlength=num_labels).astype(np.int64)

    area_intersect = count(prediction[predicted_class & (prediction == reference)])
    area_prediction = count(prediction[predicted_class])
    area_reference = count(reference[labelled_class])
    area_union = area_prediction + area_reference - area_intersect
    return area_intersect, area_union, area_prediction, area_reference


def metrics_from_totals(
    area_intersect: np.ndarray,
    area_union: np.ndarray,
    area_reference: np.ndarray,
    nan_to_num: float | None = None,
) -> dict[str, np.floating | np.ndarray]:
    """The result dictionary from per-class totals (each (num_labels,)), as the Hub metric returns it.

    ``mean_iou`` and ``mean_accuracy`` leave out NaN classes (empty union; never labelled);
    ``overall_accuracy`` is correct pixels over labelled pixels. ``nan_to_num`` replaces NaN in
    every value (per-class arrays and means alike).
    """
    area_intersect = np.asarray(area_intersect, dtype=np.float64)
    area_union = np.asarray(area_union, dtype=np.float64)
    area_reference = np.asarray(area_reference, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # nanmean of all-NaN
        per_category_iou = area_intersect / area_union
        per_category_accuracy = area_intersect / area_reference
        results = {
            "mean_iou": np.nanmean(per_category_iou),
            "mean_accuracy": np.nanmean(per_category_accuracy),
            "overall_accuracy": np.float64(area_intersect.sum() / area_reference.sum()),
            "per_category_iou": per_category_iou,
            "per_category_accuracy": per_category_accuracy,
        }
    if nan_to_num is not None:
        results = {key: np.nan_to_num(value, nan=nan_to_num) for key, value in results.items()}
    return results


class MeanIoUAccumulator:
    """Streaming mean IoU: per-class totals only, so memory does not grow with the number of images.

    Args:
        num_labels: number of classes (ids ``0..num_labels-1``).
        ignore_index: reference value of pixels to skip.
        label_map: old id -> new id applied to every reference.
        reduce_labels: reference 0 -> 255 and other ids minus one (see :func:`intersect_and_union`).

    The whole state is :attr:`totals`, one (3, num_labels) int64 array (intersection, predicted
    area, labelled area). Totals of several accumulators (other processes, other shards) add up:
    see :meth:`merge`.
    """

    def __init__(
        self,
        num_labels: int,
        ignore_index: int = 255,
        label_map: dict[int, int] | None = None,
        reduce_labels: bool = False,
    ) -> None:
        if num_labels < 1:
            raise ValueError(f"num_labels must be a positive integer (got {num_labels})")
        self.num_labels = num_labels
        self.ignore_index = ignore_index
        self.label_map = dict(label_map) if label_map else None
        self.reduce_labels = reduce_labels
        self.totals = np.zeros((3, num_labels), dtype=np.int64)
        self.num_images = 0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_labels={self.num_labels}, ignore_index={self.ignore_index}, "
            f"num_images={self.num_images})"
        )

    def update(self, prediction, reference) -> None:
        """Add one image: ``prediction`` and ``reference`` are integer maps of one shape, numpy or torch."""
        intersect, _, predicted, labelled = intersect_and_union(
            prediction, reference, self.num_labels, self.ignore_index, self.label_map, self.reduce_labels
        )
        self.totals[0] += intersect
        self.totals[1] += predicted
        self.totals[2] += labelled
        self.num_images += 1

    def merge(self, other: MeanIoUAccumulator) -> None:
        """Add another accumulator's totals (same number of labels) into this one."""
        if other.num_labels != self.num_labels:
            raise ValueError(f"cannot merge accumulators of {other.num_labels} and {self.num_labels} labels")
        self.totals += other.totals
        self.num_images += other.num_images

    def reset(self) -> None:
        """Forget every image added so far."""
        self.totals[:] = 0
        self.num_images = 0

    @property
    def area_intersect(self) -> np.ndarray:
        """(num_labels,) int64: pixels predicted as the class where the reference is the class."""
        return self.totals[0].copy()

    @property
    def area_union(self) -> np.ndarray:
        """(num_labels,) int64: pixels predicted as the class or labelled as it."""
        return self.totals[1] + self.totals[2] - self.totals[0]

    @property
    def area_prediction(self) -> np.ndarray:
        """(num_labels,) int64: pixels predicted as the class (ignored pixels left out)."""
        return self.totals[1].copy()

    @property
    def area_reference(self) -> np.ndarray:
        """(num_labels,) int64: pixels labelled as the class."""
        return self.totals[2].copy()

    def compute(self, nan_to_num: float | None = None) -> dict[str, np.floating | np.ndarray]:
        """The results so far, with the keys of :data:`RESULT_KEYS` (see :func:`metrics_from_totals`)."""
        return metrics_from_totals(self.area_intersect, self.area_union, self.area_reference, nan_to_num)


def compute_mean_iou(
    predictions,
    references,
    num_labels: int,
    ignore_index: int = 255,
    nan_to_num: float | None = None,
    label_map: dict[int, int] | None = None,
    reduce_labels: bool = False,
) -> dict[str, np.floating | np.ndarray]:
    """Mean IoU of a list of predicted maps against their references (the Hub metric's interface).

    Args:
        predictions: iterable of (H, W) integer maps (numpy arrays, torch tensors or nested lists).
        references: iterable of maps, each the shape of its prediction.
        num_labels, ignore_index, label_map, reduce_labels: see :class:`MeanIoUAccumulator`.
        nan_to_num: replace NaN results by this value.

    Returns:
        ``mean_iou``, ``mean_accuracy``, ``overall_accuracy`` (floats) and ``per_category_iou``,
        ``per_category_accuracy`` ((num_labels,) float64 arrays, NaN where undefined).
    """
    accumulator = MeanIoUAccumulator(num_labels, ignore_index, label_map, reduce_labels)
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references must have the same length (got {len(predictions)} and {len(references)})"
        )
    for prediction, reference in zip(predictions, references):
        accumulator.update(prediction, reference)
    return accumulator.compute(nan_to_num)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MeanIoU(evaluate.Metric):
    """The `evaluate` face of :func:`compute_mean_iou` (same arguments, same result keys)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("int64"))),
                    "references": datasets.Sequence(datasets.Sequence(datasets.Value("int64"))),
                }
            ),
            reference_urls=[
                "https://github.com/open-mmlab/mmsegmentation/blob/main/mmseg/evaluation/metrics/iou_metric.py"
            ],
        )

    # `evaluate` calls ``self._compute(predictions=..., references=..., **compute_kwargs)``.
    _compute = staticmethod(compute_mean_iou)
