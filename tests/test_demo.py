"""`magicseg demo`: act 1 (the tiny diffusion chain: plumbing) and act 2 (procedural scenes: learning)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import folder_digest
from PIL import Image

from magicseg_hf.cli import main
from magicseg_hf.demo import MARKER_FILE, MARKER_KIND

SMALL = ["--train-pairs", "8", "--heldout-pairs", "2", "--max-steps", "3",
         "--scene-train-pairs", "16", "--scene-heldout-pairs", "3", "--scene-steps", "4"]


def test_demo_runs_both_acts_and_refuses_to_run_twice(tmp_path: Path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--output-dir", str(out), *SMALL]) == 0
    err = capsys.readouterr().err
    # One line when a stage starts and one when it ends, nothing else from the stages.
    stage_lines = [line for line in err.splitlines() if line.startswith("[")]
    expected = [f"[act {act}, {i}/5]" for act in (1, 2) for i in range(1, 6) for _ in (0, 1)]
    assert [line.split("]")[0] + "]" for line in stage_lines] == expected
    assert "Traceback" not in err and "{'loss'" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("learned: held-out mIoU ") and "procedural scenes" in last and "plumbing only" in last

    from datasets import load_dataset

    plumbing = out / "plumbing"
    assert len(load_dataset(str(plumbing / "dataset"), split="train")) == 8
    assert len(load_dataset(str(plumbing / "heldout"), split="train")) == 2
    assert json.loads((plumbing / "model" / "training_summary.json").read_text())["global_steps"] == 3
    assert json.loads((plumbing / "results.json").read_text())["num_images"] == 2
    assert Image.open(plumbing / "prediction.png").width > 128

    scenes = load_dataset(str(out / "dataset"), split="train")
    assert len(scenes) == 16 and set(scenes[0]["classes"]) <= {"sun", "house", "tree", "ball"}
    generation = json.loads((out / "heldout" / "generation.json").read_text())
    assert generation["config"]["source"] == "procedural" and generation["config"]["context_bias"] == 0.0
    assert generation["config"]["seed"] != json.loads((out / "dataset" / "generation.json").read_text())["config"]["seed"]
    summary = json.loads((out / "model" / "training_summary.json").read_text())
    assert summary["global_steps"] == 4 and summary["final_losses"]["loss"] is not None
    results = json.loads((out / "results.json").read_text())
    assert results["num_images"] == 3 and 0.0 <= results["mean_iou"] <= 1.0
    assert [c["name"] for c in results["per_class"]] == ["background", "sun", "house", "tree", "ball"]
    assert f"{results['mean_iou']:.2f}" in last
    assert "mean_iou" in (out / "model" / "README.md").read_text()  # the evaluation reached the model card
    assert len(list(out.glob("results-overlay-*.png"))) == 3
    prediction = Image.open(out / "prediction.png")
    assert prediction.width > 3 * 256  # image | truth | prediction, 256 px each, and a legend
    text = (out / "SUMMARY.md").read_text()
    assert "## Act 1" in text and "## Act 2" in text and "plumbing, not the quality" in text
    for stage in ("generate", "validate", "train", "evaluate", "predict"):
        assert text.count(f"| {stage} |") == 2
    assert "](plumbing/prediction.png)" in text and "](prediction.png)" in text
    assert "--source procedural" in text
    assert json.loads((out / MARKER_FILE).read_text())["kind"] == MARKER_KIND

    assert main(["demo", "--output-dir", str(out), *SMALL]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["demo", "--output-dir", str(out), "--overwrite", *SMALL]) == 0


def _earlier_demo_output(folder: Path) -> Path:
    """A folder laid out as a demo leaves it (marker first, as the demo writes it), small and fast."""
    from magicseg_hf.demo import mark_demo_output

    folder.mkdir(parents=True)
    mark_demo_output(folder)
    for sub in ("dataset/data", "heldout/data", "model", "plumbing/model"):
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
    ["--scene-steps", "0"],
    ["--scene-train-pairs", "2"],
    ["--scene-classes", " "],
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


@pytest.mark.parametrize(("flags", "needle"), [
    (["--heldout-pairs", "0"], "--heldout-pairs must be at least 1 (got 0)"),
    (["--classes", "cat", "cat"], "lists ['cat'] more than once"),
    (["--scene-classes", "sun", "sun"], "lists ['sun'] more than once"),
])
def test_demo_bad_settings_make_no_folder(flags, needle, tmp_path: Path, capsys):
    out = tmp_path / "new" / "demo"
    assert main(["demo", "--output-dir", str(out), *SMALL, *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err
    assert not (tmp_path / "new").exists(), "checked before the folder is made"


def test_demo_output_that_cannot_be_made_is_one_line(capsys):
    assert main(["demo", "--output-dir", "/proc/magicseg-demo", *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--output-dir /proc/magicseg-demo" in err and "not writable" in err


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
