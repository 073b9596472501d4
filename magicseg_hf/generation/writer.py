"""Rows on disk: per-shard work files while a run is going, the dataset folder when it ends.

While a run is going, shard ``j`` (attempts ``[jA, (j+1)A)``) is written, when complete, as
``.work/shard-NNNNN.parquet`` (its kept rows) and then ``.work/shard-NNNNN.json`` (one record
per attempt: kept or the filter that dropped it). The JSON file is the completion marker; both
are written atomically (temporary file + rename), so a kill leaves every finished shard intact
and a resume starts at the first unfinished one.

When every needed shard is there, :func:`finalize` writes the rows of the dataset folder: the
first ``num_pairs`` kept rows in attempt order as ``data/train-NNNNN.parquet``, ``preview.png``
and ``generation.json`` with the run's summary. The writer knows nothing of cards: ``generate()``
then renders the card (:func:`magicseg_hf.cards.write_dataset_card`) and removes ``.work``
(:meth:`ShardStore.remove`). Every path comes from :class:`~magicseg_hf.folder.DatasetFolder`.

Finalisation is resumable: it reads only the work shards, and every step writes whole files
atomically, so running it again gives the same files. The removal of ``.work`` is its last step
and is atomic (:meth:`~magicseg_hf.folder.DatasetFolder.remove_work_dir`): a folder is complete
exactly when ``generation.json`` has its summary and ``.work/`` is gone (:func:`is_complete`);
a killed finalisation leaves ``.work/`` in place, and a resume runs finalisation again.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq

from magicseg_hf.folder import DatasetFolder, atomic_write_bytes, atomic_write_json, decode_image
from magicseg_hf.schema import DATASET_FEATURES, DROP_REASONS
from magicseg_hf.visualization import pair_grid

#: Rows shown in ``preview.png``.
PREVIEW_ROWS = 4

KEPT = "kept"
#: The status of an attempt that raised (a drop reason of ``DROP_REASONS``; the run goes on).
ERROR = "error"


@dataclass
class GenerationSummary:
    """What a run produced. ``dropped`` counts attempts per filter (see ``DROP_REASONS``)."""

    output_dir: str
    num_rows: int
    attempts: int
    kept: int
    dropped: dict[str, int] = field(default_factory=dict)
    shortfall: int = 0
    num_processes: int = 1
    elapsed_seconds: float = 0.0

    def describe(self) -> str:
        """One line for people: rows written, attempts, drops per filter, time, any shortfall."""
        drops = ", ".join(f"{k}={v}" for k, v in self.dropped.items())
        text = (
            f"wrote {self.num_rows} rows to {self.output_dir} from {self.attempts} attempts "
            f"(dropped: {drops}) in {self.elapsed_seconds:.1f}s"
        )
        if self.shortfall:
            text += f"; {self.shortfall} short of --num-pairs: raise --max-attempts or loosen the filters"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (``generation.json`` keeps it, less ``output_dir``)."""
        return asdict(self)


def rows_to_parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    """Encode rows with the dataset features (images as PNG) into parquet bytes."""
    buffer = io.BytesIO()
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # one bar per shard would clutter the run's own bar
    try:
        datasets.Dataset.from_list(rows, features=DATASET_FEATURES).to_parquet(buffer)
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()
    return buffer.getvalue()


class ShardStore:
    """The ``.work`` area of one output folder: the per-shard work files of a running generation."""

    def __init__(self, output_dir: str | Path) -> None:
        self.folder = DatasetFolder(output_dir)
        self.output_dir = self.folder.root
        self.work_dir = self.folder.work_dir

    def parquet_path(self, shard: int) -> Path:
        """``.work/shard-NNNNN.parquet``: the kept rows of shard ``shard``."""
        return self.folder.work_rows_path(shard)

    def records_path(self, shard: int) -> Path:
        """``.work/shard-NNNNN.json``: the records of shard ``shard`` (its completion marker)."""
        return self.folder.work_records_path(shard)

    def is_complete(self, shard: int) -> bool:
        """Whether shard ``shard`` has been written in full."""
        return self.records_path(shard).is_file()

    def records(self, shard: int) -> list[dict[str, Any]]:
        """Per-attempt records of a complete shard: ``{"attempt": k, "status": "kept"|reason}``."""
        return json.loads(self.records_path(shard).read_text())["records"]

    def write_shard(self, shard: int, rows: list[dict[str, Any]], records: list[dict[str, Any]]) -> None:
        """Persist a finished shard: rows first, then the records file that marks it complete."""
        if rows:
            atomic_write_bytes(self.parquet_path(shard), rows_to_parquet_bytes(rows))
        atomic_write_json(self.records_path(shard), {"shard": shard, "records": records})

    def kept_before(self, shard: int, target: int) -> int | None:
        """Kept rows in the complete shards ``0..shard-1`` read in order, or ``None`` while a gap
        (an unfinished shard) comes before ``target`` kept rows are reached.

        A total of at least ``target`` means shard ``shard`` is not needed; it is returned as soon
        as the contiguous prefix reaches it, whatever the later shards' state (another process may
        have skipped them for the same reason).
        """
        total = 0
        for j in range(shard):
            if total >= target:
                return total
            if not self.is_complete(j):
                return None
            total += count_kept(self.records(j))
        return total

    def remove(self) -> None:
        """Delete the work area (once the dataset folder is written and its card rendered)."""
        self.folder.remove_work_dir()


def write_run_files(output_dir: str | Path, vocabulary: list[str], generation: dict[str, Any]) -> None:
    """The files a run writes before its first attempt: vocabulary.txt and generation.json."""
    folder = DatasetFolder(output_dir)
    folder.write_vocabulary(vocabulary)
    folder.write_generation(generation)


def _decode_preview_rows(table: Any, count: int) -> list[dict[str, Any]]:
    """The first ``count`` rows of arrow ``table`` with their images decoded, for the preview grid."""
    rows = []
    for row in table.slice(0, count).to_pylist():
        decoded = {k: decode_image(row[k]) for k in ("image", "counterfactual_image", "label")}
        rows.append({**decoded, "classes": row["classes"]})
    return rows


def finalize(
    output_dir: str | Path,
    num_shards: int,
    num_pairs: int,
    generation: dict[str, Any],
    elapsed_seconds: float,
    num_processes: int,
) -> GenerationSummary:
    """Write the rows of the dataset folder from the complete shards ``0..num_shards-1``.

    The dataset is the first ``num_pairs`` kept attempts in attempt order; the summary counts the
    attempts up to the last of them (all attempts when there is a shortfall), so it is the same
    however the run was split or resumed. Writes ``data/``, ``preview.png`` and ``generation.json``
    (``generation`` plus the summary); the card and the removal of ``.work`` are the caller's next
    steps (:func:`magicseg_hf.cards.write_dataset_card`, :meth:`ShardStore.remove`).
    """
    store = ShardStore(output_dir)
    folder = store.folder
    counted: list[dict[str, Any]] = []
    kept_total = 0
    folder.data_dir.mkdir(parents=True, exist_ok=True)
    preview_rows: list[dict[str, Any]] = []
    out_index = 0
    for shard in range(num_shards):
        if kept_total >= num_pairs or not store.is_complete(shard):
            break
        records = store.records(shard)
        kept_here = 0
        for record in records:
            if kept_total + kept_here >= num_pairs:
                break
            counted.append(record)
            kept_here += record["status"] == KEPT
        if kept_here:
            table = pq.read_table(store.parquet_path(shard))
            target = folder.shard_path(out_index)
            if kept_here == table.num_rows:
                atomic_write_bytes(target, store.parquet_path(shard).read_bytes())
            else:
                buffer = io.BytesIO()
                pq.write_table(table.slice(0, kept_here), buffer)
                atomic_write_bytes(target, buffer.getvalue())
            if len(preview_rows) < PREVIEW_ROWS:
                preview_rows += _decode_preview_rows(table, min(kept_here, PREVIEW_ROWS - len(preview_rows)))
            out_index += 1
        kept_total += kept_here

    dropped = {reason: sum(r["status"] == reason for r in counted) for reason in DROP_REASONS}
    summary = GenerationSummary(
        output_dir=str(folder.root),
        num_rows=kept_total,
        attempts=len(counted),
        kept=kept_total,
        dropped=dropped,
        shortfall=max(0, num_pairs - kept_total),
        num_processes=num_processes,
        elapsed_seconds=round(elapsed_seconds, 3),
    )
    if preview_rows:
        buffer = io.BytesIO()
        pair_grid(preview_rows, max_rows=PREVIEW_ROWS).save(buffer, format="PNG")
        atomic_write_bytes(folder.preview_path, buffer.getvalue())
    # The local path stays out of the file: generation.json travels to the Hub with the data.
    saved_summary = {k: v for k, v in summary.to_dict().items() if k != "output_dir"}
    folder.write_generation({**generation, "summary": saved_summary})
    return summary


def count_kept(records: Iterable[dict[str, Any]]) -> int:
    """Number of kept attempts among ``records``."""
    return sum(r["status"] == KEPT for r in records)


def is_complete(folder: DatasetFolder, generation: dict[str, Any] | None) -> bool:
    """Whether ``folder`` (whose ``generation.json`` is ``generation``) holds a finished run: the
    summary is written and the work area is gone (finalisation's last step)."""
    return bool(generation and generation.get("summary")) and not folder.work_dir.exists()
