"""Evaluation: sliding windows batched vs one window at a time, and the metric's memory over 100 vs 1,000 images.

1. Images/s of :class:`~magicseg_hf.evaluation.inference.BenchmarkPredictor` (resize, sliding windows,
   averaging, upsampling, decision) on the same images with the same model, once with ``batch_size``
   windows per forward (windows of consecutive images share batches) and once with one window per
   forward (the baseline). Goal: >= 2x.
2. Peak Python-heap memory (tracemalloc) of :class:`~magicseg_hf.evaluation.metric.MeanIoUAccumulator`
   while it takes 100 and then 1,000 label maps (each made inside the loop and dropped after its update).
   Goal: equal (the state is per-class totals only).

Models: ``tiny`` (the tiny preset, random weights) or ``paper`` (CLIP ViT-B/16 + the paper's decoder with
random weights, built from configs: no download). Text queries are random unit vectors (21, as VOC), so no
tokenizer is needed. Images are random, VOC-sized (375 x 500) by default.

    python benchmarks/bench_eval.py --quick                         # tiny, < 1 minute on 2 CPU cores
    python benchmarks/bench_eval.py                                 # tiny, more images and rounds
    python benchmarks/bench_eval.py --size paper --protocols sclip --images 2 --rounds 1
    python benchmarks/bench_eval.py --size paper --device cuda --dtype bfloat16 --protocols zegclip groupvit sclip

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc
from typing import Any

import numpy as np

#: The tiny model's harness: sclip's proportions at a size the tiny model (8 px patches) runs fast.
TINY_PROTOCOL = {"short_side": 96, "window": 64, "stride": 32}


def _model(size: str, device: str, dtype: str) -> Any:
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


def _predictor(model: Any, protocol: Any, batch_size: int, num_queries: int = 21) -> Any:
    import torch
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    from magicseg_hf.evaluation.inference import BenchmarkPredictor, ClassQueries

    generator = torch.Generator().manual_seed(0)
    embeds = torch.nn.functional.normalize(torch.randn(num_queries, model.config.projection_dim, generator=generator), dim=-1)
    queries = ClassQueries(
        embeds=embeds, label_ids=tuple(range(1, num_queries + 1)), names=tuple(f"class {i}" for i in range(num_queries)),
        background_id=0, threshold=protocol.threshold if protocol.threshold is not None else 0.5,
    )
    return BenchmarkPredictor(model, queries, protocol, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, batch_size=batch_size)


def _samples(count: int, height: int, width: int) -> list[Any]:
    from types import SimpleNamespace

    from PIL import Image

    rng = np.random.default_rng(0)
    return [
        SimpleNamespace(
            image_id=str(index),
            image=Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB"),
            label=np.zeros((height, width), dtype=np.uint8),
        )
        for index in range(count)
    ]


def _seconds(predictor: Any, samples: list[Any], device: str) -> float:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in predictor.predict(samples):
        pass
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_windows(args: argparse.Namespace, protocol_name: str) -> dict[str, Any]:
    """Images/s batched vs one window per forward, alternating rounds; medians."""
    from magicseg_hf.evaluation.protocols import get_protocol

    protocol = get_protocol(protocol_name)
    if args.size == "tiny":
        protocol = protocol.with_overrides(**TINY_PROTOCOL)
    model = _model(args.size, args.device, args.dtype)
    samples = _samples(args.images, args.height, args.width)
    resized = protocol.resized_size(args.height, args.width)
    windows = protocol.num_windows(max(resized[0], protocol.window), max(resized[1], protocol.window))
    batched, single = _predictor(model, protocol, args.batch_size), _predictor(model, protocol, 1)
    for predictor in (batched, single):  # warm-up
        _seconds(predictor, samples[:1], args.device)
    times: dict[str, list[float]] = {"batched": [], "one_window": []}
    for _ in range(args.rounds):
        times["batched"].append(_seconds(batched, samples, args.device))
        times["one_window"].append(_seconds(single, samples, args.device))
    medians = {key: statistics.median(values) for key, values in times.items()}
    return {
        "protocol": protocol.to_dict(),
        "model_size": args.size,
        "image_size": [args.height, args.width],
        "resized": list(resized),
        "windows_per_image": windows,
        "batch_size": args.batch_size,
        "images": args.images,
        "batched_images_per_second": round(args.images / medians["batched"], 3),
        "one_window_images_per_second": round(args.images / medians["one_window"], 3),
        "window_batching_speedup": round(medians["one_window"] / medians["batched"], 2),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model, 6 images, 2 rounds")
    parser.add_argument("--size", choices=("tiny", "paper"), default="tiny")
    parser.add_argument("--protocols", nargs="+", default=["sclip"], help="zegclip, groupvit, sclip")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16, help="windows per forward in the batched path")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.images, args.rounds = "tiny", 6, 2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    summary: dict[str, Any] = {"device": args.device, "dtype": args.dtype, "threads": torch.get_num_threads()}
    runs = []
    for name in args.protocols:
        result = bench_windows(args, name)
        runs.append(result)
        print(
            f"{args.size} {name} ({result['resized'][0]}x{result['resized'][1]}, {result['windows_per_image']} windows "
            f"per image): batched {result['batched_images_per_second']} img/s, one window at a time "
            f"{result['one_window_images_per_second']} img/s -> x{result['window_batching_speedup']}"
        )
    summary["windows"] = runs
    summary["window_batching_speedup"] = min(run["window_batching_speedup"] for run in runs)

    peak_100, peak_1000 = metric_peak_bytes(100), metric_peak_bytes(1000)
    summary.update(
        metric_peak_bytes_100=peak_100,
        metric_peak_bytes_1000=peak_1000,
        metric_memory_ratio=round(peak_1000 / peak_100, 3),
    )
    print(f"metric peak memory: 100 images {peak_100} B, 1000 images {peak_1000} B -> x{summary['metric_memory_ratio']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
