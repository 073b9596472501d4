"""``magicseg train`` on damaged data (issue 18): a truncated shard is refused up front, naming the
file; a row whose picture cannot be decoded, or whose pictures differ in size, is skipped, counted
and named, and the run goes on. Bad input prints exactly one line, without the INFO lines and
progress bars that came before it (checked in a real subprocess, as a user sees it).

Tiny random model: these prove the data path, not learning.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import write_dataset_folder

from magicseg_hf.cli import main
from magicseg_hf.folder import DatasetFolder
from magicseg_hf.training.data import load_training_data

VOCABULARY = ["cat", "dog", "bird", "car"]
FAST = ["--preset", "tiny", "--num-classes", "4", "--validation-size", "0", "--logging_steps", "1",
        "--per_device_train_batch_size", "2", "--seed", "3", "--max_steps", "4"]


def _dataset(folder: Path) -> Path:
    return write_dataset_folder(folder, num_rows=8, vocabulary=VOCABULARY, size=(64, 64))


def _edit_cell(folder: Path, shard: int, row: int, column: str, edit) -> str:
    """Rewrite one stored picture cell of ``folder`` in place; returns the row's id."""
    path = DatasetFolder(folder).shard_paths()[shard]
    table = pq.read_table(path)
    cells = table.column(column).to_pylist()
    cells[row] = edit(cells[row])
    index = table.schema.get_field_index(column)
    table = table.set_column(index, table.schema.field(index), pa.array(cells, type=table.schema.field(index).type))
    pq.write_table(table, path)
    return table.column("id")[row].as_py()


def _png(size: tuple[int, int]) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", size, 1).save(buffer, format="PNG")
    return buffer.getvalue()


def test_unreadable_rows_are_skipped_counted_and_named(tmp_path, caplog):
    data = _dataset(tmp_path / "ds")
    cut = _edit_cell(data, 0, 0, "image", lambda cell: {**cell, "bytes": cell["bytes"][:60]})  # truncated JPEG/PNG
    bad_size = _edit_cell(data, 1, 0, "label", lambda cell: {**cell, "bytes": _png((32, 32))})  # 32x32 label, 64x64 image
    out = tmp_path / "model"
    with caplog.at_level("WARNING"):
        assert main(["train", "--dataset", str(data), "--output-dir", str(out), *FAST]) == 0
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["global_steps"] == 4  # the run went on
    # 4 steps x batch 2 = 8 rows seen = one epoch: each bad row was met once
    assert summary["skipped_rows"] == 2
    assert set(summary["skipped_row_ids"]) == {cut, bad_size}
    messages = "\n".join(record.getMessage() for record in caplog.records)
    assert f"skipping row {cut!r}: image cannot be decoded" in messages
    assert f"skipping row {bad_size!r}: sizes differ: image 64x64, label 32x32" in messages


def test_a_truncated_shard_is_refused_naming_the_file(tmp_path, capsys):
    data = _dataset(tmp_path / "ds")
    shard = DatasetFolder(data).shard_paths()[1]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    for streaming in ([], ["--streaming"]):
        out = tmp_path / f"model{len(streaming)}"
        code = main(["train", "--dataset", str(data), "--output-dir", str(out), *FAST, *streaming])
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert str(shard) in err and "not a readable parquet shard" in err
        assert not out.exists()


def test_one_source_given_as_a_string_is_one_source(tmp_path):
    data = _dataset(tmp_path / "ds")
    loaded = load_training_data(str(data), validation_size=0)
    assert len(loaded.train) == 8 and loaded.vocabulary == VOCABULARY
    assert [source["source"] for source in loaded.sources] == [str(data)]


@pytest.mark.parametrize("damage", ["truncated-shard", "bad-flag", "resume-missing"])
def test_bad_input_prints_exactly_one_line_in_a_real_terminal(damage, tmp_path):
    data = _dataset(tmp_path / "ds")
    flags = list(FAST)
    if damage == "truncated-shard":
        shard = DatasetFolder(data).shard_paths()[0]
        shard.write_bytes(shard.read_bytes()[:100])
    elif damage == "bad-flag":
        flags += ["--eval_strategy", "sometimes"]
    else:
        flags += ["--resume_from_checkpoint", str(tmp_path / "nowhere")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "magicseg_hf", "train", "--dataset", str(data), "--output-dir",
         str(tmp_path / "model"), *flags], capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr  # no INFO line, progress bar or warning before it
    assert done.stderr.startswith("magicseg train: error: ") and done.stdout == ""
