"""Paired images on every family's tiny twins: Stable Diffusion, SDXL, SD3 and FLUX.

The twins have random weights: these tests prove the plumbing (shared noise, determinism, the
mask-only repaint, which arguments each pipeline gets), not the pictures' quality.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from magicseg_hf.families import FAMILIES
from magicseg_hf.generation.images import (
    PairImageGenerator,
    denoiser,
    initial_latents,
    is_blank,
    latent_shape,
)
from magicseg_hf.loading import load_diffusion_pipeline

FAMILY_NAMES = ["stable-diffusion", "sdxl", "sd3", "flux"]
SIZE = 128
MASK = np.zeros((SIZE, SIZE), dtype=bool)
MASK[32:96, 40:100] = True


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def maker(request: pytest.FixtureRequest) -> PairImageGenerator:
    """One family's tiny text-to-image and inpainting twins, built once for the module."""
    family = FAMILIES[request.param]
    defaults = family.defaults(tiny=True)
    return PairImageGenerator(
        load_diffusion_pipeline(family.tiny_id),
        inpaint_pipe=load_diffusion_pipeline(family.tiny_inpainting_id, inpainting=True),
        num_inference_steps=3,
        height=SIZE,
        width=SIZE,
        guidance_scale=defaults["guidance_scale"],
        family=family,
        max_sequence_length=defaults["max_sequence_length"],
    )


def _arrays(images) -> list[np.ndarray]:
    return [np.asarray(im, dtype=np.int16) for im in images]


class _Recorder:
    """Records what each pipeline call was given and the first input its denoiser received."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.first_inputs: list[torch.Tensor] = []
        self._fresh_call = False

    def on_call(self, kwargs: dict[str, Any]) -> None:
        self.calls.append(kwargs)
        self._fresh_call = True

    def on_denoise(self, module, args, kwargs) -> None:
        if self._fresh_call:  # the first step of this call: the initial latents, scaled
            sample = args[0] if args else kwargs.get("hidden_states", kwargs.get("sample"))
            self.first_inputs.append(sample.detach().clone())
            self._fresh_call = False


@pytest.fixture
def recorder(maker: PairImageGenerator, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Recorder]:
    """Wraps both pipelines of ``maker``: their ``__call__`` and their denoiser's forward."""
    record = _Recorder()
    handles = []
    for pipe in (maker.pipe, maker.inpaint_pipe):
        original = type(pipe).__call__

        @functools.wraps(original)  # keeps the signature the generator inspects
        def wrapped(self, *args, _original=original, **kwargs):
            record.on_call(kwargs)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(type(pipe), "__call__", wrapped)
        handles.append(denoiser(pipe).register_forward_pre_hook(record.on_denoise, with_kwargs=True))
    yield record
    for handle in handles:
        handle.remove()


def _latent_part(sample: torch.Tensor, maker: PairImageGenerator) -> torch.Tensor:
    """The noisy-latent channels of a denoiser input: an inpainting UNet's input adds mask and
    masked-image channels (dim 1), FLUX Fill's tokens add them (last dim)."""
    channels = maker.pipe.vae.config.latent_channels
    if maker.family.packed_latents:
        return sample[..., : 4 * channels]  # (N, tokens, 4C)
    return sample[:, :channels]  # (N, C, h, w)


def test_pair_starts_from_shared_noise(maker: PairImageGenerator, recorder: _Recorder):
    maker.generate_pairs(["a cat on a sofa", "a dog"], ["on a sofa", "grass"], ["cat", "dog"], seeds=[5, 6])
    latents = recorder.calls[0]["latents"]  # (2B, C, h, w), or (2B, tokens, 4C) packed
    assert latents[0].equal(latents[2]) and latents[1].equal(latents[3])
    assert not latents[0].equal(latents[1])
    # What the denoiser gets at the first step: positive i and counterfactual i are the same
    # tensor (rows i and B + i; with classifier-free guidance both halves are laid out alike).
    first = recorder.first_inputs[0]
    assert first[0].equal(first[2]) and first[1].equal(first[3]) and not first[0].equal(first[1])


def test_pair_shares_its_noise(maker: PairImageGenerator):
    # Same text on both sides: shared latents must give the same picture.
    same = maker.generate_pairs(["a cat on a sofa"], ["a cat on a sofa"], [""], seeds=[5])
    a, b = _arrays([same.positives[0], same.counterfactuals[0]])
    assert np.abs(a - b).max() <= 1
    # The class removed (and, where the family has one, named as negative prompt): another picture.
    pair = maker.generate_pairs(["a cat on a sofa"], ["on a sofa"], ["cat"], seeds=[5])
    a, b = _arrays([pair.positives[0], pair.counterfactuals[0]])
    assert np.abs(a - b).max() > 1
    assert pair.blank == [False]


def test_same_seed_same_images_different_seed_different_images(maker: PairImageGenerator):
    first = maker.generate_pairs(["a dog on grass"], ["on grass"], ["dog"], seeds=[2])
    torch.manual_seed(1234)  # the global RNG must not matter
    again = maker.generate_pairs(["a dog on grass"], ["on grass"], ["dog"], seeds=[2])
    other = maker.generate_pairs(["a dog on grass"], ["on grass"], ["dog"], seeds=[3])
    for x, y in zip(_arrays([first.positives[0], first.counterfactuals[0]]),
                    _arrays([again.positives[0], again.counterfactuals[0]])):
        assert np.array_equal(x, y)
    assert np.abs(_arrays(first.positives)[0] - _arrays(other.positives)[0]).max() > 1


def test_batching_does_not_change_a_pair(maker: PairImageGenerator):
    batched = maker.generate_pairs(["a cat", "a dog on grass"], ["", "on grass"], ["cat", "dog"], seeds=[1, 2])
    alone = maker.generate_pairs(["a dog on grass"], ["on grass"], ["dog"], seeds=[2])
    for x, y in zip(_arrays([batched.positives[1], batched.counterfactuals[1]]),
                    _arrays([alone.positives[0], alone.counterfactuals[0]])):
        assert np.abs(x - y).max() <= 2  # float reduction order may differ with batch size


def test_arguments_follow_the_family(maker: PairImageGenerator, recorder: _Recorder):
    family = maker.family
    maker.generate_pairs(["a cat"], ["a room"], ["cat"], seeds=[1])
    positive = maker.generate_images(["a cat"], seeds=[1]).positives[0]
    maker.inpaint([positive], [MASK], ["a room"], ["cat"], seeds=[1])
    assert len(recorder.calls) == 3
    for call in recorder.calls:
        # FLUX has no negative prompt: its counterfactual relies on the edited prompt alone.
        assert ("negative_prompt" in call) == family.negative_prompt
        assert ("max_sequence_length" in call) == (family.max_sequence_length is not None)
    if family.negative_prompt:
        assert recorder.calls[0]["negative_prompt"] == ["", "cat"]
        assert recorder.calls[2]["negative_prompt"] == ["cat"]
    assert recorder.calls[2]["strength"] == 1.0


def test_initial_noise_shape_and_seeds(maker: PairImageGenerator):
    noise = initial_latents(maker.pipe, [1, 1, 2], SIZE, SIZE, maker.family)
    channels = {"stable-diffusion": 4, "sdxl": 4, "sd3": 16, "flux": 16}[maker.family.name]
    assert latent_shape(maker.pipe, SIZE, SIZE, maker.family) == (channels, 16, 16)
    assert noise.shape == (3, channels, 16, 16)
    assert noise[0].equal(noise[1]) and not noise[0].equal(noise[2])


def test_inpaint_starts_from_the_pairs_noise(maker: PairImageGenerator, recorder: _Recorder):
    positive = maker.generate_images(["a cat on a sofa"], seeds=[3]).positives[0]
    maker.inpaint([positive], [MASK], ["a sofa"], ["cat"], seeds=[3])
    assert recorder.calls[0]["latents"].equal(recorder.calls[1]["latents"])
    text_to_image, inpainting = (_latent_part(x, maker) for x in recorder.first_inputs)
    assert text_to_image.equal(inpainting)


def test_inpaint_repaints_only_the_mask(maker: PairImageGenerator):
    positive = maker.generate_images(["a cat on a sofa"], seeds=[3]).positives[0]
    repainted, blank = maker.inpaint([positive], [MASK], ["a sofa"], ["cat"], seeds=[3])
    before, after = _arrays([positive, repainted[0]])
    assert np.array_equal(before[~MASK], after[~MASK])  # pixel-aligned outside the mask
    assert np.abs(before[MASK] - after[MASK]).mean() > 1  # repainted inside
    assert blank == [False]


def test_inpaint_depends_on_the_seed_only(maker: PairImageGenerator):
    # The masked image's latents are sampled too: the global RNG state must not reach them.
    positive = maker.generate_images(["a dog on grass"], seeds=[4]).positives[0]
    results = []
    for global_seed, seed in ((0, 4), (12345, 4), (0, 5)):
        torch.manual_seed(global_seed)
        repainted, _ = maker.inpaint([positive], [MASK], ["grass"], ["dog"], seeds=[seed])
        results.append(np.asarray(repainted[0], dtype=np.int16))
    assert np.array_equal(results[0], results[1])
    assert np.abs(results[0] - results[2])[MASK].max() > 1  # another seed, another repaint


def test_blank_detection():
    assert is_blank(np.zeros((8, 8, 3), dtype=np.float32))
    assert not is_blank(np.full((8, 8, 3), 0.5, dtype=np.float32))


def test_inpaint_without_pipeline_is_a_clear_error():
    pipe = load_diffusion_pipeline("tiny:stable-diffusion")
    plain = PairImageGenerator(pipe, num_inference_steps=2, height=128, width=128)
    with pytest.raises(ValueError, match="inpainting pipeline"):
        plain.inpaint([], [], [], [], [])


def test_a_pipeline_of_another_family_is_refused():
    pipe = load_diffusion_pipeline("tiny:stable-diffusion")
    with pytest.raises(ValueError, match=r"must be a FLUX\.1 one \(FluxPipeline\); got StableDiffusionPipeline"):
        PairImageGenerator(pipe, num_inference_steps=2, height=128, width=128, family=FAMILIES["flux"])
    flux_fill = load_diffusion_pipeline("tiny:flux-fill", inpainting=True)
    with pytest.raises(ValueError, match="inpainting pipeline must be a Stable Diffusion 1.x/2.x one"):
        PairImageGenerator(pipe, inpaint_pipe=flux_fill, num_inference_steps=2, height=128, width=128)


def test_a_flux_text_to_image_checkpoint_inpaints_from_the_pairs_noise(tmp_path):
    # AutoPipelineForInpainting makes a FluxInpaintPipeline of a FLUX text-to-image checkpoint; it
    # takes unpacked latents (it packs them itself) and must still start from the positive's noise.
    from magicseg_hf.twins import tiny_diffusion_pipeline

    tiny_diffusion_pipeline("tiny:flux").save_pretrained(tmp_path)
    family = FAMILIES["flux"]
    pipe = load_diffusion_pipeline("tiny:flux")
    inpaint_pipe = load_diffusion_pipeline(str(tmp_path), inpainting=True)
    assert type(inpaint_pipe).__name__ == "FluxInpaintPipeline"
    maker = PairImageGenerator(pipe, inpaint_pipe=inpaint_pipe, num_inference_steps=3, height=SIZE, width=SIZE,
                               guidance_scale=3.5, family=family, max_sequence_length=32)
    steps: list[torch.Tensor] = []  # the denoiser's input at each step: 3 of each call

    def keep(_module, _args, kwargs) -> None:
        steps.append(kwargs["hidden_states"].clone())

    hooks = [denoiser(p).register_forward_pre_hook(keep, with_kwargs=True) for p in (pipe, inpaint_pipe)]
    positive = maker.generate_images(["a cat on a sofa"], seeds=[3]).positives[0]
    repainted, _ = maker.inpaint([positive], [MASK], ["a sofa"], ["cat"], seeds=[3])
    for hook in hooks:
        hook.remove()
    assert len(steps) == 6 and steps[0].equal(steps[3])  # each call's first step: the same packed noise
    before, after = _arrays([positive, repainted[0]])
    assert np.array_equal(before[~MASK], after[~MASK]) and np.abs(before[MASK] - after[MASK]).mean() > 1
