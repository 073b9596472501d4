"""PAMR on cases whose answer is known: a hand-computed two-pixel image and a constant image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from magicseg_hf.evaluation.refine import PAMR_DILATIONS, PAMR_ITERATIONS, pamr, pamr_weights


def test_naclip_defaults():
    assert (PAMR_ITERATIONS, PAMR_DILATIONS) == (10, (8, 16))


def test_two_pixel_image_by_hand():
    # A 1x2 image: pixel 0 is (0, 0, 0), pixel 1 is (1, 0, 0). With dilation 1 and replicate
    # padding, each pixel's 8 neighbours are itself 5 times and the other pixel 3 times.
    image = torch.tensor([[[[0.0, 1.0]], [[0.0, 0.0]], [[0.0, 0.0]]]])  # (1, 3, 1, 2)
    logits = torch.tensor([[[[4.0, -2.0]], [[0.0, 6.0]]]])  # (1, 2, 1, 2)
    # Channel 0 over a pixel and its neighbours: six values equal to the pixel's, three to the other's:
    # mean 1/3, unbiased variance (6 * (1/3)^2 + 3 * (2/3)^2) / 8 = 0.25, standard deviation 0.5.
    # Channels 1 and 2 are constant: difference 0 and deviation 0, so their affinity is 0.
    other = (-1.0 / (1e-8 + 0.1 * 0.5) + 0.0 + 0.0) / 3  # affinity to the other pixel, averaged over channels
    w_self = 1.0 / (5 + 3 * math.exp(other))
    w_other = math.exp(other) / (5 + 3 * math.exp(other))

    weights = pamr_weights(image, dilations=(1,))
    assert weights.shape == (1, 8, 1, 2)
    # Ring order row by row: (-1,-1) (-1,0) (-1,1) (0,-1) (0,1) (1,-1) (1,0) (1,1); for pixel 0 the
    # offsets with dx = +1 reach pixel 1.
    expected_pixel0 = [w_self, w_self, w_other, w_self, w_other, w_self, w_self, w_other]
    np.testing.assert_allclose(weights[0, :, 0, 0].tolist(), expected_pixel0, rtol=1e-5)

    def by_hand(m: list[float]) -> list[float]:
        return [5 * w_self * m[0] + 3 * w_other * m[1], 3 * w_other * m[0] + 5 * w_self * m[1]]

    once = [by_hand([4.0, -2.0]), by_hand([0.0, 6.0])]
    twice = [by_hand(once[0]), by_hand(once[1])]
    np.testing.assert_allclose(
        pamr(image, logits, num_iterations=1, dilations=(1,))[0, :, 0].tolist(), once, rtol=1e-5
    )
    np.testing.assert_allclose(
        pamr(image, logits, num_iterations=2, dilations=(1,))[0, :, 0].tolist(), twice, rtol=1e-5
    )


def neighbourhood_average(values: np.ndarray, iterations: int, dilations: tuple[int, ...]) -> np.ndarray:
    """(C, H, W): each pass replaces a pixel by the mean of its 8 ring neighbours per dilation, edges replicated."""
    pad = max(dilations)
    height, width = values.shape[-2:]
    for _ in range(iterations):
        padded = np.pad(values, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
        total = np.zeros_like(values)
        count = 0
        for d in dilations:
            for dy in (-d, 0, d):
                for dx in (-d, 0, d):
                    if dy == dx == 0:
                        continue
                    total += padded[:, pad + dy : pad + dy + height, pad + dx : pad + dx + width]
                    count += 1
        values = total / count
    return values


def test_constant_image_reduces_to_averaging_over_the_dilated_ring():
    # Every colour difference is 0, so every neighbour weighs the same (1/16 with dilations 8 and 16).
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 3, 20, 27))
    image = torch.full((1, 3, 20, 27), 0.3)
    refined = pamr(image, torch.tensor(logits, dtype=torch.float64))
    expected = neighbourhood_average(logits[0], PAMR_ITERATIONS, PAMR_DILATIONS)
    np.testing.assert_allclose(refined[0].numpy(), expected, rtol=1e-10, atol=1e-12)
    assert refined.dtype == torch.float64


def test_edges_stop_the_spreading():
    # Left half black, right half white; class 0 scores 1 on the left, 0 on the right. On a constant
    # image the scores blur across the middle; on this one they stay put.
    image = torch.zeros(1, 3, 16, 32)
    image[..., 16:] = 1.0
    logits = torch.zeros(1, 1, 16, 32)
    logits[..., :16] = 1.0
    refined = pamr(image, logits, dilations=(1, 2))
    blurred = pamr(torch.zeros_like(image), logits, dilations=(1, 2))
    assert (refined[..., :16] > 0.999).all() and (refined[..., 16:] < 0.001).all()
    assert blurred[0, 0, 8, 15] < 0.9 and blurred[0, 0, 8, 16] > 0.1


def test_logits_of_another_size_are_resized_to_the_image():
    logits = torch.randn(2, 4, 5, 6, dtype=torch.bfloat16)
    refined = pamr(torch.rand(2, 3, 10, 12), logits, num_iterations=2)
    assert refined.shape == (2, 4, 10, 12) and refined.dtype == torch.bfloat16


def test_bad_shapes_say_what_was_expected():
    with pytest.raises(ValueError, match=r"logits must be \(B, C, H, W\) with the image's batch size"):
        pamr(torch.rand(1, 3, 4, 4), torch.rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"dilations must be positive integers \(got \(0,\)\)"):
        pamr(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), dilations=(0,))
