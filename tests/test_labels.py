"""Label values end to end: the dataset's and the model's, and the one mapping between them."""

from __future__ import annotations

import numpy as np
import pytest

from magicseg_hf import labels
from magicseg_hf.modeling import CLIPOpenSegConfig


def test_model_config_uses_the_label_constants():
    # modeling/ cannot import the package (it travels as remote code), so it repeats two numbers.
    config = CLIPOpenSegConfig()
    assert config.none_label == labels.NONE_LABEL and config.ignore_label == labels.IGNORE_LABEL


def test_dataset_labels_map_to_positions_none_and_ignore():
    dataset = np.array([[0, 1, 2], [255, 3, 2]], dtype=np.uint8)
    mapped = labels.dataset_to_model_labels(dataset, {1: 0, 2: 1})  # class 3 was not sampled
    assert mapped.dtype == np.int64
    assert mapped.tolist() == [
        [labels.NONE_LABEL, 0, 1],
        [labels.IGNORE_LABEL, labels.IGNORE_LABEL, 1],
    ]


@pytest.mark.parametrize("positions", [{0: 0}, {255: 0}, {1: 255}, {1: -1}])
def test_impossible_mappings_are_refused(positions):
    with pytest.raises(ValueError):
        labels.dataset_to_model_labels(np.zeros((2, 2), np.uint8), positions)
