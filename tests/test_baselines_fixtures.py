"""The training-free methods against their reference code (fixture made by tests/fixtures/baselines/make_fixtures.py).

Patch logits within 1e-4 of the reference's ``forward_feature`` (square window and a non-square input, ViT-B/16-
and ViT-L/14-shaped tiny CLIPs); label maps of the whole pipeline (windows merged, resized, PAMR for NACLIP,
softmax, synonyms, area threshold, probability threshold) identical, on a VOC21-type (background words) and a
Context59-type (no background) question.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from magicseg_hf.evaluation.inference import UnpaddedWholeGeometry
from magicseg_hf.evaluation.methods import TrainingFreeCLIP, gaussian_neighbourhood
from magicseg_hf.evaluation.refine import pamr
from magicseg_hf.modeling.inference_clip_open_seg import Decision, InferenceGeometry, Queries, segment_images

FIXTURE = Path(__file__).parent / "fixtures" / "baselines"
PARAMETERS = json.loads((FIXTURE / "parameters.json").read_text())
ARRAYS = dict(np.load(FIXTURE / "reference_outputs.npz"))
MEAN = tuple(v / 255 for v in PARAMETERS["mean"])
STD = tuple(v / 255 for v in PARAMETERS["std"])
METHODS = ("maskclip", "sclip", "clearclip", "naclip")

_MODELS: dict[tuple[str, int], TrainingFreeCLIP] = {}


def tiny_clip(patch: int, seed: int) -> Any:
    """The fixture's tiny random CLIP, rebuilt: every parameter drawn in ``named_parameters`` order from
    ``torch.manual_seed(seed)`` after construction (as ``make_fixtures.py`` draws it)."""
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config=dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                           image_size=224, patch_size=patch),
        projection_dim=16,
    )  # fmt: skip
    model = CLIPModel(config).eval()
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "layer_norm" in name or "layrnorm" in name:
                parameter.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(parameter))
            else:
                parameter.copy_(torch.randn_like(parameter) * (0.5 if "embedding" in name else 0.2))
    return model


def weights_sha256(model: Any) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def model_for(method: str, patch: int) -> TrainingFreeCLIP:
    if (method, patch) not in _MODELS:
        record = PARAMETERS["models"][f"p{patch}"]
        clip = tiny_clip(patch, record["seed"])
        assert weights_sha256(clip) == record["sha256"], "the rebuilt tiny CLIP is not the fixture's"
        _MODELS[(method, patch)] = TrainingFreeCLIP(clip, method).eval()
    return _MODELS[(method, patch)]


def test_rebuilt_tiny_clips_are_the_fixtures() -> None:
    for patch in (16, 14):
        record = PARAMETERS["models"][f"p{patch}"]
        assert weights_sha256(tiny_clip(patch, record["seed"])) == record["sha256"]


def normalised(image: np.ndarray) -> torch.Tensor:
    pixels = torch.from_numpy(image).permute(2, 0, 1).float()
    return (pixels / 255.0 - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


PATCH_CASES = [case for case in PARAMETERS["cases"] if case["kind"] == "patch_logits"]
PIPELINE_CASES = [case for case in PARAMETERS["cases"] if case["kind"] == "pipeline"]


def test_fixture_covers_every_method_both_patch_sizes_and_nonsquare_inputs() -> None:
    keys = {case["key"] for case in PATCH_CASES}
    for method in METHODS:
        for patch in (16, 14):
            assert f"{method}/p{patch}/voc21/nonsquare" in keys
        assert f"{method}/p16/voc21/pipeline" in {case["key"] for case in PIPELINE_CASES}
    assert "naclip/p16/voc21/pipeline_odd" in {case["key"] for case in PIPELINE_CASES}  # whole image, 420 px wide
    # the pipeline label maps are not degenerate: at least two labels in every case
    for case in PIPELINE_CASES:
        assert sum(count > 0 for count in case["label_counts"]) >= 2, case["key"]


@pytest.mark.parametrize("case", PATCH_CASES, ids=[case["key"] for case in PATCH_CASES])
def test_patch_logits_match_reference(case: dict) -> None:
    method, patch_name, benchmark, _ = case["key"].split("/")
    model = model_for(method, int(patch_name[1:]))
    image = ARRAYS[case["image"]]
    queries = torch.from_numpy(ARRAYS[f"queries/{method}/{patch_name}/{benchmark}"])
    ours = model.mask_logits(normalised(image)[None], queries)[0]  # (Q, h, w)
    reference = torch.from_numpy(ARRAYS[case["key"] + "/patch_logits"])
    assert ours.shape == reference.shape
    difference = (ours - reference).abs().max().item()
    assert difference < 1e-4, f"{case['key']}: largest difference {difference:.2e}"


@pytest.mark.parametrize("case", PIPELINE_CASES, ids=[case["key"] for case in PIPELINE_CASES])
def test_pipeline_labels_match_reference(case: dict) -> None:
    method, _, benchmark, _ = case["key"].split("/")
    settings = case["settings"]
    lines = case["lines"]
    model = model_for(method, 16)
    image = ARRAYS[case["image"]]
    embeds = torch.from_numpy(ARRAYS[f"queries/{method}/p16/{benchmark}"])  # reference order: line by line
    has_background = benchmark == "voc21"
    owners = [i for i, line in enumerate(lines) for _ in line]
    # ours: classes first (position = line - 1 with background), background queries last (-1)
    if has_background:
        order = [q for q, owner in enumerate(owners) if owner > 0] + [q for q, owner in enumerate(owners) if owner == 0]
        positions = [owners[q] - 1 if owners[q] > 0 else -1 for q in order]
        names = tuple(line[0] for line in lines[1:])
        background = tuple(lines[0])
    else:
        order = list(range(len(owners)))
        positions = owners
        names = tuple(line[0] for line in lines)
        background = ()
    queries = Queries(embeds[order], torch.tensor(positions), names, background)
    whole = settings["crop"] == 0
    geometry = (UnpaddedWholeGeometry if whole else InferenceGeometry)(
        short_side=settings["short"], max_long_side=2048, window=settings["short"] if whole else settings["crop"],
        stride=settings["stride"] if not whole else settings["short"], mode="whole" if whole else "slide",
    )
    threshold = settings["prob_thd"] or None
    if has_background:
        decision = Decision("background-class", threshold, settings.get("area_thd"))
    else:
        decision = Decision("argmax", None, settings.get("area_thd"))
    (_, result), = list(segment_images(
        model, [(0, Image.fromarray(image))], queries, geometry, decision, MEAN, STD,
        refine=pamr if settings.get("pamr_steps") else None, softmax_scale=settings["logit_scale"],
    ))  # fmt: skip
    labels = result.labels + 1 if has_background else result.labels  # -1 -> background 0
    reference = torch.from_numpy(ARRAYS[case["key"] + "/labels"].astype(np.int64))
    mismatched = int((labels != reference).sum())
    assert mismatched == 0, f"{case['key']}: {mismatched} of {reference.numel()} pixels differ"


def test_naclip_neighbourhood_is_a_gaussian_of_patch_distance() -> None:
    bias = gaussian_neighbourhood(3, 4, std=5.0)  # (13, 13)
    assert bias.shape == (13, 13)
    assert torch.all(bias[0] == 0) and torch.all(bias[:, 0] == 0)
    assert bias[1, 1] == 1.0
    # patch (0, 0) -> patch (2, 3): squared distance 13
    assert torch.isclose(bias[1, 1 + 2 * 4 + 3], torch.exp(torch.tensor(-13 / 50.0)))
