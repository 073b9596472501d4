"""Mean IoU: dataset-level accumulation, ignore pixels, absent classes, the `evaluate` module, streaming."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
import torch

from magicseg_hf.evaluation.metric import (
    MEAN_IOU_MODULE_DIR,
    RESULT_KEYS,
    MeanIoUAccumulator,
    compute_mean_iou,
)

NUM_LABELS = 6
IGNORE = 255


def reference_mean_iou(predictions, references, num_labels: int, ignore_index: int) -> dict:
    """Per-pixel loop in plain Python: the definition, written independently of the package."""
    intersect = [0] * num_labels
    predicted = [0] * num_labels
    labelled = [0] * num_labels
    for prediction, reference in zip(predictions, references):
        for p, r in zip(np.asarray(prediction).ravel().tolist(), np.asarray(reference).ravel().tolist()):
            if r == ignore_index:
                continue
            if 0 <= p < num_labels:
                predicted[p] += 1
            if 0 <= r < num_labels:
                labelled[r] += 1
            if p == r and 0 <= p < num_labels:
                intersect[p] += 1
    ious, accuracies = [], []
    for c in range(num_labels):
        union = predicted[c] + labelled[c] - intersect[c]
        ious.append(intersect[c] / union if union else math.nan)
        accuracies.append(intersect[c] / labelled[c] if labelled[c] else math.nan)
    defined_ious = [v for v in ious if not math.isnan(v)]
    defined_accuracies = [v for v in accuracies if not math.isnan(v)]
    return {
        "mean_iou": sum(defined_ious) / len(defined_ious),
        "mean_accuracy": sum(defined_accuracies) / len(defined_accuracies),
        "overall_accuracy": sum(intersect) / sum(labelled),
        "per_category_iou": ious,
        "per_category_accuracy": accuracies,
    }


def random_maps(seed: int, count: int = 5, allow_no_class: bool = True):
    """Maps of several sizes: 255 pixels, class 4 never present, class 3 predicted but never labelled."""
    rng = np.random.default_rng(seed)
    predictions, references = [], []
    for index in range(count):
        height, width = 7 + index, 11 - index
        reference = rng.choice([0, 1, 2, 5], size=(height, width)).astype(np.uint8)
        reference[rng.random((height, width)) < 0.2] = IGNORE
        prediction = np.where(
            rng.random((height, width)) < 0.5, reference, rng.choice([0, 1, 2, 3, 5], (height, width))
        )
        prediction = prediction.astype(np.int64)
        prediction[prediction == IGNORE] = 0  # ignored pixels get some prediction
        if allow_no_class:
            prediction[rng.random((height, width)) < 0.1] = -1  # "no class clears the threshold"
        predictions.append(prediction)
        references.append(reference)
    return predictions, references


def assert_results_equal(actual: dict, expected: dict) -> None:
    assert set(actual) == set(RESULT_KEYS)
    for key in ("mean_iou", "mean_accuracy", "overall_accuracy"):
        assert float(actual[key]) == pytest.approx(expected[key], rel=1e-12), key
    for key in ("per_category_iou", "per_category_accuracy"):
        np.testing.assert_allclose(
            np.asarray(actual[key], dtype=float), np.asarray(expected[key], dtype=float), rtol=1e-12
        )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_per_pixel_reference(seed: int):
    predictions, references = random_maps(seed)
    results = compute_mean_iou(predictions, references, num_labels=NUM_LABELS, ignore_index=IGNORE)
    expected = reference_mean_iou(predictions, references, NUM_LABELS, IGNORE)
    assert_results_equal(results, expected)
    # The absent class is NaN (left out of the mean); the never-labelled class has IoU 0, accuracy NaN.
    assert math.isnan(results["per_category_iou"][4])
    assert results["per_category_iou"][3] == 0.0
    assert math.isnan(results["per_category_accuracy"][3])


def test_hand_computed_example_and_dataset_level_accumulation():
    # Image A: 4 labelled pixels of class 0, all right. Image B: 1 pixel of class 0 predicted 1.
    a_pred, a_ref = np.zeros((2, 2), int), np.zeros((2, 2), int)
    b_pred, b_ref = np.ones((1, 1), int), np.zeros((1, 1), int)
    results = compute_mean_iou([a_pred, b_pred], [a_ref, b_ref], num_labels=2)
    # Class 0: intersection 4, union 5; class 1: intersection 0, union 1. Dataset level: (0.8 + 0) / 2.
    assert results["per_category_iou"].tolist() == [0.8, 0.0]
    assert results["mean_iou"] == pytest.approx(0.4)
    assert results["overall_accuracy"] == pytest.approx(0.8)
    # A mean of per-image mIoUs would give (1.0 + 0.0) / 2 = 0.5: not what is computed.
    per_image = np.mean(
        [compute_mean_iou([p], [r], 2)["mean_iou"] for p, r in [(a_pred, a_ref), (b_pred, b_ref)]]
    )
    assert per_image == pytest.approx(0.5)


def test_ignore_pixels_count_for_nothing():
    reference = np.array([[0, 1], [255, 255]])
    right = compute_mean_iou([np.array([[0, 1], [0, 0]])], [reference], num_labels=2)
    wrong_at_ignored = compute_mean_iou([np.array([[0, 1], [1, 1]])], [reference], num_labels=2)
    assert right["mean_iou"] == wrong_at_ignored["mean_iou"] == 1.0


def test_matches_torchmetrics_dataset_level_jaccard():
    from torchmetrics.classification import MulticlassJaccardIndex

    predictions, references = random_maps(3, allow_no_class=False)
    jaccard = MulticlassJaccardIndex(num_classes=NUM_LABELS, ignore_index=IGNORE, average="macro")
    per_class = MulticlassJaccardIndex(num_classes=NUM_LABELS, ignore_index=IGNORE, average="none")
    for prediction, reference in zip(predictions, references):
        p, r = torch.from_numpy(prediction)[None], torch.from_numpy(reference.astype(np.int64))[None]
        jaccard.update(p, r)
        per_class.update(p, r)
    results = compute_mean_iou(predictions, references, num_labels=NUM_LABELS, ignore_index=IGNORE)
    assert float(results["mean_iou"]) == pytest.approx(float(jaccard.compute()), abs=1e-6)
    defined = ~np.isnan(results["per_category_iou"])
    np.testing.assert_allclose(
        results["per_category_iou"][defined], per_class.compute().numpy()[defined], atol=1e-6
    )


def test_evaluate_module_loaded_from_its_folder_gives_the_same_numbers(tmp_path):
    import evaluate

    predictions, references = random_maps(4)
    metric = evaluate.load(MEAN_IOU_MODULE_DIR, cache_dir=str(tmp_path), keep_in_memory=True)
    assert type(metric).__name__ == "MeanIoU"
    loaded = metric.compute(
        predictions=predictions, references=references, num_labels=NUM_LABELS, ignore_index=IGNORE
    )
    assert_results_equal(loaded, reference_mean_iou(predictions, references, NUM_LABELS, IGNORE))
    with_nan_to_num = metric.compute(
        predictions=predictions,
        references=references,
        num_labels=NUM_LABELS,
        ignore_index=IGNORE,
        nan_to_num=-1.0,
    )
    assert with_nan_to_num["per_category_iou"][4] == -1.0


def test_accumulator_equals_the_one_shot_call_for_numpy_and_torch():
    predictions, references = random_maps(5)
    one_shot = compute_mean_iou(predictions, references, num_labels=NUM_LABELS)
    from_numpy = MeanIoUAccumulator(NUM_LABELS)
    from_torch = MeanIoUAccumulator(NUM_LABELS)
    for prediction, reference in zip(predictions, references):
        from_numpy.update(prediction, reference)
        from_torch.update(torch.from_numpy(prediction), torch.from_numpy(reference))
    for accumulator in (from_numpy, from_torch):
        assert accumulator.num_images == len(predictions)
        assert_results_equal(accumulator.compute(), one_shot)


def test_accumulators_merge_like_one_run():
    predictions, references = random_maps(6, count=6)
    first, second = MeanIoUAccumulator(NUM_LABELS), MeanIoUAccumulator(NUM_LABELS)
    for index, (prediction, reference) in enumerate(zip(predictions, references)):
        (first if index % 2 else second).update(prediction, reference)
    first.merge(second)
    assert_results_equal(first.compute(), compute_mean_iou(predictions, references, NUM_LABELS))
    with pytest.raises(ValueError, match="cannot merge accumulators of 3 and 6 labels"):
        first.merge(MeanIoUAccumulator(3))


def test_accumulator_memory_does_not_grow_with_the_number_of_images():
    rng = np.random.default_rng(7)
    reference = rng.integers(0, 21, (64, 64)).astype(np.uint8)
    prediction = rng.integers(0, 21, (64, 64))
    accumulator = MeanIoUAccumulator(num_labels=21)
    state = accumulator.totals
    assert state.shape == (3, 21)
    tracemalloc.start()
    try:
        for _ in range(20):
            accumulator.update(prediction, reference)
        after_few, _ = tracemalloc.get_traced_memory()
        for _ in range(400):
            accumulator.update(prediction, reference)
        after_many, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after_many - after_few < 1024  # bytes: 400 more images leave nothing behind
    assert accumulator.totals is state and state.shape == (3, 21)
    assert accumulator.area_reference.sum() == 420 * reference.size


def test_label_map_and_reduce_labels_act_on_references():
    reference = np.array([[0, 1, 2, 255]])
    # reduce_labels: 0 -> ignored, 1 -> 0, 2 -> 1, 255 stays ignored.
    reduced = compute_mean_iou([np.array([[1, 0, 1, 0]])], [reference], num_labels=2, reduce_labels=True)
    assert reduced["per_category_iou"].tolist() == [1.0, 1.0]
    # label_map maps from the original values (1 -> 2 and 2 -> 1 swap; no chaining).
    mapped = compute_mean_iou([np.array([[0, 2, 1, 0]])], [reference], num_labels=3, label_map={1: 2, 2: 1})
    assert mapped["mean_iou"] == 1.0
    assert reference.tolist() == [[0, 1, 2, 255]]  # the caller's array is untouched


def test_empty_results_are_nan_or_replaced():
    everything_ignored = compute_mean_iou([np.zeros((2, 2), int)], [np.full((2, 2), 255)], num_labels=3)
    assert math.isnan(everything_ignored["mean_iou"])
    replaced = compute_mean_iou([np.zeros((2, 2), int)], [np.full((2, 2), 255)], num_labels=3, nan_to_num=0.0)
    assert replaced["mean_iou"] == 0.0 and replaced["per_category_iou"].tolist() == [0.0, 0.0, 0.0]


def test_bad_inputs_say_what_was_expected():
    with pytest.raises(ValueError, match=r"same shape \(got \(2, 2\) and \(2, 3\)\)"):
        compute_mean_iou([np.zeros((2, 2), int)], [np.zeros((2, 3), int)], num_labels=2)
    with pytest.raises(ValueError, match=r"same length \(got 1 and 2\)"):
        compute_mean_iou([np.zeros((2, 2), int)], [np.zeros((2, 2), int)] * 2, num_labels=2)
    with pytest.raises(ValueError, match=r"num_labels must be a positive integer \(got 0\)"):
        MeanIoUAccumulator(0)
