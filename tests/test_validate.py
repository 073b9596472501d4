"""validate.py and `magicseg validate`: a valid folder passes, each kind of defect is caught."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from helpers import DEFAULT_CLASSES, folder_digest, make_rows, write_dataset_folder, write_shard
from PIL import Image

from magicseg_hf.cards import write_dataset_card
from magicseg_hf.cli import main
from magicseg_hf.errors import InputError
from magicseg_hf.schema import CARD_FILE, GENERATION_FILE, PREVIEW_FILE, WORK_DIR
from magicseg_hf.validate import validate_dataset_folder


@pytest.fixture(scope="module")
def valid_folder(tmp_path_factory):
    return write_dataset_folder(tmp_path_factory.mktemp("valid") / "ds", num_rows=5, rows_per_shard=3)


def _folder_with(tmp_path, mutate_rows=None, **kwargs):
    """A folder whose rows were changed by ``mutate_rows`` before writing (card regenerated)."""
    rows = make_rows(4, DEFAULT_CLASSES)
    if mutate_rows:
        mutate_rows(rows)
    return write_dataset_folder(tmp_path / "ds", rows=rows, rows_per_shard=2, **kwargs)


def _problems(folder):
    report = validate_dataset_folder(folder)
    assert not report.ok
    return " | ".join(report.problems)


def test_valid_folder_passes_and_is_left_untouched(valid_folder, capsys):
    before = folder_digest(valid_folder)
    report = validate_dataset_folder(valid_folder)
    assert report.ok, report.summary()
    assert (report.num_rows, report.num_shards, report.num_classes) == (5, 2, 4)
    assert main(["validate", str(valid_folder)]) == 0
    assert "valid" in capsys.readouterr().out
    assert folder_digest(valid_folder) == before


def test_work_area_of_an_unfinished_run_is_ignored(valid_folder, tmp_path):
    folder = shutil.copytree(valid_folder, tmp_path / "copy")
    (folder / WORK_DIR).mkdir()
    (folder / WORK_DIR / "shard-00000.parquet").write_bytes(b"not parquet")
    assert validate_dataset_folder(folder).ok


def test_label_value_out_of_range(tmp_path):
    def mutate(rows):
        label = np.asarray(rows[0]["label"]).copy()
        label[0, 0] = len(rows[0]["classes"]) + 3
        rows[0]["label"] = Image.fromarray(label, "L")

    assert "label values [4] outside 0..1 and 255" in _problems(_folder_with(tmp_path, mutate))


def test_unknown_label_255_is_allowed(tmp_path):
    def mutate(rows):
        label = np.asarray(rows[0]["label"]).copy()
        label[0, 0] = 255
        rows[0]["label"] = Image.fromarray(label, "L")

    assert validate_dataset_folder(_folder_with(tmp_path, mutate)).ok


def test_sizes_differ(tmp_path):
    def mutate(rows):
        rows[1]["counterfactual_image"] = rows[1]["counterfactual_image"].resize((20, 20))

    assert "sizes differ" in _problems(_folder_with(tmp_path, mutate))


def test_duplicate_ids_across_shards(tmp_path):
    first_id = make_rows(1, DEFAULT_CLASSES)[0]["id"]

    def mutate(rows):
        rows[3]["id"] = rows[0]["id"]  # rows 0 and 3 are in different shards

    assert f"id {first_id!r} repeats" in _problems(_folder_with(tmp_path, mutate))


def test_box_outside_the_image(tmp_path):
    def mutate(rows):
        rows[0]["boxes"][0] = [0.0, 0.0, 60.0, 10.0]  # image is 48 px wide

    assert "is not inside the 48x40 image" in _problems(_folder_with(tmp_path, mutate))


def test_box_labels_out_of_range_and_lengths(tmp_path):
    def mutate(rows):
        rows[0]["box_labels"] = [5]
        rows[1]["box_scores"] = rows[1]["box_scores"][:1]

    problems = _problems(_folder_with(tmp_path, mutate))
    assert "box_labels [5] outside 0..0" in problems
    assert "2 boxes, 2 box_labels, 1 box_scores" in problems


def test_class_not_in_vocabulary(tmp_path):
    def mutate(rows):
        rows[2]["classes"] = ["unicorn"]

    assert "['unicorn'] are not lines of vocabulary.txt" in _problems(_folder_with(tmp_path, mutate))


def test_wrong_features_in_a_shard(tmp_path):
    import datasets

    from magicseg_hf.schema import DATASET_FEATURES

    folder = _folder_with(tmp_path)
    rows = make_rows(2, DEFAULT_CLASSES, seed=5)
    features = datasets.Features({**DATASET_FEATURES, "label": datasets.Image()})  # mode "L" lost
    (folder / "data" / "train-00001.parquet").unlink()
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(folder / "data" / "train-00001.parquet"))
    assert "embedded features differ from the schema in ['label']" in _problems(folder)


def test_extra_column(tmp_path):
    import datasets

    from magicseg_hf.schema import DATASET_FEATURES

    folder = _folder_with(tmp_path)
    rows = [{**row, "extra": 1} for row in make_rows(2, DEFAULT_CLASSES, seed=6)]
    features = datasets.Features({**DATASET_FEATURES, "extra": datasets.Value("int32")})
    (folder / "data" / "train-00001.parquet").unlink()
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(folder / "data" / "train-00001.parquet"))
    assert "unexpected ['extra']" in _problems(folder)


def test_stale_card_and_generation_json(tmp_path):
    folder = _folder_with(tmp_path)
    write_shard(folder, 2, make_rows(2, DEFAULT_CLASSES, seed=9))  # rows added after the card was written
    problems = _problems(folder)
    assert "README.md: says 4 rows, the shards hold 6" in problems
    assert "generation.json says 4 rows, the shards hold 6" in problems


def test_card_features_tampered(tmp_path):
    folder = _folder_with(tmp_path)
    text = (folder / CARD_FILE).read_text()
    assert "  - name: seed\n    dtype: int64" in text
    (folder / CARD_FILE).write_text(text.replace("  - name: seed\n    dtype: int64", "  - name: seed\n    dtype: int32"))
    problems = _problems(folder)
    assert "dataset_info.features differ from the schema in ['seed']" in problems


def test_card_dumped_with_sorted_keys_is_caught(tmp_path):
    from huggingface_hub import DatasetCard

    folder = _folder_with(tmp_path)
    card = DatasetCard.load(folder / CARD_FILE)
    sorted_yaml = yaml.safe_dump(card.data.to_dict(), sort_keys=True)
    (folder / CARD_FILE).write_text(f"---\n{sorted_yaml}---\n{card.text}")
    problems = _problems(folder)
    assert "dataset_info.features cannot be read by datasets" in problems
    assert "datasets.load_dataset fails on the folder" in problems


def test_missing_files_and_shard_gap(tmp_path):
    folder = _folder_with(tmp_path)
    (folder / PREVIEW_FILE).unlink()
    (folder / "data" / "train-00001.parquet").rename(folder / "data" / "train-00003.parquet")
    problems = _problems(folder)
    assert "missing preview.png" in problems
    assert "not numbered 0..1 without gaps" in problems
    assert "shows preview.png, which is not in the folder" in problems


def test_missing_card(tmp_path):
    folder = _folder_with(tmp_path, card=False)
    assert "missing README.md" in _problems(folder)
    write_dataset_card(folder)
    assert validate_dataset_folder(folder).ok


def test_generation_json_problems(tmp_path):
    folder = _folder_with(tmp_path)
    generation = json.loads((folder / GENERATION_FILE).read_text())
    generation["summary"]["dropped"]["cosmic_rays"] = 2
    del generation["models"]
    (folder / GENERATION_FILE).write_text(json.dumps(generation))
    problems = _problems(folder)
    assert "unknown drop reasons ['cosmic_rays']" in problems
    assert "no 'models' object" in problems


def test_not_a_dataset_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    report = validate_dataset_folder(tmp_path / "empty")
    assert not report.ok and "no data/ folder" in report.problems[0]
    assert main(["validate", str(tmp_path / "empty")]) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out and "  - no data/ folder" in out
    with pytest.raises(InputError):
        validate_dataset_folder(tmp_path / "missing")
    assert main(["validate", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


def test_problem_list_is_capped(tmp_path):
    def mutate(rows):
        for row in rows:
            row["classes"] = ["unicorn"]
            row["box_labels"] = [0] * len(row["boxes"])

    report = validate_dataset_folder(_folder_with(tmp_path, mutate), max_problems=2)
    assert len(report.problems) == 2 and report.num_problems > 2
    assert "... and" in report.summary()


def test_vocabulary_file_problems(tmp_path):
    folder = _folder_with(tmp_path)
    (folder / "vocabulary.txt").write_text("cat\ndog\nbow (weapon)\ntraffic light\ncat\n")
    report = validate_dataset_folder(folder)
    assert report.num_classes == 5
    assert report.problems == ["vocabulary 'vocabulary.txt' lists 'cat' twice"]
    (folder / "vocabulary.txt").write_text("\n\n")
    assert "vocabulary 'vocabulary.txt' has no class names" in _problems(folder)


def test_files_in_data_that_are_not_shards(tmp_path):
    folder = _folder_with(tmp_path)
    (folder / "data" / "train-2.parquet").write_bytes(b"")
    (folder / "data" / ".train-00002.parquet.tmp").write_bytes(b"an atomic write in progress")
    problems = _problems(folder)
    assert "unexpected file data/train-2.parquet (shards are named train-NNNNN.parquet)" in problems
    assert ".tmp" not in problems
