"""Paired images on the tiny Stable Diffusion twin (random weights: plumbing, not quality)."""

from __future__ import annotations

import numpy as np
import pytest

from magicseg_hf.generation.images import PairImageGenerator, initial_latents, is_blank
from magicseg_hf.loading import load_diffusion_pipeline


@pytest.fixture(scope="module")
def maker() -> PairImageGenerator:
    pipe = load_diffusion_pipeline("tiny:stable-diffusion")
    inpaint = load_diffusion_pipeline("tiny:stable-diffusion-inpainting", inpainting=True)
    return PairImageGenerator(pipe, inpaint_pipe=inpaint, num_inference_steps=3, height=128, width=128)


def _arrays(images) -> list[np.ndarray]:
    return [np.asarray(im, dtype=np.int16) for im in images]


def test_pair_shares_its_noise(maker: PairImageGenerator):
    # Same text on both sides and no negative prompt: shared latents must give the same picture.
    same = maker.generate_pairs(["a cat on a sofa"], ["a cat on a sofa"], [""], seeds=[5])
    a, b = _arrays([same.positives[0], same.counterfactuals[0]])
    assert np.abs(a - b).max() <= 1
    # The class removed and named as negative prompt: a different picture from the same noise.
    pair = maker.generate_pairs(["a cat on a sofa"], ["on a sofa"], ["cat"], seeds=[5])
    a, b = _arrays([pair.positives[0], pair.counterfactuals[0]])
    assert np.abs(a - b).max() > 1
    assert pair.blank == [False]


def test_batching_does_not_change_a_pair(maker: PairImageGenerator):
    batched = maker.generate_pairs(["a cat", "a dog on grass"], ["", "on grass"], ["cat", "dog"], seeds=[1, 2])
    alone = maker.generate_pairs(["a dog on grass"], ["on grass"], ["dog"], seeds=[2])
    for x, y in zip(_arrays([batched.positives[1], batched.counterfactuals[1]]),
                    _arrays([alone.positives[0], alone.counterfactuals[0]])):
        assert np.abs(x - y).max() <= 2  # float reduction order may differ with batch size


def test_seeds_give_different_noise(maker: PairImageGenerator):
    noise = initial_latents(maker.pipe, [1, 1, 2], 128, 128)
    assert noise.shape == (3, 4, 16, 16)
    assert noise[0].equal(noise[1]) and not noise[0].equal(noise[2])


def test_inpaint_repaints_only_the_mask(maker: PairImageGenerator):
    positive = maker.generate_images(["a cat on a sofa"], seeds=[3]).positives[0]
    mask = np.zeros((128, 128), dtype=bool)
    mask[32:96, 40:100] = True
    repainted, blank = maker.inpaint([positive], [mask], ["a sofa"], ["cat"], seeds=[3])
    before, after = _arrays([positive, repainted[0]])
    assert np.array_equal(before[~mask], after[~mask])  # pixel-aligned outside the mask
    assert np.abs(before[mask] - after[mask]).mean() > 1  # repainted inside
    assert blank == [False]


def test_blank_detection():
    assert is_blank(np.zeros((8, 8, 3), dtype=np.float32))
    assert not is_blank(np.full((8, 8, 3), 0.5, dtype=np.float32))


def test_inpaint_without_pipeline_is_a_clear_error():
    pipe = load_diffusion_pipeline("tiny:stable-diffusion")
    plain = PairImageGenerator(pipe, num_inference_steps=2, height=128, width=128)
    with pytest.raises(ValueError, match="inpainting pipeline"):
        plain.inpaint([], [], [], [], [])


def test_inpaint_depends_on_the_seed_only(maker: PairImageGenerator):
    # The masked image's latents are sampled too: the global RNG state must not reach them.
    import torch

    positive = maker.generate_images(["a dog on grass"], seeds=[4]).positives[0]
    mask = np.zeros((128, 128), dtype=bool)
    mask[16:80, 16:80] = True
    results = []
    for global_seed in (0, 12345):
        torch.manual_seed(global_seed)
        repainted, _ = maker.inpaint([positive], [mask], ["grass"], ["dog"], seeds=[4])
        results.append(np.asarray(repainted[0]))
    assert np.array_equal(results[0], results[1])
