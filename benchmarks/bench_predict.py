"""Predict: images/s of ``predict_images`` on pictures of mixed sizes, batched vs one image per call.

The user-facing path (``magicseg predict``, :func:`magicseg_hf.predict.predict_images`) on 16 random pictures whose
sizes cycle through 375 x 500, 500 x 375, 240 x 320, 480 x 640, 64 x 64 and 100 x 300, with the model's own geometry
and the ``threshold`` decision at 0.5:

- batched: all pictures in one call, ``batch_size=8`` windows per forward (windows of consecutive pictures share
  forwards, so small pictures do not leave batches half empty);
- naive (the baseline): one call per picture with ``batch_size=1`` (one window per forward), as a loop over
  files calling the model one window at a time would do.

One warm-up of each path (two pictures), then the two paths take turns for ``--rounds`` rounds; medians of the wall
times. Both paths must give the same label maps (the share of equal pixels is reported).

Models: ``tiny`` (the tiny preset with a saved vocabulary of 5 classes, random weights, offline tokenizer; windows
of 64 px at short side 64, stride 48) goes through ``predict_images`` itself. ``paper`` (CLIP ViT-B/16 + the
paper's decoder with random weights, built from configs, no download: windows of 512 px at short side 512, stride
426) has no offline tokenizer, so it calls the same inference path, ``segment_images``, directly with 5 random
unit-vector queries (what ``predict_images`` does after encoding the class names).

    python benchmarks/bench_predict.py --quick                   # tiny, 2 rounds, < 1 minute on 2 CPU cores
    python benchmarks/bench_predict.py                           # tiny, 5 rounds
    python benchmarks/bench_predict.py --size paper --images 4 --rounds 1
    python benchmarks/bench_predict.py --size paper --device cuda --dtype bfloat16

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_eval import build_model, emit_summary, random_images, random_queries  # noqa: E402

#: Picture sizes (height, width), cycled over the images.
SIZES = ((375, 500), (500, 375), (240, 320), (480, 640), (64, 64), (100, 300))
#: The saved vocabulary of the tiny model.
VOCABULARY = ("cat", "dog", "car", "tree", "person")
#: Windows per forward in the batched path (``predict_images``'s default).
BATCH_SIZE = 8


def _synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def tiny_paths(args: argparse.Namespace) -> tuple[Callable[[Sequence[Any]], list[np.ndarray]], Callable[..., Any], Any]:
    """``(batched, naive, model)`` label-map functions through ``predict_images`` with the tiny model."""
    import torch

    from magicseg_hf.loading import build_open_seg
    from magicseg_hf.predict import predict_images

    model, processor = build_open_seg("tiny", vocabulary=list(VOCABULARY))
    model = model.to(device=args.device, dtype=getattr(torch, args.dtype)).eval()

    def batched(images: Sequence[Any]) -> list[np.ndarray]:
        return [p.segmentation for p in predict_images(model, processor, images, batch_size=args.batch_size)]

    def naive(images: Sequence[Any]) -> list[np.ndarray]:
        return [predict_images(model, processor, [image], batch_size=1)[0].segmentation for image in images]

    return batched, naive, model


def paper_paths(args: argparse.Namespace) -> tuple[Callable[[Sequence[Any]], list[np.ndarray]], Callable[..., Any], Any]:
    """``(batched, naive, model)`` label-map functions through ``segment_images`` with a random ViT-B/16."""
    import torch
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    from magicseg_hf.modeling import Decision, InferenceGeometry, segment_images

    model = build_model("paper", args.device, args.dtype)
    queries = random_queries(len(VOCABULARY), model.config.projection_dim)
    geometry = InferenceGeometry.from_config(model.config)

    def run(images: Sequence[Any], batch_size: int) -> list[np.ndarray]:
        with torch.no_grad():
            results = segment_images(
                model, enumerate(images), queries, geometry, Decision("threshold", 0.5),
                OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, window_batch_size=batch_size,
            )
            return [result.labels.cpu().numpy() for _, result in results]

    def batched(images: Sequence[Any]) -> list[np.ndarray]:
        return run(images, args.batch_size)

    def naive(images: Sequence[Any]) -> list[np.ndarray]:
        return [run([image], 1)[0] for image in images]

    return batched, naive, model


def timed(function: Callable[[Sequence[Any]], list[np.ndarray]], images: Sequence[Any], device: str) -> tuple[float, list[np.ndarray]]:
    """``(seconds, label maps)`` of one call of ``function`` on ``images``."""
    _synchronize(device)
    start = time.perf_counter()
    labels = function(images)
    _synchronize(device)
    return time.perf_counter() - start, labels


def bench_predict(args: argparse.Namespace) -> dict[str, Any]:
    """Images/s batched vs naive, alternating rounds after a warm-up; medians."""
    from magicseg_hf.modeling import InferenceGeometry

    batched, naive, model = (tiny_paths if args.size == "tiny" else paper_paths)(args)
    sizes = [SIZES[index % len(SIZES)] for index in range(args.images)]
    images = random_images(sizes)
    geometry = InferenceGeometry.from_config(model.config)
    patch = model.config.clip_config.vision_config.patch_size
    windows = sum(len(geometry.window_boxes(*geometry.resized_size(h, w), patch)) for h, w in sizes)
    for function in (batched, naive):  # warm-up
        timed(function, images[:2], args.device)
    times: dict[str, list[float]] = {"batched": [], "naive": []}
    agreement = 1.0
    for _ in range(args.rounds):
        seconds, batched_labels = timed(batched, images, args.device)
        times["batched"].append(seconds)
        seconds, naive_labels = timed(naive, images, args.device)
        times["naive"].append(seconds)
        equal = sum(int((a == b).sum()) for a, b in zip(batched_labels, naive_labels))
        agreement = min(agreement, equal / sum(a.size for a in naive_labels))
    medians = {key: statistics.median(value) for key, value in times.items()}
    return {
        "model_size": args.size,
        "path": "predict_images" if args.size == "tiny" else "segment_images (random queries)",
        "classes": len(VOCABULARY),
        "geometry": geometry.to_dict(),
        "images": args.images,
        "image_sizes": [list(size) for size in SIZES],
        "windows": windows,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "batched_seconds": [round(t, 4) for t in times["batched"]],
        "naive_seconds": [round(t, 4) for t in times["naive"]],
        "batched_images_per_second": round(args.images / medians["batched"], 3),
        "naive_images_per_second": round(args.images / medians["naive"], 3),
        "predict_batching_speedup": round(medians["naive"] / medians["batched"], 2),
        "label_agreement": round(agreement, 6),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model, 16 images, 2 rounds")
    parser.add_argument("--size", choices=("tiny", "paper"), default="tiny")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="windows per forward in the batched path")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.images, args.rounds = "tiny", 16, 2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    result = bench_predict(args)
    summary: dict[str, Any] = {"device": args.device, "dtype": args.dtype, "threads": torch.get_num_threads(), **result}
    print(
        f"{args.size} {result['path']}, {args.images} pictures of mixed sizes ({result['windows']} windows), "
        f"{len(VOCABULARY)} classes: batched (one call, {args.batch_size} windows per forward) "
        f"{result['batched_images_per_second']} img/s, naive (one call per picture, one window per forward) "
        f"{result['naive_images_per_second']} img/s -> x{result['predict_batching_speedup']}; "
        f"labels agree on {result['label_agreement']:.4%} of the pixels"
    )
    return emit_summary(summary, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
