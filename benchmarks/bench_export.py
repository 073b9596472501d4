"""`magicseg export` throughput and peak memory on the procedural scene source.

Run ``python benchmarks/bench_export.py [--rows 1000] [--size 128] [--shard-size 100]``. It draws a
source folder of ``--rows`` procedural rows (``magicseg_hf.generation.procedural``, the rows
``magicseg generate --source procedural`` writes), then runs each export in a fresh process and
reports rows/s and that process's peak resident memory (``ru_maxrss``, which each worker reports of
itself: ``_measure.process_peak_rss_bytes``), beside a process that only imports the same modules (the
baseline a Python process pays anyway) and a naive export that reads every row into memory before
writing (what the shard-by-shard export avoids). The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import emit_row, process_peak_rss_bytes, run_worker  # noqa: E402

logger = logging.getLogger("bench_export")

#: Classes of the source (known procedural objects and two drawn from their names).
VOCABULARY = ["sun", "house", "tree", "car", "ball", "leaf", "brick", "star", "bow (weapon)", "traffic light"]

#: What each worker runs: ``baseline`` only imports the modules, ``export`` runs ``export_dataset``,
#: ``naive`` reads every row into memory before writing.
WORKERS = ("baseline", "export", "naive")


def _import_modules() -> None:
    """The modules every worker imports (the baseline a Python process pays anyway)."""
    import datasets  # noqa: F401
    import numpy  # noqa: F401
    import PIL.Image  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import magicseg_hf.export.core  # noqa: F401


def export_worker(source: str, target: str, format_name: str) -> None:
    """``magicseg export`` of ``source`` to ``target`` in ``format_name``, shard by shard."""
    from magicseg_hf.export import export_dataset

    export_dataset(source, target, format=format_name, progress=False)


def naive_worker(source: str, target: str) -> None:
    """Naive export: every row of the dataset decoded and converted in memory, then written at once."""
    import io

    import datasets
    from PIL import Image

    from magicseg_hf.export.labels import global_label, semantic_features
    from magicseg_hf.folder import DatasetFolder

    folder = DatasetFolder(source)
    vocabulary = folder.read_vocabulary()
    index = {name: k for k, name in enumerate(vocabulary)}
    rows = list(folder.iter_rows(columns=["id", "image", "label", "classes"]))
    out = []
    for row in rows:
        label = global_label(Image.open(io.BytesIO(row["label"]["bytes"])), row["classes"], index)
        out.append({"id": row["id"], "image": Image.open(io.BytesIO(row["image"]["bytes"])),
                    "label": Image.fromarray(label, "L")})
    datasets.Dataset.from_list(out, features=semantic_features()).to_parquet(target + ".parquet")


def worker(kind: str, arguments: list[str]) -> dict[str, float]:
    """In a fresh process: run worker ``kind`` and report its seconds and this process's peak RSS."""
    _import_modules()
    start = time.perf_counter()
    if kind == "export":
        export_worker(*arguments)
    elif kind == "naive":
        naive_worker(*arguments)
    seconds = time.perf_counter() - start if kind != "baseline" else 0.0
    return {"seconds": seconds, "peak_rss_bytes": process_peak_rss_bytes()}


def write_source(folder: Path, num_rows: int, size: int, shard_size: int) -> None:
    """A MagicSeg folder of ``num_rows`` procedural rows (``vocabulary.txt`` + shards), written shard by shard."""
    from magicseg_hf.folder import DatasetFolder, atomic_write_bytes
    from magicseg_hf.generation.procedural import procedural_row
    from magicseg_hf.generation.writer import rows_to_parquet_bytes

    dataset = DatasetFolder(folder)
    dataset.write_vocabulary(VOCABULARY)
    for shard, start in enumerate(range(0, num_rows, shard_size)):
        rows = [procedural_row(VOCABULARY, k, seed=0, size=size)
                for k in range(start, min(start + shard_size, num_rows))]
        atomic_write_bytes(dataset.shard_path(shard), rows_to_parquet_bytes(rows))


def run_child(kind: str, *args: str) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) that a fresh process running worker ``kind`` reports (``ru_maxrss`` of itself)."""
    result = run_worker([sys.executable, os.path.abspath(__file__), "--worker", kind, *args], timeout=None,
                        env={**os.environ, "OMP_NUM_THREADS": "1"})
    if result.error or not result.rows:
        sys.stderr.write(result.stderr_tail[-4000:])
        raise SystemExit(f"{kind} worker failed: {result.error or 'no row'}")
    row = result.rows[-1]
    return float(row["seconds"]), row["peak_rss_bytes"] / 2**20


def main(argv: list[str] | None = None) -> int:
    """Draw the source, run each export in its own worker process, print the JSON summary (or run one worker)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--size", type=int, default=128, help="Picture side in px.")
    parser.add_argument("--shard-size", type=int, default=100, help="Rows per source shard.")
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    parser.add_argument("worker_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        emit_row(worker(args.worker, args.worker_args))
        return 0
    if args.worker_args:
        parser.error(f"unrecognized arguments: {' '.join(args.worker_args)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_source(root / "src", args.rows, args.size, args.shard_size)
        logger.info("source: %d rows of %d px in %.1f s", args.rows, args.size, time.perf_counter() - start)
        _, baseline = run_child("baseline")
        results = {"rows": args.rows, "size_px": args.size, "shard_size": args.shard_size,
                   "baseline_import_peak_mib": round(baseline, 1)}
        for name, kind, extra in (("semantic", "export", ["semantic"]), ("mmseg", "export", ["mmseg"]),
                                  ("naive_in_memory", "naive", [])):
            seconds, peak = run_child(kind, str(root / "src"), str(root / name), *extra)
            results[f"{name}_rows_per_s"] = round(args.rows / seconds, 1)
            results[f"{name}_peak_mib"] = round(peak, 1)
            logger.info("%s: %.1f rows/s, peak RSS %.0f MiB", name, args.rows / seconds, peak)
        results["semantic_vs_naive_speed"] = round(results["semantic_rows_per_s"] / results["naive_in_memory_rows_per_s"], 2)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
