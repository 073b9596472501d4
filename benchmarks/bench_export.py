"""`magicseg export` throughput and peak memory on the procedural scene source.

Run ``python benchmarks/bench_export.py [--rows 1000] [--size 128] [--shard-size 100]``. It draws a
source folder of ``--rows`` procedural rows (``magicseg_hf.generation.procedural``, the rows
``magicseg generate --source procedural`` writes), then runs each export in a fresh process and
reports rows/s and that process's peak resident memory (``ru_maxrss``), beside a process that only
imports the same modules (the baseline a Python process pays anyway) and a naive export that reads
every row into memory before writing (what the shard-by-shard export avoids). The last line of
stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

logger = logging.getLogger("bench_export")

#: Classes of the source (known procedural objects and two drawn from their names).
VOCABULARY = ["sun", "house", "tree", "car", "ball", "leaf", "brick", "star", "bow (weapon)", "traffic light"]

_IMPORTS = "import resource\nimport magicseg_hf.export.core, datasets, numpy, pyarrow.parquet, PIL.Image\n"

_CHILD_EXPORT = _IMPORTS + """
import sys, time
from magicseg_hf.export import export_dataset
start = time.perf_counter()
export_dataset(sys.argv[1], sys.argv[2], format=sys.argv[3], progress=False)
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

# Naive: every row of the dataset decoded and converted in memory, then written at once.
_CHILD_NAIVE = _IMPORTS + """
import io, sys, time
import datasets, numpy as np
from PIL import Image
from magicseg_hf.folder import DatasetFolder
from magicseg_hf.export.core import global_label, semantic_features
start = time.perf_counter()
folder = DatasetFolder(sys.argv[1])
vocabulary = folder.read_vocabulary()
index = {name: k for k, name in enumerate(vocabulary)}
rows = list(folder.iter_rows(columns=["id", "image", "label", "classes"]))
out = []
for row in rows:
    label = global_label(Image.open(io.BytesIO(row["label"]["bytes"])), row["classes"], index)
    out.append({"id": row["id"], "image": Image.open(io.BytesIO(row["image"]["bytes"])),
                "label": Image.fromarray(label, "L")})
datasets.Dataset.from_list(out, features=semantic_features()).to_parquet(sys.argv[2] + ".parquet")
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


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


def run_child(code: str, *args: str) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) that a fresh process running ``code`` reports (``ru_maxrss`` of itself)."""
    script = Path(tempfile.mkstemp(suffix=".py")[1])
    script.write_text(code)
    try:
        result = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    finally:
        script.unlink()
    seconds, peak_kib = result.stdout.split()[-2:]
    return float(seconds), float(peak_kib) / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--size", type=int, default=128, help="Picture side in px.")
    parser.add_argument("--shard-size", type=int, default=100, help="Rows per source shard.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_source(root / "src", args.rows, args.size, args.shard_size)
        logger.info("source: %d rows of %d px in %.1f s", args.rows, args.size, time.perf_counter() - start)
        _, baseline = run_child(_IMPORTS + "print(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
        results = {"rows": args.rows, "size_px": args.size, "shard_size": args.shard_size,
                   "baseline_import_peak_mib": round(baseline, 1)}
        for name, code, extra in (("semantic", _CHILD_EXPORT, ["semantic"]), ("mmseg", _CHILD_EXPORT, ["mmseg"]),
                                  ("naive_in_memory", _CHILD_NAIVE, [])):
            seconds, peak = run_child(code, str(root / "src"), str(root / name), *extra)
            results[f"{name}_rows_per_s"] = round(args.rows / seconds, 1)
            results[f"{name}_peak_mib"] = round(peak, 1)
            logger.info("%s: %.1f rows/s, peak RSS %.0f MiB", name, args.rows / seconds, peak)
        results["semantic_vs_naive_speed"] = round(results["semantic_rows_per_s"] / results["naive_in_memory_rows_per_s"], 2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
