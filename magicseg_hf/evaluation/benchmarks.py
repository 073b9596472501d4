"""Readers of the zero-shot segmentation benchmarks, in the layouts mmsegmentation's preparation writes.

=================  =========================================================================  ======
name               layout under ``data_dir`` (``data_dir`` may also be any folder shown)       labels
=================  =========================================================================  ======
``voc21``          ``VOCdevkit/VOC2012/``: ``JPEGImages/``, ``SegmentationClass/`` (palette    21
                   PNGs, 255 on object borders), ``ImageSets/Segmentation/val.txt``
``voc20``          the same files; background becomes ignore (255), 1..20 become 0..19         20
``context60``      ``VOCdevkit/VOC2010/``: ``JPEGImages/``, ``SegmentationClassContext/``      60
                   (0 background, 1..59), ``ImageSets/SegmentationContext/val.txt``
``context59``      the same files; background becomes ignore (255), 1..59 become 0..58         59
``coco-object``    ``coco_stuff164k/``: ``images/val2017/*.jpg`` and ``annotations/val2017/``  81
                   (``*_labelTrainIds.png`` as mmseg converts them, else the 0..181 maps of
                   COCO-Stuff's stuffthingmaps): the 80 things -> 1..80, stuff -> 0
                   (background), 255 ignore. ``source="instances"``: instance masks of
                   ``annotations/instances_val2017.json`` merged per category (pycocotools)
DIR                a dataset folder of this project (``vocabulary.txt``,                       1+V
                   ``data/train-*.parquet``): a row's class ``i`` becomes the global id
                   ``vocabulary.index(classes[i-1]) + 1``, 0 stays background
=================  =========================================================================  ======

``data_dir`` may be the folder holding ``VOCdevkit`` (or ``coco_stuff164k``), ``VOCdevkit`` itself,
or ``VOC2012``/``VOC2010`` (``coco_stuff164k``) itself. Label PNGs are read as stored indices (a
palette PNG gives its indices; it is never converted to grey levels).

Class names live in ``classes/<name>.txt`` (package data), one class per line in label-id order; a
line may list synonyms separated by commas (``tv monitor, television monitor``), whose text
embeddings the model averages; the first is the class's display name.

Each benchmark is an iterable of :class:`BenchmarkSample` ``(image_id, image, label)``: a PIL RGB
image and its (H, W) label array (uint8, or int64 where ids pass 255), read lazily one at a time.
Bad input (no layout under ``data_dir``, a split list naming a missing file, a label of another
size than its image) raises :class:`~magicseg_hf.errors.InputError` with one line.

Example::

    from magicseg_hf.evaluation.benchmarks import load_benchmark

    benchmark = load_benchmark("voc21", data_dir="data")       # data/VOCdevkit/VOC2012
    print(benchmark.num_labels, benchmark.class_names[:3])     # 21 ('background', 'aeroplane', 'bicycle')
    for image_id, image, label in benchmark:
        ...
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from magicseg_hf.errors import InputError, first_line
from magicseg_hf.labels import BACKGROUND, UNKNOWN
from magicseg_hf.schema import DATA_DIR, VOCABULARY_FILE

logger = logging.getLogger(__name__)

#: The named benchmarks (anything else must be a dataset folder).
BENCHMARK_NAMES = ("voc21", "voc20", "context60", "context59", "coco-object")
#: Where COCO-Object's labels come from: COCO-Stuff's maps (default) or the instance annotations.
COCO_OBJECT_SOURCES = ("stuffthingmaps", "instances")
#: The package-data folder of the class files.
CLASSES_DIR = Path(__file__).with_name("classes")
#: COCO-Stuff's unlabeled pixels (255): background (scored, as the reference harnesses) or ignored.
COCO_OBJECT_UNLABELED = ("background", "ignore")
#: Label PNG modes that hold class indices (P: palette indices, L: one byte per pixel).
INDEX_MODES = ("P", "L")

#: COCO category ids of the 80 thing classes, in label order (COCO-Object id k+1 = the k-th).
COCO_THING_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
    67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)  # fmt: skip
#: COCO-Stuff's stuff classes are category ids 92..182 (stuffthingmaps values 91..181).
COCO_STUFF_IDS = tuple(range(92, 183))
#: mmseg's ``*_labelTrainIds.png``: things are train ids 0..79, stuff 80..170.
COCO_TRAIN_ID_THINGS = 80
COCO_TRAIN_ID_CLASSES = 171


def read_class_file(path: str | Path) -> tuple[tuple[str, ...], ...]:
    """The classes of a class file: per non-blank line, its comma-separated synonyms (stripped).

    Raises:
        InputError: when the file is missing or a line holds an empty synonym.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"class file {path} does not exist") from None
    classes = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        synonyms = tuple(name.strip() for name in line.split(","))
        if not all(synonyms):
            raise InputError(f"class file {path} line {number} has an empty name (got {line!r})")
        classes.append(synonyms)
    return tuple(classes)


def benchmark_classes(name: str) -> tuple[tuple[str, ...], ...]:
    """The packaged classes of named benchmark ``name`` (synonyms per class, label-id order)."""
    if name not in BENCHMARK_NAMES:
        raise InputError(f"unknown benchmark {name!r} (expected one of {', '.join(BENCHMARK_NAMES)})")
    return read_class_file(CLASSES_DIR / f"{name.replace('-', '_')}.txt")


class BenchmarkSample(NamedTuple):
    """One evaluation image: its id, the RGB image and its (H, W) label array."""

    image_id: str
    image: Image.Image
    label: np.ndarray


@dataclass(frozen=True)
class _LabelledFile:
    """One image of a file-based benchmark: the image, its label PNG and the label value table."""

    image_id: str
    image_path: Path
    label_path: Path
    table: np.ndarray | None  # (256,) uint8 stored value -> benchmark id, or None to keep values
    max_stored: int  # the largest value the label PNG may store besides 255 (ignore)


class Benchmark:
    """A benchmark: its classes, label conventions and images (iterate for :class:`BenchmarkSample`).

    Attributes:
        name: ``voc21``, ``voc20``, ``context60``, ``context59``, ``coco-object`` or the dataset folder's path.
        split: the split read (``val``, ``val2017``, ``train`` for a dataset folder).
        root: the folder the layout was found in.
        class_synonyms: per class, its names (the first is the display name), in label-id order.
        ignore_index: label value of pixels left out of the metric.
        has_background: whether class 0 is "background" (predictions of no class then count as it).
        source: where the labels come from, when a benchmark has several (COCO-Object), else None.
        unlabeled: how COCO-Stuff's unlabeled pixels are read (``background`` or ``ignore``), else None.
    """

    def __init__(
        self,
        name: str,
        split: str,
        root: Path,
        class_synonyms: Sequence[Sequence[str]],
        ignore_index: int = UNKNOWN,
        has_background: bool = True,
        source: str | None = None,
        unlabeled: str | None = None,
    ) -> None:
        self.unlabeled = unlabeled
        self.name = name
        self.split = split
        self.root = root
        self.class_synonyms = tuple(tuple(names) for names in class_synonyms)
        self.ignore_index = ignore_index
        self.has_background = has_background
        self.source = source

    @property
    def class_names(self) -> tuple[str, ...]:
        """The display name of each class (its first synonym), in label-id order."""
        return tuple(names[0] for names in self.class_synonyms)

    @property
    def num_labels(self) -> int:
        """Number of classes (background included where the benchmark has it)."""
        return len(self.class_synonyms)

    @property
    def image_ids(self) -> list[str]:
        """The ids of the images, in reading order."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.image_ids)

    def __iter__(self) -> Iterator[BenchmarkSample]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, root='{self.root}', "
            f"num_images={len(self)}, num_labels={self.num_labels})"
        )

    def describe(self) -> dict[str, Any]:
        """The benchmark's settings as plain values (for a results file)."""
        return {
            "benchmark": self.name,
            "split": self.split,
            "source": self.source,
            "unlabeled": self.unlabeled,
            "data_dir": str(self.root),
            "num_images": len(self),
            "num_labels": self.num_labels,
            "ignore_index": self.ignore_index,
            "has_background": self.has_background,
            "class_names": list(self.class_names),
        }


def _read_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:  # truncated, not an image, too large
        raise InputError(f"image {path} is not a readable image ({first_line(error)})") from None


def _read_index_png(path: Path) -> np.ndarray:
    """The stored indices of a label PNG, (H, W) uint8 (palette indices for mode P, never grey levels)."""
    try:
        with Image.open(path) as label:
            if label.mode not in INDEX_MODES:
                raise InputError(
                    f"label {path} must store class indices (mode {' or '.join(INDEX_MODES)}; got mode {label.mode})"
                )
            return np.array(label, dtype=np.uint8)
    except InputError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(f"label {path} is not a readable PNG ({first_line(error)})") from None


def _check_stored_values(label: np.ndarray, item: _LabelledFile) -> None:
    """Refuse a label PNG holding a value no class of the benchmark has (a grey-converted VOC palette PNG
    looks like this): its pixels would silently leave the metric."""
    outside = np.unique(label[(label > item.max_stored) & (label != UNKNOWN)])
    if outside.size:
        values = ", ".join(str(int(v)) for v in outside[:5])
        raise InputError(
            f"label {item.label_path} holds value(s) {values} outside the benchmark's stored values "
            f"0..{item.max_stored} and {UNKNOWN} (ignore): is it a class-index PNG of this benchmark?"
        )


def _check_same_size(label: np.ndarray, image: Image.Image, label_source: str, image_source: str) -> None:
    if label.shape != (image.height, image.width):
        raise InputError(
            f"label {label_source} is {label.shape[1]}x{label.shape[0]} but its image {image_source} is "
            f"{image.width}x{image.height} (width x height)"
        )


class FileBenchmark(Benchmark):
    """A benchmark of image files and label PNGs (VOC, Context, COCO-Stuff maps), read lazily."""

    def __init__(self, files: Sequence[_LabelledFile], **settings: Any) -> None:
        super().__init__(**settings)
        self.files = list(files)

    @property
    def image_ids(self) -> list[str]:
        return [item.image_id for item in self.files]

    def __iter__(self) -> Iterator[BenchmarkSample]:
        for item in self.files:
            image = _read_rgb(item.image_path)
            label = _read_index_png(item.label_path)
            _check_same_size(label, image, str(item.label_path), str(item.image_path))
            _check_stored_values(label, item)
            if item.table is not None:
                label = item.table[label]
            yield BenchmarkSample(item.image_id, image, label)


# ----------------------------------------------------------------------------------------------
# Finding a layout under --data-dir
# ----------------------------------------------------------------------------------------------
def _existing_dir(data_dir: str | Path | None, benchmark: str) -> Path:
    if data_dir is None:
        raise InputError(f"benchmark {benchmark} needs a data directory (got none)")
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise InputError(f"data directory {path} does not exist or is not a folder")
    return path


def _find_layout(data_dir: Path, candidates: Sequence[str], required: Sequence[str], expected: str) -> Path:
    """The first of ``data_dir/candidate`` that holds every ``required`` folder, else InputError."""
    for candidate in candidates:
        root = data_dir / candidate if candidate else data_dir
        if all((root / part).is_dir() for part in required):
            logger.info("found the %s layout in %s", expected, root)
            return root
    raise InputError(
        f"no {expected} layout found under {data_dir} (expected {_describe(candidates, required)})"
    )


def _describe(candidates: Sequence[str], required: Sequence[str]) -> str:
    where = next(c for c in reversed(candidates) if c)
    return f"{where}/ with " + ", ".join(f"{part}/" for part in required)


def _split_ids(list_path: Path) -> list[str]:
    if not list_path.is_file():
        raise InputError(f"split list {list_path} does not exist")
    try:
        text = list_path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"split list {list_path} is not a text file of image ids (not UTF-8 text)") from None
    if "\x00" in text:
        raise InputError(f"split list {list_path} is not a text file of image ids (it holds NUL bytes)")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _limited(ids: list[str], limit: int | None) -> list[str]:
    if limit is None:
        return ids
    if limit < 1:
        raise InputError(f"limit must be a positive integer (got {limit})")
    return ids[:limit]


def _listed_files(
    ids: Sequence[str],
    list_path: Path | str,
    image_dir: Path,
    label_dir: Path,
    table: np.ndarray | None,
    max_stored: int,
) -> list[_LabelledFile]:
    files = []
    for image_id in ids:
        image_path, label_path = image_dir / f"{image_id}.jpg", label_dir / f"{image_id}.png"
        for path in (image_path, label_path):
            if not path.is_file():
                raise InputError(f"split list {list_path} names {image_id} but {path} does not exist")
        files.append(_LabelledFile(image_id, image_path, label_path, table, max_stored))
    return files


# ----------------------------------------------------------------------------------------------
# Label value tables (stored PNG value -> benchmark id)
# ----------------------------------------------------------------------------------------------
def drop_background_table() -> np.ndarray:
    """Background ignored (mmseg's ``reduce_zero_label``): 0 and 255 -> 255, ``v`` -> ``v - 1``.

    VOC 0..20 -> voc20's 20 classes; Context 0..59 -> context59's 59 classes."""
    table = np.arange(256, dtype=np.int64) - 1
    table[0] = UNKNOWN
    table[UNKNOWN] = UNKNOWN
    return table.astype(np.uint8)


def _coco_unlabeled_value(unlabeled: str) -> int:
    if unlabeled not in COCO_OBJECT_UNLABELED:
        raise InputError(
            f"COCO-Object unlabeled pixels must be one of {', '.join(COCO_OBJECT_UNLABELED)} (got {unlabeled!r})"
        )
    return BACKGROUND if unlabeled == "background" else UNKNOWN


def coco_train_ids_table(unlabeled: str = "background") -> np.ndarray:
    """mmseg's COCO-Stuff train ids (things 0..79, stuff 80..170, 255 unlabeled) -> COCO-Object (1..80,
    stuff 0; unlabeled 0 by default, as the references' ``convert_coco_object`` scripts make it, or 255)."""
    table = np.full(256, UNKNOWN, dtype=np.uint8)
    table[:COCO_TRAIN_ID_THINGS] = np.arange(1, COCO_TRAIN_ID_THINGS + 1)
    table[COCO_TRAIN_ID_THINGS:COCO_TRAIN_ID_CLASSES] = BACKGROUND
    table[UNKNOWN] = _coco_unlabeled_value(unlabeled)
    return table


def coco_stuffthingmaps_table(unlabeled: str = "background") -> np.ndarray:
    """COCO-Stuff's stuffthingmaps (value = category id - 1, 255 unlabeled) -> COCO-Object (things 1..80,
    stuff 0; unlabeled 0 by default, as the references' ``convert_coco_object`` scripts make it, or 255)."""
    table = np.full(256, UNKNOWN, dtype=np.uint8)
    for position, category_id in enumerate(COCO_THING_IDS, start=1):
        table[category_id - 1] = position
    for category_id in COCO_STUFF_IDS:
        table[category_id - 1] = BACKGROUND
    table[UNKNOWN] = _coco_unlabeled_value(unlabeled)
    return table


# ----------------------------------------------------------------------------------------------
# The readers
# ----------------------------------------------------------------------------------------------
def load_voc21(
    data_dir: str | Path | None, split: str = "val", limit: int | None = None, name: str = "voc21"
) -> FileBenchmark:
    """PASCAL VOC 2012: ``voc21`` (with background: 21 labels) or ``voc20`` (background ignored, as
    ZegCLIP, SCLIP and NACLIP evaluate it: 20 labels); 255 (object borders) ignored."""
    if name not in ("voc21", "voc20"):
        raise InputError(f"PASCAL VOC benchmarks are voc21 and voc20 (got {name!r})")
    required = ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation")
    root = _find_layout(
        _existing_dir(data_dir, name), ("", "VOC2012", "VOCdevkit/VOC2012"), required, "PASCAL VOC 2012"
    )
    list_path = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    ids = _limited(_split_ids(list_path), limit)
    with_background = name == "voc21"
    table = None if with_background else drop_background_table()
    files = _listed_files(ids, list_path, root / "JPEGImages", root / "SegmentationClass", table, 20)
    return FileBenchmark(
        files, name=name, split=split, root=root, class_synonyms=benchmark_classes(name),
        has_background=with_background,
    )


def load_context(
    data_dir: str | Path | None, name: str = "context60", split: str = "val", limit: int | None = None
) -> FileBenchmark:
    """PASCAL Context (VOC 2010): ``context60`` (0 background, 1..59) or ``context59`` (no background)."""
    if name not in ("context60", "context59"):
        raise InputError(f"PASCAL Context benchmarks are context60 and context59 (got {name!r})")
    required = ("JPEGImages", "SegmentationClassContext", "ImageSets/SegmentationContext")
    root = _find_layout(
        _existing_dir(data_dir, name),
        ("", "VOC2010", "VOCdevkit/VOC2010"),
        required,
        "PASCAL Context (VOC 2010)",
    )
    list_path = root / "ImageSets" / "SegmentationContext" / f"{split}.txt"
    ids = _limited(_split_ids(list_path), limit)
    with_background = name == "context60"
    table = None if with_background else drop_background_table()
    files = _listed_files(ids, list_path, root / "JPEGImages", root / "SegmentationClassContext", table, 59)
    return FileBenchmark(
        files,
        name=name,
        split=split,
        root=root,
        class_synonyms=benchmark_classes(name),
        has_background=with_background,
    )


def load_coco_object(
    data_dir: str | Path | None,
    split: str = "val2017",
    source: str = "stuffthingmaps",
    limit: int | None = None,
    unlabeled: str = "background",
) -> Benchmark:
    """COCO-Object: 80 things + background, from COCO-Stuff's maps or the instance annotations.

    COCO-Stuff's unlabeled pixels (255) are background and scored by default, as the reference
    harnesses build COCO-Object; ``unlabeled="ignore"`` leaves them out of the metric."""
    if source not in COCO_OBJECT_SOURCES:
        raise InputError(
            f"COCO-Object source must be one of {', '.join(COCO_OBJECT_SOURCES)} (got {source!r})"
        )
    data_dir = _existing_dir(data_dir, "coco-object")
    if source == "instances":
        return _load_coco_instances(data_dir, split, limit)
    required = (f"images/{split}", f"annotations/{split}")
    root = _find_layout(data_dir, ("", "coco_stuff164k"), required, "COCO-Stuff 164k")
    image_dir, label_dir = root / "images" / split, root / "annotations" / split
    ids = _limited(sorted(path.stem for path in image_dir.glob("*.jpg")), limit)
    if not ids:
        raise InputError(f"no images in {image_dir} (expected {split} JPEG files)")
    train_ids, stuffthingmaps = coco_train_ids_table(unlabeled), coco_stuffthingmaps_table(unlabeled)
    files = []
    for image_id in ids:
        converted, raw = label_dir / f"{image_id}_labelTrainIds.png", label_dir / f"{image_id}.png"
        reference = label_dir / f"{image_id}_instanceTrainIds.png"  # written by the references' convert_coco_object
        if reference.is_file():
            files.append(_LabelledFile(image_id, image_dir / f"{image_id}.jpg", reference, None, COCO_TRAIN_ID_THINGS))
        elif converted.is_file():
            files.append(
                _LabelledFile(image_id, image_dir / f"{image_id}.jpg", converted, train_ids, COCO_TRAIN_ID_CLASSES - 1)
            )
        elif raw.is_file():
            files.append(
                _LabelledFile(image_id, image_dir / f"{image_id}.jpg", raw, stuffthingmaps, COCO_STUFF_IDS[-1] - 1)
            )
        else:
            raise InputError(
                f"image {image_id} of {image_dir} has no label {converted.name} or {raw.name} in {label_dir}"
            )
    return FileBenchmark(
        files,
        name="coco-object",
        split=split,
        root=root,
        class_synonyms=benchmark_classes("coco-object"),
        source="stuffthingmaps",
        unlabeled=unlabeled,
    )


class CocoInstancesBenchmark(Benchmark):
    """COCO-Object from instance annotations: each image's masks merged per category.

    Every annotation (crowd regions included) paints its category's id (1..80 in
    :data:`COCO_THING_IDS` order) over background 0, largest area first, so that a smaller object
    lying on a larger one keeps its pixels. Polygons and RLE masks are decoded with pycocotools.
    """

    def __init__(self, annotations_path: Path, image_dir: Path, limit: int | None, **settings: Any) -> None:
        super().__init__(**settings)
        try:
            from pycocotools import mask as mask_utils
        except ImportError:
            raise InputError(
                "COCO-Object from instance annotations needs pycocotools (pip install pycocotools)"
            ) from None
        self._mask_utils = mask_utils
        self.annotations_path = annotations_path
        try:
            content = json.loads(annotations_path.read_text(encoding="utf-8"))
            if not isinstance(content, dict) or not isinstance(content.get("images", []), list):
                raise ValueError("expected a COCO instances object with an 'images' list")
        except (UnicodeDecodeError, ValueError) as error:
            raise InputError(f"COCO instances file {annotations_path} is not readable ({first_line(error)})") from None
        self._positions = {
            category_id: position for position, category_id in enumerate(COCO_THING_IDS, start=1)
        }
        images = sorted(content.get("images", []), key=lambda record: record["file_name"])
        self._images = images[:limit] if limit is not None else images
        self._annotations: dict[int, list[dict[str, Any]]] = {record["id"]: [] for record in self._images}
        for annotation in content.get("annotations", []):
            if annotation["image_id"] not in self._annotations:
                continue
            if annotation["category_id"] not in self._positions:
                raise InputError(
                    f"{annotations_path} annotation {annotation.get('id')} has category {annotation['category_id']} "
                    "(expected one of COCO's 80 thing categories)"
                )
            self._annotations[annotation["image_id"]].append(annotation)
        self.image_dir = image_dir
        for record in self._images:
            path = image_dir / record["file_name"]
            if not path.is_file():
                raise InputError(f"{annotations_path} names {record['file_name']} but {path} does not exist")

    @property
    def image_ids(self) -> list[str]:
        return [Path(record["file_name"]).stem for record in self._images]

    def _mask(self, segmentation: Any, height: int, width: int) -> np.ndarray:
        """(H, W) bool mask of one annotation's polygons, uncompressed RLE or compressed RLE."""
        if isinstance(segmentation, list):  # polygons
            rle = self._mask_utils.merge(self._mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
            rle = self._mask_utils.frPyObjects(segmentation, height, width)
        else:  # compressed RLE
            rle = segmentation
        return self._mask_utils.decode(rle).astype(bool)

    def label_of(self, record: dict[str, Any]) -> np.ndarray:
        """(H, W) uint8 COCO-Object label of one image record of the annotations file."""
        height, width = record["height"], record["width"]
        label = np.full((height, width), BACKGROUND, dtype=np.uint8)
        annotations = sorted(self._annotations[record["id"]], key=lambda item: -float(item.get("area", 0.0)))
        for annotation in annotations:
            label[self._mask(annotation["segmentation"], height, width)] = self._positions[
                annotation["category_id"]
            ]
        return label

    def __iter__(self) -> Iterator[BenchmarkSample]:
        for record in self._images:
            path = self.image_dir / record["file_name"]
            image = _read_rgb(path)
            label = self.label_of(record)
            _check_same_size(label, image, f"of {record['file_name']} in {self.annotations_path}", str(path))
            yield BenchmarkSample(Path(record["file_name"]).stem, image, label)


def _load_coco_instances(data_dir: Path, split: str, limit: int | None) -> CocoInstancesBenchmark:
    if limit is not None and limit < 1:
        raise InputError(f"limit must be a positive integer (got {limit})")
    annotations_name = f"annotations/instances_{split}.json"
    for candidate in ("", "coco_stuff164k", "coco"):
        root = data_dir / candidate if candidate else data_dir
        if not (root / annotations_name).is_file():
            continue
        for image_dir in (root / "images" / split, root / split):
            if image_dir.is_dir():
                return CocoInstancesBenchmark(
                    root / annotations_name,
                    image_dir,
                    limit,
                    name="coco-object",
                    split=split,
                    root=root,
                    class_synonyms=benchmark_classes("coco-object"),
                    source="instances",
                )
    raise InputError(
        f"no COCO instances layout found under {data_dir} (expected {annotations_name} beside "
        f"images/{split}/ or {split}/)"
    )


class DatasetFolderBenchmark(Benchmark):
    """A dataset folder of this project as a benchmark: the vocabulary's global ids plus background.

    A row's label ``i`` (``classes[i-1]``) becomes ``vocabulary.index(classes[i-1]) + 1``; 0 stays
    background; 255 (unknown) is ignored. With 255 or more vocabulary classes the ignore value moves
    to ``num_labels`` (the first id past the classes) and labels come as int64.
    """

    def __init__(self, folder: Path, limit: int | None = None) -> None:
        vocabulary_path = folder / VOCABULARY_FILE
        if not vocabulary_path.is_file():
            raise InputError(
                f"dataset folder {folder} has no {VOCABULARY_FILE} (expected a folder written by magicseg generate)"
            )
        vocabulary = [
            line.strip() for line in vocabulary_path.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
        if not vocabulary:
            raise InputError(f"{vocabulary_path} lists no classes")
        num_labels = len(vocabulary) + 1
        super().__init__(
            name=str(folder),
            split="train",
            root=folder,
            class_synonyms=[("background",), *((name,) for name in vocabulary)],
            ignore_index=max(UNKNOWN, num_labels),
            has_background=True,
        )
        self.vocabulary = vocabulary
        self._global_ids = {name: index for index, name in enumerate(vocabulary, start=1)}
        self.shards = sorted((folder / DATA_DIR).glob("train-*.parquet"))
        if not self.shards:
            raise InputError(f"dataset folder {folder} has no {DATA_DIR}/train-*.parquet shards")
        if limit is not None and limit < 1:
            raise InputError(f"limit must be a positive integer (got {limit})")
        self.limit = limit
        self._ids: list[str] | None = None

    @property
    def image_ids(self) -> list[str]:
        if self._ids is None:
            ids: list[str] = []
            for shard in self.shards:
                ids.extend(pq.read_table(shard, columns=["id"]).column("id").to_pylist())
            self._ids = ids[: self.limit] if self.limit is not None else ids
        return self._ids

    def label_table(self, row_id: str, classes: Sequence[str]) -> np.ndarray:
        """(256,) table from a row's stored label values to global ids (int64)."""
        table = np.full(256, -1, dtype=np.int64)
        table[BACKGROUND] = BACKGROUND
        table[UNKNOWN] = self.ignore_index
        for position, name in enumerate(classes, start=1):
            if name not in self._global_ids:
                raise InputError(
                    f"row {row_id} of {self.root} names class {name!r}, which {VOCABULARY_FILE} does not list"
                )
            table[position] = self._global_ids[name]
        return table

    def __iter__(self) -> Iterator[BenchmarkSample]:
        remaining = self.limit
        for shard in self.shards:
            parquet = pq.ParquetFile(shard)
            for batch in parquet.iter_batches(batch_size=16, columns=["id", "image", "label", "classes"]):
                for row in batch.to_pylist():
                    if remaining is not None and remaining <= 0:
                        return
                    yield self._sample(row)
                    if remaining is not None:
                        remaining -= 1

    def _sample(self, row: dict[str, Any]) -> BenchmarkSample:
        row_id = row["id"]
        with Image.open(io.BytesIO(row["image"]["bytes"])) as stored:
            image = stored.convert("RGB")
        with Image.open(io.BytesIO(row["label"]["bytes"])) as stored:
            if stored.mode not in INDEX_MODES:
                raise InputError(
                    f"row {row_id} of {self.root}: label must store class indices (got mode {stored.mode})"
                )
            stored_label = np.array(stored, dtype=np.uint8)
        _check_same_size(stored_label, image, f"of row {row_id}", f"of row {row_id}")
        table = self.label_table(row_id, row["classes"])
        label = table[stored_label]
        if (label < 0).any():
            bad = int(stored_label[label < 0][0])
            raise InputError(
                f"row {row_id} of {self.root}: label holds class id {bad} but the row lists {len(row['classes'])} classes"
            )
        if self.ignore_index == UNKNOWN:
            label = label.astype(np.uint8)
        return BenchmarkSample(row_id, image, label)


def load_benchmark(
    benchmark: str | Path,
    data_dir: str | Path | None = None,
    split: str | None = None,
    coco_object_source: str = "stuffthingmaps",
    limit: int | None = None,
    coco_object_unlabeled: str = "background",
) -> Benchmark:
    r"""The benchmark named ``benchmark`` (one of :data:`BENCHMARK_NAMES`) or the dataset folder at that path.

    Args:
        benchmark: ``voc21``, ``context60``, ``context59``, ``coco-object``, or a dataset folder.
        data_dir: where the named benchmark's layout is (see the module docstring); unused for a folder.
        split: the split list or folder to read (default ``val``; ``val2017`` for COCO-Object).
        coco_object_source: ``stuffthingmaps`` (default) or ``instances``.
        coco_object_unlabeled: COCO-Stuff's unlabeled pixels (255) become ``background`` (default, as
            GroupViT's, SCLIP's and NACLIP's ``convert_coco_object`` scripts do) or are ``ignore``\ d.
        limit: read only the first ``limit`` images.

    Raises:
        InputError: unknown benchmark, no layout under ``data_dir``, a missing listed file.
    """
    name = str(benchmark)
    if name in ("voc21", "voc20"):
        return load_voc21(data_dir, split or "val", limit, name)
    if name in ("context60", "context59"):
        return load_context(data_dir, name, split or "val", limit)
    if name == "coco-object":
        return load_coco_object(data_dir, split or "val2017", coco_object_source, limit, coco_object_unlabeled)
    folder = Path(name).expanduser()
    if folder.is_dir():
        return DatasetFolderBenchmark(folder, limit)
    raise InputError(
        f"unknown benchmark {name!r} (expected one of {', '.join(BENCHMARK_NAMES)} or a dataset folder)"
    )
