"""The tiny diffusion twins of every family, and loading diffusion pipelines by id or folder.

The twins have random weights: these tests check that each is the diffusers pipeline its id names,
built the same in every process, and that the loader gives each role the right pipeline.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from magicseg_hf import loading, twins
from magicseg_hf.errors import ModelLoadError
from magicseg_hf.families import TINY_DIFFUSION_MODELS, family_of_class
from magicseg_hf.generation.images import denoiser


def _weights(pipe) -> list[torch.Tensor]:
    return [p.detach().clone() for p in denoiser(pipe).parameters()]


@pytest.mark.parametrize("model_id", sorted(TINY_DIFFUSION_MODELS))
def test_each_twin_is_its_pipeline_and_is_built_the_same_every_time(model_id: str):
    pipe = twins.tiny_diffusion_pipeline(model_id)
    assert type(pipe).__name__ == TINY_DIFFUSION_MODELS[model_id]
    again, other = twins.tiny_diffusion_pipeline(model_id), twins.tiny_diffusion_pipeline(model_id, seed=1)
    assert all(a.equal(b) for a, b in zip(_weights(pipe), _weights(again)))
    assert not all(a.equal(b) for a, b in zip(_weights(pipe), _weights(other)))
    # Tiny: a whole twin is well under a million denoiser weights.
    assert sum(p.numel() for p in denoiser(pipe).parameters()) < 1_000_000


def test_the_stable_diffusion_twins_are_unchanged():
    for inpainting, model_id in ((False, "tiny:stable-diffusion"), (True, "tiny:stable-diffusion-inpainting")):
        ours = twins.tiny_diffusion_pipeline(model_id)
        before = twins.tiny_stable_diffusion(inpainting=inpainting)
        assert all(a.equal(b) for a, b in zip(_weights(ours), _weights(before)))


def test_unknown_tiny_id_is_one_line_listing_the_twins():
    with pytest.raises(ModelLoadError) as caught:
        twins.tiny_diffusion_pipeline("tiny:sdxl-turbo")
    message = str(caught.value)
    assert "\n" not in message and "'tiny:sdxl-turbo'" in message
    assert all(model_id in message for model_id in TINY_DIFFUSION_MODELS)


@pytest.mark.parametrize(
    ("model_id", "inpainting", "expected"),
    [
        ("tiny:flux", True, r"tiny inpainting model 'tiny:flux' is a text-to-image twin \(FluxPipeline\)"),
        ("tiny:sd3-inpainting", False, r"tiny diffusion model 'tiny:sd3-inpainting' is an inpainting twin"),
        ("tiny:sdxl-turbo", False, r"unknown tiny diffusion model 'tiny:sdxl-turbo'; the tiny diffusion models"),
    ],
)
def test_a_tiny_id_of_the_wrong_role_is_one_line(model_id: str, inpainting: bool, expected: str):
    with pytest.raises(ModelLoadError, match=expected) as caught:
        loading.load_diffusion_pipeline(model_id, inpainting=inpainting)
    assert "\n" not in str(caught.value)
    # The message lists the twins of the role asked for, and only those.
    listed = str(caught.value).split(" are ")[-1].split(", ")
    assert listed and all(family_of_class(TINY_DIFFUSION_MODELS[m]).inpainting == inpainting for m in listed)


def test_tiny_twins_load_in_the_dtype_asked():
    pipe = loading.load_diffusion_pipeline("tiny:sd3", dtype="bfloat16")
    assert denoiser(pipe).dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("model_id", "inpainting", "loaded_as"),
    [
        ("tiny:flux-fill", True, "FluxFillPipeline"),  # not in diffusers' AutoPipelineForInpainting
        ("tiny:flux", True, "FluxInpaintPipeline"),  # a FLUX text-to-image checkpoint, as inpainting
        ("tiny:sdxl", False, "StableDiffusionXLPipeline"),
        ("tiny:sd3-inpainting", True, "StableDiffusion3InpaintPipeline"),
    ],
)
def test_a_saved_pipeline_folder_loads_as_its_family(tmp_path: Path, model_id: str, inpainting: bool, loaded_as: str):
    twins.tiny_diffusion_pipeline(model_id).save_pretrained(tmp_path)
    pipe = loading.load_diffusion_pipeline(str(tmp_path), inpainting=inpainting, safety_checker=False)
    assert type(pipe).__name__ == loaded_as


@pytest.mark.parametrize(("model_id", "has_checker"), [("tiny:stable-diffusion", True), ("tiny:sdxl", False)])
def test_safety_checker_off_is_passed_only_to_pipelines_that_have_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_id: str, has_checker: bool
):
    from diffusers import AutoPipelineForText2Image

    twins.tiny_diffusion_pipeline(model_id).save_pretrained(tmp_path)
    seen: dict[str, object] = {}
    original = AutoPipelineForText2Image.from_pretrained.__func__

    def recording(cls, path, **kwargs):
        seen.update(kwargs)
        return original(cls, path, **kwargs)

    monkeypatch.setattr(AutoPipelineForText2Image, "from_pretrained", classmethod(recording))
    loading.load_diffusion_pipeline(str(tmp_path), safety_checker=False)
    assert ("safety_checker" in seen) == has_checker
    assert ("requires_safety_checker" in seen) == has_checker
