"""``training_summary.json`` counts every skipped row and every bad label pixel of the run: those
met in DataLoader workers, on every process, and before a resume (the collator's counts travel in
the batches; the trainer sums them over processes and keeps them in its checkpoints).

The runs cover whole epochs over every row, so the true counts are known without the run: each
damaged row is met once per epoch. Tiny random model: these prove the data path, not learning.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
from helpers import train_in_two_processes
from PIL import Image
from test_training_corrupt_data import FAST, _dataset, _edit_cell, _png

from magicseg_hf.cli import main

#: Label pixels set to a value no row's classes reach (rows have at most len(VOCABULARY) classes).
BAD_VALUE = 200


def _with_bad_pixels(count: int):
    """A cell edit: the row's label with its first ``count`` pixels set to :data:`BAD_VALUE`."""

    def edit(cell: dict) -> dict:
        label = np.array(Image.open(io.BytesIO(cell["bytes"])))
        label.reshape(-1)[:count] = BAD_VALUE
        buffer = io.BytesIO()
        Image.fromarray(label).save(buffer, format="PNG")
        return {**cell, "bytes": buffer.getvalue()}

    return edit


def _damaged(folder: Path) -> tuple[Path, set[str]]:
    """8 rows: 2 that are skipped (a truncated image, a label of the wrong size) and one with 10
    bad label pixels (not skipped). Returns the folder and the skipped rows' ids."""
    data = _dataset(folder)
    cut = _edit_cell(data, 0, 0, "image", lambda cell: {**cell, "bytes": cell["bytes"][:60]})
    bad_size = _edit_cell(data, 1, 0, "label", lambda cell: {**cell, "bytes": _png((32, 32))})
    _edit_cell(data, 2, 1, "label", _with_bad_pixels(10))
    return data, {cut, bad_size}


def _summary(folder: Path) -> dict:
    return json.loads((folder / "training_summary.json").read_text())


def test_rows_skipped_in_dataloader_workers_are_counted(tmp_path):
    data, skipped = _damaged(tmp_path / "ds")
    out = tmp_path / "model"
    # FAST: 4 steps x batch 2 over 8 rows, no validation: one epoch, each damaged row met once
    assert main(["train", "--dataset", str(data), "--output-dir", str(out), *FAST,
                 "--dataloader_num_workers", "2"]) == 0
    summary = _summary(out)
    assert summary["global_steps"] == 4
    assert summary["skipped_rows"] == 2
    assert summary["bad_label_pixels"] == 10
    assert set(summary["skipped_row_ids"]) <= skipped  # named: best effort (workers only log theirs)


# Batch 4 over 8 rows: 2 steps an epoch; 4 steps are 2 epochs, checkpoint-2 ends the first.
RESUMABLE = [*FAST, "--per_device_train_batch_size", "4", "--save_steps", "2"]


def test_a_resumed_run_reports_the_straight_runs_counts(tmp_path):
    data, skipped = _damaged(tmp_path / "ds")
    straight = tmp_path / "straight"
    assert main(["train", "--dataset", str(data), "--output-dir", str(straight), *RESUMABLE]) == 0
    expected = _summary(straight)
    assert (expected["skipped_rows"], expected["bad_label_pixels"]) == (2 * 2, 2 * 10)  # 2 epochs
    assert set(expected["skipped_row_ids"]) == skipped
    # Interrupted after the first epoch: the resumed run meets each damaged row once more.
    for checkpoint in ("checkpoint-2", "checkpoint-4"):  # mid-run, and the last step (nothing left to train)
        resumed = tmp_path / f"resumed-{checkpoint}"
        resumed.mkdir()
        shutil.copytree(straight / checkpoint, resumed / checkpoint)
        assert main(["train", "--dataset", str(data), "--output-dir", str(resumed), *RESUMABLE,
                     "--resume_from_checkpoint", str(resumed / checkpoint)]) == 0
        summary = _summary(resumed)
        assert summary["global_steps"] == 4
        for key in ("skipped_rows", "bad_label_pixels", "skipped_row_ids"):
            assert summary[key] == expected[key], (checkpoint, key)


def test_two_processes_report_the_sum_over_ranks(tmp_path):
    data = _dataset(tmp_path / "ds")
    # Every row gets bad label pixels, a different number each (1..8): each rank holds some.
    per_row = {}
    for shard, rows in enumerate((3, 3, 2)):
        for row in range(rows):
            count = len(per_row) + 1
            per_row[_edit_cell(data, shard, row, "label", _with_bad_pixels(count))] = count
    _edit_cell(data, 0, 0, "image", lambda cell: {**cell, "bytes": cell["bytes"][:60]})  # skipped
    _edit_cell(data, 2, 1, "label", lambda cell: {**cell, "bytes": _png((32, 32))})  # skipped
    out = tmp_path / "ddp"
    result = train_in_two_processes(["--dataset", str(data), "--output-dir", str(out), *FAST, "--max_steps", "-1",
                                     "--num_train_epochs", "1", "--save_strategy", "no"])
    assert result.returncode == 0, result.stderr[-3000:]
    summary = _summary(out)
    # 8 rows, 2 per process and step: one epoch is 2 steps, every row met once over the two ranks
    assert summary["num_processes"] == 2 and summary["global_steps"] == 2
    assert summary["skipped_rows"] == 2
    # the two skipped rows' pixels are never read (rows 1 and 8 of the edit order: 1 + 8 pixels)
    assert summary["bad_label_pixels"] == sum(per_row.values()) - 1 - 8
