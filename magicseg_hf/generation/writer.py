"""Rows on disk: per-shard work files while a run is going, the dataset folder when it ends.

While a run is going, shard ``j`` (attempts ``[jA, (j+1)A)``) is written, when complete, as
``.work/shard-NNNNN.parquet`` (its kept rows) and then ``.work/shard-NNNNN.json`` (one record
per attempt: kept or the filter that dropped it). The JSON file is the completion marker; both
are written atomically (temporary file + rename), so a kill leaves every finished shard intact
and a resume starts at the first unfinished one.

When every needed shard is there, :func:`finalize` writes the dataset folder of DESIGN.md: the
first ``num_pairs`` kept rows in attempt order as ``data/train-NNNNN.parquet``, ``preview.png``,
``generation.json`` with the run's summary and the card, then removes ``.work``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from PIL import Image

from magicseg_hf.schema import (
    DATA_DIR,
    DATASET_FEATURES,
    DROP_REASONS,
    GENERATION_FILE,
    PREVIEW_FILE,
    VOCABULARY_FILE,
    WORK_DIR,
    shard_file_name,
)

KEPT = "kept"


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
        drops = ", ".join(f"{k}={v}" for k, v in self.dropped.items())
        text = (
            f"wrote {self.num_rows} rows to {self.output_dir} from {self.attempts} attempts "
            f"(dropped: {drops}) in {self.elapsed_seconds:.1f}s"
        )
        if self.shortfall:
            text += f"; {self.shortfall} short of --num-pairs: raise --max-attempts or loosen the filters"
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
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


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def rows_to_parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    """Encode rows with the dataset features (images as PNG) into parquet bytes."""
    import datasets

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
    """The ``.work`` area of one output folder."""

    def __init__(self, output_dir: str | Path) -> None:
        self.output_dir = Path(output_dir)
        self.work_dir = self.output_dir / WORK_DIR

    def parquet_path(self, shard: int) -> Path:
        return self.work_dir / f"shard-{shard:05d}.parquet"

    def records_path(self, shard: int) -> Path:
        return self.work_dir / f"shard-{shard:05d}.json"

    def is_complete(self, shard: int) -> bool:
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


def write_run_files(output_dir: Path, vocabulary: list[str], generation: dict[str, Any]) -> None:
    """The files a run writes before its first attempt: vocabulary.txt and generation.json."""
    atomic_write_bytes(output_dir / VOCABULARY_FILE, ("\n".join(vocabulary) + "\n").encode("utf-8"))
    atomic_write_json(output_dir / GENERATION_FILE, generation)


def _decode_preview_rows(table, count: int) -> list[dict[str, Any]]:
    rows = []
    for row in table.slice(0, count).to_pylist():
        decoded = {k: Image.open(io.BytesIO(row[k]["bytes"])) for k in ("image", "counterfactual_image", "label")}
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
    """Write the dataset folder from the complete shards ``0..num_shards-1`` (the run is over).

    The dataset is the first ``num_pairs`` kept attempts in attempt order; the summary counts the
    attempts up to the last of them (all attempts when there is a shortfall), so it is the same
    however the run was split or resumed.
    """
    from magicseg_hf.hub import write_dataset_card
    from magicseg_hf.visualization import pair_grid

    output_dir = Path(output_dir)
    store = ShardStore(output_dir)
    counted: list[dict[str, Any]] = []
    kept_total = 0
    data_dir = output_dir / DATA_DIR
    data_dir.mkdir(parents=True, exist_ok=True)
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
            target = output_dir / shard_file_name(out_index)
            if kept_here == table.num_rows:
                atomic_write_bytes(target, store.parquet_path(shard).read_bytes())
            else:
                buffer = io.BytesIO()
                pq.write_table(table.slice(0, kept_here), buffer)
                atomic_write_bytes(target, buffer.getvalue())
            if len(preview_rows) < 4:
                preview_rows += _decode_preview_rows(table, min(kept_here, 4 - len(preview_rows)))
            out_index += 1
        kept_total += kept_here

    dropped = {reason: sum(r["status"] == reason for r in counted) for reason in DROP_REASONS}
    summary = GenerationSummary(
        output_dir=str(output_dir),
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
        pair_grid(preview_rows, max_rows=4).save(buffer, format="PNG")
        atomic_write_bytes(output_dir / PREVIEW_FILE, buffer.getvalue())
    # The local path stays out of the file: generation.json travels to the Hub with the data.
    saved_summary = {k: v for k, v in summary.to_dict().items() if k != "output_dir"}
    atomic_write_json(output_dir / GENERATION_FILE, {**generation, "summary": saved_summary})
    write_dataset_card(output_dir)
    shutil.rmtree(store.work_dir, ignore_errors=True)
    return summary


def count_kept(records: Iterable[dict[str, Any]]) -> int:
    """Number of kept attempts among ``records``."""
    return sum(r["status"] == KEPT for r in records)
