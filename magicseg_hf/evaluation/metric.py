"""Mean IoU for the package: :func:`compute_mean_iou` and :class:`MeanIoUAccumulator`.

Both come from the `evaluate` module file ``mean_iou/mean_iou.py`` (the one copy of the arithmetic,
which ``evaluate.load(<path to mean_iou/>)`` also runs). Intersection and union are summed over the
whole dataset before dividing (mmsegmentation's semantics); reference pixels equal to
``ignore_index`` (255, :data:`magicseg_hf.labels.UNKNOWN`) are skipped; a class with an empty union
is NaN and left out of the mean.

Example::

    from magicseg_hf.evaluation.metric import MeanIoUAccumulator

    accumulator = MeanIoUAccumulator(num_labels=21, ignore_index=255)
    for prediction, reference in pairs:  # (H, W) integer maps, numpy or torch
        accumulator.update(prediction, reference)
    results = accumulator.compute()      # mean_iou, mean_accuracy, overall_accuracy, per_category_*
"""

from __future__ import annotations

from pathlib import Path

from magicseg_hf.evaluation.mean_iou.mean_iou import (
    RESULT_KEYS,
    MeanIoUAccumulator,
    compute_mean_iou,
    intersect_and_union,
    metrics_from_totals,
)

#: The folder ``evaluate.load`` takes to load the same metric as an `evaluate` module.
MEAN_IOU_MODULE_DIR = str(Path(__file__).with_name("mean_iou"))

__all__ = [
    "MEAN_IOU_MODULE_DIR",
    "RESULT_KEYS",
    "MeanIoUAccumulator",
    "compute_mean_iou",
    "intersect_and_union",
    "metrics_from_totals",
]
