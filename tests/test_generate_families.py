"""Every generator family end to end, with SAM 2 and MM-Grounding-DINO, on the tiny twins.

For SDXL, SD3 and FLUX (the Stable Diffusion family is covered by test_generate.py): the command a
user runs writes a dataset folder `magicseg validate` accepts; a run killed with SIGKILL and resumed
writes the same rows as a straight run; two processes write the same rows as one; the inpainting
twin of the family makes `inpaint` counterfactuals. Random weights: this proves plumbing (shared
noise, determinism, resume, sharding) for each family's code path, not image quality.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import read_rows, sigkill_after_first_shard, subprocess_env
from PIL import Image

from magicseg_hf.cli import main

FAMILIES = {"sdxl": "tiny:sdxl", "sd3": "tiny:sd3", "flux": "tiny:flux"}


def args_for(family: str, out: Path, *extra: str) -> list[str]:
    return ["generate", "--preset", "tiny", "--diffusion-model", FAMILIES[family], "--detector", "mm-grounding-dino",
            "--segmenter", "sam2", "--classes", "cat", "dog", "--num-pairs", "4", "--shard-size", "2",
            "--batch-size", "2", "--seed", "5", "--output-dir", str(out), *extra]


def picture(cell: dict) -> np.ndarray:
    """A parquet image cell's pixels."""
    return np.asarray(Image.open(io.BytesIO(cell["bytes"])))


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def straight(request, tmp_path_factory) -> tuple[str, Path]:
    family = request.param
    out = tmp_path_factory.mktemp(family) / "straight"
    assert main(args_for(family, out)) == 0
    return family, out


def test_each_family_writes_a_valid_folder_with_its_components(straight, capsys):
    family, out = straight
    assert main(["validate", str(out)]) == 0, capsys.readouterr().out
    generation = json.loads((out / "generation.json").read_text())
    assert generation["diffusion"]["family"] == family
    models = generation["models"]
    assert models["diffusion_model"]["id"] == FAMILIES[family]
    assert (models["detector_model"]["id"], models["segmenter_model"]["id"]) == ("tiny:mm-grounding-dino", "tiny:sam2")
    assert all(entry["license"] for entry in models.values())
    # FLUX has distilled guidance: no negative prompt, and the record says so
    assert generation["diffusion"]["negative_prompt"] is (family != "flux")
    if family == "flux":
        assert "edited prompt alone" in generation["diffusion"]["note"]
    rows = read_rows(out)
    assert len(rows) == 4
    for row in rows:
        image = picture(row["image"])
        assert image.shape == (128, 128, 3)
        assert row["seed"] == row["counterfactual_seed"]  # prompt mode: the pair shares its noise
        assert row["image"]["bytes"] != row["counterfactual_image"]["bytes"]
        assert len(row["class_scores"]) == len(row["classes"])
    card = (out / "README.md").read_text()
    assert FAMILIES[family] in card and "tiny:mm-grounding-dino" in card and "tiny:sam2" in card
    assert "`class_scores` were computed by `tiny:clip`" in card  # the licence of every model that made a column
    assert ("edited prompt only" in card) is (family == "flux")


def test_each_family_kill_and_resume_equals_a_straight_run(straight, tmp_path):
    family, reference = straight
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "magicseg_hf", *args_for(family, out)]
    sigkill_after_first_shard(command, out)
    assert main([*args_for(family, out), "--resume"]) == 0
    assert read_rows(out) == read_rows(reference)


def test_each_family_two_processes_equal_one(straight, tmp_path):
    family, reference = straight
    out = tmp_path / "two"
    env = subprocess_env()
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(29600 + (os.getpid() + len(family)) % 900),
               CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", env["MASTER_PORT"], "-m", "magicseg_hf", *args_for(family, out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "generation.json").read_text())["summary"]["num_processes"] == 2
    assert read_rows(out) == read_rows(reference)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_inpaints_with_its_own_twin(family, tmp_path, capsys):
    """The run loads the family's inpainting twin and repaints each positive (that only the mask
    region changes is checked per family in test_images.py: the tiny labels cover ~90% of a picture)."""
    out = tmp_path / "inpaint"
    assert main([*args_for(family, out), "--counterfactual", "inpaint", "--num-pairs", "2"]) == 0
    assert main(["validate", str(out)]) == 0, capsys.readouterr().out
    generation = json.loads((out / "generation.json").read_text())
    assert generation["models"]["inpainting_model"]["id"] == {
        "sdxl": "tiny:sdxl-inpainting", "sd3": "tiny:sd3-inpainting", "flux": "tiny:flux-fill"
    }[family]
    assert generation["diffusion"]["inpainting_pipeline"] == {
        "sdxl": "StableDiffusionXLInpaintPipeline", "sd3": "StableDiffusion3InpaintPipeline", "flux": "FluxFillPipeline"
    }[family]
    # FLUX.1 Fill runs at its own guidance (30); the others inpaint at the text-to-image guidance
    assert generation["diffusion"]["inpainting_guidance_scale"] == (30.0 if family == "flux" else
                                                                    generation["config"]["guidance_scale"])
    rows = read_rows(out)
    assert len(rows) == 2
    assert all(row["image"]["bytes"] != row["counterfactual_image"]["bytes"] for row in rows)
