"""Evaluation inference: batched windows vs one window at a time, memory over 1,203 vs 20 classes, metric memory.

Everything goes through the model's one inference path,
:func:`magicseg_hf.modeling.inference_clip_open_seg.segment_images` (resize, sliding windows, sigmoid averaging,
resize back, threshold decision at 0.5), as ``magicseg evaluate``, ``magicseg predict`` and the pipeline do.

1. Images/s on the same random images (VOC-sized, 375 x 500, by default) with the same model and the same 21
   queries, once with ``--batch-size`` (16) windows per forward (windows of consecutive images share forwards)
   and once with one window per forward (``window_batch_size=1``, the baseline). One warm-up image per path,
   then the two paths take turns for ``--rounds`` rounds; medians. Goal: >= 2x. Also reported: the same ratio
   for the windows stage alone (``window_logits_stream``: resize + model forwards), and the per-image rest
   (averaging, resize back, decision), which batching cannot shorten.
2. Peak memory of one ``segment_images`` call on one 512 x 683 image at short side 512, with 1,203 classes (LVIS)
   and with 20, chunked (the default ``score_budget``: classes decoded and decided a chunk at a time) and
   unchunked (``score_budget = 1 << 40``: every class at once, the naive baseline). Each configuration runs in
   its own subprocess (glibc's ``MALLOC_MMAP_THRESHOLD_`` fixed at 128 KiB, so freed blocks go back to the
   system); peak = growth of the process's peak RSS across the call (``VmHWM``, the counter behind ``ru_maxrss``,
   reset just before the call through ``/proc/self/clear_refs``; ``ru_maxrss`` where there is no ``/proc``), or
   on CUDA ``torch.cuda.max_memory_allocated`` above the memory allocated before it. Goal: peak(1,203) /
   peak(20) < 2 when chunked.
4. Training-free methods (``maskclip``, ``sclip``, ``clearclip``, ``naclip``: :mod:`magicseg_hf.evaluation.methods`)
   through the same ``segment_images`` (their softmax score, ``softmax_scale``): images/s per method with
   ``--batch-size`` windows per forward vs one window per forward, on a random-weight CLIP (``tiny``: the tiny
   preset's CLIP, 8 px patches, the windows geometry above; ``paper``: ViT-B/16 built from a config, each
   method's published geometry: sclip/naclip short side 336, slide 224/112; maskclip/clearclip 448, slide
   448/224). PAMR (NACLIP's refinement, per image) is left out: it is the same either way. Skip with
   ``--no-methods``.
5. Peak Python-heap memory (tracemalloc) of :class:`~magicseg_hf.evaluation.metric.MeanIoUAccumulator` while it
   takes 100 and then 1,000 label maps (each made inside the loop and dropped after its update). Goal: equal
   (the state is per-class totals only).

Models: ``tiny`` (the tiny preset, random weights, 8 px patches; windows of 64 px at short side 96, stride 32,
for 1; short side 512, stride 48 for 2) or ``paper`` (CLIP ViT-B/16 + the paper's decoder with random weights,
built from configs, no download; windows of 512 px at short side 512, stride 426). Text queries are random unit
vectors, so no tokenizer is needed.

    python benchmarks/bench_eval.py --quick                         # tiny, < 1 minute on 2 CPU cores
    python benchmarks/bench_eval.py                                 # tiny, more images and rounds
    python benchmarks/bench_eval.py --size paper --images 2 --rounds 1
    python benchmarks/bench_eval.py --size paper --device cuda --dtype bfloat16

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import emit_row, measuring_peak_memory, run_worker, synchronize  # noqa: E402

#: Geometry of the windows benchmark per model size: (short_side, window, stride).
WINDOWS_GEOMETRY = {"tiny": (96, 64, 32), "paper": (512, 512, 426)}
#: Geometry of the class-memory benchmark per model size: (short_side, window, stride).
MEMORY_GEOMETRY = {"tiny": (512, 64, 48), "paper": (512, 512, 426)}
#: The class counts compared by the memory benchmark: LVIS and VOC without background.
MEMORY_CLASSES = (20, 1203)
#: The image of the memory benchmark: (height, width), already at short side 512.
MEMORY_IMAGE = (512, 683)
#: A score budget no vocabulary reaches: every class decoded and decided at once (the naive path).
UNCHUNKED_SCORE_BUDGET = 1 << 40
#: glibc's ``mmap`` threshold in the memory workers (its default start value, kept fixed).
MMAP_THRESHOLD = 128 * 1024
#: Queries of the windows benchmark (as VOC: 20 classes + background).
NUM_QUERIES = 21


def build_model(size: str, device: str, dtype: str) -> Any:
    """The tiny preset or a random-weight ViT-B/16 CLIPForOpenSegmentation, in eval mode."""
    import torch

    if size == "tiny":
        from magicseg_hf.loading import build_open_seg

        model, _ = build_open_seg("tiny")
    else:
        from transformers import CLIPConfig

        from magicseg_hf.modeling import CLIPForOpenSegmentation, CLIPOpenSegConfig

        clip = CLIPConfig(vision_config={"patch_size": 16, "image_size": 224}, projection_dim=512)  # ViT-B/16
        torch.manual_seed(0)
        model = CLIPForOpenSegmentation(CLIPOpenSegConfig(clip_config=clip.to_dict()))
    return model.to(device=device, dtype=getattr(torch, dtype)).eval()


def random_queries(num_queries: int, dim: int, seed: int = 0) -> Any:
    """``num_queries`` random unit-vector text queries, one class position each."""
    import torch

    from magicseg_hf.modeling import Queries

    generator = torch.Generator().manual_seed(seed)
    embeds = torch.nn.functional.normalize(torch.randn(num_queries, dim, generator=generator), dim=-1)
    return Queries(
        embeds=embeds, positions=torch.arange(num_queries), names=tuple(f"class {i}" for i in range(num_queries))
    )


def random_images(sizes: Sequence[tuple[int, int]], seed: int = 0) -> list[Any]:
    """Random RGB PIL images of the given ``(height, width)`` sizes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB") for h, w in sizes]


def geometry(values: tuple[int, int, int]) -> Any:
    """An ``InferenceGeometry`` from ``(short_side, window, stride)``, sliding windows."""
    from magicseg_hf.modeling import InferenceGeometry

    short_side, window, stride = values
    return InferenceGeometry(short_side=short_side, window=window, stride=stride, mode="slide")


def segment_seconds(
    model: Any,
    images: Sequence[Any],
    queries: Any,
    inference_geometry: Any,
    window_batch_size: int,
    device: str,
    windows_only: bool = False,
    softmax_scale: float | None = None,
) -> float:
    """Wall time of one ``segment_images`` pass over ``images`` (all results consumed).

    With ``windows_only``, only its first stage (resize, windows through the model: ``window_logits_stream``),
    without the per-image averaging, resize back and decision.
    """
    import torch
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    from magicseg_hf.modeling import Decision, segment_images
    from magicseg_hf.modeling.inference_clip_open_seg import window_logits_stream

    synchronize(device)
    start = time.perf_counter()
    with torch.no_grad():
        if windows_only:
            stream: Any = window_logits_stream(
                model, enumerate(images), queries, inference_geometry, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD,
                window_batch_size,
            )
        else:
            stream = segment_images(
                model, enumerate(images), queries, inference_geometry,
                Decision("threshold", 0.5 if softmax_scale is None else 0.1),
                OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, window_batch_size=window_batch_size, softmax_scale=softmax_scale,
            )
        for _ in stream:
            pass
    synchronize(device)
    return time.perf_counter() - start


def bench_windows(args: argparse.Namespace) -> dict[str, Any]:
    """Images/s with ``args.batch_size`` windows per forward vs one, alternating rounds; medians."""
    values = (args.short_side or WINDOWS_GEOMETRY[args.size][0], args.window or WINDOWS_GEOMETRY[args.size][1],
              args.stride or WINDOWS_GEOMETRY[args.size][2])
    inference_geometry = geometry(values)
    model = build_model(args.size, args.device, args.dtype)
    queries = random_queries(NUM_QUERIES, model.config.projection_dim)
    images = random_images([(args.height, args.width)] * args.images)
    resized = inference_geometry.resized_size(args.height, args.width)
    patch = model.config.clip_config.vision_config.patch_size
    windows = len(inference_geometry.window_boxes(*resized, patch))
    for batch in (args.batch_size, 1):  # warm-up
        segment_seconds(model, images[:1], queries, inference_geometry, batch, args.device)
    times: dict[str, list[float]] = {"batched": [], "one_window": [], "batched_windows": [], "one_window_windows": []}
    for _ in range(args.rounds):
        for key, batch, only in (("batched", args.batch_size, False), ("one_window", 1, False),
                                 ("batched_windows", args.batch_size, True), ("one_window_windows", 1, True)):
            times[key].append(segment_seconds(model, images, queries, inference_geometry, batch, args.device, only))
    medians = {key: statistics.median(value) for key, value in times.items()}
    return {
        "geometry": inference_geometry.to_dict(),
        "model_size": args.size,
        "image_size": [args.height, args.width],
        "resized": list(resized),
        "windows_per_image": windows,
        "queries": NUM_QUERIES,
        "batch_size": args.batch_size,
        "images": args.images,
        "rounds": args.rounds,
        "batched_seconds": [round(t, 4) for t in times["batched"]],
        "one_window_seconds": [round(t, 4) for t in times["one_window"]],
        "batched_images_per_second": round(args.images / medians["batched"], 3),
        "one_window_images_per_second": round(args.images / medians["one_window"], 3),
        "window_batching_speedup": round(medians["one_window"] / medians["batched"], 2),
        "window_stage_speedup": round(medians["one_window_windows"] / medians["batched_windows"], 2),
        "decision_stage_seconds_per_image": round((medians["batched"] - medians["batched_windows"]) / args.images, 4),
    }


#: Per training-free method at ``paper`` size: (short_side, window, stride) of its published protocol.
METHOD_GEOMETRY = {"maskclip": (448, 448, 224), "sclip": (336, 224, 112), "clearclip": (448, 448, 224),
                   "naclip": (336, 224, 112)}  # fmt: skip
#: Their logit scales (the harnesses' defaults).
METHOD_SCALES = {"maskclip": 50.0, "sclip": 40.0, "clearclip": 50.0, "naclip": 40.0}


def build_clip(size: str, device: str, dtype: str) -> Any:
    """A random-weight CLIPModel: the tiny preset's (8 px patches) or ViT-B/16 built from a config."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    if size == "tiny":
        from magicseg_hf.twins import tiny_clip

        clip, _ = tiny_clip(seed=0)
    else:
        torch.manual_seed(0)
        clip = CLIPModel(CLIPConfig(vision_config={"patch_size": 16, "image_size": 224}, projection_dim=512))
    return clip.to(device=device, dtype=getattr(torch, dtype)).eval()


def bench_methods(args: argparse.Namespace) -> dict[str, Any]:
    """Images/s of each training-free method, batched windows vs one window per forward (medians of rounds)."""
    from magicseg_hf.evaluation.methods import TRAINING_FREE_METHODS, TrainingFreeCLIP

    clip = build_clip(args.size, args.device, args.dtype)
    queries = random_queries(NUM_QUERIES, clip.config.projection_dim)
    images = random_images([(args.height, args.width)] * args.images, seed=1)
    results: dict[str, Any] = {}
    for method in TRAINING_FREE_METHODS:
        model = TrainingFreeCLIP(clip, method).eval()
        values = (args.short_side or WINDOWS_GEOMETRY["tiny"][0], args.window or WINDOWS_GEOMETRY["tiny"][1],
                  args.stride or WINDOWS_GEOMETRY["tiny"][2]) if args.size == "tiny" else METHOD_GEOMETRY[method]
        shape = geometry(values)
        scale = METHOD_SCALES[method]
        for batch in (args.batch_size, 1):  # warm-up
            segment_seconds(model, images[:1], queries, shape, batch, args.device, softmax_scale=scale)
        batched, single = [], []
        for _ in range(args.rounds):
            batched.append(segment_seconds(model, images, queries, shape, args.batch_size, args.device,
                                           softmax_scale=scale))
            single.append(segment_seconds(model, images, queries, shape, 1, args.device, softmax_scale=scale))
        b, o = statistics.median(batched), statistics.median(single)
        results[method] = {
            "geometry": dict(zip(("short_side", "window", "stride"), values)),
            "batched_images_per_second": round(len(images) / b, 3),
            "one_window_images_per_second": round(len(images) / o, 3),
            "window_batching_speedup": round(o / b, 3),
        }
    return results


def class_memory_worker(args: argparse.Namespace) -> dict[str, Any]:
    """In its own process: peak memory growth of one ``segment_images`` call with ``args.worker_classes``."""
    import torch
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    from magicseg_hf.modeling import Decision, segment_images
    from magicseg_hf.modeling.inference_clip_open_seg import DEFAULT_WINDOW_BATCH_SIZE

    inference_geometry = geometry(MEMORY_GEOMETRY[args.size])
    model = build_model(args.size, args.device, args.dtype)
    queries = random_queries(args.worker_classes, model.config.projection_dim)
    image = random_images([MEMORY_IMAGE])[0]
    with measuring_peak_memory(args.device) as peak:
        start = time.perf_counter()
        with torch.no_grad():
            results = list(
                segment_images(
                    model, [(0, image)], queries, inference_geometry, Decision("threshold", 0.5),
                    OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, window_batch_size=DEFAULT_WINDOW_BATCH_SIZE,
                    score_budget=args.worker_budget,
                )
            )
    seconds = time.perf_counter() - start
    assert tuple(results[0][1].labels.shape) == MEMORY_IMAGE
    return {
        "classes": args.worker_classes,
        "score_budget": args.worker_budget,
        "peak_bytes": peak.peak_bytes,
        "seconds": round(seconds, 3),
        "peak_reset": peak.reset,
        "measure": peak.measure,
    }


def bench_class_memory(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """Peak of 1,203 vs 20 classes, chunked and unchunked, each in its own subprocess."""
    from magicseg_hf.modeling.inference_clip_open_seg import DEFAULT_SCORE_BUDGET

    runs: dict[str, dict[int, dict[str, Any]]] = {"chunked": {}, "unchunked": {}}
    passed = [a for a in argv if not a.startswith("--worker")]
    # Large blocks get their own pages, returned when freed: RSS follows live memory, not the heap's leftovers.
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    for mode, budget in (("chunked", DEFAULT_SCORE_BUDGET), ("unchunked", UNCHUNKED_SCORE_BUDGET)):
        for classes in MEMORY_CLASSES:
            command = [
                sys.executable, os.path.abspath(__file__), *passed, "--size", args.size,
                "--worker-classes", str(classes), "--worker-budget", str(budget),
            ]
            result = run_worker(command, timeout=None, env=environment)
            if result.error or not result.rows:
                sys.stderr.write(result.stderr_tail[-4000:])
                raise RuntimeError(f"memory worker ({mode}, {classes} classes) failed with {result.returncode}")
            runs[mode][classes] = result.rows[-1]
    small, large = MEMORY_CLASSES
    return {
        "model_size": args.size,
        "geometry": geometry(MEMORY_GEOMETRY[args.size]).to_dict(),
        "image_size": list(MEMORY_IMAGE),
        "runs": {mode: list(by_classes.values()) for mode, by_classes in runs.items()},
        "chunked_ratio": round(runs["chunked"][large]["peak_bytes"] / max(1, runs["chunked"][small]["peak_bytes"]), 2),
        "unchunked_ratio": round(
            runs["unchunked"][large]["peak_bytes"] / max(1, runs["unchunked"][small]["peak_bytes"]), 2
        ),
    }


def metric_peak_bytes(num_images: int, height: int = 96, width: int = 128, num_labels: int = 21) -> int:
    """tracemalloc peak while a MeanIoUAccumulator takes ``num_images`` random maps (made one at a time)."""
    from magicseg_hf.evaluation.metric import MeanIoUAccumulator

    rng = np.random.default_rng(0)
    accumulator = MeanIoUAccumulator(num_labels, ignore_index=255)
    tracemalloc.start()
    for _ in range(num_images):
        reference = rng.integers(0, num_labels, (height, width), dtype=np.int64)
        reference[:2] = 255
        prediction = rng.integers(0, num_labels, (height, width), dtype=np.int64)
        accumulator.update(prediction, reference)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert accumulator.num_images == num_images
    return peak


def emit_summary(summary: dict[str, Any], json_path: str | None) -> int:
    """Write ``summary`` to ``json_path`` (when given) and print it as the last line (JSON); returns 0."""
    if json_path:
        with open(json_path, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
    print(json.dumps(summary))
    return 0


def _mib(value: int) -> str:
    return f"{value / 2**20:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model, 6 images, 2 rounds")
    parser.add_argument("--size", choices=("tiny", "paper"), default="tiny")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16, help="windows per forward in the batched path")
    parser.add_argument("--short-side", type=int, help="windows benchmark: override the size's short side")
    parser.add_argument("--window", type=int, help="windows benchmark: override the size's window")
    parser.add_argument("--stride", type=int, help="windows benchmark: override the size's stride")
    parser.add_argument("--no-methods", dest="methods", action="store_false",
                        help="skip the training-free methods' images/s")
    parser.add_argument("--no-class-memory", dest="class_memory", action="store_false",
                        help="skip the 1,203 vs 20 classes memory benchmark")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--worker-classes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-budget", type=int, help=argparse.SUPPRESS)
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw)
    if args.quick:
        args.size, args.images, args.rounds = "tiny", 6, 2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker_classes is not None:
        emit_row(class_memory_worker(args))
        return 0

    summary: dict[str, Any] = {"device": args.device, "dtype": args.dtype, "threads": torch.get_num_threads()}
    result = bench_windows(args)
    summary["windows"] = result
    summary["window_batching_speedup"] = result["window_batching_speedup"]
    shape = result["geometry"]
    print(
        f"{args.size} windows ({result['resized'][0]}x{result['resized'][1]}, window {shape['window']} stride "
        f"{shape['stride']}, {result['windows_per_image']} windows per image, {NUM_QUERIES} queries): batched "
        f"({args.batch_size} per forward) {result['batched_images_per_second']} img/s, one window at a time "
        f"{result['one_window_images_per_second']} img/s -> x{result['window_batching_speedup']}"
    )
    print(
        f"  of which the windows stage alone (resize + model forwards): x{result['window_stage_speedup']}; the "
        f"per-image stage (average, resize back, decide) costs ~{result['decision_stage_seconds_per_image']} s per "
        "image either way"
    )

    if args.methods:
        methods = bench_methods(args)
        summary["methods"] = methods
        for method, run in methods.items():
            print(f"{args.size} {method} (window {run['geometry']['window']} stride {run['geometry']['stride']}): "
                  f"batched ({args.batch_size} per forward) {run['batched_images_per_second']} img/s, one window "
                  f"at a time {run['one_window_images_per_second']} img/s -> x{run['window_batching_speedup']}")

    if args.class_memory:
        memory = bench_class_memory(args, [a for a in raw if a != "--quick"])
        summary["class_memory"] = memory
        summary["class_memory_ratio_chunked"] = memory["chunked_ratio"]
        summary["class_memory_ratio_unchunked"] = memory["unchunked_ratio"]
        for mode in ("chunked", "unchunked"):
            peaks = ", ".join(
                f"{run['classes']} classes {_mib(run['peak_bytes'])} ({run['seconds']} s)" for run in memory["runs"][mode]
            )
            print(f"{args.size} peak memory, one {MEMORY_IMAGE[0]}x{MEMORY_IMAGE[1]} image, {mode}: {peaks} "
                  f"-> x{memory[f'{mode}_ratio']}")

    peak_100, peak_1000 = metric_peak_bytes(100), metric_peak_bytes(1000)
    summary.update(
        metric_peak_bytes_100=peak_100,
        metric_peak_bytes_1000=peak_1000,
        metric_memory_ratio=round(peak_1000 / peak_100, 3),
    )
    print(f"metric peak memory: 100 images {peak_100} B, 1000 images {peak_1000} B -> x{summary['metric_memory_ratio']}")
    return emit_summary(summary, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
