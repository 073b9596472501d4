"""`magicseg demo`: the whole chain on the tiny preset (random weights: plumbing, not quality)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from magicseg_hf.cli import main

SMALL = ["--train-pairs", "12", "--heldout-pairs", "3", "--max-steps", "4"]


def test_demo_leaves_every_stage_output_and_refuses_to_run_twice(tmp_path: Path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--output-dir", str(out), *SMALL]) == 0
    err = capsys.readouterr().err
    # One line when a stage starts and one when it ends, nothing else from the stages.
    stage_lines = [line for line in err.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in stage_lines] == [f"[{i}/5" for i in range(1, 6) for _ in (0, 1)]
    assert "Traceback" not in err and "{'loss'" not in err

    from datasets import load_dataset

    assert len(load_dataset(str(out / "dataset"), split="train")) == 12
    assert len(load_dataset(str(out / "heldout"), split="train")) == 3
    summary = json.loads((out / "model" / "training_summary.json").read_text())
    assert summary["global_steps"] == 4 and summary["final_losses"]["loss"] is not None
    results = json.loads((out / "results.json").read_text())
    assert results["num_images"] == 3 and 0.0 <= results["mean_iou"] <= 1.0
    assert [c["name"] for c in results["per_class"]][:1] == ["background"]
    card = (out / "model" / "README.md").read_text()
    assert "mean_iou" in card  # the evaluation reached the model card's model-index
    assert len(list(out.glob("results-overlay-*.png"))) == 3
    prediction = Image.open(out / "prediction.png")
    assert prediction.width > 128  # the 128 px image and its legend
    text = (out / "SUMMARY.md").read_text()
    for stage in ("generate", "validate", "train", "evaluate", "predict"):
        assert f"| {stage} |" in text
    assert "plumbing, not the quality" in text

    assert main(["demo", "--output-dir", str(out), *SMALL]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["demo", "--output-dir", str(out), "--overwrite", *SMALL]) == 0
