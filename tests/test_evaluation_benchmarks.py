"""Benchmark readers on tiny folders in their real layouts, checked pixel by pixel."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from magicseg_hf.errors import InputError
from magicseg_hf.evaluation.benchmarks import (
    BENCHMARK_NAMES,
    COCO_THING_IDS,
    benchmark_classes,
    load_benchmark,
    read_class_file,
)


# ----------------------------------------------------------------------------------------------
# Writers of the layouts
# ----------------------------------------------------------------------------------------------
def voc_palette() -> list[int]:
    """PASCAL VOC's colour map (bit-interleaved), 256 RGB triples flattened."""
    palette = []
    for index in range(256):
        r = g = b = 0
        value = index
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette += [r, g, b]
    return palette


def save_jpeg(path: Path, height: int, width: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB").save(path, quality=95)


def save_palette_png(path: Path, indices: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    label = Image.fromarray(indices.astype(np.uint8), "P")
    label.putpalette(voc_palette())
    label.save(path)


def save_grey_png(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8), "L").save(path)


def voc_label(height: int, width: int, class_id: int) -> np.ndarray:
    """Background with one object rectangle and its 255 border, as VOC draws them."""
    label = np.zeros((height, width), dtype=np.uint8)
    label[2 : height - 2, 3 : width - 3] = 255
    label[3 : height - 3, 4 : width - 4] = class_id
    return label


def make_voc(root: Path) -> dict[str, np.ndarray]:
    """``root/VOCdevkit/VOC2012`` with two val images (and one train image)."""
    voc = root / "VOCdevkit" / "VOC2012"
    labels = {"2007_000032": voc_label(12, 16, 1), "2007_000039": voc_label(10, 14, 20)}
    labels["2007_000039"][0, 0] = 15  # a person pixel in a corner
    for index, (image_id, label) in enumerate(labels.items()):
        save_jpeg(voc / "JPEGImages" / f"{image_id}.jpg", *label.shape, seed=index)
        save_palette_png(voc / "SegmentationClass" / f"{image_id}.png", label)
    save_jpeg(voc / "JPEGImages" / "2007_000033.jpg", 8, 8)
    save_palette_png(voc / "SegmentationClass" / "2007_000033.png", voc_label(8, 8, 3))
    split_dir = voc / "ImageSets" / "Segmentation"
    split_dir.mkdir(parents=True)
    (split_dir / "val.txt").write_text("".join(f"{i}\n" for i in labels))
    (split_dir / "train.txt").write_text("2007_000033\n")
    return labels


def make_context(root: Path) -> dict[str, np.ndarray]:
    """``root/VOCdevkit/VOC2010`` with Context labels 0..59 (0 background) and a 255 pixel."""
    context = root / "VOCdevkit" / "VOC2010"
    rng = np.random.default_rng(1)
    labels = {}
    for index, image_id in enumerate(("2008_000002", "2008_000003")):
        label = rng.integers(0, 60, (9, 13)).astype(np.uint8)
        label[0, :3] = [0, 59, 255]
        labels[image_id] = label
        save_jpeg(context / "JPEGImages" / f"{image_id}.jpg", 9, 13, seed=index)
        save_grey_png(context / "SegmentationClassContext" / f"{image_id}.png", label)
    split_dir = context / "ImageSets" / "SegmentationContext"
    split_dir.mkdir(parents=True)
    (split_dir / "val.txt").write_text("\n".join(labels) + "\n")
    return labels


# ----------------------------------------------------------------------------------------------
# PASCAL VOC
# ----------------------------------------------------------------------------------------------
def test_voc21_reads_palette_indices_and_keeps_the_255_border(tmp_path: Path):
    labels = make_voc(tmp_path)
    benchmark = load_benchmark("voc21", data_dir=tmp_path)
    assert (benchmark.num_labels, benchmark.ignore_index, benchmark.has_background) == (21, 255, True)
    assert benchmark.class_names[0] == "background" and benchmark.class_names[20] == "tv monitor"
    assert benchmark.class_synonyms[20] == ("tv monitor", "television monitor")
    samples = list(benchmark)
    assert [sample.image_id for sample in samples] == list(labels)
    for sample in samples:
        expected = labels[sample.image_id]
        assert sample.image.mode == "RGB" and sample.image.size == (expected.shape[1], expected.shape[0])
        np.testing.assert_array_equal(sample.label, expected)  # indices, not grey levels of the palette
    assert set(np.unique(samples[1].label).tolist()) == {0, 15, 20, 255}


@pytest.mark.parametrize("where", ["", "VOCdevkit", "VOCdevkit/VOC2012"])
def test_voc21_data_dir_may_be_the_parent_the_devkit_or_the_year_folder(tmp_path: Path, where: str):
    make_voc(tmp_path)
    benchmark = load_benchmark("voc21", data_dir=tmp_path / where)
    assert benchmark.root == tmp_path / "VOCdevkit" / "VOC2012"
    assert benchmark.image_ids == ["2007_000032", "2007_000039"]


def test_split_and_limit(tmp_path: Path):
    make_voc(tmp_path)
    assert load_benchmark("voc21", data_dir=tmp_path, split="train").image_ids == ["2007_000033"]
    limited = load_benchmark("voc21", data_dir=tmp_path, limit=1)
    assert len(limited) == 1 and len(list(limited)) == 1
    with pytest.raises(InputError, match=r"limit must be a positive integer \(got 0\)"):
        load_benchmark("voc21", data_dir=tmp_path, limit=0)


def test_missing_or_unrecognised_data_dir_names_the_expected_layout(tmp_path: Path):
    with pytest.raises(InputError, match="does not exist") as missing:
        load_benchmark("voc21", data_dir=tmp_path / "nowhere")
    (tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages").mkdir(parents=True)
    with pytest.raises(InputError) as unrecognised:
        load_benchmark("voc21", data_dir=tmp_path)
    message = str(unrecognised.value)
    assert (
        "VOCdevkit/VOC2012/" in message
        and "SegmentationClass/" in message
        and "ImageSets/Segmentation/" in message
    )
    with pytest.raises(InputError, match="needs a data directory"):
        load_benchmark("context60")
    for error in (missing.value, unrecognised.value):
        assert "\n" not in str(error)


def test_split_list_naming_a_missing_file_is_one_line(tmp_path: Path):
    make_voc(tmp_path)
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    (voc / "SegmentationClass" / "2007_000039.png").unlink()
    with pytest.raises(InputError) as error:
        load_benchmark("voc21", data_dir=tmp_path)
    assert (
        "2007_000039" in str(error.value) and "val.txt" in str(error.value) and "\n" not in str(error.value)
    )
    (voc / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(InputError, match=r"split list .*val\.txt does not exist"):
        load_benchmark("voc21", data_dir=tmp_path)


def test_label_of_another_size_than_its_image_is_an_input_error(tmp_path: Path):
    make_voc(tmp_path)
    save_palette_png(
        tmp_path / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000039.png", np.zeros((10, 15))
    )
    samples = iter(load_benchmark("voc21", data_dir=tmp_path))
    next(samples)  # the first image is fine
    with pytest.raises(InputError, match=r"is 15x10 but its image .* is 14x10 \(width x height\)"):
        next(samples)


def test_colour_label_pngs_are_refused(tmp_path: Path):
    make_voc(tmp_path)
    path = tmp_path / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000032.png"
    Image.open(path).convert("RGB").save(path)
    with pytest.raises(InputError, match="must store class indices .*got mode RGB"):
        next(iter(load_benchmark("voc21", data_dir=tmp_path)))


# ----------------------------------------------------------------------------------------------
# PASCAL Context
# ----------------------------------------------------------------------------------------------
def test_context60_keeps_the_stored_ids(tmp_path: Path):
    labels = make_context(tmp_path)
    benchmark = load_benchmark("context60", data_dir=tmp_path / "VOCdevkit")
    assert (benchmark.num_labels, benchmark.has_background) == (60, True)
    assert benchmark.class_names[:2] == ("background", "aeroplane")
    for sample in benchmark:
        np.testing.assert_array_equal(sample.label, labels[sample.image_id])


def test_context59_makes_background_ignored_and_shifts_the_classes(tmp_path: Path):
    labels = make_context(tmp_path)
    benchmark = load_benchmark("context59", data_dir=tmp_path / "VOCdevkit" / "VOC2010")
    assert (benchmark.num_labels, benchmark.has_background, benchmark.ignore_index) == (59, False, 255)
    assert benchmark.class_names[0] == "aeroplane" and benchmark.class_names[-1] == "wood"
    for sample in benchmark:
        stored = labels[sample.image_id]
        for (y, x), value in np.ndenumerate(stored):
            expected = 255 if value in (0, 255) else value - 1
            assert sample.label[y, x] == expected
        assert sample.label[0, :3].tolist() == [255, 58, 255]


def test_context_layout_is_told_apart_from_voc(tmp_path: Path):
    make_voc(tmp_path)
    with pytest.raises(InputError, match="VOCdevkit/VOC2010/ with JPEGImages/, SegmentationClassContext/"):
        load_benchmark("context59", data_dir=tmp_path)


# ----------------------------------------------------------------------------------------------
# COCO-Object
# ----------------------------------------------------------------------------------------------
def test_coco_thing_ids_match_the_class_names():
    names = [synonyms[0] for synonyms in benchmark_classes("coco-object")]
    assert len(COCO_THING_IDS) == 80 and names[0] == "background"
    by_category = dict(zip(COCO_THING_IDS, names[1:]))
    # COCO's own category ids for a few classes.
    assert by_category[1] == "person" and by_category[13] == "stop sign" and by_category[44] == "bottle"
    assert (
        by_category[62] == "chair" and by_category[67] == "dining table" and by_category[90] == "toothbrush"
    )
    assert not {12, 26, 29, 30, 45, 66, 68, 69, 71, 83} & set(COCO_THING_IDS)


def test_coco_object_from_stuffthingmaps(tmp_path: Path):
    coco = tmp_path / "coco_stuff164k"
    # mmseg's converted maps: train ids 0..79 things, 80..170 stuff.
    converted = np.array([[0, 79, 80, 170], [255, 5, 100, 0]], dtype=np.uint8)
    # COCO-Stuff's raw maps: category id - 1 (things 0..89 with gaps, stuff 91..181).
    raw = np.array([[0, 89, 91, 181], [255, 11, 17, 61]], dtype=np.uint8)
    save_jpeg(coco / "images" / "val2017" / "000000000139.jpg", 2, 4)
    save_grey_png(coco / "annotations" / "val2017" / "000000000139_labelTrainIds.png", converted)
    save_grey_png(coco / "annotations" / "val2017" / "000000000139.png", raw)  # ignored: converted wins
    save_jpeg(coco / "images" / "val2017" / "000000000285.jpg", 2, 4)
    save_grey_png(coco / "annotations" / "val2017" / "000000000285.png", raw)
    for where in (tmp_path, coco):
        benchmark = load_benchmark("coco-object", data_dir=where)
        assert (benchmark.num_labels, benchmark.has_background, benchmark.source, benchmark.unlabeled) == (
            81,
            True,
            "stuffthingmaps",
            "background",
        )
        first, second = list(benchmark)
        assert (first.image_id, second.image_id) == ("000000000139", "000000000285")
        # things -> 1..80, stuff -> 0 (background), unlabeled 255 -> 0: background, scored, as the
        # reference harnesses' convert_coco_object scripts make it.
        assert first.label.tolist() == [[1, 80, 0, 0], [0, 6, 0, 1]]
        # person (id 1) -> 1, toothbrush (90) -> 80, stuff -> 0, unused id 12 -> 255, dog (18) -> 17, chair (62) -> 57.
        assert second.label.tolist() == [[1, 80, 0, 0], [0, 255, 17, 57]]
    # The other reading, on request: unlabeled pixels ignored.
    ignored = load_benchmark("coco-object", data_dir=tmp_path, coco_object_unlabeled="ignore")
    first, second = list(ignored)
    assert first.label.tolist() == [[1, 80, 0, 0], [255, 6, 0, 1]]
    assert second.label.tolist() == [[1, 80, 0, 0], [255, 255, 17, 57]]
    assert ignored.describe()["unlabeled"] == "ignore"
    # The references' own converted files (*_instanceTrainIds.png, 0..80) are read as they are.
    save_grey_png(coco / "annotations" / "val2017" / "000000000285_instanceTrainIds.png",
                  np.array([[3, 0, 0, 80], [0, 0, 1, 2]], dtype=np.uint8))
    _, second = list(load_benchmark("coco-object", data_dir=tmp_path))
    assert second.label.tolist() == [[3, 0, 0, 80], [0, 0, 1, 2]]
    assert benchmark.class_names[17] == "dog" and benchmark.class_names[57] == "chair"


def test_coco_object_image_without_label_is_an_input_error(tmp_path: Path):
    save_jpeg(tmp_path / "images" / "val2017" / "000000000001.jpg", 2, 2)
    (tmp_path / "annotations" / "val2017").mkdir(parents=True)
    with pytest.raises(InputError, match="000000000001 .* has no label 000000000001_labelTrainIds.png"):
        load_benchmark("coco-object", data_dir=tmp_path)
    with pytest.raises(InputError, match="source must be one of stuffthingmaps, instances"):
        load_benchmark("coco-object", data_dir=tmp_path, coco_object_source="panoptic")


def test_coco_object_from_instances(tmp_path: Path):
    mask_utils = pytest.importorskip("pycocotools.mask")
    height, width = 6, 8
    coco = tmp_path / "coco"
    save_jpeg(coco / "val2017" / "000000000001.jpg", height, width)
    bottle = np.zeros((height, width), dtype=np.uint8, order="F")
    bottle[5, 6:8] = 1
    compressed = mask_utils.encode(bottle)
    compressed["counts"] = compressed["counts"].decode("ascii")
    annotations = [
        # person (category 1): polygon rectangle covering columns 0..5, rows 0..3, the largest.
        {"id": 1, "image_id": 1, "category_id": 1, "area": 24.0, "iscrowd": 0, "segmentation": [[0, 0, 6, 0, 6, 4, 0, 4]]},
        # dog (category 18): a smaller rectangle on top of the person: columns 4..6, rows 2..4.
        {"id": 2, "image_id": 1, "category_id": 18, "area": 9.0, "iscrowd": 0, "segmentation": [[4, 2, 7, 2, 7, 5, 4, 5]]},
        # toothbrush (category 90): uncompressed RLE, column-major: column 7, rows 0..1.
        {"id": 3, "image_id": 1, "category_id": 90, "area": 2.0, "iscrowd": 1,
         "segmentation": {"counts": [7 * height, 2, height - 2], "size": [height, width]}},
        # bottle (category 44): compressed RLE, row 5, columns 6..7.
        {"id": 4, "image_id": 1, "category_id": 44, "area": 2.0, "iscrowd": 0, "segmentation": compressed},
    ]  # fmt: skip
    content = {
        "images": [{"id": 1, "file_name": "000000000001.jpg", "height": height, "width": width}],
        "annotations": annotations,
        "categories": [{"id": i, "name": str(i)} for i in COCO_THING_IDS],
    }
    (coco / "annotations").mkdir()
    (coco / "annotations" / "instances_val2017.json").write_text(json.dumps(content))
    benchmark = load_benchmark("coco-object", data_dir=tmp_path, coco_object_source="instances")
    assert benchmark.source == "instances" and benchmark.num_labels == 81
    (sample,) = list(benchmark)
    person, dog, toothbrush, bottle_id = 1, 17, 80, 40
    expected = np.zeros((height, width), dtype=np.uint8)
    expected[0:4, 0:6] = person
    expected[2:5, 4:7] = dog
    expected[0:2, 7] = toothbrush
    expected[5, 6:8] = bottle_id
    assert sample.image_id == "000000000001"
    np.testing.assert_array_equal(sample.label, expected)


def test_coco_instances_without_pycocotools_or_json_are_input_errors(tmp_path: Path, monkeypatch):
    with pytest.raises(InputError, match="no COCO instances layout .*annotations/instances_val2017.json"):
        load_benchmark("coco-object", data_dir=tmp_path, coco_object_source="instances")
    (tmp_path / "val2017").mkdir()
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text('{"images": [], "annotations": []}')
    import sys

    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(InputError, match=r"needs pycocotools \(pip install pycocotools\)"):
        load_benchmark("coco-object", data_dir=tmp_path, coco_object_source="instances")


# ----------------------------------------------------------------------------------------------
# A dataset folder of this project
# ----------------------------------------------------------------------------------------------
def png_bytes(array: np.ndarray, mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def write_folder(folder: Path, vocabulary: list[str], rows: list[tuple[str, list[str], np.ndarray]]) -> None:
    """A dataset folder with the columns the reader uses, as ``datasets`` stores images in parquet."""
    (folder / "data").mkdir(parents=True)
    (folder / "vocabulary.txt").write_text("\n".join(vocabulary) + "\n")
    table = pa.table(
        {
            "id": [row_id for row_id, _, _ in rows],
            "image": [
                {"bytes": png_bytes(np.full((*label.shape, 3), 90, np.uint8), "RGB"), "path": None}
                for _, _, label in rows
            ],
            "label": [{"bytes": png_bytes(label, "L"), "path": None} for _, _, label in rows],
            "classes": [classes for _, classes, _ in rows],
        }
    )
    pq.write_table(table, folder / "data" / "train-00000.parquet")


def test_dataset_folder_uses_global_vocabulary_ids(tmp_path: Path):
    vocabulary = ["cat", "dog", "bow (weapon)"]
    first = np.array([[0, 1, 2], [255, 2, 0]], dtype=np.uint8)  # classes ["dog", "cat"]
    second = np.array([[1, 1, 0]], dtype=np.uint8)  # classes ["bow (weapon)"]
    write_folder(tmp_path / "ds", vocabulary, [("a", ["dog", "cat"], first), ("b", ["bow (weapon)"], second)])
    benchmark = load_benchmark(tmp_path / "ds")
    assert benchmark.class_names == ("background", "cat", "dog", "bow (weapon)")
    assert (benchmark.num_labels, benchmark.ignore_index, benchmark.has_background) == (4, 255, True)
    samples = list(benchmark)
    assert [sample.image_id for sample in samples] == ["a", "b"]
    assert samples[0].label.tolist() == [[0, 2, 1], [255, 1, 0]]  # dog = 2, cat = 1
    assert samples[1].label.tolist() == [[3, 3, 0]]
    assert samples[0].image.mode == "RGB" and samples[0].image.size == (3, 2)
    assert [sample.image_id for sample in load_benchmark(tmp_path / "ds", limit=1)] == ["a"]


def test_dataset_folder_with_a_large_vocabulary_moves_the_ignore_value(tmp_path: Path):
    vocabulary = [f"class {i}" for i in range(300)]
    label = np.array([[0, 1, 255]], dtype=np.uint8)
    write_folder(tmp_path / "ds", vocabulary, [("a", ["class 299"], label)])
    benchmark = load_benchmark(tmp_path / "ds")
    assert (benchmark.num_labels, benchmark.ignore_index) == (301, 301)
    (sample,) = list(benchmark)
    assert sample.label.dtype == np.int64 and sample.label.tolist() == [[0, 300, 301]]


def test_dataset_folder_bad_rows_are_input_errors(tmp_path: Path):
    write_folder(tmp_path / "unknown", ["cat"], [("a", ["dog"], np.zeros((1, 2), np.uint8))])
    with pytest.raises(InputError, match="row a .* names class 'dog', which vocabulary.txt does not list"):
        list(load_benchmark(tmp_path / "unknown"))
    write_folder(tmp_path / "overflow", ["cat", "dog"], [("a", ["cat"], np.array([[0, 2]], np.uint8))])
    with pytest.raises(InputError, match="label holds class id 2 but the row lists 1 classes"):
        list(load_benchmark(tmp_path / "overflow"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="has no vocabulary.txt"):
        load_benchmark(tmp_path / "empty")


def test_unknown_benchmark_is_one_line():
    with pytest.raises(InputError) as error:
        load_benchmark("ade20k")
    assert str(error.value) == (
        "unknown benchmark 'ade20k' (expected one of voc21, voc20, context60, context59, coco-object or a dataset folder)"
    )


# ----------------------------------------------------------------------------------------------
# Class files
# ----------------------------------------------------------------------------------------------
def test_packaged_class_files_have_one_line_per_label():
    counts = {name: len(benchmark_classes(name)) for name in BENCHMARK_NAMES}
    assert counts == {"voc21": 21, "voc20": 20, "context60": 60, "context59": 59, "coco-object": 81}
    assert benchmark_classes("context60")[1:] == benchmark_classes("context59")
    assert benchmark_classes("voc21")[1:] == benchmark_classes("voc20")
    for name in ("voc21", "context60", "coco-object"):
        assert benchmark_classes(name)[0] == ("background",)


def test_class_file_synonyms(tmp_path: Path):
    path = tmp_path / "classes.txt"
    path.write_text("background\nperson, person in shirt\n\n  tv monitor ,television \n")
    assert read_class_file(path) == (
        ("background",),
        ("person", "person in shirt"),
        ("tv monitor", "television"),
    )
    path.write_text("cat,\n")
    with pytest.raises(InputError, match="line 1 has an empty name"):
        read_class_file(path)


def test_coco_instances_file_that_is_not_json_is_one_line(tmp_path: Path):
    pytest.importorskip("pycocotools.mask")
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "val2017").mkdir()
    (coco / "annotations" / "instances_val2017.json").write_text("{not json")
    with pytest.raises(InputError, match="instances_val2017.json is not readable"):
        load_benchmark("coco-object", data_dir=tmp_path, coco_object_source="instances")
