"""``magicseg validate``: check a dataset folder against the dataset schema.

:func:`validate_dataset_folder` reads a folder without writing to it and returns a
:class:`ValidationReport` listing every problem found (the first ``max_problems`` verbatim):

- files: ``data/train-NNNNN.parquet`` shards numbered from 0 without gaps, ``vocabulary.txt``,
  ``generation.json``, ``README.md``, ``preview.png`` (``.work/``, an unfinished run's work
  area, and the hidden lock of a running generation are ignored);
- every shard's columns and features equal :data:`DATASET_FEATURES` — or, for a folder written
  before a column of :data:`~magicseg_hf.schema.LATER_COLUMNS` existed, the schema without it
  (valid; the report notes that the folder predates the column), the same in every shard;
- every row: unique non-empty id; classes non-empty, distinct and in the vocabulary; image,
  counterfactual and label of equal size; label in mode "L" with values in 0..len(classes) or 255;
  boxes finite and inside the image; one label and one score per box, labels in range;
  scores and ``counterfactual_score`` finite; ``class_scores`` one per class, NaN exactly for the
  classes with no pixel in the label, the others within [-1, 1];
- ``generation.json`` consistent with the data (row count; drop reasons among
  :data:`~magicseg_hf.schema.DROP_REASONS`, ``error`` included);
- the card: parses, declares the folder's features (round-tripped through ``datasets``), the split
  size, ``configs`` data files matching the shards, and the pictures it shows exist;
- ``datasets.load_dataset(DIR, streaming=True)`` returns exactly the folder's schema and decodes a row.

A ``magicseg export`` folder (``export.json``) is checked as one instead
(:func:`magicseg_hf.export.check.check_export_folder`).

The folder is read through :class:`~magicseg_hf.folder.DatasetFolder` (its shard naming rule, its
vocabulary and ``generation.json`` readers).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.parquet as pq
from huggingface_hub import DatasetCard

from magicseg_hf.cards import size_category
from magicseg_hf.errors import InputError, first_line
from magicseg_hf.export.check import check_export_folder, is_export_folder
from magicseg_hf.folder import (
    SHARD_NAME_FORM,
    DatasetFolder,
    check_vocabulary,
    decode_image,
    iter_parquet_rows,
    shard_file_name,
    shard_index,
)
from magicseg_hf.labels import UNKNOWN
from magicseg_hf.schema import (
    CARD_FILE,
    DATA_DIR,
    DATASET_FEATURES,
    DROP_REASONS,
    GENERATION_FILE,
    LATER_COLUMNS,
    VOCABULARY_FILE,
    folder_features,
    missing_later_columns,
)

logger = logging.getLogger(__name__)

_MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
#: Slack, in pixels, allowed for float rounding when checking that boxes lie inside the image.
BOX_TOLERANCE = 1e-3


@dataclass
class ValidationReport:
    """The outcome of :func:`validate_dataset_folder`."""

    folder: Path
    max_problems: int = 20
    problems: list[str] = field(default_factory=list)
    num_problems: int = 0
    num_rows: int = 0
    num_shards: int = 0
    num_classes: int = 0
    #: The folder's schema: :data:`DATASET_FEATURES`, or an older folder's (without some of
    #: :data:`~magicseg_hf.schema.LATER_COLUMNS`); set by the first shard that has one.
    features: datasets.Features | None = None
    #: Remarks that are not problems (e.g. a folder that predates a column).
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return self.num_problems == 0

    def add(self, message: str) -> None:
        """Record a problem (only the first ``max_problems`` are kept verbatim)."""
        self.num_problems += 1
        if len(self.problems) < self.max_problems:
            self.problems.append(message)

    def summary(self) -> str:
        """A few lines for people: the verdict, then the problems kept."""
        head = f"{self.folder}: {self.num_rows} rows in {self.num_shards} shard(s), {self.num_classes} classes"
        notes = [f"  note: {note}" for note in self.notes]
        if self.ok:
            return "\n".join([f"{head}: valid", *notes])
        lines = [f"{head}: INVALID, {self.num_problems} problem(s)"]
        lines += [f"  - {problem}" for problem in self.problems]
        if self.num_problems > len(self.problems):
            lines.append(f"  ... and {self.num_problems - len(self.problems)} more")
        return "\n".join(lines + notes)


# ----------------------------------------------------------------------------------------------
# Pieces
# ----------------------------------------------------------------------------------------------
def _check_files(folder: DatasetFolder, report: ValidationReport) -> list[Path]:
    shards: list[Path] = []
    first_shard = shard_file_name(0)
    if not folder.data_dir.is_dir():
        report.add(f"no {DATA_DIR}/ folder: not a dataset folder (expected {first_shard} ...)")
    else:
        numbers = []
        for path in sorted(folder.data_dir.iterdir()):
            if path.name.startswith("."):
                continue  # temporary files of an atomic write
            index = shard_index(path.name)
            if index is not None and path.is_file():
                shards.append(path)
                numbers.append(index)
            else:
                report.add(f"unexpected file {DATA_DIR}/{path.name} (shards are named {SHARD_NAME_FORM})")
        if not shards:
            report.add(f"no shards in {DATA_DIR}/ (expected {Path(first_shard).name} ...)")
        if numbers != list(range(len(numbers))):
            report.add(f"shards are not numbered 0..{len(numbers) - 1} without gaps: {[p.name for p in shards]}")
    for path in (folder.vocabulary_path, folder.generation_path, folder.card_path, folder.preview_path):
        if not path.is_file():
            report.add(f"missing {path.name}")
    return shards


def _read_vocabulary(folder: DatasetFolder, report: ValidationReport) -> list[str] | None:
    if not folder.vocabulary_path.is_file():
        return None
    try:
        names = folder.read_vocabulary(check=False)
    except InputError as error:
        report.add(str(error))
        return None
    report.num_classes = len(names)
    try:
        check_vocabulary(names, repr(VOCABULARY_FILE))
    except InputError as error:
        report.add(str(error))
    return names


def _check_shard_schema(path: Path, report: ValidationReport) -> bool:
    name = f"{DATA_DIR}/{path.name}"
    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:  # noqa: BLE001 - any read failure is a defect of the file
        report.add(f"{name}: not a readable parquet file ({type(error).__name__}: {error})")
        return False
    schema = parquet.schema_arrow
    expected_features = folder_features(schema.names)
    if expected_features is None:
        missing = [c for c in DATASET_FEATURES if c not in schema.names and c not in LATER_COLUMNS]
        extra = [c for c in schema.names if c not in DATASET_FEATURES]
        report.add(f"{name}: columns differ from the schema (missing {missing}, unexpected {extra}, order {schema.names})")
        return False
    if report.features is None:
        report.features = expected_features
        predates = missing_later_columns(expected_features)
        if predates:
            report.notes.append(
                f"the shards have no {', '.join(predates)} column: the folder predates it (written by an "
                "older magicseg-hf); not an error, training and load_dataset read the folder as it is"
            )
    elif list(expected_features) != list(report.features):
        report.add(f"{name}: columns {schema.names} differ from the first shard's {list(report.features)}")
        return False
    expected = list(expected_features)
    metadata = schema.metadata or {}
    if b"huggingface" not in metadata:
        report.add(f"{name}: no embedded `datasets` features (write shards with Dataset.to_parquet)")
    else:
        try:
            features = datasets.Features.from_dict(json.loads(metadata[b"huggingface"])["info"]["features"])
        except Exception as error:  # noqa: BLE001
            report.add(f"{name}: unreadable embedded features ({error})")
        else:
            if features != expected_features:
                diff = [c for c in expected if features.get(c) != expected_features[c]]
                report.add(f"{name}: embedded features differ from the schema in {diff}")
    arrow = expected_features.arrow_schema
    for column in expected:
        if not schema.field(column).type.equals(arrow.field(column).type):
            report.add(f"{name}: column {column!r} has arrow type {schema.field(column).type}, "
                       f"expected {arrow.field(column).type}")
    return True


def _finite(values: list[float]) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _check_class_scores(
    scores: list[float | None], label: np.ndarray, num_classes: int, where: str, report: ValidationReport
) -> None:
    """``class_scores`` against the (H, W) label map: one per class, NaN exactly where the class has
    no pixel, the others within [-1, 1] (cosine similarities)."""
    if len(scores) != num_classes:
        report.add(f"{where}: {len(scores)} class_scores for {num_classes} class(es) (expected one per class)")
        return
    present = set(np.unique(label).tolist())
    for position, score in enumerate(scores):
        class_id = position + 1
        if score is None:
            report.add(f"{where}: class_scores[{position}] is null")
        elif math.isnan(score) and class_id in present:
            report.add(f"{where}: class_scores[{position}] is NaN, but class {class_id} has pixels in the label")
        elif not math.isnan(score) and class_id not in present:
            report.add(f"{where}: class_scores[{position}] is {score:.4g}, but class {class_id} has no pixel in the "
                       "label (expected NaN)")
        elif not math.isnan(score) and not -1.0 <= score <= 1.0:
            report.add(f"{where}: class_scores[{position}] is {score:.4g}, outside [-1, 1]")


def _check_row(row: dict[str, Any], where: str, vocabulary: set[str] | None, report: ValidationReport) -> None:
    """One row; ``class_scores`` only where the folder has the column (see :data:`LATER_COLUMNS`)."""
    required = ["id", "prompt", "counterfactual_prompt", "seed", "counterfactual_seed", "counterfactual_score",
                "classes", "boxes", "box_labels", "box_scores"]
    required += [column for column in LATER_COLUMNS if column in row]
    for column in required:
        if row.get(column) is None:
            report.add(f"{where}: {column} is null")
            return
    if not str(row["id"]).strip():
        report.add(f"{where}: empty id")
    classes = row["classes"]
    if not classes:
        report.add(f"{where}: no classes")
    if any(not c or not c.strip() for c in classes):
        report.add(f"{where}: empty class name in {classes}")
    if len(set(classes)) != len(classes):
        report.add(f"{where}: classes repeat: {classes}")
    if vocabulary is not None:
        unknown = [c for c in classes if c not in vocabulary]
        if unknown:
            report.add(f"{where}: classes {unknown} are not lines of {VOCABULARY_FILE}")
    if not math.isfinite(row["counterfactual_score"]):
        report.add(f"{where}: counterfactual_score is not finite")

    images = {}
    for column in ("image", "counterfactual_image", "label"):
        try:
            images[column] = decode_image(row[column])
        except Exception as error:  # noqa: BLE001 - an undecodable image is a defect of the row
            report.add(f"{where}: {column} cannot be decoded ({error})")
    if len(images) < 3:
        return
    sizes = {column: image.size for column, image in images.items()}
    if len(set(sizes.values())) != 1:
        report.add(f"{where}: image, counterfactual and label sizes differ: {sizes}")
    label = images["label"]
    if label.mode != "L":
        report.add(f"{where}: label has mode {label.mode!r}, expected 'L'")
    else:
        label_array = np.asarray(label)  # (H, W) uint8
        values = np.unique(label_array)
        allowed = (values <= len(classes)) | (values == UNKNOWN)
        if not allowed.all():
            report.add(f"{where}: label values {values[~allowed].tolist()} outside 0..{len(classes)} and 255")
        if "class_scores" in row:
            _check_class_scores(row["class_scores"], label_array, len(classes), where, report)

    width, height = sizes["image"]
    boxes, box_labels, box_scores = row["boxes"], row["box_labels"], row["box_scores"]
    if not (len(boxes) == len(box_labels) == len(box_scores)):
        report.add(f"{where}: {len(boxes)} boxes, {len(box_labels)} box_labels, {len(box_scores)} box_scores")
    for index, box in enumerate(boxes):
        if box is None or len(box) != 4 or not _finite(box):
            report.add(f"{where}: box {index} is not 4 finite numbers: {box}")
            continue
        x0, y0, x1, y1 = box
        t = BOX_TOLERANCE
        if not (-t <= x0 <= x1 <= width + t and -t <= y0 <= y1 <= height + t):
            report.add(f"{where}: box {index} {[round(v, 2) for v in box]} is not inside the {width}x{height} image")
    bad_labels = [v for v in box_labels if v is None or not 0 <= v < len(classes)]
    if bad_labels:
        report.add(f"{where}: box_labels {bad_labels} outside 0..{len(classes) - 1}")
    if not _finite(box_scores) or any(not 0.0 <= s <= 1.0 for s in box_scores):
        report.add(f"{where}: box_scores must be finite and within [0, 1]: {box_scores}")


def _check_generation(folder: DatasetFolder, num_rows: int, report: ValidationReport) -> None:
    try:
        generation = folder.read_generation()
    except InputError as error:
        report.add(str(error))
        return
    if generation is None:
        return
    for key in ("config", "models", "summary"):
        if not isinstance(generation.get(key), dict):
            report.add(f"{GENERATION_FILE} has no {key!r} object")
    summary = generation.get("summary")
    if isinstance(summary, dict):
        if summary.get("num_rows") != num_rows:
            report.add(f"{GENERATION_FILE} says {summary.get('num_rows')} rows, the shards hold {num_rows}")
        unknown = sorted(set(summary.get("dropped") or {}) - set(DROP_REASONS))
        if unknown:
            report.add(f"{GENERATION_FILE} counts unknown drop reasons {unknown}")
    models = generation.get("models")
    if isinstance(models, dict):
        for role, entry in models.items():
            if not isinstance(entry, dict) or not entry.get("id"):
                report.add(f"{GENERATION_FILE}: model {role!r} has no id")


def _check_card(folder: DatasetFolder, shards: list[Path], num_rows: int, report: ValidationReport) -> None:
    path = folder.card_path
    if not path.is_file():
        return
    try:
        card = DatasetCard.load(path)
    except Exception as error:  # noqa: BLE001 - any parse failure is a defect of the card
        report.add(f"{CARD_FILE}: the YAML metadata does not parse ({type(error).__name__}: {error})")
        return
    data = card.data.to_dict()
    if not data:
        report.add(f"{CARD_FILE}: no YAML metadata")
        return
    for key in ("license", "pretty_name", "task_categories", "size_categories", "configs", "dataset_info"):
        if not data.get(key):
            report.add(f"{CARD_FILE}: metadata lacks {key!r}")
    if "image-segmentation" not in (data.get("task_categories") or []):
        report.add(f"{CARD_FILE}: task_categories lacks 'image-segmentation'")
    if data.get("size_categories") and size_category(num_rows) not in data["size_categories"]:
        report.add(f"{CARD_FILE}: size_categories {data['size_categories']} do not fit {num_rows} rows")

    info = data.get("dataset_info")
    if isinstance(info, list):
        info = next((i for i in info if i.get("config_name", "default") == "default"), None)
    if isinstance(info, dict):
        try:
            features = datasets.Features._from_yaml_list(info.get("features") or [])
        except Exception as error:  # noqa: BLE001
            report.add(f"{CARD_FILE}: dataset_info.features cannot be read by datasets ({error})")
        else:
            expected = report.features or DATASET_FEATURES
            if features != expected:
                diff = [c for c in expected if features.get(c) != expected[c]]
                extra = [c for c in features if c not in expected]
                report.add(f"{CARD_FILE}: dataset_info.features differ from the schema in {diff + extra}")
            elif features._to_yaml_list() != info.get("features"):
                report.add(f"{CARD_FILE}: dataset_info.features do not round-trip through datasets")
        splits = {s.get("name"): s for s in info.get("splits") or [] if isinstance(s, dict)}
        if "train" not in splits:
            report.add(f"{CARD_FILE}: dataset_info has no train split")
        elif splits["train"].get("num_examples") != num_rows:
            report.add(f"{CARD_FILE}: says {splits['train'].get('num_examples')} rows, the shards hold {num_rows}")

    configs = data.get("configs") or []
    default = next((c for c in configs if isinstance(c, dict) and c.get("config_name") == "default"), None)
    if configs and default is None:
        report.add(f"{CARD_FILE}: configs has no 'default' config")
    elif default is not None:
        patterns = [entry.get("path") for entry in default.get("data_files") or []
                    if isinstance(entry, dict) and entry.get("split") == "train"]
        patterns = [p for group in patterns for p in ([group] if isinstance(group, str) else group or [])]
        relative = [f"{DATA_DIR}/{p.name}" for p in shards]
        if not patterns:
            report.add(f"{CARD_FILE}: the default config has no train data_files")
        else:
            unmatched = [r for r in relative if not any(fnmatch.fnmatch(r, p) for p in patterns)]
            if unmatched:
                report.add(f"{CARD_FILE}: configs data_files {patterns} miss shards {unmatched}")
    for target in _MARKDOWN_IMAGE.findall(card.text):
        if "://" in target:
            continue
        if not (folder.root / target).is_file():
            report.add(f"{CARD_FILE}: shows {target}, which is not in the folder")


def _check_loading(folder: DatasetFolder, report: ValidationReport) -> None:
    try:
        stream = datasets.load_dataset(str(folder.root), split="train", streaming=True)
        features = stream.features
        first = next(iter(stream))
    except Exception as error:  # noqa: BLE001 - whatever load_dataset raises is the problem to report
        message = first_line(error) if str(error).strip() else ""
        report.add(f"datasets.load_dataset fails on the folder: {type(error).__name__}: {message}")
        return
    if features != (report.features or DATASET_FEATURES):
        report.add(f"datasets.load_dataset returns features {features}, not the shards' schema")
    elif first["label"].mode != "L":
        report.add(f"datasets.load_dataset decodes label in mode {first['label'].mode!r}")


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------
def validate_dataset_folder(
    folder: str | Path, max_problems: int = 20, check_loading: bool = True
) -> ValidationReport:
    """Check dataset folder ``folder``; returns a report (``report.ok``), never writes.

    Raises :class:`InputError` when ``folder`` does not exist or is not a directory.
    ``check_loading`` also opens the folder with ``datasets.load_dataset(..., streaming=True)``.
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    report = ValidationReport(folder=folder, max_problems=max_problems)
    if is_export_folder(folder):  # a `magicseg export` folder: global labels, its own layout
        check = check_export_folder(folder, check_loading=check_loading)
        for problem in check.problems:
            report.add(problem)
        report.num_rows, report.num_shards, report.num_classes = check.num_rows, check.num_shards, check.num_classes
        report.notes.append(f"a `magicseg export --format {check.format}` folder (global label ids), checked as one")
        return report
    dataset = DatasetFolder(folder)
    shards = _check_files(dataset, report)
    vocabulary = _read_vocabulary(dataset, report)
    vocabulary_set = set(vocabulary) if vocabulary is not None else None
    seen_ids: dict[str, str] = {}
    readable = True
    for path in shards:
        if not _check_shard_schema(path, report):
            readable = False
            continue
        report.num_shards += 1
        for index, row in enumerate(iter_parquet_rows(path, batch_size=32)):
            where = f"{DATA_DIR}/{path.name} row {index}"
            report.num_rows += 1
            row_id = row.get("id")
            if row_id is not None:
                if row_id in seen_ids:
                    report.add(f"{where}: id {row_id!r} repeats ({seen_ids[row_id]})")
                else:
                    seen_ids[row_id] = where
            _check_row(row, where, vocabulary_set, report)
    _check_generation(dataset, report.num_rows, report)
    _check_card(dataset, shards, report.num_rows, report)
    if check_loading and shards and readable:
        _check_loading(dataset, report)
    logger.debug("validated %s: %d problem(s)", folder, report.num_problems)
    return report
