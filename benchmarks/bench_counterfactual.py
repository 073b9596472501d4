"""A measured ablation of the counterfactual term, on procedural scenes where context carries information.

The paper's claim: counterfactual pairs (the scene with and without its objects) make the model tell
an object from its usual context. Here context is made informative: every class has its own context
texture (:func:`magicseg_hf.generation.procedural.own_context`: sun on sky, car on road, ball on sand,
leaf on wood, star on water) and the training scenes are drawn with ``--context-bias`` 0.95, so a
class sits on its own context ~96 % of the time. ``magicseg train --preset tiny`` is run with the
counterfactual term on (the preset's weight, 1) and off (``--counterfactual-loss-weight 0``), one
process per run, on the same data per seed. A third arm, ``control``, trains the default recipe (term on)
on data of context bias 0, where context carries no information. Each trained folder is scored on held-out
scenes (generation seeds never seen in training, drawn once by the parent), through the pipeline's inference path
(``segment_images``, the default decision: threshold rule at 0.5, the benchmark's classes as queries):

- ``paired``: classes on their own contexts (context bias 1) -> mIoU (background + the classes);
- ``unpaired``: contexts drawn independently of the class (context bias 0: a patch is the class's own
  context 1 time in 7) -> mIoU; the pairing that training saw is broken;
- ``context_gap``: paired - unpaired mIoU, how much a model leans on the usual context;
- ``context_only``: the counterfactual images of the ``paired`` scenes: each class's own context patch
  and the backdrop, without the class -> false-positive rate, the fraction of pixels predicted as any
  class;
- ``pair_cosine``: mean cos(g_pos, g_cf) of the [CLS] embeddings of the ``paired`` scenes and their
  counterfactuals (eval mode), the quantity the term pushes down: it shows the term is at work.

Figures per arm: mean, sample standard deviation, min and max over the seeds, and the per-seed
difference on - off (the two arms share data and seed; the control has its own data of the same seed).
Timings are not asserted; the summary gives the wall time. Two runs go at a time, one torch thread each (a 2-core machine).

    python benchmarks/bench_counterfactual.py --quick      # 3 seeds x on/off/control, 600 steps each; < 10 min on 2 cores
    python benchmarks/bench_counterfactual.py              # 5 seeds, 512 training rows, 256 held-out rows per set
    python benchmarks/bench_counterfactual.py --dry-run    # 1 seed, 5 steps per arm: checks the plumbing (~1 min)

The last line printed is JSON (also written to ``--json FILE``).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import emit_row, run_worker  # noqa: E402

#: Classes with distinct own contexts (sky, road, sand, wood, water).
CLASSES = ("sun", "car", "ball", "leaf", "star")
#: Context bias of the training scenes ("almost always on its own context").
TRAIN_CONTEXT_BIAS = 0.95
#: Held-out scenes come from generation seeds at and above this one (training uses the run's seed).
HELD_OUT_SEED = 10_000
SIZE = 64
#: arm -> (--counterfactual-loss-weight, None: the preset's, 1; context bias of its training data). "control":
#: the default recipe on data whose contexts carry no information, to show what the paired-unpaired gap owes
#: to the bias.
ARMS: dict[str, tuple[float | None, float]] = {"on": (None, TRAIN_CONTEXT_BIAS), "off": (0.0, TRAIN_CONTEXT_BIAS),
                                               "control": (None, 0.0)}
PLANS = {
    "dry-run": {"seeds": [0], "train_rows": 32, "held_out": 8, "max_steps": 5},
    "quick": {"seeds": [0, 1, 2], "train_rows": 256, "held_out": 64, "max_steps": None},
    "full": {"seeds": [0, 1, 2, 3, 4], "train_rows": 512, "held_out": 256, "max_steps": None},
}


def _held_out(count: int) -> dict[str, list[dict[str, Any]]]:
    from magicseg_hf.generation.procedural import procedural_rows

    paired = procedural_rows(list(CLASSES), count, seed=HELD_OUT_SEED, context_bias=1.0, size=SIZE)
    unpaired = procedural_rows(list(CLASSES), count, seed=HELD_OUT_SEED + 1, context_bias=0.0, size=SIZE)
    return {"paired": paired, "unpaired": unpaired}


def _predict(model: Any, images: list[Any]) -> list[Any]:
    """(H, W) int64 maps: class position + 1, 0 where no class reaches the default threshold."""
    import torch

    from magicseg_hf.modeling.inference_clip_open_seg import Queries, segment_images

    queries = Queries.encode(model, list(CLASSES))
    with torch.no_grad():
        results = segment_images(model, enumerate(images), queries)  # default Decision: threshold 0.5
        return [(result.labels + 1).numpy() for _, result in results]


def _mean_iou(model: Any, rows: list[dict[str, Any]]) -> float:
    import numpy as np

    from magicseg_hf.evaluation.metric import compute_mean_iou

    predictions = _predict(model, [row["image"] for row in rows])
    references = []
    for row in rows:
        label = np.array(row["label"])
        reference = np.zeros(label.shape, dtype=np.int64)
        for class_id, name in enumerate(row["classes"], start=1):
            reference[label == class_id] = CLASSES.index(name) + 1
        references.append(reference)
    return float(compute_mean_iou(predictions, references, num_labels=len(CLASSES) + 1)["mean_iou"])


def _false_positive_rate(model: Any, rows: list[dict[str, Any]]) -> float:
    import numpy as np

    predictions = _predict(model, [row["counterfactual_image"] for row in rows])
    return float(np.mean([(prediction > 0).mean() for prediction in predictions]))


def _pair_cosine(model: Any, processor: Any, rows: list[dict[str, Any]]) -> float:
    """Mean cos(g_pos, g_cf) of the [CLS] embeddings of held-out pairs: what the term itself pushes down."""
    import torch
    import torch.nn.functional as F

    positives = processor(images=[row["image"] for row in rows], return_tensors="pt")["pixel_values"]
    counterfactuals = processor(images=[row["counterfactual_image"] for row in rows], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        positive_embeds = model.get_image_embeddings(positives)[0]  # (N, D)
        counterfactual_embeds = model.get_image_embeddings(counterfactuals)[0]  # (N, D)
    return float(F.cosine_similarity(positive_embeds, counterfactual_embeds, dim=-1).mean())


def worker(args: argparse.Namespace) -> None:
    """Train one arm of one seed with ``magicseg train --preset tiny`` and score it; emits one row."""
    import torch

    torch.set_num_threads(1)
    from magicseg_hf.cli import main as cli
    from magicseg_hf.loading import load_open_seg

    output = Path(args.output)
    flags = ["train", "--dataset", args.data, "--preset", "tiny", "--output-dir", str(output),
             "--seed", str(args.seed), "--report_to", "none", "--overwrite"]
    if args.weight is not None:
        flags += ["--counterfactual-loss-weight", str(args.weight)]
    if args.max_steps:
        flags += ["--max_steps", str(args.max_steps)]
    start = time.perf_counter()
    status = cli(flags)
    if status != 0:
        raise SystemExit(status)
    train_seconds = time.perf_counter() - start
    model, processor = load_open_seg(str(output))
    model.eval()
    with open(args.held_out_file, "rb") as handle:
        held_out = pickle.load(handle)  # drawn once by the parent: every run scores the same images
    paired, unpaired = _mean_iou(model, held_out["paired"]), _mean_iou(model, held_out["unpaired"])
    emit_row({
        "seed": args.seed, "arm": args.arm, "train_seconds": round(train_seconds, 1),
        "miou_paired": paired, "miou_unpaired": unpaired, "context_gap": paired - unpaired,
        "fp_context_only": _false_positive_rate(model, held_out["paired"]),
        "pair_cosine": _pair_cosine(model, processor, held_out["paired"]),
    })


def _write_data(folder: Path, rows: int, seed: int, context_bias: float) -> None:
    from magicseg_hf.generation.config import GenerationConfig
    from magicseg_hf.generation.pipeline import generate

    config = GenerationConfig(source="procedural", classes=list(CLASSES), num_pairs=rows, seed=seed,
                              context_bias=context_bias, height=SIZE, width=SIZE, preset="tiny")
    generate(config, folder)


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "min": round(min(values), 4), "max": round(max(values), 4)}


METRICS = ("miou_paired", "miou_unpaired", "context_gap", "fp_context_only", "pair_cosine")


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm and metric: mean/std/min/max over seeds; per metric: the per-seed difference on - off."""
    summary: dict[str, Any] = {}
    for arm in ARMS:
        mine = [row for row in rows if row["arm"] == arm]
        if mine:
            summary[arm] = {metric: _spread([row[metric] for row in mine]) for metric in METRICS}
    by_seed = {(row["seed"], row["arm"]): row for row in rows}
    seeds = sorted({seed for seed, _ in by_seed if (seed, "on") in by_seed and (seed, "off") in by_seed})
    if seeds:
        summary["on_minus_off"] = {
            metric: _spread([by_seed[(s, "on")][metric] - by_seed[(s, "off")][metric] for s in seeds])
            for metric in METRICS
        }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="3 seeds, 256 training rows, 64 held-out rows per set")
    mode.add_argument("--dry-run", action="store_true", help="1 seed, 5 training steps (plumbing check)")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (one torch thread each)")
    parser.add_argument("--work-dir", help="keep data and models here (default: a temporary folder)")
    parser.add_argument("--json", help="also write the summary to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--arm", default="on", help=argparse.SUPPRESS)
    parser.add_argument("--weight", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--held-out-file", help=argparse.SUPPRESS)
    parser.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.worker:
        worker(args)
        return 0

    name = "dry-run" if args.dry_run else "quick" if args.quick else "full"
    plan = PLANS[name]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-cf-") as scratch:
        root = Path(args.work_dir or scratch)
        root.mkdir(parents=True, exist_ok=True)
        def data(seed: int, bias: float) -> Path:
            return root / f"data-{seed}-bias{bias:g}"

        for seed in plan["seeds"]:
            for bias in sorted({bias for _, bias in ARMS.values()}):
                _write_data(data(seed, bias), plan["train_rows"], seed, bias)
        held_out_file = root / "held-out.pkl"
        with open(held_out_file, "wb") as handle:
            pickle.dump(_held_out(plan["held_out"]), handle)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
               "HF_DATASETS_CACHE": str(root / "datasets-cache"), "TOKENIZERS_PARALLELISM": "false"}
        jobs = []
        for seed in plan["seeds"]:
            for arm, (weight, bias) in ARMS.items():
                command = [sys.executable, __file__, "--worker", "--data", str(data(seed, bias)),
                           "--output", str(root / f"model-{seed}-{arm}"), "--seed", str(seed), "--arm", arm,
                           "--held-out-file", str(held_out_file)]
                if weight is not None:
                    command += ["--weight", str(weight)]
                if plan["max_steps"]:
                    command += ["--max-steps", str(plan["max_steps"])]
                jobs.append(command)
        with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
            results = list(pool.map(lambda command: run_worker(command, timeout=1800, env=env), jobs))
    rows = []
    for command, result in zip(jobs, results):
        if result.error or not result.rows:
            sys.stderr.write(result.stderr_tail[-3000:])
            print(f"run {' '.join(command[-6:])} failed: {result.error}", file=sys.stderr)
            return 1
        row = result.rows[-1]
        rows.append(row)
        print(f"seed {row['seed']} {row['arm']:>7}: mIoU paired {row['miou_paired']:.3f}, "
              f"unpaired {row['miou_unpaired']:.3f}; context-only false positives {row['fp_context_only']:.4f} "
              f"; pair cos {row['pair_cosine']:.2f} (trained in {row['train_seconds']:.0f} s)")
    summary = {"mode": name, "classes": list(CLASSES), "train_context_bias": TRAIN_CONTEXT_BIAS,
               "seeds": plan["seeds"], "train_rows": plan["train_rows"], "held_out_rows_per_set": plan["held_out"],
               "max_steps": plan["max_steps"] or "preset (600)", "runs": rows, **summarise(rows),
               "wall_seconds": round(time.perf_counter() - start, 1)}
    for arm in ARMS:
        if arm in summary:
            figures = summary[arm]
            print(f"{arm:>7}: mIoU paired {figures['miou_paired']['mean']:.3f} "
                  f"± {figures['miou_paired']['std']:.3f}, unpaired {figures['miou_unpaired']['mean']:.3f} "
                  f"± {figures['miou_unpaired']['std']:.3f}, gap {figures['context_gap']['mean']:.3f} "
                  f"± {figures['context_gap']['std']:.3f}; context-only FP {figures['fp_context_only']['mean']:.4f} "
                  f"± {figures['fp_context_only']['std']:.4f}; pair cos {figures['pair_cosine']['mean']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
