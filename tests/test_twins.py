"""The tiny twins as real folders: a ``tiny:`` id and a folder saved from it load through the same
loader and give equal outputs, for every family; the cache folders are written once, atomically,
keyed by seed, options and builder, and hold safetensors weights and the tokenizers."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from magicseg_hf import loading, presets, twins
from magicseg_hf.families import TINY_DIFFUSION_MODELS, family_of_class
from magicseg_hf.twins import cache


def _image(size: int = 128, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def _equal_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _save(folder: Path, *parts) -> str:
    for part in parts:
        part.save_pretrained(folder)
    return str(folder)


# ---- diffusion: SD, SDXL, SD3, FLUX, with their inpainting / fill twins ---------------------------
def _generate(pipe, inpainting: bool) -> np.ndarray:
    call = {"prompt": "a photo of a cat", "num_inference_steps": 2, "height": 128, "width": 128,
            "generator": torch.Generator().manual_seed(0), "output_type": "np"}
    if inpainting:
        mask = Image.new("L", (128, 128), 0)
        mask.paste(255, (32, 32, 96, 96))
        call.update(image=_image(), mask_image=mask)
    return pipe(**call).images


@pytest.mark.parametrize("model_id", sorted(TINY_DIFFUSION_MODELS))
def test_a_diffusion_twin_and_its_saved_folder_generate_the_same(model_id: str, tmp_path: Path):
    inpainting = family_of_class(TINY_DIFFUSION_MODELS[model_id]).inpainting
    pipe = loading.load_diffusion_pipeline(model_id, inpainting=inpainting)
    assert type(pipe).__name__ == TINY_DIFFUSION_MODELS[model_id]
    # the folder holds the twin exactly as its builder draws it
    built = twins.tiny_diffusion_pipeline(model_id)
    assert all(_equal_state(getattr(pipe, name), getattr(built, name))
               for name, part in built.components.items() if isinstance(part, torch.nn.Module))
    again = loading.load_diffusion_pipeline(_save(tmp_path, pipe), inpainting=inpainting)
    assert type(again) is type(pipe)
    assert np.array_equal(_generate(pipe, inpainting), _generate(again, inpainting))


# ---- detectors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(presets.TINY_DETECTORS))
def test_a_detector_twin_and_its_saved_folder_detect_the_same(kind: str, tmp_path: Path):
    model, processor = loading.load_detector(kind, presets.TINY_DETECTORS[kind])
    again, again_processor = loading.load_detector(kind, _save(tmp_path, model, processor))
    text = [["cat", "dog"]] if kind == "owlv2" else "cat. dog."
    inputs = processor(images=_image(), text=text, return_tensors="pt")
    again_inputs = again_processor(images=_image(), text=text, return_tensors="pt")
    assert inputs.keys() == again_inputs.keys() and all(torch.equal(inputs[k], again_inputs[k]) for k in inputs)
    with torch.no_grad():
        out, again_out = model(**inputs), again(**again_inputs)
    assert torch.equal(out.logits, again_out.logits) and torch.equal(out.pred_boxes, again_out.pred_boxes)


# ---- segmenters -----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["transformers", "sam2"])
def test_a_transformers_segmenter_twin_and_its_saved_folder_segment_the_same(backend: str, tmp_path: Path):
    model, processor = loading.load_segmenter(backend, presets.TINY_SEGMENTERS[backend])
    again, again_processor = loading.load_segmenter(backend, _save(tmp_path, model, processor))
    boxes = [[[16.0, 16.0, 100.0, 90.0]]]
    inputs = processor(images=_image(), input_boxes=boxes, return_tensors="pt")
    again_inputs = again_processor(images=_image(), input_boxes=boxes, return_tensors="pt")
    with torch.no_grad():
        out, again_out = model(**inputs), again(**again_inputs)
    assert torch.equal(out.pred_masks, again_out.pred_masks) and torch.equal(out.iou_scores, again_out.iou_scores)


def test_the_segment_anything_twin_is_a_checkpoint_read_like_a_users(tmp_path: Path, torch_load_calls: list):
    loads = torch_load_calls
    sam, processor = loading.load_segmenter("segment-anything", presets.TINY_SEGMENT_ANYTHING)
    assert processor is None and loads == [True]  # the twin's .pth, read with weights_only
    assert _equal_state(sam, twins.tiny_segment_anything())
    path = tmp_path / "sam.pth"
    torch.save(sam.state_dict(), path)
    again, _ = loading.load_segmenter("segment-anything", sam_checkpoint=str(path), sam_model_type="tiny")
    assert loads == [True, True]
    pixels = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(sam.image_encoder(pixels), again.image_encoder(pixels))
    # the tiny preset names its SAM role's id for this backend: it selects the same checkpoint
    assert _equal_state(loading.load_segmenter("segment-anything", presets.TINY_SAM)[0], sam)


# ---- CLIP (class scores) and the open-vocabulary segmentation model --------------------------------
def test_the_clip_twin_and_its_saved_folder_embed_the_same(tmp_path: Path):
    model, processor = loading.load_clip_scorer(presets.TINY_CLIP)
    again, again_processor = loading.load_clip_scorer(_save(tmp_path, model, processor))
    inputs = processor(images=[_image(64)], text=["a photo of a cat."], return_tensors="pt")
    again_inputs = again_processor(images=[_image(64)], text=["a photo of a cat."], return_tensors="pt")
    with torch.no_grad():
        out, again_out = model(**inputs), again(**again_inputs)
    assert torch.equal(out.image_embeds, again_out.image_embeds) and torch.equal(out.text_embeds, again_out.text_embeds)


def test_the_open_seg_twin_and_its_saved_folder_segment_the_same(tmp_path: Path):
    model, processor = loading.load_open_seg(presets.TINY_OPEN_SEG_MODEL)
    assert _equal_state(model, twins.tiny_open_seg(0)[0])
    again, again_processor = loading.load_open_seg(_save(tmp_path, model, processor))
    names = ["cat", "dog"]
    inputs = processor(images=[_image(48)], text=names, return_tensors="pt")
    again_inputs = again_processor(images=[_image(48)], text=names, return_tensors="pt")
    with torch.no_grad():
        out, again_out = model.eval()(**inputs), again.eval()(**again_inputs)
    assert torch.equal(out.logits, again_out.logits)


def test_build_open_seg_tiny_is_the_seeded_twin_with_its_overrides():
    """``build_open_seg("tiny", seed, **overrides)`` loads the folder of that seed and those overrides:
    the same weights as before the twins were folders, in train mode, ready for ``magicseg train``."""
    model, _ = loading.build_open_seg("tiny", seed=3, vocabulary=["cat", "dog"])
    reference, _ = twins.tiny_open_seg(3, vocabulary=["cat", "dog"])
    assert _equal_state(model, reference) and model.training
    assert list(model.config.vocabulary) == ["cat", "dog"]
    assert not _equal_state(model, loading.build_open_seg("tiny", seed=4, vocabulary=["cat", "dog"])[0])


# ---- prompts --------------------------------------------------------------------------------------
def test_the_causal_lm_twin_and_its_saved_folder_predict_the_same(tmp_path: Path):
    model, tokenizer = loading.load_causal_lm(presets.TINY_CAUSAL_LM)
    again, again_tokenizer = loading.load_causal_lm(_save(tmp_path, model, tokenizer))
    assert tokenizer.pad_token == again_tokenizer.pad_token == tokenizer.eos_token
    text = ["a photo of a cat on the grass", "a dog"]
    inputs, again_inputs = (t(text, padding=True, return_tensors="pt") for t in (tokenizer, again_tokenizer))
    assert torch.equal(inputs["input_ids"], again_inputs["input_ids"])
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, again(**again_inputs).logits)


# ---- the cache --------------------------------------------------------------------------------------
@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "twins"
    monkeypatch.setenv(cache.TWINS_CACHE_VARIABLE, str(root))
    return root


def test_a_tiny_id_is_a_folder_written_once_with_safetensors_and_tokenizer(fresh_cache: Path, monkeypatch):
    calls = []
    twin = twins.TWINS[presets.TINY_CLIP]

    def counting(folder, seed):
        calls.append(seed)
        twin.write(folder, seed)

    monkeypatch.setitem(twins.TWINS, presets.TINY_CLIP, dataclasses.replace(twin, write=counting))
    folder = Path(twins.resolve(presets.TINY_CLIP, "class-score", "class-score model"))
    assert folder.parent == fresh_cache and folder.name.startswith("clip-") and "-seed0-" in folder.name
    assert twins.resolve(presets.TINY_CLIP, "class-score", "class-score model") == str(folder)
    assert calls == [0]  # written once, then found
    names = {path.name for path in folder.iterdir()}
    assert "model.safetensors" in names and {"tokenizer.json", "tokenizer_config.json"} <= names
    assert not [name for name in names if name.endswith((".bin", ".pt", ".pth", ".ckpt"))]
    record = json.loads((folder / cache.TWIN_RECORD).read_text())
    assert (record["name"], record["seed"]) == (presets.TINY_CLIP, 0)
    assert [path.name for path in fresh_cache.iterdir()] == [folder.name]  # no staging folder left


def test_each_seed_options_and_builder_has_its_own_folder(fresh_cache: Path, monkeypatch):
    base = cache.twin_folder_path("tiny:open-seg", 0)
    assert base.parent == fresh_cache
    assert cache.twin_folder_path("tiny:open-seg", 0) == base
    assert cache.twin_folder_path("tiny:open-seg", 1) != base
    assert cache.twin_folder_path("tiny:open-seg", 0, {"vocabulary": ["cat"]}) != base
    monkeypatch.setattr(cache, "builders_digest", lambda: "a-changed-builder")
    assert cache.twin_folder_path("tiny:open-seg", 0) != base  # a changed builder never reads a stale folder


def test_a_lost_race_uses_the_winners_folder(fresh_cache: Path):
    def inner(folder: Path, seed: int) -> None:
        (folder / "who").write_text("inner")

    def outer(folder: Path, seed: int) -> None:
        (folder / "who").write_text("outer")
        cache.twin_folder("tiny:race", inner, seed)  # another process finishes first

    folder = cache.twin_folder("tiny:race", outer)
    assert (folder / "who").read_text() == "inner"
    assert [path.name for path in fresh_cache.iterdir()] == [folder.name]


def test_a_killed_writers_staging_folder_is_removed_by_the_next_writer(fresh_cache: Path):
    # A SIGKILL while a twin is written leaves `.<name>.*` behind; a live writer's staging folder is young.
    target = cache.twin_folder_path("tiny:left", 0)
    fresh_cache.mkdir(parents=True)
    killed, live = fresh_cache / f".{target.name}.killed", fresh_cache / f".{target.name}.live"
    for staging in (killed, live):
        staging.mkdir()
        (staging / "half-written").write_text("x")
    old = time.time() - cache.STALE_STAGING_SECONDS - 60
    os.utime(killed, (old, old))

    folder = cache.twin_folder("tiny:left", lambda folder, seed: (folder / "who").write_text("me"))
    assert sorted(path.name for path in fresh_cache.iterdir()) == sorted([folder.name, live.name])


def test_two_processes_racing_both_end_with_the_folder(fresh_cache: Path):
    script = (
        "from magicseg_hf import twins, presets, loading\n"
        "folder = twins.resolve(presets.TINY_OWLV2, 'owlv2', 'owlv2 detector')\n"
        "loading.load_detector('owlv2', folder)\n"
        "print(folder)\n"
    )
    env = {**os.environ, cache.TWINS_CACHE_VARIABLE: str(fresh_cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    results = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in results]
    folders = {out.strip().splitlines()[-1] for out, _ in results}
    assert len(folders) == 1
    assert [path.name for path in fresh_cache.iterdir()] == [Path(folders.pop()).name]

