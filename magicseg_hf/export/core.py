"""The export itself: per-row label remapping, the ``datasets`` transform, and the two writers.

Label mapping (:func:`label_table`): for a row with ``classes`` and the folder's vocabulary,

- source 0 (background) -> 0,
- source ``i`` in 1..len(classes) -> ``vocabulary.index(classes[i-1]) + 1``,
- source 255 (unknown) -> 255,

and any other source value is an error (the row is named). The exported ``label`` therefore holds
one global id per class over the whole dataset, the convention of transformers' semantic-segmentation
recipe (``id2label.json``: ``{"0": "background", "1": vocabulary[0], ...}``, ``do_reduce_labels=False``)
and of mmsegmentation (``reduce_zero_label=False``, ``ignore_index=255``).

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from magicseg_hf.errors import InputError, first_line
from magicseg_hf.export import (
    BACKGROUND_NAME,
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
from magicseg_hf.runtime import VERSIONS_RECORD_KEY, package_versions, recorded_versions
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


# ----------------------------------------------------------------------------------------------
# Label mapping
# ----------------------------------------------------------------------------------------------
def id2label(vocabulary: Sequence[str]) -> dict[str, str]:
    """The export's ``id2label`` (string keys, as ``id2label.json`` holds it): ``"0"`` background,
    ``str(k + 1)`` = ``vocabulary[k]``. 255 (unknown) is not a class and is not listed."""
    return {"0": BACKGROUND_NAME, **{str(k + 1): name for k, name in enumerate(vocabulary)}}


def label_table(classes: Sequence[str], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """The lookup tables that turn one row's label into global ids.

    Args:
        classes: the row's ``classes`` (source value ``i`` = ``classes[i-1]``).
        index: vocabulary name -> position in ``vocabulary.txt`` (0-based).

    Returns:
        ``(table, valid)``, each (256,): ``table`` uint8 maps a source value to its global id
        (0 -> 0, i -> ``index[classes[i-1]] + 1``, 255 -> 255); ``valid`` bool marks the source
        values a label may hold (0..len(classes) and 255).

    Raises:
        KeyError: a class of ``classes`` is not in ``index``.
    """
    table = np.full(256, UNKNOWN, dtype=np.uint8)
    valid = np.zeros(256, dtype=bool)
    table[BACKGROUND] = BACKGROUND
    valid[BACKGROUND] = valid[UNKNOWN] = True
    for position, name in enumerate(classes, start=1):
        table[position] = index[name] + 1
        valid[position] = True
    return table, valid


def global_label(label: np.ndarray | Image.Image, classes: Sequence[str], index: dict[str, int]) -> np.ndarray:
    """One row's label in global ids.

    Args:
        label: (H, W) uint8 source label (0 background, i = ``classes[i-1]``, 255 unknown).
        classes: the row's ``classes``.
        index: vocabulary name -> 0-based position in ``vocabulary.txt``.

    Returns:
        (H, W) uint8: 0 background, ``index[name] + 1`` per class, 255 unknown.

    Raises:
        KeyError: a class is not in ``index``.
        ValueError: the label holds a value outside 0..len(classes) and 255.
    """
    array = np.asarray(label, dtype=np.uint8)
    table, valid = label_table(classes, index)
    if not valid[array].all():
        bad = sorted(set(np.unique(array).tolist()) - set(np.flatnonzero(valid).tolist()))
        raise ValueError(f"label values {bad} outside 0..{len(classes)} and {UNKNOWN}")
    return table[array]


def _png_bytes(array: np.ndarray) -> bytes:
    """PNG bytes of an (H, W) uint8 array (mode "L")."""
    buffer = io.BytesIO()
    Image.fromarray(array, "L").save(buffer, format="PNG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------
# The datasets transform (the semantic view without a copy)
# ----------------------------------------------------------------------------------------------
def semantic_transform(
    vocabulary: Sequence[str], with_counterfactual: bool = False
) -> Callable[[dict[str, list[Any]]], dict[str, list[Any]]]:
    """A ``Dataset.with_transform`` function giving the rows of a ``semantic`` export.

    ``load_dataset(DIR, split="train").with_transform(semantic_transform(vocabulary))[i]`` equals
    row ``i`` of ``magicseg export DIR --format semantic`` (same ``id``, same image pixels, same
    ``label`` pixels), decoded lazily and without writing anything.

    Args:
        vocabulary: the lines of the folder's ``vocabulary.txt``.
        with_counterfactual: also return ``counterfactual_image``.

    Returns:
        ``transform(batch) -> batch``: ``batch`` holds decoded columns (``image`` and ``label`` PIL
        images, ``classes`` lists); the result holds ``id``, ``image``, ``label`` (PIL mode "L",
        global ids) and, if asked, ``counterfactual_image``.
    """
    index = {name: k for k, name in enumerate(vocabulary)}

    def transform(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        labels = []
        for row_id, label, classes in zip(batch["id"], batch["label"], batch["classes"]):
            try:
                labels.append(Image.fromarray(global_label(label, classes, index), "L"))
            except KeyError as error:
                raise InputError(f"row {row_id!r}: class {error.args[0]!r} is not a line of {VOCABULARY_FILE}") from None
            except ValueError as error:
                raise InputError(f"row {row_id!r}: {error}") from None
        out = {"id": list(batch["id"]), "image": list(batch["image"]), "label": labels}
        if with_counterfactual:
            out["counterfactual_image"] = list(batch["counterfactual_image"])
        return out

    return transform


def semantic_view(source: str | Path, split: str = "train", with_counterfactual: bool = False) -> Any:
    """``load_dataset(source, split=split)`` with :func:`semantic_transform`: the rows of a
    ``semantic`` export of dataset folder ``source``, computed on access (a ``datasets.Dataset``)."""
    import datasets

    folder = DatasetFolder(source)
    vocabulary = folder.read_vocabulary()
    dataset = datasets.load_dataset(str(folder.root), split=split)
    return dataset.with_transform(semantic_transform(vocabulary, with_counterfactual=with_counterfactual))


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
def semantic_features(with_counterfactual: bool = False) -> Any:
    """The ``datasets.Features`` of a semantic export: ``id``, ``image``, ``label`` (mode "L") and,
    if asked, ``counterfactual_image``."""
    import datasets

    columns = {"id": datasets.Value("string"), "image": datasets.Image(), "label": datasets.Image(mode="L")}
    if with_counterfactual:
        columns["counterfactual_image"] = datasets.Image()
    return datasets.Features(columns)


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
# Cards and config files
# ----------------------------------------------------------------------------------------------
def palette(num_classes: int) -> list[list[int]]:
    """``num_classes + 1`` RGB colours (background black first), distinct and stable."""
    colours = [[0, 0, 0]]
    for k in range(1, num_classes + 1):
        colours.append([(k * 67 + 40) % 256, (k * 151 + 90) % 256, (k * 227 + 160) % 256])
    return colours


def mmseg_config_text(vocabulary: Sequence[str], out: Path) -> str:
    """The ``mmseg_config.py`` snippet: classes and palette (``metainfo``) and the dataset settings
    of mmsegmentation 1.x's ``BaseSegDataset`` (0.x's ``CustomDataset`` in a comment)."""
    classes = (BACKGROUND_NAME, *vocabulary)
    return (
        "# mmsegmentation dataset settings for a `magicseg export --format mmseg` folder.\n"
        "# Label values: 0 background, k = classes[k] (vocabulary.txt line k), 255 unknown (ignored).\n"
        "dataset_type = 'BaseSegDataset'\n"
        f"data_root = {str(out.resolve())!r}\n"
        f"metainfo = dict(\n    classes={classes!r},\n    palette={palette(len(vocabulary))!r},\n)\n"
        "train_dataset = dict(\n    type=dataset_type, data_root=data_root, metainfo=metainfo,\n"
        "    data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),\n"
        "    img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=False, ignore_index=255)\n"
        "val_dataset = dict(\n    type=dataset_type, data_root=data_root, metainfo=metainfo,\n"
        "    data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),\n"
        "    img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=False, ignore_index=255)\n"
        f"num_classes = {len(classes)}  # decode_head=dict(num_classes=num_classes)\n"
        "# mmsegmentation 0.x: dict(type='CustomDataset', data_root=data_root, img_dir='img_dir/train',\n"
        "#     ann_dir='ann_dir/train', img_suffix='.jpg', seg_map_suffix='.png', classes=metainfo['classes'],\n"
        "#     palette=metainfo['palette'], reduce_zero_label=False, ignore_index=255)\n"
    )


def _source_license(source: DatasetFolder) -> str:
    """The source card's ``license`` (the images keep it), ``other`` when it has none."""
    try:
        from huggingface_hub import DatasetCard

        return str(DatasetCard.load(source.card_path).data.to_dict().get("license") or "other")
    except Exception:  # noqa: BLE001 - no card or no metadata: the licence is unknown
        return "other"


def render_export_card(out: Path, record: dict[str, Any], vocabulary: Sequence[str], repo_id: str | None = None) -> str:
    """The ``README.md`` of an export folder: metadata (for ``semantic``: the ``configs`` and
    ``dataset_info`` that make ``load_dataset`` return the export's features), what the label values
    mean, where the rows come from (the source folder and its ``generation.json``), how to train."""
    import datasets
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    from magicseg_hf.cards import size_category
    from magicseg_hf.folder import CARD_DATA_FILES

    fmt = record["format"]
    num_rows = int(record["num_rows"])
    data = DatasetCardData(
        license=record.get("license") or "other",
        task_categories=["image-segmentation"],
        task_ids=["semantic-segmentation"],
        size_categories=[size_category(num_rows)],
        pretty_name=f"MagicSeg synthetic segmentation, global labels ({len(vocabulary)} classes, {fmt})",
        tags=["synthetic", "magicseg", "semantic-segmentation", f"magicseg-export-{fmt}"],
    )
    if fmt == SEMANTIC:
        MetadataConfigs({"default": {"data_files": [{"split": "train", "path": CARD_DATA_FILES}]}}).to_dataset_card_data(data)
        size = sum(p.stat().st_size for p in (out / DATA_DIR).glob("*.parquet"))
        info = datasets.DatasetInfo(
            features=semantic_features(bool(record.get("with_counterfactual"))),
            splits=datasets.SplitDict.from_split_dict([{"name": "train", "num_bytes": size, "num_examples": num_rows}]),
            download_size=size,
            dataset_size=size,
        )
        DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    ref = repo_id or "USER/NAME"
    shown = ", ".join(f"{k + 1} = {name}" for k, name in enumerate(vocabulary[:12]))
    more = f", … ({len(vocabulary)} classes; all in `{ID2LABEL_FILE}`)" if len(vocabulary) > 12 else ""
    lines = [
        f"# MagicSeg data with global labels ({fmt})",
        "",
        f"**{num_rows} rows** exported by `magicseg export --format {fmt}` (magicseg-hf "
        f"{recorded_versions(record).get('magicseg_hf', '?')}) from the MagicSeg dataset folder `{Path(record['source']).name}`. "
        f"Its generation settings are copied in [`{SOURCE_GENERATION_FILE}`]({SOURCE_GENERATION_FILE}).",
        "",
        "## Label values",
        "",
        "Unlike a MagicSeg folder (where `label` value *i* is that row's `classes[i-1]`), every label here "
        "uses one global id per class:",
        "",
        "| value | meaning |",
        "|---|---|",
        f"| 0 | {BACKGROUND_NAME} (no target class) |",
        f"| 1..{len(vocabulary)} | `vocabulary.index(name) + 1`: {shown}{more} |",
        f"| {UNKNOWN} | unknown: ignore it in the loss and the metric |",
        "",
        f"`{ID2LABEL_FILE}` and `{LABEL2ID_FILE}` (at the root) name every id; background is class 0, so train "
        "with `do_reduce_labels=False` (mmseg: `reduce_zero_label=False`) and ignore index 255.",
        "",
    ]
    if fmt == SEMANTIC:
        columns = "`id`, `image`, `label` (mode \"L\")" + (
            ", `counterfactual_image`" if record.get("with_counterfactual") else "")
        lines += [
            "## Use",
            "",
            f"One split, `train`; columns {columns}. This is the layout of transformers' semantic-segmentation "
            "recipe (`examples/pytorch/semantic-segmentation`):",
            "",
            "```bash",
            f"python run_semantic_segmentation.py --dataset_name {ref} --do_reduce_labels False \\",
            "    --model_name_or_path nvidia/mit-b0 --output_dir segformer --do_train --do_eval",
            "```",
            "",
            "```python",
            "import json",
            "from datasets import load_dataset",
            "from huggingface_hub import hf_hub_download",
            f'dataset = load_dataset("{ref}", split="train")',
            f'path = hf_hub_download("{ref}", "{ID2LABEL_FILE}", repo_type="dataset")',
            "id2label = {int(k): v for k, v in json.load(open(path)).items()}  # as the recipe reads it",
            "```",
        ]
    else:
        splits = ", ".join(f"{count} {name}" for name, count in (record.get("splits") or {}).items())
        lines += [
            "## Use",
            "",
            "`img_dir/{train,val}/*.jpg` and `ann_dir/{train,val}/*.png` (same file stem = same row; the split "
            f"is chosen by a hash of the row id: {splits}). `{MMSEG_CONFIG_FILE}` holds the class "
            "list, the palette and the dataset settings for mmsegmentation's `BaseSegDataset`.",
        ]
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"))


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
            atomic_write_bytes(out / MMSEG_CONFIG_FILE, mmseg_config_text(vocabulary, out).encode("utf-8"))
        record = {
            "format": format,
            "source": str(src),
            "source_generation": SOURCE_GENERATION_FILE if generation is not None else None,
            "num_rows": num_rows,
            "num_shards": len(shards),
            "num_classes": len(vocabulary),
            "splits": split_counts,
            "with_counterfactual": with_counterfactual,
            "val_fraction": options["val_fraction"],
            "label_values": {"background": BACKGROUND, "classes": f"vocabulary.index(name) + 1 (1..{len(vocabulary)})",
                             "unknown": UNKNOWN},
            "license": _source_license(folder),
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


def summary_dict(summary: ExportSummary) -> dict[str, Any]:
    """``summary`` as plain JSON values."""
    value = asdict(summary)
    value["output_dir"] = str(summary.output_dir)
    return value


def render_export_card_for(folder: str | Path, repo_id: str | None = None) -> bytes:
    """The card of finished export folder ``folder``, re-rendered with ``repo_id`` in its examples
    (what ``magicseg push`` publishes); reads only."""
    root = Path(folder)
    record = json.loads((root / EXPORT_FILE).read_text(encoding="utf-8"))
    names = json.loads((root / ID2LABEL_FILE).read_text(encoding="utf-8"))
    vocabulary = [names[str(k)] for k in range(1, len(names))]
    return render_export_card(root, record, vocabulary, repo_id=repo_id).encode("utf-8")
