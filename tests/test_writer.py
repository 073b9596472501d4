"""The shard store and finalisation: the dataset is the first N kept attempts in attempt order;
finalize writes the rows, the preview and generation.json, then the card and the removal of the
work area follow as separate steps."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from helpers import make_row

from magicseg_hf.cards import write_dataset_card
from magicseg_hf.folder import DatasetFolder
from magicseg_hf.generation.writer import KEPT, ShardStore, finalize, write_run_files
from magicseg_hf.validate import validate_dataset_folder


def _row(attempt: int) -> dict:
    """Attempt ``attempt``'s row (its id carries the attempt: ``0000-<attempt>``)."""
    return make_row(attempt, ["cat"], size=(16, 16))


def _write(store: ShardStore, shard: int, statuses: list[str], first: int) -> None:
    records = [{"attempt": first + i, "status": s} for i, s in enumerate(statuses)]
    rows = [_row(r["attempt"]) for r in records if r["status"] == KEPT]
    store.write_shard(shard, rows, records)


def test_kept_before_stops_at_a_gap_unless_the_target_is_reached(tmp_path: Path):
    store = ShardStore(tmp_path)
    _write(store, 0, [KEPT, KEPT, "no_detection"], first=0)
    # shard 1 unfinished (another process is on it), shard 2 done
    _write(store, 2, [KEPT, KEPT, KEPT], first=6)
    assert store.kept_before(1, target=10) == 2
    assert store.kept_before(3, target=10) is None  # a gap before the target: not decidable yet
    assert store.kept_before(3, target=2) == 2  # the prefix already holds the target: shard 3 not needed
    assert store.kept_before(0, target=1) == 0


def test_finalize_keeps_the_first_n_kept_attempts_in_order(tmp_path: Path):
    write_run_files(tmp_path, ["cat"], {"config": {"preset": "tiny"}, "models": {}, "summary": None})
    store = ShardStore(tmp_path)
    _write(store, 0, [KEPT, "mask_area", KEPT], first=0)
    _write(store, 1, ["no_detection", "no_detection", "blank_image"], first=3)  # nothing kept: no file
    _write(store, 2, ["counterfactual", KEPT, KEPT], first=6)
    assert not store.parquet_path(1).exists()
    summary = finalize(tmp_path, num_shards=3, num_pairs=3, generation={"config": {}, "models": {}},
                       elapsed_seconds=1.0, num_processes=2)
    ids = [r["id"] for p in sorted((tmp_path / "data").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert ids == ["0000-00000000", "0000-00000002", "0000-00000007"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["train-00000.parquet", "train-00001.parquet"]
    # counted up to the 3rd kept attempt (attempt 7): 8 attempts, attempt 8 is not counted
    assert (summary.num_rows, summary.attempts, summary.shortfall) == (3, 8, 0)
    assert summary.dropped == {"blank_image": 1, "no_detection": 2, "mask_area": 1, "class_score": 0, "counterfactual": 1,
                               "error": 0}
    saved = json.loads((tmp_path / "generation.json").read_text())["summary"]
    assert saved["attempts"] == 8 and "output_dir" not in saved
    assert (tmp_path / "preview.png").is_file()
    # The writer knows nothing of cards and leaves the work area to its caller.
    assert not (tmp_path / "README.md").exists()
    assert store.is_complete(2)
    write_dataset_card(tmp_path)
    store.remove()
    assert not (tmp_path / ".work").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "README.md", "class_histogram.png", "data", "generation.json", "preview.png", "vocabulary.txt"]


def test_run_files_and_a_shortfall(tmp_path: Path):
    generation = {"config": {"classes": ["cat", "bow (weapon)"]}, "models": {}}
    write_run_files(tmp_path, ["cat", "bow (weapon)"], generation)
    assert (tmp_path / "vocabulary.txt").read_text() == "cat\nbow (weapon)\n"
    assert DatasetFolder(tmp_path).read_generation() == generation
    store = ShardStore(tmp_path)
    assert store.parquet_path(0) == tmp_path / ".work" / "shard-00000.parquet"
    _write(store, 0, ["no_detection", KEPT], first=0)
    _write(store, 1, [KEPT, "mask_area"], first=2)
    summary = finalize(tmp_path, num_shards=2, num_pairs=5, generation=generation, elapsed_seconds=0.5,
                       num_processes=1)
    # Every attempt is counted when the run falls short.
    assert (summary.num_rows, summary.attempts, summary.shortfall) == (2, 4, 3)
    assert "3 short of --num-pairs" in summary.describe()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["train-00000.parquet", "train-00001.parquet"]
    write_dataset_card(tmp_path)
    store.remove()
    report = validate_dataset_folder(tmp_path)
    assert report.ok, report.summary()
    assert (report.num_rows, report.num_shards, report.num_classes) == (2, 2, 2)
