"""Checks of an export folder (``magicseg validate`` calls them for a folder with ``export.json``) and
the files ``magicseg push`` publishes from one.

:func:`check_export_folder` reads an export folder without writing to it:

- ``export.json`` (a known format), ``id2label.json`` (``"0"`` background, ``"1".."K"`` without
  gaps) and ``label2id.json`` (its inverse), ``README.md`` (metadata parses);
- ``semantic``: shards ``data/train-NNNNN.parquet`` numbered from 0, each with exactly the export's
  features embedded; every row: unique id, image and label decodable and of one size, label mode
  "L" with values in 0..K or 255; the row count of ``export.json``; ``datasets.load_dataset(DIR,
  streaming=True)`` returns the features and decodes a row;
- ``mmseg``: every ``img_dir/SPLIT/X.jpg`` has its ``ann_dir/SPLIT/X.png`` and back, annotations
  mode "L" with values in 0..K or 255, and ``mmseg_config.py`` is there.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magicseg_hf.export import (
    BACKGROUND_NAME,
    EXPORT_FILE,
    FORMATS,
    ID2LABEL_FILE,
    LABEL2ID_FILE,
    MMSEG,
    MMSEG_CONFIG_FILE,
    PROGRESS_FILE,
    SEMANTIC,
)
from magicseg_hf.folder import SHARD_NAME_FORM, shard_index
from magicseg_hf.labels import UNKNOWN
from magicseg_hf.schema import CARD_FILE, DATA_DIR

logger = logging.getLogger(__name__)


def is_export_folder(folder: str | Path) -> bool:
    """Whether ``folder`` is (or was meant to be) a ``magicseg export`` folder: it holds ``export.json``
    or an unfinished export's progress record."""
    root = Path(folder)
    return (root / EXPORT_FILE).is_file() or (root / PROGRESS_FILE).is_file()


def export_published_files(folder: str | Path) -> list[str]:
    """Relative posix paths of the files ``magicseg push`` publishes from an export folder: every file
    but hidden ones (the lock, temporary files), the card included, sorted."""
    root = Path(folder)
    return sorted(
        "/".join(path.relative_to(root).parts) for path in root.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


@dataclass
class ExportCheck:
    """The outcome of :func:`check_export_folder`."""

    format: str | None = None
    problems: list[str] = field(default_factory=list)
    num_rows: int = 0
    num_shards: int = 0
    num_classes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _read_json(path: Path, check: ExportCheck) -> Any:
    if not path.is_file():
        check.problems.append(f"missing {path.name}")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        check.problems.append(f"{path.name} is not valid JSON ({error})")
        return None


def _check_names(root: Path, check: ExportCheck) -> None:
    names = _read_json(root / ID2LABEL_FILE, check)
    if names is None:
        return
    if not isinstance(names, dict) or sorted(names, key=lambda k: int(k) if str(k).isdigit() else -1) != [
        str(k) for k in range(len(names))
    ]:
        check.problems.append(f"{ID2LABEL_FILE} keys are not \"0\"..\"K\" without gaps")
        return
    if names.get("0") != BACKGROUND_NAME:
        check.problems.append(f"{ID2LABEL_FILE}: id 0 is {names.get('0')!r}, expected {BACKGROUND_NAME!r}")
    if len(names) - 1 > UNKNOWN - 1:
        check.problems.append(f"{ID2LABEL_FILE} lists {len(names) - 1} classes; at most {UNKNOWN - 1} fit")
    check.num_classes = len(names) - 1
    inverse = _read_json(root / LABEL2ID_FILE, check)
    if inverse is not None and inverse != {name: int(k) for k, name in names.items()}:
        check.problems.append(f"{LABEL2ID_FILE} is not the inverse of {ID2LABEL_FILE}")


def _check_label(label: Any, image_size: tuple[int, int] | None, where: str, check: ExportCheck) -> None:
    import numpy as np

    if label.mode != "L":
        check.problems.append(f"{where}: label has mode {label.mode!r}, expected 'L'")
        return
    if image_size is not None and label.size != image_size:
        check.problems.append(f"{where}: label is {label.size}, the image {image_size}")
    values = np.unique(np.asarray(label))
    bad = values[(values > check.num_classes) & (values != UNKNOWN)]
    if bad.size:
        check.problems.append(f"{where}: label values {bad.tolist()} outside 0..{check.num_classes} and {UNKNOWN}")


def _check_semantic(root: Path, record: dict[str, Any], check: ExportCheck, check_loading: bool) -> None:
    import datasets
    import pyarrow.parquet as pq

    from magicseg_hf.export.labels import semantic_features
    from magicseg_hf.folder import decode_image, iter_parquet_rows

    expected = semantic_features(bool(record.get("with_counterfactual")))
    data = root / DATA_DIR
    shards = sorted(p for p in data.glob("*") if not p.name.startswith(".")) if data.is_dir() else []
    numbers = [shard_index(p.name) for p in shards]
    if not shards:
        check.problems.append(f"no shards in {DATA_DIR}/ (expected {SHARD_NAME_FORM})")
    elif numbers != list(range(len(shards))):
        check.problems.append(f"{DATA_DIR}/ holds {[p.name for p in shards]}, not {SHARD_NAME_FORM} numbered from 0")
        return
    seen: set[str] = set()
    for path in shards:
        name = f"{DATA_DIR}/{path.name}"
        try:
            metadata = pq.ParquetFile(path).schema_arrow.metadata or {}
            features = datasets.Features.from_dict(json.loads(metadata[b"huggingface"])["info"]["features"])
        except Exception as error:  # noqa: BLE001 - any failure is a defect of the shard
            check.problems.append(f"{name}: no readable embedded features ({type(error).__name__})")
            continue
        if features != expected:
            check.problems.append(f"{name}: features {list(features)} differ from the export's {list(expected)}")
            continue
        check.num_shards += 1
        for position, row in enumerate(iter_parquet_rows(path, batch_size=32)):
            where = f"{name} row {position}"
            check.num_rows += 1
            if not row.get("id") or row["id"] in seen:
                check.problems.append(f"{where}: id {row.get('id')!r} is empty or repeats")
            seen.add(row.get("id"))
            try:
                image, label = decode_image(row["image"]), decode_image(row["label"])
            except Exception as error:  # noqa: BLE001
                check.problems.append(f"{where}: image or label cannot be decoded ({error})")
                continue
            _check_label(label, image.size, where, check)
    if record.get("num_rows") != check.num_rows:
        check.problems.append(f"{EXPORT_FILE} says {record.get('num_rows')} rows, the shards hold {check.num_rows}")
    if check_loading and shards and not check.problems:
        try:
            stream = datasets.load_dataset(str(root), split="train", streaming=True)
            first = next(iter(stream))
        except Exception as error:  # noqa: BLE001 - whatever load_dataset raises is the problem
            check.problems.append(f"datasets.load_dataset fails on the folder: {type(error).__name__}")
            return
        if stream.features != expected:
            check.problems.append("datasets.load_dataset returns other features than the shards'")
        elif first["label"].mode != "L":
            check.problems.append(f"datasets.load_dataset decodes label in mode {first['label'].mode!r}")


def _check_mmseg(root: Path, record: dict[str, Any], check: ExportCheck) -> None:
    from PIL import Image

    if not (root / MMSEG_CONFIG_FILE).is_file():
        check.problems.append(f"missing {MMSEG_CONFIG_FILE}")
    for split in ("train", "val"):
        images = {p.stem for p in (root / "img_dir" / split).glob("*.jpg")}
        labels = {p.stem for p in (root / "ann_dir" / split).glob("*.png")}
        for stem in sorted(images ^ labels)[:5]:
            check.problems.append(f"{split}: {stem} has an image or an annotation but not both")
        for stem in sorted(images & labels):
            where = f"ann_dir/{split}/{stem}.png"
            try:
                with Image.open(root / "img_dir" / split / f"{stem}.jpg") as image:
                    size = image.size
                with Image.open(root / "ann_dir" / split / f"{stem}.png") as label:
                    label.load()
                    _check_label(label, size, where, check)
            except OSError as error:
                check.problems.append(f"{where}: cannot be read ({error})")
            check.num_rows += 1
    if record.get("num_rows") != check.num_rows:
        check.problems.append(f"{EXPORT_FILE} says {record.get('num_rows')} rows, the folder holds {check.num_rows}")


def check_export_folder(folder: str | Path, check_loading: bool = True) -> ExportCheck:
    """Check export folder ``folder`` (see the module docstring); reads only."""
    root = Path(folder)
    check = ExportCheck()
    if (root / PROGRESS_FILE).is_file() and not (root / EXPORT_FILE).is_file():
        check.problems.append("an unfinished export: run the same `magicseg export` command again to finish it")
        return check
    record = _read_json(root / EXPORT_FILE, check)
    if not isinstance(record, dict) or record.get("format") not in FORMATS:
        check.problems.append(f"{EXPORT_FILE} names no known format ({', '.join(FORMATS)})")
        return check
    check.format = record["format"]
    _check_names(root, check)
    if not (root / CARD_FILE).is_file():
        check.problems.append(f"missing {CARD_FILE}")
    else:
        try:
            from huggingface_hub import DatasetCard

            DatasetCard.load(root / CARD_FILE)
        except Exception as error:  # noqa: BLE001
            check.problems.append(f"{CARD_FILE}: the metadata does not parse ({type(error).__name__})")
    if check.problems:
        return check
    if check.format == SEMANTIC:
        _check_semantic(root, record, check, check_loading)
    elif check.format == MMSEG:
        _check_mmseg(root, record, check)
    logger.debug("checked export %s: %d problem(s)", root, len(check.problems))
    return check
