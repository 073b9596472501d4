"""The mean IoU metric as an `evaluate` module folder: ``evaluate.load("<this folder>")`` works offline.

The arithmetic lives in :mod:`magicseg_hf.evaluation.mean_iou.mean_iou` (the file `evaluate` loads on
its own); the package uses it through :mod:`magicseg_hf.evaluation.metric`.
"""

from magicseg_hf.evaluation.mean_iou.mean_iou import (
    RESULT_KEYS,
    MeanIoU,
    MeanIoUAccumulator,
    compute_mean_iou,
    intersect_and_union,
    metrics_from_totals,
)

__all__ = [
    "RESULT_KEYS",
    "MeanIoU",
    "MeanIoUAccumulator",
    "compute_mean_iou",
    "intersect_and_union",
    "metrics_from_totals",
]
