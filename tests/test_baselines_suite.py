"""``magicseg evaluate --suite``: cells, resume (also after SIGKILL), comparison table and picture, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image
from procedural import write_procedural_dataset
from test_evaluation_benchmarks import make_voc

from magicseg_hf.cli import main
from magicseg_hf.loading import build_open_seg

SETTINGS = {"short_side": 48, "window": 32, "stride": 16, "batch_size": 4}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIP folder, a tiny CLIPForOpenSegmentation folder, a VOC layout and a procedural dataset folder."""
    from magicseg_hf.tiny import tiny_clip

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


def test_missing_suite_file_and_missing_key(workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["evaluate", "--suite", str(tmp_path / "none.yaml"), "--output", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"models": [{"model": "m"}]}))
    assert main(["evaluate", "--suite", str(path), "--output", str(tmp_path / "o")]) == 2
    assert "missing the key 'benchmarks'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
