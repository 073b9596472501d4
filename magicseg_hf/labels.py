"""Label values end to end, in one place.

Two label spaces meet in this project:

- the **dataset** ``label`` image (mode "L", one byte per pixel): ``BACKGROUND`` 0, ``i`` =
  ``classes[i-1]`` for ``i`` in 1..254, and ``UNKNOWN`` 255 ("nobody knows": reserved, not written by
  the generator, skipped by the metric);
- the **model** ``labels`` tensor (int64): ``0..K-1`` = position in the call's class list,
  ``NONE_LABEL`` 255 = "none of these classes" (a negative for every query in the focal term, in no
  dice mask) and ``IGNORE_LABEL`` -100 = excluded from every loss.

The collator maps the first into the second with :func:`dataset_to_model_labels` (dataset 0 ->
none, dataset 255 and crop padding -> ignore, class ``i`` -> its position in the sampled list).
The same 255 therefore means "unknown" in a dataset and "none of these" in a model's labels: this
module is where both are named. ``CLIPOpenSegConfig.none_label`` / ``ignore_label`` default to the
values here (``modeling/`` repeats the two numbers because it imports only torch/transformers, so
it can travel as Hub remote code).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy only for the type; the constants import nothing
    import numpy as np

#: Dataset label value: background (no target class).
BACKGROUND = 0
#: Dataset label value: unknown (reserved; the metric and the collator skip it).
UNKNOWN = 255
#: Largest class id a dataset label can hold (ids 1..MAX_CLASS_ID; 255 is UNKNOWN).
MAX_CLASS_ID = UNKNOWN - 1

#: Model label: "none of these classes" (``CLIPOpenSegConfig.none_label``).
NONE_LABEL = 255
#: Model label: excluded from every loss (``CLIPOpenSegConfig.ignore_label``).
IGNORE_LABEL = -100
#: A call's class list must stay shorter than this, or position NONE_LABEL would be a class.
MAX_CLASSES_PER_CALL = NONE_LABEL


def dataset_to_model_labels(label: np.ndarray, positions: dict[int, int]) -> np.ndarray:
    """Map a dataset label map to model labels.

    Args:
        label: (H, W) uint8 dataset label (0 background, i = ``classes[i-1]``, 255 unknown).
        positions: dataset class id ``i`` (1-based) -> position of that class in the model call's
            class list (0..K-1). An id missing from ``positions`` becomes ``IGNORE_LABEL``.

    Returns:
        (H, W) int64: positions, ``NONE_LABEL`` where the dataset says background and
        ``IGNORE_LABEL`` where it says unknown (or names a class not in ``positions``).
    """
    import numpy as np

    table = np.full(256, IGNORE_LABEL, dtype=np.int64)
    table[BACKGROUND] = NONE_LABEL
    for class_id, position in positions.items():
        if not 1 <= class_id <= MAX_CLASS_ID:
            raise ValueError(f"dataset class ids lie in 1..{MAX_CLASS_ID} (got {class_id})")
        if not 0 <= position < MAX_CLASSES_PER_CALL:
            raise ValueError(f"class positions lie in 0..{MAX_CLASSES_PER_CALL - 1} (got {position})")
        table[class_id] = position
    return table[np.asarray(label, dtype=np.uint8)]
