"""The model card: YAML metadata, model-index results, and a usage snippet that really runs."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import EvalResult, ModelCard
from PIL import Image

from magicseg_hf.cards import render_model_card, write_model_card
from magicseg_hf.cards.model import REPO_PLACEHOLDER, is_hub_id
from magicseg_hf.errors import InputError

VOCABULARY = ["cat", "dog", "traffic light", "bow (weapon)"]
HUB_DATASET = "someone/magicseg-cats"


def training_summary(local_source: str, preset: str = "tiny") -> dict:
    """A ``training_summary.json`` shaped like the one ``magicseg train`` writes."""
    return {
        "datasets": [
            {"source": local_source, "rows": 40, "vocabulary": 4},
            {"source": HUB_DATASET, "rows": 1000, "vocabulary": 4},
        ],
        "vocabulary_size": len(VOCABULARY),
        "num_classes": 4,
        "preset": preset,
        "counterfactual_loss_weight": 1.0,
        "training_arguments": {
            "output_dir": "/somewhere/model", "learning_rate": 0.003, "lr_scheduler_type": "constant",
            "lr_scheduler_kwargs": {}, "warmup_steps": 0, "weight_decay": 0.0, "optim": "adamw_torch",
            "max_steps": 400, "num_train_epochs": 3.0, "per_device_train_batch_size": 8,
            "gradient_accumulation_steps": 2, "bf16": False, "fp16": False, "seed": 7,
        },
        "global_steps": 400,
        "train_runtime_seconds": 20.1,
        "final_losses": {"loss": 1.25, "focal_loss": 0.5, "dice_loss": 0.7, "counterfactual_loss": 0.05},
        "validation": {"eval_loss": 1.1, "eval_mean_iou": 0.7512, "eval_mean_accuracy": 0.8, "eval_overall_accuracy": 0.9},
        "bad_label_pixels": 0,
        "wall_time_seconds": 90.0,
        "package_versions": {"magicseg_hf": "0.1.0", "torch": "2.14.1", "transformers": "5.24.0"},
    }


VOC_RESULT = {
    "benchmark": "voc21",
    "split": "val",
    "num_images": 1449,
    "mean_iou": 0.4237,
    "mean_accuracy": 0.51,
    "overall_accuracy": 0.8,
    "protocol": {"name": "zegclip", "short_side": 512, "window": 512, "stride": 426, "threshold": None},
}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny CLIPForOpenSegmentation folder (model + processor + training summary)."""
    from magicseg_hf.loading import build_open_seg

    folder = tmp_path_factory.mktemp("model") / "tiny-open-seg"
    model, processor = build_open_seg("tiny")
    model.set_vocabulary(VOCABULARY)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    summary = training_summary(str(tmp_path_factory.getbasetemp() / "data" / "cats-run"))
    (folder / "training_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return folder


@pytest.fixture()
def model_dir(saved_model: Path, tmp_path: Path) -> Path:
    """A private copy of the saved folder (tests write cards and results into it)."""
    copy = tmp_path / saved_model.name
    shutil.copytree(saved_model, copy)
    return copy


def python_blocks(card_text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card_text, flags=re.DOTALL)


def test_yaml_metadata_of_a_tiny_model(model_dir: Path) -> None:
    path = write_model_card(model_dir)
    assert path == model_dir / "README.md"
    card = ModelCard.load(path)
    data = card.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "image-segmentation"
    assert data.license == "apache-2.0"
    assert data.datasets == [HUB_DATASET]  # the local folder is not a Hub id
    assert data.base_model is None  # random tiny CLIP
    for tag in ("open-vocabulary-segmentation", "magicseg", "clip", "semantic-segmentation"):
        assert tag in data.tags
    assert data.eval_results is None  # not evaluated: no model-index
    assert "model-index" not in path.read_text(encoding="utf-8").split("\n---\n")[0]
    assert not [name for name in os.listdir(model_dir) if name.endswith(".tmp")]


def test_body_shows_training_data_hyperparameters_and_tiny_warning(model_dir: Path) -> None:
    text = str(render_model_card(model_dir))
    body = text.split("\n---\n", 1)[1]
    assert "**Test model.**" in body and "proves plumbing, not quality" in body
    assert "4 classes: cat, dog, traffic light, bow (weapon)" in body
    assert f"[{HUB_DATASET}](https://huggingface.co/datasets/{HUB_DATASET})" in body
    assert "local folder `cats-run`" in body
    assert str(model_dir.parent) not in body  # no local path of this machine in the card
    assert "| learning rate | 0.003 |" in body
    assert "| gradient accumulation steps | 2 |" in body
    assert "| classes per row (K) | 4 |" in body
    assert "400 optimizer steps in 1.5 min" in body
    assert "mIoU 75.1 %" in body
    assert "--max_steps 400" in body and "--preset tiny" in body
    assert "Not evaluated yet" in body
    assert "@article{cai2026magicseg" in body


def test_model_index_carries_the_given_result(model_dir: Path) -> None:
    write_model_card(model_dir, repo_id="someone/clip-open-seg", results=VOC_RESULT)
    card = ModelCard.load(model_dir / "README.md")
    (result,) = card.data.eval_results
    assert card.data.model_name == "clip-open-seg"
    assert result.task_type == "image-segmentation"
    assert result.metric_type == "mean_iou"
    assert result.metric_value == pytest.approx(0.4237)
    assert result.dataset_type == "pascal_voc"
    assert result.dataset_split == "val"
    assert result.metric_config == "zegclip"
    assert result.metric_args == {"short_side": 512, "window": 512, "stride": 426}
    body = card.text
    assert "| PASCAL VOC 2012 (21 classes, with background) | val | 1449 | zegclip | **42.4** | 51.0 |" in body
    assert "| zegclip | short side 512, window 512, stride 426 |" in body
    assert 'model_id = "someone/clip-open-seg"' in body


def test_results_files_in_the_folder_are_picked_up(model_dir: Path) -> None:
    context = {"benchmark": "context59", "mean_iou": 0.2, "split": "val", "protocol": "sclip"}
    (model_dir / "results-voc21.json").write_text(json.dumps(VOC_RESULT), encoding="utf-8")
    (model_dir / "results-context.json").write_text(json.dumps({"eval_results": [context]}), encoding="utf-8")
    card = ModelCard.load(write_model_card(model_dir))
    assert {(r.dataset_config, r.metric_value) for r in card.data.eval_results} == {("voc21", 0.4237), ("context59", 0.2)}
    # A result passed in for the same benchmark, split and protocol replaces the file's.
    newer = dict(VOC_RESULT, mean_iou=0.5)
    card = ModelCard.load(write_model_card(model_dir, results=[newer]))
    assert sorted(r.metric_value for r in card.data.eval_results) == [0.2, 0.5]


def test_eval_result_objects_are_accepted(model_dir: Path) -> None:
    given = EvalResult(task_type="image-segmentation", metric_type="mean_iou", metric_value=0.31,
                       dataset_type="coco_object", dataset_name="COCO-Object", dataset_config="coco-object",
                       dataset_split="val")
    (result,) = render_model_card(model_dir, results=[given]).data.eval_results
    assert (result.metric_type, result.metric_value, result.dataset_type) == ("mean_iou", 0.31, "coco_object")


def test_paper_model_names_its_base_clip_and_its_license(model_dir: Path) -> None:
    summary = json.loads((model_dir / "training_summary.json").read_text(encoding="utf-8"))
    summary["preset"] = "paper"
    (model_dir / "training_summary.json").write_text(json.dumps(summary), encoding="utf-8")
    card = render_model_card(model_dir)
    assert card.data.base_model == "openai/clip-vit-base-patch16"
    assert card.data.license == "mit"
    assert "Test model" not in card.text and "tiny random model" not in card.text
    assert "`openai/clip-vit-base-patch16`" in card.text


def test_usage_snippet_runs_against_the_saved_folder(model_dir: Path, tmp_path: Path) -> None:
    text = str(render_model_card(model_dir))
    blocks = python_blocks(text)
    assert blocks, "the card has no python code"
    snippet = "\n".join(blocks)
    assert f'"{REPO_PLACEHOLDER}"' in snippet
    assert '["cat", "dog", "traffic light"]' in snippet  # candidate labels from the saved vocabulary
    snippet = snippet.replace(f'"{REPO_PLACEHOLDER}"', json.dumps(str(model_dir)))
    workdir = tmp_path / "user"
    workdir.mkdir()
    Image.new("RGB", (80, 60), (120, 200, 30)).save(workdir / "photo.jpg")
    (workdir / "snippet.py").write_text(snippet, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "snippet.py"], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "torch.Size([60, 80])" in done.stdout  # the class map has the image's size


def test_card_without_training_summary(model_dir: Path) -> None:
    (model_dir / "training_summary.json").unlink()
    card = render_model_card(model_dir)
    assert "holds no `training_summary.json`" in card.text
    assert card.data.datasets is None
    assert "**Test model.**" in card.text  # the config has the tiny preset's sizes


def test_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is not a saved model folder"):
        render_model_card(tmp_path)


def test_bad_results(model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(InputError, match=r"mean_iou must be a fraction in \[0, 1\].*62\.9"):
        render_model_card(model_dir, results=dict(VOC_RESULT, mean_iou=62.9))
    with pytest.raises(InputError, match="needs 'mean_iou' and 'benchmark'"):
        render_model_card(model_dir, results={"benchmark": "voc21"})
    # A broken file in the folder is left out with a warning; the card is still written.
    (model_dir / "results-broken.json").write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="magicseg_hf.cards.model"):
        card = ModelCard.load(write_model_card(model_dir))
    assert card.data.eval_results is None
    assert "results-broken.json" in caplog.text


def test_hub_ids_and_local_folders(tmp_path: Path) -> None:
    assert is_hub_id("someone/magicseg-lvis")
    assert not is_hub_id(str(tmp_path))
    assert not is_hub_id("./data")
    assert not is_hub_id("data")
    assert not is_hub_id("a/b/c")


COMPARISON = {
    "suite": "baselines.yaml",
    "columns": ["voc21", "context60"],
    "rows": [{"name": "MagicSeg (ours)", "method": "magicseg", "ours": True},
             {"name": "naclip | B/16", "method": "naclip", "ours": False}],
    "cells": [{"row": "MagicSeg (ours)", "column": "voc21", "mean_iou_percent": 42.37, "protocol": "zegclip"},
              {"row": "naclip | B/16", "column": "voc21", "mean_iou_percent": 64.07, "protocol": "naclip+pamr"},
              {"row": "naclip | B/16", "column": "context60", "mean_iou_percent": None, "protocol": "naclip+pamr"}],
}


def test_comparison_file_becomes_the_baselines_section(model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    (model_dir / "results-voc21.json").write_text(json.dumps(VOC_RESULT), encoding="utf-8")
    (model_dir / "comparison.json").write_text(json.dumps(COMPARISON), encoding="utf-8")
    card = ModelCard.load(write_model_card(model_dir))
    (result,) = card.data.eval_results  # model-index: the model's own results only
    assert result.metric_value == pytest.approx(0.4237)
    section = card.text.split("## Comparison with training-free baselines", 1)[1].split("\n## ", 1)[0]
    assert "same harness" in section and "suite `baselines.yaml`" in section
    assert "| method | voc21 | context60 |\n|---|---:|---:|\n" in section
    assert "| **MagicSeg (ours)** | **42.37 (zegclip)** | **—** |" in section
    assert "| naclip \\| B/16 | 64.07 (naclip+pamr) | n/a (naclip+pamr) |" in section
    (model_dir / "comparison.json").write_text(json.dumps({"rows": []}), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        text = ModelCard.load(write_model_card(model_dir)).text
    assert "Comparison with training-free baselines" not in text
    assert "comparison file" in caplog.text and "malformed" in caplog.text
