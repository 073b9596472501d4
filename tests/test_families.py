"""Generator families and presets as component sets: what a run resolves to, and what it refuses.

Offline, no model is built: these tests read the tables and small files only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from magicseg_hf import families, licenses, presets
from magicseg_hf.cli import main
from magicseg_hf.errors import InputError, ModelLoadError
from magicseg_hf.generation.config import GenerationConfig


def resolved(**kwargs) -> GenerationConfig:
    return GenerationConfig(classes=["cat"], **kwargs).resolved()


def pipeline_folder(tmp_path: Path, class_name: str, name: str = "model") -> str:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": class_name, "_diffusers_version": "0.42.1"}))
    return str(folder)


@pytest.mark.parametrize(
    ("model", "family", "inpainting", "steps", "guidance", "size", "text_length"),
    [
        ("tiny:stable-diffusion", "stable-diffusion", "tiny:stable-diffusion-inpainting", 4, 7.5, 128, None),
        ("tiny:sdxl", "sdxl", "tiny:sdxl-inpainting", 4, 5.0, 128, None),
        ("tiny:sd3", "sd3", "tiny:sd3-inpainting", 4, 3.5, 128, 77),
        ("tiny:flux", "flux", "tiny:flux-fill", 4, 3.5, 128, 77),
        ("stabilityai/stable-diffusion-xl-base-1.0", "sdxl", "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
         50, 5.0, 1024, None),
        ("stabilityai/stable-diffusion-3.5-large", "sd3", "stabilityai/stable-diffusion-3.5-large", 28, 3.5, 1024, 256),
        ("black-forest-labs/FLUX.1-schnell", "flux", "black-forest-labs/FLUX.1-Fill-dev", 28, 3.5, 1024, 512),
    ],
)
def test_the_generator_family_sets_the_defaults_and_the_inpainting_model(
    model, family, inpainting, steps, guidance, size, text_length
):
    preset = "tiny" if model.startswith("tiny:") else "paper"  # the tiny preset runs any generator small
    config = resolved(preset=preset, diffusion_model=model)
    assert families.diffusion_model_info(model).family.name == family
    assert (config.inpainting_model, config.num_inference_steps, config.guidance_scale) == (inpainting, steps, guidance)
    assert (config.height, config.width, config.max_sequence_length) == (size, size, text_length)
    # a flag wins over the family's default, and the config stays resolved
    flagged = resolved(preset=preset, diffusion_model=model, num_inference_steps=2, guidance_scale=1.0)
    assert (flagged.num_inference_steps, flagged.guidance_scale) == (2, 1.0) and flagged.is_resolved()
    assert config.unresolved().resolved() == config


def test_presets_are_named_component_sets():
    paper, quality, tiny = (resolved(preset=p) for p in ("paper", "quality", "tiny"))
    assert (paper.diffusion_model, paper.detector, paper.segmenter) == (
        "stable-diffusion-v1-5/stable-diffusion-v1-5", "grounding-dino", "transformers"
    )
    assert (paper.detector_model, paper.segmenter_model) == ("IDEA-Research/grounding-dino-tiny", "facebook/sam-vit-huge")
    assert (paper.num_inference_steps, paper.height, paper.guidance_scale) == (50, 512, 7.5)
    assert paper.class_score_threshold == -1.0  # the published method has no class check
    assert quality.diffusion_model == "black-forest-labs/FLUX.1-dev"
    assert (quality.detector, quality.segmenter) == ("mm-grounding-dino", "sam2")
    assert quality.detector_model.startswith("openmmlab-community/mm_grounding_dino")
    assert quality.segmenter_model == "facebook/sam2.1-hiera-large"
    assert quality.class_score_threshold > -1.0 and quality.max_sequence_length == 512
    assert (tiny.class_score_threshold, tiny.class_score_model) == (-1.0, "tiny:clip")
    # choosing a kind brings that kind's checkpoint of the preset
    assert resolved(preset="tiny", detector="mm-grounding-dino", segmenter="sam2").detector_model == "tiny:mm-grounding-dino"
    assert resolved(preset="tiny", segmenter="sam2").segmenter_model == "tiny:sam2"
    assert resolved(preset="paper", detector="owlv2").detector_model == "google/owlv2-base-patch16-ensemble"


def test_a_user_model_does_not_take_the_presets_revision(monkeypatch):
    monkeypatch.setitem(presets.PAPER_MODELS, "detector_model", ("IDEA-Research/grounding-dino-tiny", "abc123"))
    assert resolved(preset="paper").detector_model_revision == "abc123"
    assert resolved(preset="paper", detector_model="me/my-dino").detector_model_revision is None


def test_a_local_pipeline_folder_is_read_for_its_family(tmp_path):
    folder = pipeline_folder(tmp_path, "StableDiffusionXLPipeline")
    config = resolved(preset="paper", diffusion_model=folder)
    assert (config.guidance_scale, config.height) == (5.0, 1024)
    assert config.inpainting_model == "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
    # the tiny preset runs any generator at the tiny size (a saved tiny twin, say)
    small = resolved(preset="tiny", diffusion_model=folder)
    assert (small.guidance_scale, small.height, small.num_inference_steps) == (5.0, 128, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"diffusion_model": "tiny:kandinsky"}, "unknown tiny diffusion model 'tiny:kandinsky'"),
        ({"diffusion_model": "tiny:flux-fill"}, "is a inpainting pipeline|is an inpainting pipeline|pass it as --inpainting-model"),
        ({"diffusion_model": "tiny:sdxl", "inpainting_model": "tiny:flux-fill", "counterfactual": "inpaint"},
         "does not fit `diffusion_model` 'tiny:sdxl'"),
        ({"diffusion_model": "tiny:sdxl", "inpainting_model": "tiny:sd3", "counterfactual": "inpaint"},
         "pass it as `diffusion_model`"),
        ({"diffusion_model": "tiny:flux", "height": 136}, "`height` must be a multiple of 16 for a FLUX.1 generator"),
        ({"diffusion_model": "tiny:sdxl", "max_sequence_length": 64}, "`max_sequence_length` applies to generators"),
        ({"max_sequence_length": 0}, "`max_sequence_length` must be in 1..512"),
        ({"class_score_threshold": 1.5}, "`class_score_threshold` must be in"),
    ],
)
def test_bad_component_choices_are_one_line(kwargs, message):
    with pytest.raises(InputError, match=message):
        resolved(preset="tiny", **kwargs)


def test_an_unsupported_pipeline_family_is_refused(tmp_path):
    folder = pipeline_folder(tmp_path, "KandinskyV22Pipeline")
    with pytest.raises(InputError, match="KandinskyV22Pipeline, which is not a supported family; supported: "):
        resolved(preset="tiny", diffusion_model=folder)
    not_a_pipeline = tmp_path / "weights"
    not_a_pipeline.mkdir()
    with pytest.raises(InputError, match="not a diffusers pipeline folder"):
        resolved(preset="tiny", diffusion_model=str(not_a_pipeline))


def test_an_uncached_hub_id_offline_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="not in the local cache and HF_HUB_OFFLINE=1"):
        resolved(preset="tiny", diffusion_model="someone/some-new-pipeline")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--diffusion-model", "tiny:sdxl", "--inpainting-model", "tiny:flux-fill", "--counterfactual", "inpaint"],
         "does not fit"),
        (["--diffusion-model", "KANDINSKY"], "not a supported family"),
        (["--detector-model", "tiny:owlv2", "--detector", "mm-grounding-dino"], "tiny"),
        (["--segmenter", "sam2", "--segmenter-model", "tiny:sam"], "tiny"),
    ],
)
def test_the_cli_refuses_bad_components_before_writing(args, message, tmp_path, capsys):
    if "KANDINSKY" in args:
        args = [pipeline_folder(tmp_path, "KandinskyV22Pipeline") if a == "KANDINSKY" else a for a in args]
    out = tmp_path / "out"
    code = main(["generate", "--classes", "cat", "--num-pairs", "1", "--preset", "tiny", "--output-dir", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_licences_of_known_models_tiny_twins_and_model_cards(tmp_path):
    assert licenses.model_license("black-forest-labs/FLUX.1-dev")[1] == "FLUX.1 [dev] Non-Commercial License"
    assert licenses.model_license("black-forest-labs/FLUX.1-schnell")[0] == "apache-2.0"
    assert licenses.model_license("stable-diffusion-v1-5/stable-diffusion-v1-5")[0] == "creativeml-openrail-m"
    assert licenses.model_license("facebook/sam2.1-hiera-large")[0] == "apache-2.0"
    assert licenses.model_license("tiny:flux") == licenses.TINY_LICENSE
    # a folder's model card states its licence
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "README.md").write_text("---\nlicense: cc-by-4.0\n---\n# my model\n")
    assert licenses.model_license(str(folder)) == ("cc-by-4.0", "cc-by-4.0")
    assert licenses.model_license("nobody/unknown-model")[1].startswith("unknown")
    # every model of every preset has a known licence
    for table in (presets.PAPER_MODELS, presets.QUALITY_MODELS):
        for model_id, _ in table.values():
            assert not licenses.model_license(model_id)[1].startswith("unknown"), model_id
