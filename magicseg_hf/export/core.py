"""The export itself: reading the source shard by shard, the two writers, and the entry point.

The label mapping lives in :mod:`magicseg_hf.export.labels`, the export folder's card and the mmseg
config snippet in :mod:`magicseg_hf.export.card`.

:func:`export_dataset` reads the source shard by shard (``BATCH_ROWS`` rows decoded at a time) and
never writes into it. Resume rule: an interrupted export **resumes** — re-running the same command
keeps the source shards already finished (recorded in the hidden ``.export-progress.json`` together
with a fingerprint of the source: shard names, sizes and modification times, the vocabulary) and
converts the rest. If the source changed since, or the format or options differ, the folder counts
as existing output: ``--overwrite`` restarts from scratch. ``export.json`` is written last and marks
a finished export.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from magicseg_hf.errors import InputError, first_line
from magicseg_hf.export import (
    EXPORT_FILE,
    FORMATS,
    ID2LABEL_FILE,
    LABEL2ID_FILE,
    MAX_EXPORT_CLASSES,
    MMSEG,
    MMSEG_CONFIG_FILE,
    PROGRESS_FILE,
    SEMANTIC,
    SOURCE_GENERATION_FILE,
)
from magicseg_hf.export.card import mmseg_config_text, render_export_card, source_license
from magicseg_hf.export.labels import global_label, id2label, semantic_features
from magicseg_hf.folder import (
    SHARD_NAME_FORM,
    DatasetFolder,
    atomic_write_bytes,
    atomic_write_json,
    json_bytes,
    shard_file_name,
)
from magicseg_hf.labels import BACKGROUND, UNKNOWN
from magicseg_hf.lock import FolderLock
from magicseg_hf.runtime import VERSIONS_RECORD_KEY, package_versions
from magicseg_hf.schema import CARD_FILE, DATA_DIR, LOCK_FILE, VOCABULARY_FILE

logger = logging.getLogger(__name__)

#: Source rows decoded at a time (bounds the memory of an export).
BATCH_ROWS = 64
#: The columns every source shard must have for an export.
REQUIRED_COLUMNS = ("id", "image", "label", "classes")
#: mmseg splits and the default share of rows that go to ``val`` (by a hash of the row id).
MMSEG_SPLITS = ("train", "val")
DEFAULT_VAL_FRACTION = 0.1
#: JPEG quality of mmseg's ``img_dir`` pictures.
JPEG_QUALITY = 95
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def _png_bytes(array: np.ndarray) -> bytes:
    """PNG bytes of an (H, W) uint8 array (mode "L")."""
    buffer = io.BytesIO()
    Image.fromarray(array, "L").save(buffer, format="PNG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------
# Checks of the request (nothing is written before they pass)
# ----------------------------------------------------------------------------------------------
def _source_shards(folder: DatasetFolder) -> list[Path]:
    """The source's shards, after checking it is a MagicSeg folder (naming what is missing)."""
    root = folder.root
    if not root.is_dir():
        raise InputError(f"{root} is not a folder")
    missing = []
    if not folder.vocabulary_path.is_file():
        missing.append(VOCABULARY_FILE)
    shards = folder.shard_paths()
    if not shards:
        missing.append(f"{DATA_DIR}/{SHARD_NAME_FORM} shards")
    if missing:
        raise InputError(f"{root} is not a MagicSeg dataset folder: no {' and no '.join(missing)}")
    for path in shards:
        try:
            names = pq.ParquetFile(path).schema_arrow.names
        except Exception as error:  # noqa: BLE001 - any read failure means an unreadable shard
            raise InputError(f"{path} is not a readable parquet file ({first_line(error)})") from error
        lacking = [c for c in REQUIRED_COLUMNS if c not in names]
        if lacking:
            raise InputError(f"{path} is not a MagicSeg shard: no column(s) {', '.join(lacking)}")
    return shards


def _check_classes(shards: Sequence[Path], vocabulary: set[str]) -> int:
    """Check that every row's classes are vocabulary lines (reads the small columns only); returns the row count."""
    num_rows = 0
    for path in shards:
        table = pq.read_table(path, columns=["id", "classes"])
        for row_id, classes in zip(table.column("id").to_pylist(), table.column("classes").to_pylist()):
            unknown = [name for name in classes or [] if name not in vocabulary]
            if unknown:
                raise InputError(
                    f"{path.parent.name}/{path.name}: row {row_id!r} has class {unknown[0]!r}, which is not a line "
                    f"of {VOCABULARY_FILE}"
                )
        num_rows += table.num_rows
    return num_rows


def _fingerprint(shards: Sequence[Path], vocabulary: Sequence[str]) -> dict[str, Any]:
    """What identifies the source's content for a resume: shard names, sizes, mtimes; the vocabulary."""
    digest = hashlib.sha256("\n".join(vocabulary).encode("utf-8")).hexdigest()
    return {
        "shards": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in shards],
        "vocabulary_sha256": digest,
    }


def _inside(path: Path, other: Path) -> bool:
    return path == other or other in path.parents


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _plan_output(out: Path, source: Path, state: dict[str, Any], overwrite: bool) -> tuple[str, list[int]]:
    """What to do with the output folder: ``("new", [])``, ``("resume", done_shards)`` or
    ``("overwrite", [])``; raises :class:`InputError` when it may not be written."""
    if _inside(out, source) or _inside(source, out):
        raise InputError(f"`output_dir` {out} overlaps the source folder {source} (the source is never written)")
    if out.exists() and not out.is_dir():
        raise InputError(f"`output_dir` {out} is a file, not a folder")
    if not out.exists() or not any(p.name != LOCK_FILE for p in out.iterdir()):
        return "new", []
    progress = _read_json(out / PROGRESS_FILE)
    is_export = progress is not None or (out / EXPORT_FILE).is_file()
    if progress is not None and not (out / EXPORT_FILE).is_file() and progress.get("state") == state:
        done = [int(j) for j in progress.get("done", []) if isinstance(j, int)]
        return "resume", done
    if not overwrite:
        what = "an unfinished export of another source or with other options" if progress is not None else "exists"
        raise InputError(f"`output_dir` {out} {what}: pass `overwrite` to replace it")
    if not is_export:
        raise InputError(
            f"`output_dir` {out} is not empty and holds no magicseg export ({EXPORT_FILE}): `overwrite` replaces "
            "only an earlier export; remove it yourself or choose another folder"
        )
    return "overwrite", []


def _clear(out: Path) -> None:
    """Remove everything in ``out`` but the lock (an earlier export, checked by :func:`_plan_output`)."""
    for path in out.iterdir():
        if path.name == LOCK_FILE:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


# ----------------------------------------------------------------------------------------------
# Reading the source
# ----------------------------------------------------------------------------------------------
def _iter_batches(path: Path, columns: list[str]) -> Iterator[list[dict[str, Any]]]:
    """Rows of one source shard, ``BATCH_ROWS`` at a time (images as stored: ``{"bytes", "path"}``)."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns):
        yield batch.to_pylist()


def _mapped_label(row: dict[str, Any], index: dict[str, int], where: str) -> np.ndarray:
    """(H, W) uint8 global label of a source row; a bad row is an :class:`InputError` naming it."""
    try:
        label = Image.open(io.BytesIO(row["label"]["bytes"]))
        label.load()
    except Exception as error:  # noqa: BLE001 - an undecodable label is a defect of the row
        raise InputError(f"{where}: label cannot be decoded ({first_line(error)})") from error
    if label.mode != "L":
        raise InputError(f"{where}: label has mode {label.mode!r}, expected 'L'")
    try:
        return global_label(label, row["classes"] or [], index)
    except KeyError as error:
        raise InputError(f"{where}: class {error.args[0]!r} is not a line of {VOCABULARY_FILE}") from None
    except ValueError as error:
        raise InputError(f"{where}: {error}") from None


# ----------------------------------------------------------------------------------------------
# Writers
# ----------------------------------------------------------------------------------------------
def _arrow_schema(features: Any) -> pa.Schema:
    """The features' arrow schema with the ``huggingface`` metadata ``datasets`` embeds (so
    ``load_dataset`` returns exactly ``features``)."""
    metadata = {"huggingface": json.dumps({"info": {"features": features.to_dict()}})}
    return features.arrow_schema.with_metadata(metadata)


def _write_semantic_shard(
    source_path: Path, target: Path, index: dict[str, int], with_counterfactual: bool, bar: Any
) -> int:
    """Convert one source shard into ``target`` (a temporary file, then a rename); returns its rows."""
    features = semantic_features(with_counterfactual)
    schema = _arrow_schema(features)
    columns = ["id", "image", "label", "classes"] + (["counterfactual_image"] if with_counterfactual else [])
    tmp = target.parent / f".{target.name}.{os.getpid()}.tmp"
    rows = 0
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for batch in _iter_batches(source_path, columns):
                out = []
                for row in batch:
                    where = f"{DATA_DIR}/{source_path.name} row {rows}"
                    label = _mapped_label(row, index, where)
                    record = {"id": row["id"], "image": {"bytes": row["image"]["bytes"], "path": None},
                              "label": {"bytes": _png_bytes(label), "path": None}}
                    if with_counterfactual:
                        record["counterfactual_image"] = {"bytes": row["counterfactual_image"]["bytes"], "path": None}
                    out.append(record)
                    rows += 1
                writer.write_table(pa.Table.from_pylist(out, schema=schema))
                bar.update(len(batch))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return rows


def _split_of(row_id: str, val_fraction: float) -> str:
    """``"val"`` for about ``val_fraction`` of the rows, chosen by a hash of the id (stable on resume)."""
    value = int.from_bytes(hashlib.sha256(row_id.encode("utf-8")).digest()[:8], "big") / 2**64
    return "val" if value < val_fraction else "train"


def _file_stem(row_id: str) -> str:
    """A file name for a row id: the id if it is made of safe characters, else a safe form plus a hash."""
    safe = _SAFE_NAME.sub("_", row_id).lstrip(".") or "row"
    return safe if safe == row_id else f"{safe}-{hashlib.sha256(row_id.encode()).hexdigest()[:8]}"


def _write_file(path: Path, data: bytes) -> None:
    """Write through a temporary name and a rename (a killed export never leaves half a file)."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_mmseg_shard(
    source_path: Path, out: Path, index: dict[str, int], val_fraction: float, bar: Any
) -> dict[str, int]:
    """Write one source shard's rows as ``img_dir/SPLIT/ID.jpg`` + ``ann_dir/SPLIT/ID.png``; returns rows per split."""
    counts = dict.fromkeys(MMSEG_SPLITS, 0)
    position = 0
    for batch in _iter_batches(source_path, ["id", "image", "label", "classes"]):
        for row in batch:
            where = f"{DATA_DIR}/{source_path.name} row {position}"
            position += 1
            label = _mapped_label(row, index, where)
            split = _split_of(row["id"], val_fraction)
            stem = _file_stem(row["id"])
            image = Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB")
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
            _write_file(out / "img_dir" / split / f"{stem}.jpg", buffer.getvalue())
            _write_file(out / "ann_dir" / split / f"{stem}.png", _png_bytes(label))
            counts[split] += 1
        bar.update(len(batch))
    return counts


# ----------------------------------------------------------------------------------------------
# The entry point
# ----------------------------------------------------------------------------------------------
@dataclass
class ExportSummary:
    """What :func:`export_dataset` wrote."""

    output_dir: Path
    format: str
    num_rows: int
    num_shards: int
    num_classes: int
    #: Source shards converted by this call (the rest were kept from an interrupted run).
    shards_converted: int
    #: Whether an interrupted export was resumed.
    resumed: bool = False
    #: Rows per split (mmseg); ``{"train": num_rows}`` for semantic.
    splits: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for people."""
        resumed = f", resumed ({self.num_shards - self.shards_converted} shard(s) kept)" if self.resumed else ""
        return (f"exported {self.num_rows} rows ({self.num_classes} classes) as {self.format} into "
                f"{self.output_dir}{resumed}")


def export_dataset(
    source: str | Path,
    output_dir: str | Path,
    format: str = SEMANTIC,  # noqa: A002 - the CLI flag's name
    overwrite: bool = False,
    with_counterfactual: bool = False,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    progress: bool = True,
) -> ExportSummary:
    """Export MagicSeg dataset folder ``source`` with global label ids into ``output_dir``.

    Args:
        source: a MagicSeg dataset folder (``data/train-NNNNN.parquet``, ``vocabulary.txt``); only read.
        output_dir: the export folder (created; see the module docstring for resume and overwrite).
        format: ``"semantic"`` (a ``datasets`` folder, ``id2label.json``) or ``"mmseg"``.
        overwrite: replace an earlier export in ``output_dir``.
        with_counterfactual: ``semantic`` only: keep the ``counterfactual_image`` column.
        val_fraction: ``mmseg`` only: share of rows in ``val`` (by a hash of the row id).
        progress: show a tqdm progress bar (rows) on stderr.

    Returns:
        An :class:`ExportSummary`.

    Raises:
        InputError: an unknown format, a source that is not a MagicSeg folder (what is missing is
            named), a vocabulary over :data:`MAX_EXPORT_CLASSES` classes, a row class not in
            ``vocabulary.txt``, an output that exists (without ``overwrite``) — all before anything
            is written — or, during the run, a row whose label cannot be converted (named).
    """
    from tqdm.auto import tqdm


    if format not in FORMATS:
        raise InputError(f"unknown format {format!r}; known formats: {', '.join(FORMATS)}")
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"`val_fraction` must lie in [0, 1) (got {val_fraction})")
    if with_counterfactual and format != SEMANTIC:
        raise InputError("`with_counterfactual` applies to `format` semantic only")
    folder = DatasetFolder(Path(source).expanduser())
    src = folder.root.resolve() if folder.root.exists() else folder.root
    shards = _source_shards(folder)
    vocabulary = folder.read_vocabulary()
    if len(vocabulary) > MAX_EXPORT_CLASSES:
        raise InputError(
            f"{VOCABULARY_FILE} has {len(vocabulary)} classes; an export holds at most {MAX_EXPORT_CLASSES} "
            f"(one-byte labels: 0 background, 255 unknown); export a folder generated with a smaller vocabulary"
        )
    num_rows = _check_classes(shards, set(vocabulary))
    out = Path(output_dir).expanduser()
    out = out.resolve() if out.exists() else out.absolute()
    options = {"format": format, "with_counterfactual": with_counterfactual,
               "val_fraction": val_fraction if format == MMSEG else None}
    state = {"source": str(src), "options": options, "fingerprint": _fingerprint(shards, vocabulary)}
    action, done = _plan_output(out, src, state, overwrite)

    lock = FolderLock(out, what="export folder")
    holder = lock.active_holder() if out.is_dir() else None
    if holder is not None:
        raise InputError(f"`output_dir` {out} is being written by another magicseg run ({holder.describe()}); "
                         "wait for it to finish, then run the same export again")
    lock.acquire()
    try:
        if action == "overwrite":
            _clear(out)
        for stale in out.rglob(".*.tmp"):  # a killed run's temporary files
            stale.unlink(missing_ok=True)
        index = {name: k for k, name in enumerate(vocabulary)}
        done_set = {j for j in done if 0 <= j < len(shards)}
        previous = _read_json(out / PROGRESS_FILE) if action == "resume" else None
        progress_record: dict[str, Any] = {"state": state, "done": sorted(done_set)}
        if previous and isinstance(previous.get("shard_splits"), dict):
            progress_record["shard_splits"] = {k: v for k, v in previous["shard_splits"].items()
                                               if k.isdigit() and int(k) in done_set}
        atomic_write_json(out / PROGRESS_FILE, progress_record)
        if format == SEMANTIC:
            (out / DATA_DIR).mkdir(exist_ok=True)
        else:
            for kind in ("img_dir", "ann_dir"):
                for split in MMSEG_SPLITS:
                    (out / kind / split).mkdir(parents=True, exist_ok=True)
        kept_rows = sum(pq.ParquetFile(shards[j]).metadata.num_rows for j in done_set)
        converted = 0
        with tqdm(total=num_rows, initial=kept_rows, unit="row", desc=f"export {format}", file=sys.stderr,
                  disable=not progress) as bar:
            for j, path in enumerate(shards):
                if j in done_set:
                    continue
                if format == SEMANTIC:
                    _write_semantic_shard(path, out / shard_file_name(j), index, with_counterfactual, bar)
                else:
                    counts = _write_mmseg_shard(path, out, index, val_fraction, bar)
                    progress_record.setdefault("shard_splits", {})[str(j)] = counts
                converted += 1
                done_set.add(j)
                progress_record["done"] = sorted(done_set)
                atomic_write_json(out / PROGRESS_FILE, progress_record)
        if format == MMSEG:
            per_shard = progress_record.get("shard_splits") or {}
            split_counts = {s: sum(int(c.get(s, 0)) for c in per_shard.values()) for s in MMSEG_SPLITS}
        else:
            split_counts = {"train": num_rows}

        generation = folder.read_generation()
        if generation is not None:
            atomic_write_bytes(out / SOURCE_GENERATION_FILE, json_bytes(generation))
        names = id2label(vocabulary)
        atomic_write_json(out / ID2LABEL_FILE, names)
        atomic_write_json(out / LABEL2ID_FILE, {name: int(k) for k, name in names.items()})
        if format == MMSEG:
            atomic_write_bytes(out / MMSEG_CONFIG_FILE, mmseg_config_text(vocabulary).encode("utf-8"))
        record = {
            "format": format,
            "source": src.name,  # the folder's name: export.json is published by a push, a local path is not
            "source_generation": SOURCE_GENERATION_FILE if generation is not None else None,
            "num_rows": num_rows,
            "num_shards": len(shards),
            "num_classes": len(vocabulary),
            "splits": split_counts,
            "with_counterfactual": with_counterfactual,
            "val_fraction": options["val_fraction"],
            "label_values": {"background": BACKGROUND, "classes": f"vocabulary.index(name) + 1 (1..{len(vocabulary)})",
                             "unknown": UNKNOWN},
            "license": source_license(folder),
            VERSIONS_RECORD_KEY: package_versions(),
        }
        atomic_write_bytes(out / CARD_FILE, render_export_card(out, record, vocabulary).encode("utf-8"))
        atomic_write_json(out / EXPORT_FILE, record)  # last: marks the export finished
        (out / PROGRESS_FILE).unlink(missing_ok=True)
    finally:
        lock.release()
    summary = ExportSummary(
        output_dir=out, format=format, num_rows=num_rows, num_shards=len(shards), num_classes=len(vocabulary),
        shards_converted=converted, resumed=action == "resume", splits=split_counts,
    )
    logger.info(summary.describe())
    return summary
