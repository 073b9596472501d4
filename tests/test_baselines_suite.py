"""``magicseg evaluate --suite``: cells, resume (also after SIGKILL), comparison table and picture, the table put
into the MagicSeg model's card (``--update-card``), bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from huggingface_hub import ModelCard
from PIL import Image
from procedural import write_procedural_dataset
from test_evaluation_benchmarks import make_voc

from magicseg_hf.cli import main
from magicseg_hf.evaluation.run import card_results_name
from magicseg_hf.loading import build_open_seg

SETTINGS = {"short_side": 48, "window": 32, "stride": 16, "batch_size": 4}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIP folder, a tiny CLIPForOpenSegmentation folder, a VOC layout and a procedural dataset folder."""
    from magicseg_hf.twins import tiny_clip

    root = tmp_path_factory.mktemp("suite")
    model, processor = tiny_clip(seed=0)
    model.save_pretrained(root / "clip")
    processor.save_pretrained(root / "clip")
    open_seg, open_seg_processor = build_open_seg("tiny")
    open_seg.save_pretrained(root / "openseg")
    open_seg_processor.save_pretrained(root / "openseg")
    make_voc(root / "data")
    write_procedural_dataset(root / "shapes", num_rows=3, seed=1)
    return root


def write_suite(root: Path, name: str = "suite.yaml", **changes: object) -> Path:
    suite = {
        "models": [
            {"name": "MagicSeg", "model": "openseg"},
            {"model": "clip", "method": "sclip"},
            {"model": "clip", "method": "naclip"},
        ],
        "benchmarks": [{"name": "voc21", "data_dir": "data"}, {"name": "shapes"}],
        "settings": SETTINGS,
    }
    suite.update(changes)
    path = root / name
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    return path


def test_suite_writes_cells_table_and_picture_and_resumes(workspace: Path, tmp_path: Path) -> None:
    suite = write_suite(workspace)
    output = tmp_path / "out"
    started = time.perf_counter()
    assert main(["evaluate", "--suite", str(suite), "--output", str(output)]) == 0
    wall = time.perf_counter() - started
    cells = sorted((output / "cells").glob("*.json"))
    assert len(cells) == 6
    results = {path.stem: json.loads(path.read_text()) for path in cells}
    assert results["sclip_clip__voc21"]["method"] == "sclip"
    assert results["sclip_clip__voc21"]["protocol"]["name"] == "sclip"
    assert results["naclip_clip__shapes"]["refine"] == "pamr"
    assert results["MagicSeg__voc21"]["protocol"]["name"] == "zegclip"
    table = (output / "comparison.md").read_text()
    assert "| method | voc21 | shapes |" in table
    for row in ("MagicSeg", "sclip (clip)", "naclip (clip)"):
        assert f"| {row} |" in table
    value = results["sclip_clip__voc21"]["mean_iou_percent"]
    assert f"{value:.2f} (sclip)" in table and "(naclip+pamr)" in table
    picture = Image.open(output / "comparison.png")
    assert picture.width > 200 and len(picture.getcolors(1 << 16)) > 3  # bars in several colours
    print(f"tiny suite wall time: {wall:.1f} s")
    # a rerun computes nothing: finished cells are kept as they are
    stamps = {path: path.stat().st_mtime_ns for path in cells}
    assert main(["evaluate", "--suite", str(suite), "--output", str(output)]) == 0
    assert {path: path.stat().st_mtime_ns for path in cells} == stamps


def test_suite_killed_resumes_with_finished_cells_kept(workspace: Path, tmp_path: Path) -> None:
    suite = write_suite(workspace, "kill.yaml")
    output = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "magicseg_hf", "evaluate", "--suite", str(suite), "--output", str(output)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600  # a loaded machine: the child imports torch and loads three models first
    while time.time() < deadline and not list((output / "cells").glob("*.json")) and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = {path: path.stat().st_mtime_ns for path in (output / "cells").glob("*.json")}
    assert kept, "no cell finished before the kill"
    assert len(kept) < 6, "killed too late: every cell had finished, nothing was left to resume"
    for path in kept:
        assert json.loads(path.read_text())["complete"] is True  # written atomically: never half a file
    assert main(["evaluate", "--suite", str(suite), "--output", str(output)]) == 0
    after = {path: path.stat().st_mtime_ns for path in (output / "cells").glob("*.json")}
    assert len(after) == 6
    assert all(after[path] == stamp for path, stamp in kept.items())
    assert (output / "comparison.md").is_file()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"benchmarks": None}, "'benchmarks' must be a non-empty list"),
        ({"models": [{"method": "sclip"}]}, "models[0] is missing the key 'model'"),
        ({"benchmarks": [{"name": "ade20k"}]}, "unknown benchmark 'ade20k'"),
        ({"models": [{"model": "clip", "method": "segclip"}]}, "unknown method 'segclip'"),
        ({"models": [{"model": "clip", "protocol": "mmseg"}]}, "unknown protocol 'mmseg'"),
        ({"extra": 1}, "unknown key 'extra'"),
        ({"settings": {"device": "tpu"}}, "device must be auto, cpu, cuda, cuda:N or mps (got 'tpu')"),
        ({"settings": {"batch_size": "16"}}, "EvaluationConfig.batch_size must be an integer (got '16', a str)"),
        ({"benchmarks": [{"name": "voc21", "data_dir": "data"}, {"name": "voc21", "data_dir": "data", "split": "train"}]},
         "would share one results file and one table cell"),
        ({"models": [{"name": "a b", "model": "clip", "method": "sclip"}, {"name": "a_b", "model": "clip",
                                                                           "method": "naclip"}]},
         "cells (a b, voc21) and (a_b, voc21) would share one results file"),
    ],
)
def test_bad_suite_is_one_line_exit_2_and_nothing_written(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict, message: str
) -> None:
    suite = write_suite(workspace, "bad.yaml", **changes)
    output = tmp_path / "out"
    assert main(["evaluate", "--suite", str(suite), "--output", str(output)]) == 2
    assert not output.exists()
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error, error


def test_a_column_with_nothing_to_score_is_refused_like_evaluate(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every label pixel ignore: evaluate refuses; a suite cell recorded "mIoU None" as if it were a result.
    data = tmp_path / "data"
    make_voc(data)
    for label in (data / "VOCdevkit" / "VOC2012" / "SegmentationClass").glob("*.png"):
        Image.fromarray(np.full(np.array(Image.open(label)).shape, 255, np.uint8), "L").save(label)
    suite = write_suite(workspace, "empty.yaml", models=[{"model": "clip", "method": "sclip"}],
                        benchmarks=[{"name": "voc21", "data_dir": str(data)}])
    output = tmp_path / "out"
    assert main(["evaluate", "--suite", str(suite), "--output", str(output)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "voc21: no labelled pixel in 2 images" in error[0], error
    assert not list(output.rglob("*.json"))


def test_missing_suite_file_and_missing_key(workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["evaluate", "--suite", str(tmp_path / "none.yaml"), "--output", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"models": [{"model": "m"}]}))
    assert main(["evaluate", "--suite", str(path), "--output", str(tmp_path / "o")]) == 2
    assert "missing the key 'benchmarks'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def card_table(body: str, heading: str) -> list[list[str]]:
    """The cells of the first markdown table under ``heading`` (header row included, separator left out)."""
    section = body.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|") and not re.match(r"^\|[-:|]+\|$", line)]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


def test_suite_update_card_puts_the_table_and_our_results_into_the_card(workspace: Path, tmp_path: Path) -> None:
    model = tmp_path / "openseg"
    shutil.copytree(workspace / "openseg", model)
    suite = tmp_path / "card.yaml"
    suite.write_text(yaml.safe_dump({
        "models": [{"name": "MagicSeg", "model": str(model)}, {"model": str(workspace / "clip"), "method": "sclip"}],
        "benchmarks": [{"name": "voc21", "data_dir": str(workspace / "data")}, {"name": str(workspace / "shapes")}],
        "settings": SETTINGS,
    }), encoding="utf-8")
    output = tmp_path / "out"
    assert main(["evaluate", "--suite", str(suite), "--output", str(output), "--update-card"]) == 0
    results = {path.stem: json.loads(path.read_text()) for path in (output / "cells").glob("*.json")}
    assert len(results) == 4
    card = ModelCard.load(model / "README.md")  # the card and its YAML still parse
    # the comparison section: rows methods (ours in bold), columns benchmarks, each cell the cell file's mIoU
    assert "## Comparison with training-free baselines" in card.text
    assert "measured in the same harness" in card.text
    table = card_table(card.text, "## Comparison with training-free baselines")
    assert table[0] == ["method", "voc21", "shapes"]
    rows = {row[0].strip("*"): [cell.strip("*") for cell in row[1:]] for row in table[1:]}
    assert table[1][0] == "**MagicSeg**" and set(rows) == {"MagicSeg", "sclip (clip)"}
    for row, stem in (("MagicSeg", "MagicSeg"), ("sclip (clip)", "sclip_clip")):
        for index, column in enumerate(("voc21", "shapes")):
            cell = results[f"{stem}__{column}"]
            assert rows[row][index] == f"{cell['mean_iou_percent']:.2f} ({cell['protocol']['name']})"
    # the MagicSeg row's results: saved into the folder and in model-index, as a single --update-card run does
    ours = {Path(str(results[f"MagicSeg__{column}"]["benchmark"])).name: results[f"MagicSeg__{column}"]
            for column in ("voc21", "shapes")}
    indexed = {(result.dataset_config or result.dataset_type): result for result in card.data.eval_results}
    assert set(indexed) == set(ours)
    for name, cell in ours.items():
        assert indexed[name].metric_value == pytest.approx(cell["mean_iou"])
        assert indexed[name].metric_config == "zegclip"
    saved = sorted(model.glob("results-*.json"))  # named as a single run names them (overrides: a digest)
    assert [path.name for path in saved] == sorted(card_results_name(cell) for cell in ours.values())
    assert [path.name.split("-")[1] for path in saved] == ["shapes", "voc21"]
    assert json.loads((model / "comparison.json").read_text())["suite"] == "card.yaml"


@pytest.mark.parametrize("how", ["flag", "suite key"])
def test_update_card_without_a_local_magicseg_folder_is_refused(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    changes: dict = {"models": [{"model": "clip", "method": "sclip"}, {"model": "someone/magicseg-model"}]}
    if how == "suite key":
        changes["update_card"] = True
    suite = write_suite(workspace, "nocard.yaml", **changes)
    output = tmp_path / "out"
    flags = ["--update-card"] if how == "flag" else []
    assert main(["evaluate", "--suite", str(suite), "--output", str(output), *flags]) == 2
    assert not output.exists()
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    assert "--update-card needs a row of method magicseg whose model is a local model folder" in error, error
