"""One picture, one answer: the pipeline, `magicseg predict` and `magicseg evaluate --overlays` give identical label
maps for the same images, under each decision rule (the Space's endpoint is checked against the pipeline in
test_space.py). A random tiny model proves the plumbing, not quality: the rules' answers differ on it, and
each must be the same through every door."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from transformers import pipeline

import magicseg_hf  # noqa: F401  (registers the pipeline task)
from magicseg_hf.cli import main
from magicseg_hf.loading import build_open_seg

VOCABULARY = ["cat", "dog", "tree"]
#: (height, width): wider than tall, taller than wide, smaller than the tiny model's 64 px window, square.
SIZES = [(70, 130), (150, 60), (40, 30), (64, 64)]
#: The tiny model's own geometry (short side = window 64, stride 48) for the zegclip protocol.
TINY_ZEGCLIP = ["--protocol", "zegclip", "--short-side", "64", "--window", "64", "--stride", "48"]


def _png(array: np.ndarray, mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A saved tiny model, the pictures as PNG files, and the same pictures as a dataset folder."""
    root = tmp_path_factory.mktemp("one-path")
    model, processor = build_open_seg("tiny", seed=5, vocabulary=VOCABULARY)
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    rng = np.random.default_rng(3)
    pictures = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]
    files = []
    for index, pixels in enumerate(pictures):
        files.append(root / "images" / f"picture{index}.png")
        files[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(pixels, "RGB").save(files[-1])
    folder = root / "heldout"
    (folder / "data").mkdir(parents=True)
    (folder / "vocabulary.txt").write_text("\n".join(VOCABULARY) + "\n")
    table = pa.table({
        "id": [f"picture{index}" for index in range(len(pictures))],
        "image": [{"bytes": _png(pixels, "RGB"), "path": None} for pixels in pictures],
        "label": [{"bytes": _png(np.zeros(pixels.shape[:2], np.uint8), "L"), "path": None} for pixels in pictures],
        "classes": [["cat"] for _ in pictures],
    })  # fmt: skip
    pq.write_table(table, folder / "data" / "train-00000.parquet")
    return {"root": root, "model": root / "model", "folder": folder, **{f"image{i}": f for i, f in enumerate(files)}}


def _files(world: dict[str, Path]) -> list[Path]:
    return [world[f"image{i}"] for i in range(len(SIZES))]


def _ids(names: list[str]) -> dict[str, int]:
    """Class name -> the dataset folder's benchmark id (0 background / no class, vocabulary index + 1)."""
    return {"background": 0, **{name: VOCABULARY.index(name) + 1 for name in VOCABULARY}}


#: Per rule: the pipeline's settings, predict's flags and evaluate's flags asking the same question.
RULES = {
    "threshold": ({}, [], ["--decision", "threshold"]),
    "background-class": (
        {"decision": "background-class"}, ["--decision", "background-class"], ["--decision", "background-class"]
    ),
    "argmax": (
        {"decision": "argmax", "candidate_labels": ["background", *VOCABULARY]},
        ["--decision", "argmax", "--classes", "background", *VOCABULARY],
        ["--decision", "argmax"],
    ),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_pipeline_predict_and_evaluate_give_identical_label_maps(world, rule, tmp_path):
    call, predict_flags, evaluate_flags = RULES[rule]
    files = _files(world)
    ids = _ids(VOCABULARY)

    # 1. The pipeline (README "The model"): masks -> one label map per picture.
    segmenter = pipeline("open-vocabulary-segmentation", model=str(world["model"]))
    from_pipeline = []
    for segments, (height, width) in zip(segmenter([str(f) for f in files], **call), SIZES):
        label = np.zeros((height, width), dtype=np.int64)
        for segment in segments:
            label[np.array(segment["mask"]) > 0] = ids[segment["label"]]
        from_pipeline.append(label)

    # 2. `magicseg predict --label-dir --json` (README "Predict").
    labels_dir, json_file = tmp_path / "labels", tmp_path / "segments.json"
    assert main(["predict", "--model", str(world["model"]), "--image", *map(str, files), "--label-dir",
                 str(labels_dir), "--json", str(json_file), *predict_flags]) == 0  # fmt: skip
    answer = json.loads(json_file.read_text())
    assert answer["decision"] == rule
    names = answer["classes"]
    from_predict = []
    for entry in answer["images"]:
        values = np.array(Image.open(entry["label_map"])).astype(np.int64)  # 0 no class, i = names[i - 1]
        table = np.array([0] + [ids[name] for name in names])
        from_predict.append(table[values])

    # 3. `magicseg evaluate --overlays` on the same pictures as a dataset folder, protocol zegclip.
    output = tmp_path / "eval" / "results.json"
    assert main(["evaluate", "--model", str(world["model"]), "--benchmark", str(world["folder"]), "--output",
                 str(output), "--overlays", str(len(files)), *TINY_ZEGCLIP, *evaluate_flags]) == 0  # fmt: skip
    results = json.loads(output.read_text())
    assert results["decision"]["rule"] == rule
    from_evaluate = [
        np.array(Image.open(output.with_name(f"results-prediction-{index:03d}-picture{index}.png"))).astype(np.int64)
        for index in range(len(files))
    ]

    for index, (a, b, c) in enumerate(zip(from_pipeline, from_predict, from_evaluate)):
        assert a.shape == SIZES[index]
        assert np.array_equal(a, b), f"picture {index}: pipeline and predict differ on {(a != b).sum()} pixels"
        assert np.array_equal(a, c), f"picture {index}: pipeline and evaluate differ on {(a != c).sum()} pixels"
    every = np.concatenate([label.ravel() for label in from_pipeline])
    if rule == "argmax":
        assert set(np.unique(every)) - {0}, "argmax labels pixels with classes"
    else:
        assert 0 < (every == 0).mean() < 1, "some pixels stay unlabelled, others take a class"
