"""The training data of ``magicseg train``: MagicSeg folders or Hub repos -> train/validation rows.

Rows are read with ``datasets.load_dataset`` (a local folder and a Hub repo alike, streaming on
request); the vocabulary comes from each folder's ``vocabulary.txt`` through
:class:`~magicseg_hf.folder.DatasetFolder` (a Hub repo's is downloaded), else from the classes the
rows name. Several sources are concatenated, their vocabularies merged in order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magicseg_hf.errors import InputError, first_line
from magicseg_hf.folder import DatasetFolder, parse_vocabulary_lines

logger = logging.getLogger(__name__)

#: Columns the collator reads.
REQUIRED_COLUMNS = ("id", "image", "counterfactual_image", "label", "classes")
#: Columns read undecoded: the collator decodes them per row and skips a corrupt row.
PICTURE_COLUMNS = ("image", "counterfactual_image", "label")


@dataclass
class TrainingData:
    """Train and validation rows, the vocabulary, and where they came from."""

    train: Any
    validation: Any | None
    vocabulary: list[str]
    sources: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> list[dict[str, Any]]:
        """What ``training_summary.json`` records about the data."""
        return self.sources


def _load_rows(source: str, streaming: bool) -> Any:
    import datasets

    try:
        return datasets.load_dataset(source, split="train", streaming=streaming)
    except FileNotFoundError as error:
        raise InputError(f"`dataset` {source!r}: no such folder or Hub dataset ({first_line(error)})") from error
    except Exception as error:  # datasets raises many types for an unreadable source
        raise InputError(f"`dataset` {source!r} cannot be read: {first_line(error)}") from error


def _check_local_shards(source: str) -> None:
    """Every parquet shard of a local dataset folder has a readable footer (a truncated copy or a
    shard cut short by a full disk does not): checked before ``datasets`` reads it, naming the file."""
    import pyarrow.parquet as pq

    folder = DatasetFolder(source)
    if not folder.exists():
        return
    for path in folder.shard_paths():
        try:
            pq.ParquetFile(path)
        except Exception as error:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise InputError(
                f"`dataset` {source!r}: {path} is not a readable parquet shard ({first_line(error)}); "
                "check the folder with `magicseg validate`"
            ) from error


def _source_vocabulary(source: str) -> list[str] | None:
    """The source's vocabulary.txt, or None when it has none."""
    folder = DatasetFolder(source)
    if folder.exists():
        return folder.read_vocabulary() if folder.vocabulary_path.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(source, "vocabulary.txt", repo_type="dataset")
    except Exception:  # noqa: BLE001 - no file, offline, private: fall back to the rows' classes
        return None
    return parse_vocabulary_lines(Path(path).read_text(encoding="utf-8"), f"{source}/vocabulary.txt")


def load_training_data(
    sources: Sequence[str] | str,
    vocabulary: str | None = None,
    validation_size: float = 0.05,
    seed: int = 0,
    streaming: bool = False,
) -> TrainingData:
    """Read ``sources`` and split off a validation set.

    Args:
        sources: dataset folders or Hub dataset repo ids (one may be given as a plain string).
        vocabulary: a shipped vocabulary name or a file; default the sources' own.
        validation_size: fraction (< 1) or number (>= 1) of rows held out (0: none).
        seed: the split's seed.
        streaming: stream instead of loading (validation = the first rows).

    Raises:
        InputError: no source, a source without the required columns (named), a row class missing
            from an explicit vocabulary (named), a validation size that leaves no training row.
    """
    import datasets

    from magicseg_hf.generation.vocabulary import load_vocabulary

    if isinstance(sources, (str, os.PathLike)):
        sources = [os.fspath(sources)]  # one source, not a sequence of its characters
    if not sources:
        raise InputError("no `dataset` given: pass a MagicSeg dataset folder or Hub repo")
    parts, described, merged = [], [], []
    for source in sources:
        _check_local_shards(source)
        rows = _load_rows(source, streaming)
        columns = list(rows.features or {}) if rows.features is not None else []
        missing = [c for c in REQUIRED_COLUMNS if columns and c not in columns]
        if missing:
            raise InputError(f"`dataset` {source!r} lacks the columns {missing} (a MagicSeg dataset has {list(REQUIRED_COLUMNS)})")
        rows = rows.select_columns(list(REQUIRED_COLUMNS))
        for column in PICTURE_COLUMNS:  # decoded by the collator, row by row (a corrupt one is skipped)
            rows = rows.cast_column(column, datasets.Image(decode=False))
        own = _source_vocabulary(source)
        merged += [name for name in (own or []) if name not in merged]
        described.append({"source": source, "rows": None if streaming else len(rows), "vocabulary": len(own or [])})
        parts.append(rows)
    rows = parts[0] if len(parts) == 1 else (
        datasets.interleave_datasets(parts) if streaming else datasets.concatenate_datasets(parts)
    )

    if vocabulary:
        names = load_vocabulary(vocabulary)
    elif merged:
        names = merged
    else:
        names = []
    if not streaming:
        seen = _row_classes(rows)
        if vocabulary:
            outside = sorted(seen - set(names))
            if outside:
                shown = ", ".join(repr(c) for c in outside[:5]) + (f" and {len(outside) - 5} more" if len(outside) > 5 else "")
                raise InputError(f"the datasets name classes that `vocabulary` {vocabulary!r} lacks: {shown}")
        else:
            extra = sorted(seen - set(names))
            if extra:
                logger.warning("adding %d classes named by rows but not by vocabulary.txt: %s", len(extra), extra[:5])
                names += extra
    if not names:
        raise InputError("no vocabulary: the datasets have no vocabulary.txt; pass `vocabulary`")

    validation = None
    if streaming:
        count = int(validation_size) if validation_size >= 1 else 0
        if count:
            validation, rows = rows.take(count), rows.skip(count)
    elif validation_size > 0:
        test_size = int(validation_size) if validation_size >= 1 else validation_size
        if (isinstance(test_size, int) and test_size >= len(rows)) or len(rows) < 2:
            raise InputError(f"`validation_size` {validation_size} leaves no training row out of {len(rows)}")
        split = rows.train_test_split(test_size=test_size, seed=seed, shuffle=True)
        rows, validation = split["train"], split["test"]
    return TrainingData(train=rows, validation=validation, vocabulary=names, sources=described)


def _row_classes(rows: Any) -> set[str]:
    seen: set[str] = set()
    for classes in rows["classes"]:
        seen.update(classes)
    return seen
