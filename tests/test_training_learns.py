"""Proof that `magicseg train --preset tiny` learns, and that the counterfactual term does something.

A procedural dataset (drawn scenes of named objects, the counterfactual the same scene without
them; :mod:`magicseg_hf.generation.procedural`, written by ``generate(... source="procedural")``,
as ``magicseg generate --source procedural`` writes it) is trained on with the real command, and the saved
folder is scored on held-out images through ``pipeline("open-vocabulary-segmentation")`` with the
project's mIoU (background + the classes). The two trained models (counterfactual loss on, and off
with ``--counterfactual-loss-weight 0``) are built once for the whole module.

Measured on these scenes (sun, house, tree at 64 px, 128 training rows, seed 0, the tiny preset's 600
steps): held-out mIoU 0.75 trained, 0.76 with the counterfactual loss off, 0.10 untrained, 0.24 with
argmax; mean cos(g_pos, g_cf) over held-out pairs 0.59 with the loss on, 0.95 with it off, 0.94
untrained; the training-time counterfactual term ends at 0.56. (On the earlier coloured circles,
squares and triangles, seeds 0-2: 0.64-0.66 trained; benchmarks/README.md.) The thresholds below leave
room for seed and platform noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from procedural import CLASSES, write_procedural_dataset
from transformers import pipeline

import magicseg_hf  # noqa: F401  (registers the pipeline task)
from magicseg_hf.cli import main
from magicseg_hf.evaluation.metric import compute_mean_iou
from magicseg_hf.generation.procedural import procedural_rows
from magicseg_hf.loading import build_open_seg, load_open_seg
from magicseg_hf.training.trainer import DEFAULT_EVAL_THRESHOLD

SEED = 0
#: The scenes' size (the tiny model's input size); their classes are procedural.CLASSES.
SIZE = 64
#: Held-out rows: another seed of the same generator, never seen in training (context bias 0).
HELD_OUT = procedural_rows(CLASSES, 48, seed=10_000, size=SIZE)


def _train(data: Path, output: Path, *flags: str) -> dict:
    status = main(["train", "--dataset", str(data), "--preset", "tiny", "--output-dir", str(output),
                   "--seed", str(SEED), *flags])
    assert status == 0
    return json.loads((output / "training_summary.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of the untrained tiny model and of the two trained runs (loss on / off)."""
    root = tmp_path_factory.mktemp("learns")
    data = write_procedural_dataset(root / "data", num_rows=128, seed=SEED)
    untrained = root / "untrained"
    model, processor = build_open_seg("tiny", seed=SEED)
    model.set_vocabulary(CLASSES)
    model.save_pretrained(untrained)
    processor.save_pretrained(untrained)
    _train(data, root / "trained")
    _train(data, root / "no-counterfactual", "--counterfactual-loss-weight", "0")
    return {"untrained": untrained, "trained": root / "trained", "no-counterfactual": root / "no-counterfactual"}


def held_out_mean_iou(folder: Path, **call: object) -> float:
    """mIoU over background + the classes of the held-out rows, predicted by the pipeline on ``folder``
    (``call``: the pipeline's settings; default ``threshold=DEFAULT_EVAL_THRESHOLD``; ``{}`` for its defaults)."""
    call = call if call else {"threshold": DEFAULT_EVAL_THRESHOLD}
    call = {key: value for key, value in call.items() if value is not None}
    segmenter = pipeline("open-vocabulary-segmentation", model=str(folder))
    names = list(segmenter.model.config.vocabulary)
    predictions, references = [], []
    for row in HELD_OUT:
        prediction = np.zeros((row["image"].height, row["image"].width), dtype=np.int64)
        for segment in segmenter(row["image"], **call):
            prediction[np.array(segment["mask"]) > 0] = names.index(segment["label"]) + 1
        label = np.array(row["label"])
        reference = np.zeros_like(prediction)
        for class_id, name in enumerate(row["classes"], start=1):
            reference[label == class_id] = names.index(name) + 1
        predictions.append(prediction)
        references.append(reference)
    return float(compute_mean_iou(predictions, references, num_labels=len(names) + 1)["mean_iou"])


def held_out_counterfactual_cosine(folder: Path) -> float:
    """Mean cos(g_pos, g_cf) of the [CLS] embeddings of the held-out pairs (eval mode)."""
    model, processor = load_open_seg(str(folder))
    model.eval()
    positives = processor(images=[row["image"] for row in HELD_OUT], return_tensors="pt")["pixel_values"]
    counterfactuals = processor(images=[row["counterfactual_image"] for row in HELD_OUT], return_tensors="pt")
    with torch.no_grad():
        positive_embeds = model.get_image_embeddings(positives)[0]  # (N, D)
        counterfactual_embeds = model.get_image_embeddings(counterfactuals["pixel_values"])[0]  # (N, D)
    return float(F.cosine_similarity(positive_embeds, counterfactual_embeds, dim=-1).mean())


def test_procedural_rows_are_valid_pairs():
    row = HELD_OUT[0]
    image, counterfactual, label = (np.array(row[key]) for key in ("image", "counterfactual_image", "label"))
    assert image.shape == counterfactual.shape == (SIZE, SIZE, 3) and label.shape == (SIZE, SIZE)
    changed = (image != counterfactual).any(axis=-1)
    assert not (changed & (label == 0)).any() and changed[label > 0].mean() > 0.95, "the counterfactual differs on the objects"
    assert set(np.unique(label)) == {0, *range(1, len(row["classes"]) + 1)}
    assert procedural_rows(CLASSES, 2, seed=10_000, size=SIZE)[1]["id"] == HELD_OUT[1]["id"]


def test_training_beats_the_untrained_model_on_held_out_images(runs):
    untrained = held_out_mean_iou(runs["untrained"])
    trained = held_out_mean_iou(runs["trained"])
    # Measured (seed 0): untrained 0.10, trained 0.75.
    assert untrained < 0.25
    assert trained >= 0.6, f"held-out mIoU after training: {trained:.3f}"
    assert trained - untrained >= 0.35


def test_the_pipeline_default_leaves_the_background_unlabelled(runs):
    """A newcomer's call (no settings) answers what the trained model was trained to answer: pixels no named
    class is sure of stay unlabelled, so the default scores as the explicit trained threshold does; labelling
    every pixel (argmax) scores the background as a class and loses."""
    explicit = held_out_mean_iou(runs["trained"], threshold=0.5)
    default = held_out_mean_iou(runs["trained"], decision=None)
    argmax = held_out_mean_iou(runs["trained"], decision="argmax")
    assert default == explicit >= 0.6, f"default {default:.3f}, threshold 0.5 {explicit:.3f}"
    assert argmax < default - 0.1, f"argmax {argmax:.3f} vs default {default:.3f}"


def test_training_without_the_counterfactual_loss_also_learns(runs):
    summary = json.loads((runs["no-counterfactual"] / "training_summary.json").read_text(encoding="utf-8"))
    assert summary["counterfactual_loss_weight"] == 0
    assert summary["final_losses"]["counterfactual_loss"] is None  # no counterfactual forward at all
    # Measured: 0.76 (seed 0).
    assert held_out_mean_iou(runs["no-counterfactual"]) >= 0.6


def test_the_counterfactual_loss_separates_a_scene_from_its_counterfactual(runs):
    with_loss = held_out_counterfactual_cosine(runs["trained"])
    without_loss = held_out_counterfactual_cosine(runs["no-counterfactual"])
    untrained = held_out_counterfactual_cosine(runs["untrained"])
    # Measured (seed 0): 0.59 with the loss, 0.95 without, 0.94 untrained.
    assert untrained < 0.97, "the tiny vision tower's [CLS] embedding must depend on the image"
    assert with_loss <= without_loss - 0.15, f"cos with the loss {with_loss:.3f}, without {without_loss:.3f}"
    summary = json.loads((runs["trained"] / "training_summary.json").read_text(encoding="utf-8"))
    # The training-time term (last 50 steps, drop path on): 0.56 at seed 0 (a tiny CLIP with the default
    # init sat at 0.97 for the whole run).
    assert summary["final_losses"]["counterfactual_loss"] < 0.9
