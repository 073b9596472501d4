"""The real-checkpoint paths: the paper's CLIP model and one pair generated with presets ``paper`` and ``quality``.

These tests download real checkpoints from the Hugging Face Hub (several GB for ``generate
--preset paper``), so they are marked ``slow`` and skipped by default. The suite runs offline
(``tests/conftest.py`` sets ``HF_HUB_OFFLINE=1``); to run these, turn the online session on and
select them::

    MAGICSEG_ONLINE_TESTS=1 pytest -m slow

With ``MAGICSEG_ONLINE_TESTS=1`` the conftest leaves ``HF_HUB_OFFLINE`` alone and skips the
offline tests. Each test here is still skipped when ``HF_HUB_OFFLINE`` is set in the environment
or when the Hub endpoint does not answer. ``generate`` uses a GPU when one is visible (on a CPU
it takes many minutes).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from magicseg_hf.folder import shard_file_name
from magicseg_hf.hub_access import hub_endpoint, hub_offline, hub_reachable
from magicseg_hf.schema import (
    CARD_FILE,
    DATA_DIR,
    GENERATION_FILE,
    PREVIEW_FILE,
    VOCABULARY_FILE,
    WORK_DIR,
)

pytestmark = pytest.mark.slow

CLIP_ID = "openai/clip-vit-base-patch16"


@pytest.fixture(scope="module", autouse=True)
def _online() -> None:
    """Skip unless this is an online session with the Hub within reach."""
    if os.environ.get("MAGICSEG_ONLINE_TESTS") != "1":
        pytest.skip("real checkpoints need MAGICSEG_ONLINE_TESTS=1 (the suite runs offline otherwise)")
    if hub_offline():
        pytest.skip("HF_HUB_OFFLINE is set")
    if not hub_reachable():
        pytest.skip(f"the Hub ({hub_endpoint()}) is not reachable")


def _image(size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A smooth random RGB picture of ``size`` (width, height)."""
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)


def test_build_open_seg_paper() -> None:
    from magicseg_hf.loading import build_open_seg
    from magicseg_hf.modeling import CLIPForOpenSegmentation

    model, processor = build_open_seg("paper")
    assert isinstance(model, CLIPForOpenSegmentation)
    config = model.config
    # The paper's model: ViT-B/16 at 512 px, 10 prompt tokens in each of the 12 layers.
    assert config.image_size == 512 and config.num_prompt_tokens == 10
    assert config.clip_config.vision_config.patch_size == 16
    assert config.clip_config.vision_config.num_hidden_layers == 12
    assert config.clip_config.projection_dim == 512
    # Only the prompts and the decoder train; CLIP stays frozen.
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(name.startswith("clip.") for name in trainable)

    model.eval()
    image = _image()
    inputs = processor(images=[image], text=["cat", "dog"], return_tensors="pt")
    assert inputs["pixel_values"].shape == (1, 3, 512, 512)
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits.shape == (1, 2, 512, 512)
    assert torch.isfinite(out.logits).all()
    segmentation = processor.post_process_semantic_segmentation(out, target_sizes=[(image.height, image.width)])
    assert segmentation[0].shape == (image.height, image.width)
    # The compatibility import path builds the same model.
    from magicseg_hf.presets import build_open_seg as presets_build_open_seg

    assert presets_build_open_seg is build_open_seg


def test_from_clip_forward_on_one_image_with_two_classes() -> None:
    from transformers import CLIPModel

    from magicseg_hf.modeling import CLIPForOpenSegmentation, CLIPOpenSegImageProcessor

    model = CLIPForOpenSegmentation.from_clip(CLIP_ID).eval()
    # The CLIP weights are the pretrained ones, not a fresh initialisation.
    reference = CLIPModel.from_pretrained(CLIP_ID)
    torch.testing.assert_close(
        model.clip.text_model.embeddings.token_embedding.weight,
        reference.text_model.embeddings.token_embedding.weight,
    )
    pixel_values = CLIPOpenSegImageProcessor()(images=[_image()], return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (1, 3, 512, 512)
    class_embeds = model.encode_classes(["cat", "dog"])
    assert class_embeds.shape == (2, 512)
    with torch.no_grad():
        out = model(pixel_values=pixel_values, class_embeds=class_embeds)
    assert out.logits.shape == (1, 2, 512, 512)
    assert out.image_embeds.shape == (1, 512)
    assert out.patch_embeds.shape == (1, 32 * 32, 512)  # 512 / 16 = a 32 x 32 grid
    assert torch.isfinite(out.logits).all()


def test_generate_one_pair_with_the_paper_preset(tmp_path: Path) -> None:
    import datasets

    output = tmp_path / "dataset"
    command = [sys.executable, "-m", "magicseg_hf", "generate", "--preset", "paper", "--classes", "dog"]
    # A few spare attempts: a real pair can be dropped by a filter (e.g. a dog left in the counterfactual).
    command += ["--num-pairs", "1", "--max-attempts", "8", "--output-dir", str(output)]
    # The subprocess inherits this online environment (no HF_HUB_OFFLINE).
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stderr[-4000:]
    names = {path.name for path in output.iterdir()}
    assert {CARD_FILE, DATA_DIR, VOCABULARY_FILE, GENERATION_FILE, PREVIEW_FILE} <= names, names
    assert WORK_DIR not in names, "a finished run leaves no work area"
    assert (output / shard_file_name(0)).is_file()
    validated = subprocess.run(
        [sys.executable, "-m", "magicseg_hf", "validate", str(output)], capture_output=True, text=True
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr
    rows = datasets.load_dataset(str(output), split="train")
    assert len(rows) == 1
    row = rows[0]
    assert row["classes"] == ["dog"]
    assert row["image"].size == row["counterfactual_image"].size == row["label"].size == (512, 512)
    label = np.asarray(row["label"])
    assert set(np.unique(label)) <= {0, 1} and (label == 1).any(), "the dog is labelled"
    assert row["boxes"] and set(row["box_labels"]) == {0}


def test_generate_one_pair_with_the_quality_preset(tmp_path: Path) -> None:
    """FLUX.1 [dev] (gated: accept its licence on the Hub first), MM-Grounding-DINO, SAM 2.1 and the
    CLIP class check, through the same command; needs a GPU with ~40 GB for FLUX in bfloat16."""
    import json

    import datasets

    output = tmp_path / "dataset"
    command = [sys.executable, "-m", "magicseg_hf", "generate", "--preset", "quality", "--classes", "dog",
               "--num-pairs", "1", "--max-attempts", "8", "--dtype", "bfloat16", "--output-dir", str(output)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stderr[-4000:]
    validated = subprocess.run(
        [sys.executable, "-m", "magicseg_hf", "validate", str(output)], capture_output=True, text=True
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr
    generation = json.loads((output / GENERATION_FILE).read_text())
    assert generation["diffusion"]["family"] == "flux" and generation["diffusion"]["negative_prompt"] is False
    assert all(entry["commit"] for entry in generation["models"].values()), "the loaded commits are recorded"
    row = datasets.load_dataset(str(output), split="train")[0]
    assert row["image"].size == (1024, 1024)
    assert len(row["class_scores"]) == 1 and row["class_scores"][0] >= 0.2  # the quality preset's threshold
