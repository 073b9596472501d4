"""`magicseg demo`: the whole chain on the tiny preset (random weights: plumbing, not quality)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import folder_digest
from PIL import Image

from magicseg_hf.cli import main
from magicseg_hf.demo import MARKER_FILE, MARKER_KIND

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
    assert json.loads((out / MARKER_FILE).read_text())["kind"] == MARKER_KIND

    assert main(["demo", "--output-dir", str(out), *SMALL]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["demo", "--output-dir", str(out), "--overwrite", *SMALL]) == 0


def _earlier_demo_output(folder: Path) -> Path:
    """A folder laid out as a demo leaves it (marker first, as the demo writes it), small and fast."""
    from magicseg_hf.demo import mark_demo_output

    folder.mkdir(parents=True)
    mark_demo_output(folder)
    for sub in ("dataset/data", "heldout/data", "model"):
        (folder / sub).mkdir(parents=True)
    (folder / "dataset" / "data" / "train-00000.parquet").write_bytes(b"rows")
    (folder / "model" / "config.json").write_text("{}")
    (folder / "results.json").write_text("{}")
    (folder / "results-overlay-0.png").write_bytes(b"png")
    (folder / "prediction.png").write_bytes(b"png")
    (folder / "SUMMARY.md").write_text("# magicseg demo\n")
    return folder


@pytest.mark.parametrize("bad", [
    ["--train-pairs", "1"],
    ["--heldout-pairs", "0"],
    ["--max-steps", "0"],
    ["--classes", ""],
    ["--classes", "cat", " "],
])
def test_demo_bad_flag_with_overwrite_touches_nothing(bad, tmp_path: Path, capsys):
    out = _earlier_demo_output(tmp_path / "demo")
    before = folder_digest(out)
    assert main(["demo", "--output-dir", str(out), "--overwrite", *SMALL, *bad]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("magicseg demo: error: ")
    assert folder_digest(out) == before, "a refused run deletes nothing"


def test_demo_overwrite_refuses_a_folder_that_is_not_a_demo_output(tmp_path: Path, capsys):
    out = tmp_path / "mine"
    (out / "dataset").mkdir(parents=True)
    (out / "notes.txt").write_text("my notes\n")
    (out / "SUMMARY.md").write_text("# my summary\n")
    (out / "dataset" / "keep.txt").write_text("mine too\n")
    before = folder_digest(out)
    for flags in (["--overwrite"], []):
        assert main(["demo", "--output-dir", str(out), *flags, *SMALL]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not the output of a magicseg demo" in err and "--overwrite" not in err
        assert folder_digest(out) == before
    # A marker that is not the demo's (another tool's JSON, a folder by that name) is not trusted.
    (out / MARKER_FILE).write_text('{"kind": "something else"}')
    before = folder_digest(out)
    assert main(["demo", "--output-dir", str(out), "--overwrite", *SMALL]) == 2
    assert folder_digest(out) == before


def test_demo_overwrite_removes_only_what_a_demo_wrote(tmp_path: Path):
    from magicseg_hf.demo import DemoSettings, prepare_output_dir

    out = _earlier_demo_output(tmp_path / "demo")
    (out / "my-notes.txt").write_text("added by the user\n")
    prepare_output_dir(DemoSettings(output_dir=out, overwrite=True))
    assert sorted(p.name for p in out.iterdir()) == [MARKER_FILE, "my-notes.txt"]
    assert (out / "my-notes.txt").read_text() == "added by the user\n"
    assert json.loads((out / MARKER_FILE).read_text())["kind"] == MARKER_KIND
