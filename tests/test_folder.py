"""DatasetFolder: paths, the shard naming rule, atomic writes and the readers of a dataset folder."""

from __future__ import annotations

import fnmatch
import json
import os
import stat

import pyarrow.parquet as pq
import pytest
from helpers import DEFAULT_CLASSES, make_rows, write_dataset_folder, write_shard

from magicseg_hf.errors import InputError
from magicseg_hf.folder import (
    CARD_DATA_FILES,
    SHARD_GLOB,
    DatasetFolder,
    atomic_write_bytes,
    atomic_write_json,
    decode_image,
    parse_vocabulary_lines,
    shard_file_name,
    shard_index,
)
from magicseg_hf.generation.vocabulary import load_vocabulary


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return DatasetFolder(write_dataset_folder(tmp_path_factory.mktemp("folder") / "ds", num_rows=5))


def test_paths_are_the_documented_layout(tmp_path):
    folder = DatasetFolder(tmp_path / "out")
    assert not folder.exists() and folder.is_empty()
    relative = {name: getattr(folder, name).relative_to(tmp_path / "out").as_posix() for name in (
        "data_dir", "card_path", "vocabulary_path", "generation_path", "preview_path", "histogram_path",
        "prompts_path", "work_dir")}
    assert relative == {
        "data_dir": "data", "card_path": "README.md", "vocabulary_path": "vocabulary.txt",
        "generation_path": "generation.json", "preview_path": "preview.png",
        "histogram_path": "class_histogram.png", "prompts_path": "prompts.jsonl", "work_dir": ".work",
    }
    assert folder.shard_path(3) == tmp_path / "out" / "data" / "train-00003.parquet"
    assert folder.work_rows_path(12).name == "shard-00012.parquet"
    assert folder.work_records_path(12).name == "shard-00012.json"
    assert DatasetFolder(folder).root == folder.root and os.fspath(folder) == str(tmp_path / "out")
    assert not list(tmp_path.iterdir()), "making the object writes nothing"


def test_shard_name_glob_and_regex_agree():
    for index in (0, 7, 12345, 99999):
        name = shard_file_name(index)
        assert name == f"data/train-{index:05d}.parquet"
        assert fnmatch.fnmatch(name, SHARD_GLOB) and fnmatch.fnmatch(name, CARD_DATA_FILES)
        assert shard_index(name.split("/")[1]) == index
    for other in ("train-1.parquet", "train-000001.parquet", "test-00000.parquet", "train-00000.json",
                  ".train-00000.parquet.tmp"):
        assert shard_index(other) is None
    with pytest.raises(ValueError, match="got -1"):
        shard_file_name(-1)


def test_atomic_writes_leave_no_temporary_file_and_readable_modes(tmp_path):
    path = tmp_path / "sub" / "file.bin"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(path.parent) == ["file.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask

    class Unencodable:
        pass

    atomic_write_json(tmp_path / "value.json", {"b": [1, 2], "a": "é"})
    assert (tmp_path / "value.json").read_bytes() == b'{\n  "a": "\\u00e9",\n  "b": [\n    1,\n    2\n  ]\n}\n'
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "value.json", {"x": Unencodable()})
    assert json.loads((tmp_path / "value.json").read_text()) == {"a": "é", "b": [1, 2]}, "old file intact"
    assert sorted(os.listdir(tmp_path)) == ["sub", "value.json"]


def test_vocabulary_round_trip_and_one_line_rule(tmp_path):
    folder = DatasetFolder(tmp_path)
    names = ["cat", "bow (weapon)", "traffic light"]
    folder.write_vocabulary(names)
    assert folder.vocabulary_path.read_text() == "cat\nbow (weapon)\ntraffic light\n"
    assert folder.read_vocabulary() == names
    # The same rule as a user's vocabulary file: blank lines and surrounding spaces dropped.
    user_file = tmp_path / "mine.txt"
    user_file.write_text("  cat \n\n bow (weapon)\ntraffic light\n\n")
    folder.vocabulary_path.write_text(user_file.read_text())
    assert folder.read_vocabulary() == load_vocabulary(str(user_file)) == names
    assert parse_vocabulary_lines(user_file.read_text(), "x") == names


def test_vocabulary_errors(tmp_path):
    folder = DatasetFolder(tmp_path)
    with pytest.raises(InputError, match="has no vocabulary.txt"):
        folder.read_vocabulary()
    folder.vocabulary_path.write_text("cat\ndog\ncat\n")
    with pytest.raises(InputError, match="lists 'cat' twice"):
        folder.read_vocabulary()
    assert folder.read_vocabulary(check=False) == ["cat", "dog", "cat"]
    folder.vocabulary_path.write_text("\n  \n")
    with pytest.raises(InputError, match="has no class names"):
        folder.read_vocabulary()
    folder.vocabulary_path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="cannot read vocabulary.txt"):
        folder.read_vocabulary()


def test_generation_reader(tmp_path):
    folder = DatasetFolder(tmp_path)
    assert folder.read_generation() is None
    folder.write_generation({"config": {"seed": 3}})
    assert folder.read_generation() == {"config": {"seed": 3}}
    folder.generation_path.write_text("[1, 2]")
    with pytest.raises(InputError, match="generation.json is not a JSON object"):
        folder.read_generation()
    folder.generation_path.write_text("{not json")
    with pytest.raises(InputError, match="generation.json is not valid JSON"):
        folder.read_generation()


def test_prompt_cache_appends_lines_and_skips_a_cut_line(tmp_path):
    folder = DatasetFolder(tmp_path)
    assert folder.read_prompts() == {}
    folder.append_prompts([{"attempt": 0, "classes": ["cat"], "prompt": "a cat"}])
    folder.append_prompts({"attempt": k, "classes": ["dog"], "prompt": f"dog {k}"} for k in (2, 1))
    assert folder.prompts_path.read_text().splitlines() == [
        '{"attempt": 0, "classes": ["cat"], "prompt": "a cat"}',
        '{"attempt": 2, "classes": ["dog"], "prompt": "dog 2"}',
        '{"attempt": 1, "classes": ["dog"], "prompt": "dog 1"}',
    ]
    with folder.prompts_path.open("a") as handle:
        handle.write('{"attempt": 3, "classes": ["d')  # a run killed mid-line
    assert folder.read_prompts() == {0: "a cat", 2: "dog 2", 1: "dog 1"}


def test_published_files_leave_out_work_and_hidden_files(folder, tmp_path):
    assert folder.published_files() == [
        "class_histogram.png", "data/train-00000.parquet", "data/train-00001.parquet", "generation.json",
        "preview.png", "vocabulary.txt",
    ]
    empty = DatasetFolder(tmp_path)
    for name in ("prompts.jsonl", ".work/shard-00000.json", "data/.train-00000.parquet.x.tmp", "notes.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert empty.published_files() == ["prompts.jsonl"]


def test_rows_come_in_dataset_order(folder):
    expected = make_rows(5, DEFAULT_CLASSES)
    assert [p.name for p in folder.shard_paths()] == ["train-00000.parquet", "train-00001.parquet"]
    assert folder.num_rows() == 5
    rows = list(folder.iter_rows(batch_size=2))
    assert [row["id"] for row in rows] == [row["id"] for row in expected]
    assert [row["classes"] for row in rows] == [row["classes"] for row in expected]
    first = decode_image(rows[0]["label"])
    assert first.mode == "L" and first.tobytes() == expected[0]["label"].tobytes()
    small = list(folder.iter_rows(columns=["id", "box_labels"]))
    assert set(small[0]) == {"id", "box_labels"} and len(small) == 5


def test_shards_outside_data_and_work_files_are_not_rows(folder, tmp_path):
    import shutil

    copy = DatasetFolder(shutil.copytree(folder.root, tmp_path / "copy"))
    write_shard(copy.work_dir, 0, make_rows(2, DEFAULT_CLASSES, seed=4))  # a stray .work/data/ shard
    (copy.data_dir / "notes.txt").write_text("not a shard")
    assert copy.shard_paths() == [copy.root / "data" / "train-00000.parquet", copy.root / "data" / "train-00001.parquet"]
    assert copy.num_rows() == 5
    copy.remove_work_dir()
    assert not copy.work_dir.exists()
    copy.remove_work_dir()  # no error the second time


def test_stats_count_rows_and_boxes_per_class(folder):
    rows = make_rows(5, DEFAULT_CLASSES)
    stats = folder.stats()
    assert (stats.num_rows, stats.num_shards) == (5, 2)
    # make_rows: rows hold [cat], [dog, bow], [bow], [traffic light, cat], [cat]; one box per class.
    assert stats.rows_per_class == {"cat": 3, "dog": 1, "bow (weapon)": 2, "traffic light": 1}
    assert stats.boxes_per_class == stats.rows_per_class
    assert stats.num_boxes == 7
    assert stats.image_size == (48, 40)
    assert stats.mean_counterfactual_score == pytest.approx(sum(r["counterfactual_score"] for r in rows) / 5, rel=1e-6)
    assert stats.download_size == sum(p.stat().st_size for p in folder.shard_paths())
    assert stats.dataset_size == sum(
        pq.ParquetFile(p).metadata.row_group(i).total_byte_size
        for p in folder.shard_paths() for i in range(pq.ParquetFile(p).metadata.num_row_groups)
    )


def test_empty_folder_has_no_rows(tmp_path):
    folder = DatasetFolder(tmp_path / "none")
    assert folder.shard_paths() == [] and folder.num_rows() == 0 and list(folder.iter_rows()) == []
    stats = folder.stats()
    assert (stats.num_rows, stats.image_size, stats.mean_counterfactual_score) == (0, None, None)
