"""``DatasetFolder``: the one owner of a MagicSeg dataset folder.

A dataset folder holds::

    README.md                  the dataset card (rendered by magicseg_hf.cards)
    data/train-NNNNN.parquet   the shards, numbered from 0, written atomically
    vocabulary.txt             the run's classes, one per line
    generation.json            settings, model ids and revisions, package version, summary
    preview.png                the first pairs as a picture
    class_histogram.png        rows per class (beside the card)
    prompts.jsonl              cached LLM prompts (replayed on resume)
    .work/                     an unfinished run's per-shard work files (never published)
    .magicseg.lock             held by the run writing the folder (pid, host, start time)

Every reader and writer of such a folder — the generation writer, ``magicseg validate``, the card
renderer, ``magicseg push``, the ``MagicSeg`` builder, training and evaluation — goes through this
module: the paths, the shard naming rule, atomic writes, which files are published, and the readers
of the vocabulary, ``generation.json``, the prompt cache, the counts and the rows are written here
once. The lock that keeps a second run out of a folder is :class:`magicseg_hf.lock.FolderLock`.

Example::

    from magicseg_hf.folder import DatasetFolder

    folder = DatasetFolder("out")
    vocabulary = folder.read_vocabulary()       # ["cat", "dog", "bow (weapon)"]
    print(folder.num_rows(), "rows in", len(folder.shard_paths()), "shards")
    for row in folder.iter_rows(columns=["id", "classes"]):
        ...

This module depends only on :mod:`magicseg_hf.schema` and :mod:`magicseg_hf.errors` (plus the
standard library, pyarrow and Pillow), so anything in the package may use it.
"""

from __future__ import annotations

import fnmatch
import glob
import io
import json
import logging
import math
import os
import re
import shutil
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from PIL import Image

from magicseg_hf.errors import InputError, first_line
from magicseg_hf.schema import (
    CARD_FILE,
    DATA_DIR,
    GENERATION_FILE,
    HISTOGRAM_FILE,
    LOCK_FILE,
    PREVIEW_FILE,
    PROMPTS_FILE,
    VOCABULARY_FILE,
    WORK_DIR,
)

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# The shard naming rule (the only place it is written)
# ----------------------------------------------------------------------------------------------
#: Final shards are ``data/train-NNNNN.parquet``: this prefix, ``SHARD_DIGITS`` digits, the suffix.
SHARD_PREFIX = "train-"
SHARD_SUFFIX = ".parquet"
SHARD_DIGITS = 5
#: A final shard's file name as people read it: ``train-NNNNN.parquet``.
SHARD_NAME_FORM = f"{SHARD_PREFIX}{'N' * SHARD_DIGITS}{SHARD_SUFFIX}"
#: Glob (relative to the folder) of the final shards.
SHARD_GLOB = f"{DATA_DIR}/{SHARD_PREFIX}*{SHARD_SUFFIX}"
#: The ``data_files`` path of the card's ``configs`` entry (what ``load_dataset`` reads).
CARD_DATA_FILES = f"{DATA_DIR}/{SHARD_PREFIX}*"
#: A final shard's file name inside ``data/``; group 1 is its index.
SHARD_NAME_RE = re.compile(rf"^{re.escape(SHARD_PREFIX)}(\d{{{SHARD_DIGITS}}}){re.escape(SHARD_SUFFIX)}$")
#: Files of a folder that ``magicseg push`` publishes besides the card (which it renders for the repo);
#: ``.work/`` and hidden files never are.
PUBLISHED_PATTERNS = (SHARD_GLOB, VOCABULARY_FILE, GENERATION_FILE, PREVIEW_FILE, HISTOGRAM_FILE, PROMPTS_FILE)
#: Work files of shard ``j`` of a running generation: ``.work/shard-NNNNN.parquet`` (its kept rows)
#: and ``.work/shard-NNNNN.json`` (one record per attempt; the shard's completion marker).
WORK_SHARD_STEM = "shard-"
#: ``.work/`` is renamed to this before it is deleted, so that a kill mid-deletion never leaves a
#: half-deleted work area that looks like an unfinished run.
REMOVED_WORK_DIR = f"{WORK_DIR}.removed"
#: What a generation writes into its folder before its first shard is finished: a folder holding
#: only these (and hidden temporary files) has nothing that a new run would lose.
RUN_FILES = frozenset({GENERATION_FILE, VOCABULARY_FILE, PROMPTS_FILE, WORK_DIR, REMOVED_WORK_DIR, LOCK_FILE})


def shard_file_name(index: int) -> str:
    """Relative path of final shard ``index``: ``data/train-NNNNN.parquet``."""
    if index < 0:
        raise ValueError(f"shard index must be >= 0 (got {index})")
    return f"{DATA_DIR}/{SHARD_PREFIX}{index:0{SHARD_DIGITS}d}{SHARD_SUFFIX}"


def shard_index(name: str) -> int | None:
    """The index of final shard file ``name`` (a name inside ``data/``), or None for another name."""
    match = SHARD_NAME_RE.match(name)
    return int(match.group(1)) if match else None


# ----------------------------------------------------------------------------------------------
# Atomic writes
# ----------------------------------------------------------------------------------------------
def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A reader (or a killed run) sees the old file or the new one, never half of one. The file gets
    the usual mode for new files (``0o666`` less the umask), not ``mkstemp``'s private ``0o600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the data from other users
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output_file(path: str | Path, flag: str) -> None:
    """Refuse, before anything is computed, an output file that could not be written: a folder, a path
    under a file, or a folder that exists but is not writable (``/proc``, a read-only mount).

    Raises:
        InputError: naming ``flag`` and the path.
    """
    target = Path(path).expanduser()
    if target.is_dir():
        raise InputError(f"{flag} must be a file path (got the folder {target})")
    _check_writable_place(target.parent, target, flag)


def check_output_folder(path: str | Path, flag: str) -> None:
    """Refuse, before anything is computed, an output folder that could not be made or written: a
    file, a path under a file, or a place that is not writable (``/proc``, a read-only mount).

    Raises:
        InputError: naming ``flag`` and the path.
    """
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise InputError(f"{flag} {target} is a file, not a folder")
    _check_writable_place(target, target, flag)


def _check_writable_place(folder: Path, target: Path, flag: str) -> None:
    """``folder``, or its nearest existing ancestor (where the missing ones would be made), is a
    writable folder (root may write anywhere by permission bits, but not under /proc or /sys)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{flag} {target}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK) or str(folder.resolve()).startswith(("/proc", "/sys")):
        raise InputError(f"{flag} {target}: the folder {folder} is not writable")


def remove_stale_temporaries(path: str | Path) -> int:
    """Remove the hidden temporary files an atomic write of ``path`` left behind when its run was killed
    (``.<name>.*.tmp`` beside it: :func:`atomic_write_bytes`'s names); returns how many were removed. Call it
    only where no other process writes ``path`` at the same time."""
    target = Path(path)
    if not target.parent.is_dir():
        return 0
    stale = [p for p in target.parent.glob(f".{glob.escape(target.name)}.*.tmp") if p.is_file()]
    for leftover in stale:
        leftover.unlink(missing_ok=True)
    return len(stale)


def atomic_write_image(path: str | Path, picture: Image.Image) -> None:
    """Write ``picture`` to ``path`` atomically (:func:`atomic_write_bytes`), encoded by the path's suffix."""
    buffer = io.BytesIO()
    picture.save(buffer, format=Image.registered_extensions()[Path(path).suffix.lower()])
    atomic_write_bytes(path, buffer.getvalue())


def json_bytes(value: Any) -> bytes:
    """The bytes of a JSON file of the folder: indented by 2, keys sorted, one final newline."""
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8")


def atomic_write_json(path: str | Path, value: Any) -> None:
    """Write ``value`` as JSON (:func:`json_bytes`) to ``path`` atomically."""
    atomic_write_bytes(path, json_bytes(value))


# ----------------------------------------------------------------------------------------------
# Vocabulary files: one class per line
# ----------------------------------------------------------------------------------------------
def vocabulary_lines(text: str) -> list[str]:
    """The class names of a vocabulary text: every non-blank line, stripped (exact otherwise,
    so LVIS qualifiers such as ``bow (weapon)`` are kept). A UTF-8 byte-order mark at the start
    (as some editors write) is not part of the first name."""
    return [line.strip() for line in text.removeprefix("\ufeff").splitlines() if line.strip()]


def check_class_name(name: str, source: str) -> None:
    """Raise :class:`InputError` when class name ``name`` (from ``source``) is blank or holds a
    control character (a NUL, a tab, an escape...): it could not be written into prompts,
    ``vocabulary.txt`` or a card faithfully."""
    if not name or not name.strip():
        raise InputError(f"empty class name in {source} (got {name!r})")
    for char in name:
        if unicodedata.category(char) == "Cc":
            raise InputError(f"class name {name!r} in {source} holds the control character {char!r}")


def check_vocabulary(names: Sequence[str], source: str) -> None:
    """Raise :class:`InputError` when ``names`` (read from ``source``) is empty, repeats a name or
    holds a name with a control character (:func:`check_class_name`)."""
    if not names:
        raise InputError(f"vocabulary {source} has no class names")
    seen: set[str] = set()
    for name in names:
        check_class_name(name, f"vocabulary {source}")
        if name in seen:
            raise InputError(f"vocabulary {source} lists {name!r} twice")
        seen.add(name)


def parse_vocabulary_lines(text: str, source: str) -> list[str]:
    """The class list of vocabulary text ``text`` (from ``source``, named in errors).

    Raises:
        InputError: when the text has no class name, lists one twice or holds a control character.
    """
    names = vocabulary_lines(text)
    check_vocabulary(names, source)
    return names


def vocabulary_text(names: Iterable[str]) -> str:
    """The text of a vocabulary file: one name per line, with a final newline."""
    return "\n".join(names) + "\n"


# ----------------------------------------------------------------------------------------------
# Rows
# ----------------------------------------------------------------------------------------------
def decode_image(value: Any) -> Image.Image:
    """The PIL image of a stored image cell (``{"bytes": ..., "path": ...}`` as parquet holds it).

    Raises:
        ValueError: when the cell holds no embedded bytes.
    """
    if not isinstance(value, dict) or not value.get("bytes"):
        raise ValueError("image bytes are not embedded")
    return Image.open(io.BytesIO(value["bytes"]))


def iter_parquet_rows(
    path: str | Path, columns: Sequence[str] | None = None, batch_size: int = 64
) -> Iterator[dict[str, Any]]:
    """The rows of one parquet file in order, as dicts of plain Python values.

    Image columns come as stored, ``{"bytes": b"...png...", "path": None}`` (see :func:`decode_image`);
    lists as lists, ``boxes`` as a list of 4-float lists. ``columns`` limits what is read.
    """
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=batch_size, columns=list(columns) if columns else None):
        yield from batch.to_pylist()


@dataclass
class FolderStats:
    """What a folder's shards hold, read from small columns only (see :meth:`DatasetFolder.stats`)."""

    #: Rows over all shards.
    num_rows: int = 0
    num_shards: int = 0
    #: Bytes of the shard files on disk.
    download_size: int = 0
    #: Uncompressed bytes of the shards' row groups.
    dataset_size: int = 0
    #: Class name -> number of rows whose ``classes`` hold it.
    rows_per_class: Counter = field(default_factory=Counter)
    #: Class name -> number of detector boxes labelled with it.
    boxes_per_class: Counter = field(default_factory=Counter)
    num_boxes: int = 0
    #: (width, height) of the first row's image; None without rows.
    image_size: tuple[int, int] | None = None
    #: Mean ``counterfactual_score`` over the rows; None without rows.
    mean_counterfactual_score: float | None = None
    #: The first shard's columns (a folder older than a column of
    #: :data:`~magicseg_hf.schema.LATER_COLUMNS` lacks it); empty without shards.
    columns: list[str] = field(default_factory=list)
    #: Mean of the ``class_scores`` that are numbers (classes with pixels); None without any, or
    #: in a folder that predates the column.
    mean_class_score: float | None = None
    #: How many ``class_scores`` are numbers (NaN ones, classes with no pixel, not counted).
    num_class_scores: int = 0


# ----------------------------------------------------------------------------------------------
# The folder
# ----------------------------------------------------------------------------------------------
class DatasetFolder:
    """A MagicSeg dataset folder on disk: its paths, its shards and readers for what it holds.

    Creating the object touches nothing on disk; the readers read, the writers write atomically.

    Args:
        path: the folder (it need not exist yet).
    """

    def __init__(self, path: str | Path | DatasetFolder) -> None:
        self.root = Path(path.root if isinstance(path, DatasetFolder) else path)

    def __repr__(self) -> str:
        return f"DatasetFolder({str(self.root)!r})"

    def __fspath__(self) -> str:
        return str(self.root)

    # --- paths ------------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        """``data/``: the shards."""
        return self.root / DATA_DIR

    @property
    def card_path(self) -> Path:
        """``README.md``: the dataset card."""
        return self.root / CARD_FILE

    @property
    def vocabulary_path(self) -> Path:
        """``vocabulary.txt``: the run's classes."""
        return self.root / VOCABULARY_FILE

    @property
    def generation_path(self) -> Path:
        """``generation.json``: the run's settings, models and summary."""
        return self.root / GENERATION_FILE

    @property
    def preview_path(self) -> Path:
        """``preview.png``: the first pairs."""
        return self.root / PREVIEW_FILE

    @property
    def histogram_path(self) -> Path:
        """``class_histogram.png``: rows per class."""
        return self.root / HISTOGRAM_FILE

    @property
    def prompts_path(self) -> Path:
        """``prompts.jsonl``: cached LLM prompts of the run."""
        return self.root / PROMPTS_FILE

    @property
    def work_dir(self) -> Path:
        """``.work/``: an unfinished run's work area."""
        return self.root / WORK_DIR

    def shard_path(self, index: int) -> Path:
        """Path of final shard ``index`` (``data/train-NNNNN.parquet``)."""
        return self.root / shard_file_name(index)

    def work_rows_path(self, shard: int) -> Path:
        """``.work/shard-NNNNN.parquet``: the kept rows of work shard ``shard``."""
        return self.work_dir / f"{WORK_SHARD_STEM}{shard:0{SHARD_DIGITS}d}.parquet"

    def work_records_path(self, shard: int) -> Path:
        """``.work/shard-NNNNN.json``: the per-attempt records of work shard ``shard``."""
        return self.work_dir / f"{WORK_SHARD_STEM}{shard:0{SHARD_DIGITS}d}.json"

    # --- state ------------------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the folder exists as a directory."""
        return self.root.is_dir()

    def is_empty(self) -> bool:
        """Whether the folder is missing or holds nothing at all (but the lock of the run asking)."""
        return not self.root.is_dir() or not any(p.name != LOCK_FILE for p in self.root.iterdir())

    def holds_only_run_files(self) -> bool:
        """Whether every entry of the folder is a file a generation writes before its first shard is
        finished (:data:`RUN_FILES`) or a hidden temporary file of an atomic write."""
        return self.root.is_dir() and all(
            p.name in RUN_FILES or (p.name.startswith(".") and p.name.endswith(".tmp")) for p in self.root.iterdir()
        )

    def finished_work_shards(self) -> int:
        """Number of finished shards in ``.work/`` (their records files, the completion markers)."""
        if not self.work_dir.is_dir():
            return 0
        return sum(1 for _ in self.work_dir.glob(f"{WORK_SHARD_STEM}*.json"))

    def shard_paths(self) -> list[Path]:
        """The final shards (files matching ``data/train-*.parquet``), sorted; ``.work/`` is ignored."""
        return sorted(path for path in self.root.glob(SHARD_GLOB) if path.is_file())

    def published_files(self) -> list[str]:
        """Relative posix paths of the files that are published (:data:`PUBLISHED_PATTERNS`), sorted;
        ``.work/`` and hidden files (temporary files of atomic writes) never are."""
        selected = []
        for path in sorted(self.root.rglob("*")):
            if not path.is_file():
                continue
            parts = path.relative_to(self.root).parts
            if any(part.startswith(".") for part in parts):
                continue
            relative = "/".join(parts)
            if any(fnmatch.fnmatch(relative, pattern) for pattern in PUBLISHED_PATTERNS):
                selected.append(relative)
        return selected

    def remove_work_dir(self) -> None:
        """Delete ``.work/`` (done when a run has written its folder); no error when it is absent.

        The folder is first renamed (atomically) to ``.work.removed`` and then deleted, so a kill
        during the deletion leaves either the whole work area or none of it; a leftover
        ``.work.removed`` is deleted by the next call.
        """
        removed = self.root / REMOVED_WORK_DIR
        if self.work_dir.is_dir():
            shutil.rmtree(removed, ignore_errors=True)
            os.replace(self.work_dir, removed)
        shutil.rmtree(removed, ignore_errors=True)

    # --- vocabulary -------------------------------------------------------------------------------
    def read_vocabulary(self, check: bool = True) -> list[str]:
        """The classes of ``vocabulary.txt`` in file order (the lines that label ids refer to).

        Args:
            check: also refuse an empty file or a repeated name (:func:`check_vocabulary`).

        Raises:
            InputError: the file is missing or unreadable, or (``check``) empty or repetitive.
        """
        path = self.vocabulary_path
        if not path.is_file():
            raise InputError(f"{str(self.root)!r} has no {VOCABULARY_FILE} (not a dataset folder?)")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"cannot read {VOCABULARY_FILE}: {first_line(error)}") from error
        names = vocabulary_lines(text)
        if check:
            check_vocabulary(names, VOCABULARY_FILE)
        return names

    def write_vocabulary(self, names: Iterable[str]) -> Path:
        """Write ``vocabulary.txt`` (one name per line) atomically; returns its path."""
        atomic_write_bytes(self.vocabulary_path, vocabulary_text(names).encode("utf-8"))
        return self.vocabulary_path

    # --- generation.json --------------------------------------------------------------------------
    def read_generation(self) -> dict[str, Any] | None:
        """``generation.json`` as a dict, or None when the folder has none.

        Raises:
            InputError: the file is not valid JSON or not a JSON object.
        """
        path = self.generation_path
        if not path.is_file():
            return None
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise InputError(f"{GENERATION_FILE} is not valid JSON ({error})") from error
        if not isinstance(value, dict):
            raise InputError(f"{GENERATION_FILE} is not a JSON object")
        return value

    def write_generation(self, value: dict[str, Any]) -> Path:
        """Write ``generation.json`` atomically (:func:`json_bytes` formatting); returns its path."""
        atomic_write_json(self.generation_path, value)
        return self.generation_path

    # --- prompts.jsonl ----------------------------------------------------------------------------
    def read_prompts(self) -> dict[int, str]:
        """The cached LLM prompts of ``prompts.jsonl``: attempt index -> prompt (empty without the file).

        A line that is not JSON (the last one, cut short by a killed run) is skipped.
        """
        prompts: dict[int, str] = {}
        if not self.prompts_path.is_file():
            return prompts
        for line in self.prompts_path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            prompts[int(record["attempt"])] = record["prompt"]
        return prompts

    def append_prompts(self, records: Iterable[dict[str, Any]]) -> None:
        """Append one JSON line per record (``{"attempt": k, "classes": [...], "prompt": "..."}``) to
        ``prompts.jsonl`` in one ``write`` call, so a killed run loses at most the last line."""
        data = "".join(json.dumps(record) + "\n" for record in records).encode("utf-8")
        fd = os.open(self.prompts_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    # --- rows ---------------------------------------------------------------------------------------
    def num_rows(self) -> int:
        """Rows over all shards (read from the parquet footers only)."""
        return sum(pq.ParquetFile(path).metadata.num_rows for path in self.shard_paths())

    def iter_rows(self, columns: Sequence[str] | None = None, batch_size: int = 64) -> Iterator[dict[str, Any]]:
        """Every row of the folder, shard after shard, in dataset order (what ``load_dataset`` returns).

        Args:
            columns: the columns to read (all when None); reading only small columns is cheap.
            batch_size: rows decoded from parquet at a time (does not change what is yielded).

        Yields:
            dicts of plain values; image columns as stored (see :func:`decode_image`).
        """
        for path in self.shard_paths():
            yield from iter_parquet_rows(path, columns=columns, batch_size=batch_size)

    def stats(self) -> FolderStats:
        """Row count, sizes and per-class counts of the shards (images are not decoded, except
        the first row's, for its size)."""
        stats = FolderStats()
        score_total = class_score_total = 0.0
        for path in self.shard_paths():
            parquet = pq.ParquetFile(path)
            metadata = parquet.metadata
            if not stats.columns:
                stats.columns = list(parquet.schema_arrow.names)
            if "class_scores" in parquet.schema_arrow.names:
                for scores in parquet.read(columns=["class_scores"]).column("class_scores").to_pylist():
                    numbers = [v for v in scores or [] if v is not None and not math.isnan(v)]
                    class_score_total += sum(numbers)
                    stats.num_class_scores += len(numbers)
            stats.num_shards += 1
            stats.num_rows += metadata.num_rows
            stats.download_size += path.stat().st_size
            stats.dataset_size += sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
            table = parquet.read(columns=["classes", "box_labels", "counterfactual_score"])
            for classes, box_labels, score in zip(
                table.column("classes").to_pylist(),
                table.column("box_labels").to_pylist(),
                table.column("counterfactual_score").to_pylist(),
            ):
                classes = classes or []
                stats.rows_per_class.update(set(classes))
                for index in box_labels or []:
                    if 0 <= index < len(classes):
                        stats.boxes_per_class[classes[index]] += 1
                stats.num_boxes += len(box_labels or [])
                score_total += float(score or 0.0)
            if stats.image_size is None and metadata.num_rows:
                first = parquet.read_row_group(0, columns=["image"]).column("image")[0].as_py()
                if first and first.get("bytes"):
                    stats.image_size = decode_image(first).size
        if stats.num_rows:
            stats.mean_counterfactual_score = score_total / stats.num_rows
        if stats.num_class_scores:
            stats.mean_class_score = class_score_total / stats.num_class_scores
        return stats
