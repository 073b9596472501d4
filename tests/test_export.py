"""`magicseg export`: global-label views of a MagicSeg folder (semantic, mmseg) and the transform.

The expected global labels are computed here from the source parquet alone (each row's
``classes`` and ``vocabulary.txt``), never with the exporter's own mapping code.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import (
    DEFAULT_CLASSES,
    HubStandIn,
    folder_digest,
    make_rows,
    subprocess_env,
    write_dataset_folder,
)
from PIL import Image
from procedural import write_procedural_dataset

from magicseg_hf.cli import main
from magicseg_hf.errors import InputError
from magicseg_hf.export import EXPORT_FILE, ID2LABEL_FILE, LABEL2ID_FILE, PROGRESS_FILE, export_dataset
from magicseg_hf.export import core as export_core
from magicseg_hf.export.labels import semantic_view
from magicseg_hf.folder import DatasetFolder

# ----------------------------------------------------------------------------------------------
# Independent expectations
# ----------------------------------------------------------------------------------------------


def source_rows(folder):
    """(id, classes, image pixels, source label) of every row of a source folder, in order."""
    rows = []
    for path in sorted((folder / "data").glob("train-*.parquet")):
        for row in pq.read_table(path).to_pylist():
            image = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB"))
            label = np.asarray(Image.open(io.BytesIO(row["label"]["bytes"])))
            rows.append((row["id"], row["classes"], image, label))
    return rows


def expected_global(label, classes, vocabulary):
    """The global label, pixel by pixel, by a plain loop over the row's classes."""
    out = np.zeros_like(label)
    for position, name in enumerate(classes, start=1):
        out[label == position] = vocabulary.index(name) + 1
    out[label == 255] = 255
    return out


def rows_with_unknown(vocabulary):
    """Rows of the generated kind, one with a patch of 255 (unknown) in its label."""
    rows = make_rows(7, vocabulary, seed=3)
    label = np.array(rows[2]["label"])
    label[:5, :7] = 255
    rows[2]["label"] = Image.fromarray(label, "L")
    return rows


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A generated tiny folder (3 shards, a row with unknown pixels)."""
    root = tmp_path_factory.mktemp("export-src") / "src"
    return write_dataset_folder(root, vocabulary=DEFAULT_CLASSES, rows=rows_with_unknown(DEFAULT_CLASSES),
                                rows_per_shard=3)


def check_round_trip(src, out):
    vocabulary = DatasetFolder(src).read_vocabulary()
    exported = datasets.load_dataset(str(out), split="train")
    assert exported.features["label"].mode == "L"
    expected = source_rows(src)
    assert len(exported) == len(expected)
    for row, (row_id, classes, image, label) in zip(exported, expected):
        assert row["id"] == row_id
        assert np.array_equal(np.asarray(row["image"].convert("RGB")), image)
        assert row["label"].mode == "L"
        assert np.array_equal(np.asarray(row["label"]), expected_global(label, classes, vocabulary)), row_id
    names = json.loads((out / ID2LABEL_FILE).read_text())
    assert names == {"0": "background", **{str(k + 1): n for k, n in enumerate(vocabulary)}}
    assert json.loads((out / LABEL2ID_FILE).read_text()) == {n: int(k) for k, n in names.items()}
    return exported


# ----------------------------------------------------------------------------------------------
# Semantic export
# ----------------------------------------------------------------------------------------------
def test_semantic_round_trip_on_a_generated_folder(source, tmp_path):
    before = folder_digest(source)
    out = tmp_path / "semantic"
    summary = export_dataset(source, out, progress=False)
    assert (summary.num_rows, summary.num_shards, summary.num_classes) == (7, 3, 4)
    exported = check_round_trip(source, out)
    assert 255 in np.asarray(exported[2]["label"])  # the unknown patch survived as unknown
    assert folder_digest(source) == before  # the source is never written
    assert not (out / PROGRESS_FILE).exists()
    record = json.loads((out / EXPORT_FILE).read_text())
    assert record["source"] == source.name and record["format"] == "semantic"
    assert json.loads((out / "source_generation.json").read_text()) == DatasetFolder(source).read_generation()
    card = (out / "README.md").read_text()
    assert "vocabulary.index(name) + 1" in card and "source_generation.json" in card and f"`{source.name}`" in card
    assert str(source.resolve().parent) not in card, "the card (published by a push) does not show the local path"


def test_semantic_round_trip_on_the_procedural_source(tmp_path):
    src = write_procedural_dataset(tmp_path / "shapes", num_rows=40, size=32)
    out = tmp_path / "semantic"
    export_dataset(src, out, progress=False)
    check_round_trip(src, out)


def test_round_trip_on_the_procedural_scene_source(tmp_path):
    """The project's procedural scene source (magicseg_hf/generation/procedural.py: the rows
    `magicseg generate --source procedural` writes), occlusions included."""
    procedural = pytest.importorskip("magicseg_hf.generation.procedural")
    vocabulary = ["sun", "house", "tree", "car", "ball", "bow (weapon)"]
    rows = procedural.procedural_rows(vocabulary, 30, seed=5, size=48, max_classes=3)
    src = write_dataset_folder(tmp_path / "proc", vocabulary=vocabulary, rows=rows, rows_per_shard=8)
    export_dataset(src, tmp_path / "semantic", progress=False)
    exported = check_round_trip(src, tmp_path / "semantic")
    assert {int(v) for row in exported for v in np.unique(np.asarray(row["label"]))} - {0} <= set(range(1, 7))


def test_transform_gives_the_exported_rows(source, tmp_path):
    out = tmp_path / "semantic"
    export_dataset(source, out, with_counterfactual=True, progress=False)
    exported = datasets.load_dataset(str(out), split="train")
    view = semantic_view(source, with_counterfactual=True)
    assert len(view) == len(exported)
    for mine, theirs in zip(view, exported):
        assert set(mine) == set(theirs) == {"id", "image", "label", "counterfactual_image"}
        assert mine["id"] == theirs["id"]
        for column in ("image", "label", "counterfactual_image"):
            assert mine[column].mode == theirs[column].mode
            assert np.array_equal(np.asarray(mine[column]), np.asarray(theirs[column]))


def test_validate_accepts_the_export_and_catches_a_broken_one(source, tmp_path, capsys):
    out = tmp_path / "semantic"
    export_dataset(source, out, progress=False)
    assert main(["validate", str(out)]) == 0
    assert "valid" in capsys.readouterr().out
    names = json.loads((out / ID2LABEL_FILE).read_text())
    names["0"] = "cat"
    (out / ID2LABEL_FILE).write_text(json.dumps(names))
    assert main(["validate", str(out)]) == 1
    assert "background" in capsys.readouterr().out


def test_interrupted_export_resumes(source, tmp_path, monkeypatch):
    out = tmp_path / "semantic"
    real = export_core._write_semantic_shard
    calls = []

    def dies_on_second_shard(*args, **kwargs):
        calls.append(args[0].name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(export_core, "_write_semantic_shard", dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        export_dataset(source, out, progress=False)
    monkeypatch.setattr(export_core, "_write_semantic_shard", real)
    assert (out / PROGRESS_FILE).is_file() and not (out / EXPORT_FILE).exists()
    assert main(["validate", str(out)]) == 1  # an unfinished export is not valid
    first = (out / "data" / "train-00000.parquet").stat()
    assert not list((out / "data").glob(".*"))  # no half-written shard is visible
    summary = export_dataset(source, out, progress=False)  # the same call again, no --overwrite
    assert summary.resumed and summary.shards_converted == 2
    again = (out / "data" / "train-00000.parquet").stat()
    assert (first.st_ino, first.st_mtime_ns) == (again.st_ino, again.st_mtime_ns)  # kept, not redone
    check_round_trip(source, out)


def test_overwrite_replaces_an_earlier_export_only(source, tmp_path, capsys):
    out = tmp_path / "semantic"
    export_dataset(source, out, progress=False)
    summary = export_dataset(source, out, overwrite=True, progress=False)
    assert not summary.resumed and summary.shards_converted == 3
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(["export", str(source), "--output-dir", str(other), "--overwrite", "--no-progress"]) == 2
    assert "holds no magicseg export" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep me"


# ----------------------------------------------------------------------------------------------
# mmseg export
# ----------------------------------------------------------------------------------------------
def test_mmseg_layout(source, tmp_path, capsys):
    out = tmp_path / "mmseg"
    assert main(["export", str(source), "--format", "mmseg", "--output-dir", str(out), "--val-fraction", "0.4",
                 "--no-progress"]) == 0
    vocabulary = DatasetFolder(source).read_vocabulary()
    seen = {}
    for split in ("train", "val"):
        images = sorted(p.stem for p in (out / "img_dir" / split).glob("*.jpg"))
        labels = sorted(p.stem for p in (out / "ann_dir" / split).glob("*.png"))
        assert images == labels
        for stem in images:
            seen[stem] = split
    rows = source_rows(source)
    assert sorted(seen) == sorted(row_id for row_id, *_ in rows)
    assert set(seen.values()) == {"train", "val"}
    for row_id, classes, image, label in rows:
        split = seen[row_id]
        annotation = Image.open(out / "ann_dir" / split / f"{row_id}.png")
        assert annotation.mode == "L"
        assert np.array_equal(np.asarray(annotation), expected_global(label, classes, vocabulary))
        assert Image.open(out / "img_dir" / split / f"{row_id}.jpg").size == (image.shape[1], image.shape[0])
    config = {}
    exec((out / "mmseg_config.py").read_text(), config)  # the snippet is valid Python
    assert config["metainfo"]["classes"] == ("background", *vocabulary)
    assert len(config["metainfo"]["palette"]) == len(vocabulary) + 1
    assert config["train_dataset"]["data_prefix"] == {"img_path": "img_dir/train", "seg_map_path": "ann_dir/train"}
    assert config["train_dataset"]["reduce_zero_label"] is False
    assert config["data_root"] == "{{fileDirname}}"  # the config's own folder, expanded by mmengine
    assert main(["validate", str(out)]) == 0
    # What a push publishes holds no local path (the folder is published as it is).
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".py", ".md") and not path.name.startswith("."):
            assert str(tmp_path) not in path.read_text(), path.name


# ----------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing written
# ----------------------------------------------------------------------------------------------
def _refused(args, out, capsys):
    before = folder_digest(out) if out.exists() else None
    assert main(["export", *args, "--output-dir", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("magicseg export: error: "), err
    assert (folder_digest(out) if out.exists() else None) == before
    return err


def test_bad_input(source, tmp_path, capsys):
    out = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _refused([str(empty)], out, capsys)
    assert "not a MagicSeg dataset folder" in err and "vocabulary.txt" in err and "data/train-NNNNN.parquet" in err
    err = _refused([str(source), "--format", "coco"], out, capsys)
    assert "'coco'" in err and "semantic, mmseg" in err

    stray = write_dataset_folder(tmp_path / "stray", num_rows=3, vocabulary=["cat", "dog"])
    (stray / "vocabulary.txt").write_text("cat\n")  # the rows name "dog", no longer a vocabulary line
    err = _refused([str(stray)], out, capsys)
    assert "'dog'" in err and "vocabulary.txt" in err

    big = write_dataset_folder(tmp_path / "big", num_rows=2, vocabulary=["cat", "dog"])
    (big / "vocabulary.txt").write_text("".join(f"class {k}\n" for k in range(300)) + "cat\ndog\n")
    assert "at most 254" in _refused([str(big)], out, capsys)

    export_dataset(source, out, progress=False)
    assert "--overwrite" in _refused([str(source)], out, capsys)
    assert "overlaps the source" in _refused([str(source)], source / "inside", capsys)
    assert not out.joinpath(".magicseg.lock").exists()


def test_help_answers_without_torch():
    code = ("import sys\nfrom magicseg_hf.cli import main\ntry:\n    main(['export', '--help'])\n"
            "except SystemExit:\n    pass\nassert 'torch' not in sys.modules and 'datasets' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--format" in result.stdout and "semantic" in result.stdout


# ----------------------------------------------------------------------------------------------
# The card of every MagicSeg folder; push
# ----------------------------------------------------------------------------------------------
def test_magicseg_card_says_label_is_per_row(source):
    text = (source / "README.md").read_text().split("---", 2)[2]
    first = "\n".join(line for line in text.splitlines() if line.strip())[:600]
    assert "per row" in first and "magicseg export DIR --format semantic" in first


def test_push_of_an_export(source, tmp_path, monkeypatch):
    out = tmp_path / "semantic"
    export_dataset(source, out, progress=False)
    before = folder_digest(out)
    hub = HubStandIn(tmp_path / "hub").install(monkeypatch)
    result = main(["push", str(out), "--repo-id", "alice/magicseg-semantic"])
    assert result == 0
    files = hub.files("alice/magicseg-semantic")
    assert {"README.md", ID2LABEL_FILE, LABEL2ID_FILE, EXPORT_FILE, "data/train-00000.parquet"} <= set(files)
    assert not any(name.startswith(".") for name in files)
    repo = hub.path("alice/magicseg-semantic")
    assert "--dataset_name alice/magicseg-semantic" in (repo / "README.md").read_text()
    pushed = datasets.load_dataset(str(repo), split="train")
    local = datasets.load_dataset(str(out), split="train")
    assert [r["id"] for r in pushed] == [r["id"] for r in local]
    assert all(np.array_equal(np.asarray(a["label"]), np.asarray(b["label"])) for a, b in zip(pushed, local))
    assert folder_digest(out) == before


# ----------------------------------------------------------------------------------------------
# transformers' semantic-segmentation recipe trains on the export as it is
# ----------------------------------------------------------------------------------------------
def test_segformer_trains_on_the_export_with_the_right_classes(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessor,
        Trainer,
        TrainingArguments,
    )

    src = write_procedural_dataset(tmp_path / "shapes", num_rows=12, size=32)
    out = tmp_path / "semantic"
    export_dataset(src, out, progress=False)

    # As the recipe does: id2label from the dataset's id2label.json, labels not reduced.
    id2label = {int(k): v for k, v in json.loads((out / ID2LABEL_FILE).read_text()).items()}
    label2id = {v: str(k) for k, v in id2label.items()}
    dataset = datasets.load_dataset(str(out), split="train")
    processor = SegformerImageProcessor(do_reduce_labels=False, do_resize=False)

    def preprocess(batch):
        inputs = processor([im.convert("RGB") for im in batch["image"]], [lb for lb in batch["label"]],
                           return_tensors="pt")
        inputs["id"] = batch["id"]
        return inputs

    dataset = dataset.with_transform(preprocess)
    seen_ids: list[list[str]] = []

    def collate(examples):
        seen_ids.append([e["id"] for e in examples])
        return {"pixel_values": torch.stack([e["pixel_values"] for e in examples]),
                "labels": torch.stack([e["labels"] for e in examples])}

    torch.manual_seed(0)
    config = SegformerConfig(
        num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32],
        patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2],
        decoder_hidden_size=32, num_labels=len(id2label), id2label=id2label, label2id=label2id,
    )
    model = SegformerForSemanticSegmentation(config)
    seen_labels: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda module, args, kwargs: seen_labels.append(kwargs["labels"].clone()),
                                    with_kwargs=True)
    before = [p.detach().clone() for p in model.parameters()]
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-3,
        use_cpu=True, report_to="none", save_strategy="no", remove_unused_columns=False,
        dataloader_num_workers=0, logging_steps=1, disable_tqdm=True,
    )
    result = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collate).train()
    assert np.isfinite(result.training_loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # it trained

    # Independent check: the classes named by the ids the model saw == each source row's classes with pixels.
    truth = {}
    for row_id, classes, _image, label in source_rows(src):
        truth[row_id] = {classes[v - 1] for v in np.unique(label).tolist() if 1 <= v <= len(classes)}
    assert len(seen_labels) == 3 and sum(len(ids) for ids in seen_ids) == 12
    for ids, labels in zip(seen_ids, seen_labels):
        for row_id, row_labels in zip(ids, labels):
            values = set(torch.unique(row_labels).tolist())
            assert values <= set(id2label) | {255}
            assert {id2label[v] for v in values if v not in (0, 255)} == truth[row_id], row_id
            assert truth[row_id]  # every procedural row shows at least one class


def test_export_python_api_refuses_unknown_format(source, tmp_path):
    with pytest.raises(InputError, match="known formats: semantic, mmseg"):
        export_dataset(source, tmp_path / "x", format="voc")
    assert not (tmp_path / "x").exists()
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_an_export_being_written_is_refused(source, tmp_path):
    from magicseg_hf.lock import FolderLock

    out = tmp_path / "busy"
    with FolderLock(out):
        with pytest.raises(InputError, match="being written by another magicseg run"):
            export_dataset(source, out, progress=False)
    assert [p.name for p in out.iterdir()] == []


def test_interrupted_mmseg_export_resumes_with_the_same_splits(source, tmp_path, monkeypatch):
    straight = export_dataset(source, tmp_path / "straight", format="mmseg", val_fraction=0.4, progress=False)
    real = export_core._write_mmseg_shard
    calls = []

    def dies_on_third_shard(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(export_core, "_write_mmseg_shard", dies_on_third_shard)
    with pytest.raises(KeyboardInterrupt):
        export_dataset(source, tmp_path / "resumed", format="mmseg", val_fraction=0.4, progress=False)
    monkeypatch.setattr(export_core, "_write_mmseg_shard", real)
    resumed = export_dataset(source, tmp_path / "resumed", format="mmseg", val_fraction=0.4, progress=False)
    assert resumed.resumed and resumed.shards_converted == 1
    assert resumed.splits == straight.splits
    for kind in ("img_dir", "ann_dir"):
        for split in ("train", "val"):
            names = sorted(p.name for p in (tmp_path / "straight" / kind / split).iterdir())
            assert names == sorted(p.name for p in (tmp_path / "resumed" / kind / split).iterdir())
    # Another val fraction is another export: without --overwrite the folder is refused.
    with pytest.raises(InputError, match="`overwrite`"):
        export_dataset(source, tmp_path / "resumed", format="mmseg", val_fraction=0.2, progress=False)
