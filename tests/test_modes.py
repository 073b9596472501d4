"""Counterfactual modes (magicseg_hf.generation.modes) and what the assembler records for them
(magicseg_hf.generation.components.models_record)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from magicseg_hf.generation.components import models_record
from magicseg_hf.generation.config import COUNTERFACTUAL_MODES, GenerationConfig
from magicseg_hf.generation.images import PairImages
from magicseg_hf.generation.modes import MODES, InpaintMode, counterfactual_mode
from magicseg_hf.seeding import derive_seed


@dataclass
class Pair:
    names: list[str]
    prompt: str
    counterfactual_prompt: str
    seed: int
    counterfactual_seed: int


class RecordingImages:
    """A stand-in PairImageGenerator: records each call and answers with solid pictures whose grey
    level is the call's seed, blank where the seed is 0."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    @staticmethod
    def _picture(seed: int) -> Image.Image:
        return Image.new("RGB", (8, 8), (seed % 256,) * 3)

    def generate_pairs(self, prompts, counterfactual_prompts, negative_prompts, seeds) -> PairImages:
        self.calls.append(("generate_pairs", (prompts, counterfactual_prompts, negative_prompts, seeds)))
        pictures = [self._picture(s) for s in seeds]
        return PairImages(pictures, list(pictures), [s == 0 for s in seeds])

    def generate_images(self, prompts, seeds, negative_prompts=None) -> PairImages:
        self.calls.append(("generate_images", (prompts, seeds)))
        return PairImages([self._picture(s) for s in seeds], [None] * len(seeds), [s == 0 for s in seeds])

    def inpaint(self, images, masks, counterfactual_prompts, negative_prompts, seeds):
        self.calls.append(("inpaint", (masks, counterfactual_prompts, negative_prompts, seeds)))
        return [self._picture(255 - s) for s in seeds], [False] * len(seeds)


PAIRS = [
    Pair(["cat"], "a cat on a sofa", "a sofa", 7, 7),
    Pair(["dog", "traffic light"], "a dog next to a traffic light", "", 0, 11),
]


def test_every_configurable_mode_has_steps() -> None:
    assert set(MODES) == set(COUNTERFACTUAL_MODES)
    assert all(counterfactual_mode(name).name == name for name in COUNTERFACTUAL_MODES)
    with pytest.raises(ValueError, match="counterfactual mode must be one of prompt, inpaint, paper"):
        counterfactual_mode("dream")


def test_seeds_and_prompts_per_mode() -> None:
    def stream_seed(stream: str) -> int:
        return derive_seed("magicseg", 3, 9, stream)

    assert MODES["prompt"].counterfactual_seed(42, stream_seed) == 42
    assert MODES["inpaint"].counterfactual_seed(42, stream_seed) == 42
    assert MODES["paper"].counterfactual_seed(42, stream_seed) == derive_seed("magicseg", 3, 9, "counterfactual-noise")
    prompt = "a photo of a tabby cat sleeping next to a dog on a sunlit porch"
    assert MODES["prompt"].counterfactual_prompt(prompt, ["cat"]) == "a photo of a dog on a sunlit porch"
    assert MODES["inpaint"].counterfactual_prompt(prompt, ["cat"]) == "a photo of a dog on a sunlit porch"
    assert MODES["paper"].counterfactual_prompt(prompt, ["cat", "dog"]) == (
        "a photo of a tabby nothing sleeping next to a nothing on a sunlit porch"
    )


def test_prompt_mode_makes_both_pictures_in_one_call_with_the_names_as_negative() -> None:
    images = RecordingImages()
    first = MODES["prompt"].first_images(images, PAIRS)
    assert images.calls == [(
        "generate_pairs",
        (["a cat on a sofa", "a dog next to a traffic light"], ["a sofa", ""], ["cat", "dog, traffic light"], [7, 0]),
    )]
    assert all(c is not None for c in first.counterfactuals) and first.blank == [False, True]
    assert MODES["prompt"].repaint(images, first.positives, [np.ones((8, 8), np.uint8)] * 2, PAIRS) is None


def test_paper_mode_samples_the_counterfactual_independently() -> None:
    images = RecordingImages()
    first = MODES["paper"].first_images(images, PAIRS)
    assert images.calls == [(
        "generate_images",
        (["a cat on a sofa", "a dog next to a traffic light", "a sofa", ""], [7, 0, 7, 11]),
    )]
    assert [im.getpixel((0, 0))[0] for im in first.positives] == [7, 0]
    assert [im.getpixel((0, 0))[0] for im in first.counterfactuals] == [7, 11]
    assert first.blank == [False, True]  # either picture blank -> the pair is blank


def test_inpaint_mode_repaints_the_grown_label_after_annotation() -> None:
    images = RecordingImages()
    first = MODES["inpaint"].first_images(images, PAIRS)
    assert images.calls[0] == ("generate_images", (["a cat on a sofa", "a dog next to a traffic light"], [7, 0]))
    assert first.counterfactuals == [None, None]
    label = np.zeros((100, 100), np.uint8)
    label[40:60, 40:60] = 2  # any class counts
    repainted, blank = MODES["inpaint"].repaint(images, first.positives, [label, label], PAIRS)
    name, (masks, prompts, negatives, seeds) = images.calls[1]
    assert name == "inpaint" and prompts == ["a sofa", ""] and negatives == ["cat", "dog, traffic light"]
    assert seeds == [7, 0]  # the pair's own noise
    mask = masks[0]
    assert mask.dtype == bool and mask[40:60, 40:60].all()
    rows = np.flatnonzero(mask.any(axis=1))
    assert (rows.min(), rows.max()) == (38, 61)  # grown by 2% of the side: 2 pixels
    assert [im.getpixel((0, 0))[0] for im in repainted] == [248, 255] and blank == [False, False]
    assert InpaintMode().grow(np.zeros((10, 10), bool)).sum() == 0


@pytest.mark.parametrize(
    ("settings", "roles"),
    [
        ({}, {"diffusion_model", "detector_model", "segmenter_model", "class_score_model"}),
        ({"counterfactual": "inpaint"},
         {"diffusion_model", "detector_model", "segmenter_model", "class_score_model", "inpainting_model"}),
        ({"counterfactual": "paper", "prompt_backend": "transformers"},
         {"diffusion_model", "detector_model", "segmenter_model", "class_score_model", "prompt_model"}),
    ],
)
def test_models_record_names_what_the_mode_and_backend_load(settings: dict, roles: set[str]) -> None:
    config = GenerationConfig(classes=["cat"], preset="tiny", **settings).resolved()
    record = models_record(config)
    assert set(record) == roles
    if "inpainting_model" in roles:
        assert record["inpainting_model"]["id"] == "tiny:stable-diffusion-inpainting"
    for entry in record.values():  # the cached commit (none for tiny twins) and the licence that binds the data
        assert entry["revision"] is None and entry["commit"] is None
        assert entry["license"] == "Apache-2.0 (random tiny weights built by magicseg-hf)"


def test_models_record_of_segment_anything() -> None:
    tiny = GenerationConfig(classes=["cat"], preset="tiny", segmenter="segment-anything").resolved()
    assert models_record(tiny)["segmenter_model"]["id"] == "tiny:segment-anything"
    assert models_record(tiny)["segmenter_model"]["revision"] == "tiny"
    own = GenerationConfig(classes=["cat"], preset="tiny", segmenter="segment-anything",
                           sam_checkpoint="/models/sam_vit_b.pth", sam_model_type="vit_b").resolved()
    entry = models_record(own)["segmenter_model"]
    assert (entry["id"], entry["revision"], entry["license"]) == ("/models/sam_vit_b.pth", "vit_b", "Apache-2.0")

