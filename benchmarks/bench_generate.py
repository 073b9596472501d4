"""Generation throughput against naive baselines written the way the paper's released code works.

Run ``python benchmarks/bench_generate.py [--quick]``; the last line of stdout is one JSON object
merging every benchmark's dict (``annotation_speedup``, ...). Everything runs on the ``tiny``
preset, offline, on CPU unless a GPU is present.

Diffusion (:func:`bench_diffusion`): for each family's tiny twin (``--families``: Stable
Diffusion, SDXL, SD3, FLUX), the same pipeline, steps, size, guidance and text length.
Optimised = :class:`~magicseg_hf.generation.images.PairImageGenerator` (a batch of B pairs in
one pipeline call: positive and counterfactual share their noise and go through the denoiser as
one batch of 2B). Naive = one image per pipeline call, positive and counterfactual as separate
calls. Reported as ``diffusion_speedup_<family>`` (and the unsuffixed ``diffusion_*`` for SD).

Annotation (:func:`bench_annotation`): for each pair of tiny models — Grounding DINO + SamModel
(``annotation_*``) and MM-Grounding-DINO + SAM 2 (``annotation_mm_sam2_*``) — the same images,
the same thresholds. Optimised = :class:`~magicseg_hf.generation.annotate.Annotator` (one
batched detector forward for all images; per image one SAM call with all boxes and one image
embedding). Naive = the released code's loops (detector one image at a time; SAM one box per
call, the image re-preprocessed and re-embedded for every box).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

logger = logging.getLogger("bench_generate")


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``repeats`` calls (after the caller's warm-up) and the last result."""
    (seconds,), (result,) = _timed_interleaved([fn], repeats)
    return seconds, result


def _timed_interleaved(fns: list[Callable[[], Any]], repeats: int) -> tuple[list[float], list[Any]]:
    """Median wall time of each of ``fns`` over ``repeats`` rounds, the functions taking turns
    within a round so that a busy machine slows them alike; and each one's last result."""
    times: list[list[float]] = [[] for _ in fns]
    results: list[Any] = [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            results[i] = fn()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times], results


def _bench_images(count: int, size: int, seed: int = 0) -> list[Image.Image]:
    """Smooth random images (blobs rather than white noise) of ``size`` x ``size`` pixels."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        images.append(Image.fromarray(coarse).resize((size, size), Image.BICUBIC))
    return images


def naive_sam_masks(sam_model: Any, sam_processor: Any, image: Image.Image, box: list[float]) -> torch.Tensor:
    """The released code's SAM call for ONE box: the image preprocessed and embedded again; (1, H, W) bool."""
    device = next(sam_model.parameters()).device
    dtype = next(sam_model.parameters()).dtype
    inputs = sam_processor(images=image, input_boxes=[[box]], return_tensors="pt")
    with torch.inference_mode():
        outputs = sam_model(
            pixel_values=inputs["pixel_values"].to(device, dtype),
            input_boxes=inputs["input_boxes"].to(device, dtype),
            multimask_output=False,
        )
    mask = sam_processor.image_processor.post_process_masks(
        outputs.pred_masks.float().cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"]
    )[0]
    return mask[:, 0]


def naive_sam2_masks(sam_model: Any, sam_processor: Any, image: Image.Image, box: list[float]) -> torch.Tensor:
    """The same per-box loop with SAM 2 (``Sam2Model`` called on pixels, so the Hiera encoder runs
    for every box); (1, H, W) bool."""
    device = next(sam_model.parameters()).device
    dtype = next(sam_model.parameters()).dtype
    inputs = sam_processor(images=image, input_boxes=[[box]], return_tensors="pt")
    with torch.inference_mode():
        outputs = sam_model(
            pixel_values=inputs["pixel_values"].to(device, dtype),
            input_boxes=inputs["input_boxes"].to(device),
            multimask_output=False,
        )
    mask = sam_processor.post_process_masks(outputs.pred_masks.float().cpu(), inputs["original_sizes"])[0]
    return mask[:, 0]


def naive_annotate(
    detector: Any,
    box_masks: Callable[[Image.Image, list[float]], torch.Tensor],
    images: list[Image.Image],
    class_names: list[list[str]],
    box_threshold: float,
    text_threshold: float,
) -> list[np.ndarray]:
    """The released code's annotation loop: detector per image, ``box_masks`` (a SAM call with
    re-embedding) per box."""
    from magicseg_hf.generation.annotate import label_map

    labels = []
    for image, names in zip(images, class_names):
        found = detector.detect([image], [names], box_threshold, text_threshold)[0]
        masks = [box_masks(image, box) for box in found.boxes.tolist()]
        if masks:
            labels.append(label_map(torch.cat(masks), found.labels, found.scores, len(names)))
        else:
            labels.append(np.zeros((image.height, image.width), dtype=np.uint8))
    return labels


#: The annotation combinations measured: (key prefix, detector kind, segmenter backend).
ANNOTATION_CASES = (
    ("annotation", "grounding-dino", "transformers"),
    ("annotation_mm_sam2", "mm-grounding-dino", "sam2"),
)


def _bench_annotation_case(prefix: str, detector_kind: str, segmenter: str, quick: bool) -> dict[str, Any]:
    """Optimised vs naive annotation with one tiny detector + segmenter; keys start with ``prefix``."""
    from magicseg_hf.generation.annotate import (
        Annotator,
        GroundingDinoDetector,
        MMGroundingDinoDetector,
        Sam2Segmenter,
        TransformersSamSegmenter,
    )
    from magicseg_hf.loading import load_detector, load_segmenter
    from magicseg_hf.presets import TINY_DETECTORS, TINY_SEGMENTERS, generation_defaults

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    defaults = generation_defaults("tiny")
    box_threshold, text_threshold = defaults["box_threshold"], defaults["text_threshold"]
    detector_cls = MMGroundingDinoDetector if detector_kind == "mm-grounding-dino" else GroundingDinoDetector
    detector = detector_cls(*load_detector(detector_kind, TINY_DETECTORS[detector_kind], device=device))
    sam_model, sam_processor = load_segmenter(segmenter, TINY_SEGMENTERS[segmenter], device=device)
    segmenter_cls, naive_masks = (
        (Sam2Segmenter, naive_sam2_masks) if segmenter == "sam2" else (TransformersSamSegmenter, naive_sam_masks)
    )
    annotator = Annotator(detector, segmenter_cls(sam_model, sam_processor), box_threshold, text_threshold)

    vocabulary = ["cat", "dog", "traffic light", "person", "bicycle", "bow (weapon)"]
    num_images = 8
    images = _bench_images(num_images, 128)
    class_names = [[vocabulary[(i + j) % len(vocabulary)] for j in range(1 + i % 3)] for i in range(num_images)]
    repeats = 3 if quick else 7

    def optimised() -> list[np.ndarray]:
        return [a.label for a in annotator.annotate(images, class_names)]

    def naive() -> list[np.ndarray]:
        return naive_annotate(
            detector, lambda image, box: naive_masks(sam_model, sam_processor, image, box),
            images, class_names, box_threshold, text_threshold,
        )

    optimised()  # warm-up
    naive()
    (naive_s, optimised_s), (naive_labels, optimised_labels) = _timed_interleaved([naive, optimised], repeats)
    agreement = float(np.mean([np.mean(a == b) for a, b in zip(naive_labels, optimised_labels)]))
    num_boxes = sum(len(a.boxes) for a in annotator.annotate(images, class_names))

    # Where the time goes: one image embedding vs one all-boxes segment call.
    segmenter_part = annotator.segmenter
    inputs = sam_processor(images=images[0], return_tensors="pt")
    pixel_values = inputs["pixel_values"].to(device, next(sam_model.parameters()).dtype)
    with torch.inference_mode():
        sam_model.get_image_embeddings(pixel_values)
        embed_s, _ = _timed(lambda: sam_model.get_image_embeddings(pixel_values), repeats)
    boxes = torch.tensor([[8.0, 8.0, 64.0, 64.0]] * 4)
    segment_s, _ = _timed(lambda: segmenter_part.segment(images[0], boxes), repeats)

    result = {
        f"{prefix}_speedup": naive_s / optimised_s,
        f"{prefix}_naive_s": naive_s,
        f"{prefix}_optimised_s": optimised_s,
        f"{prefix}_images": num_images,
        f"{prefix}_boxes": num_boxes,
        f"{prefix}_label_agreement": agreement,
        f"{prefix}_sam_embed_s": embed_s,
        f"{prefix}_sam_segment_4_boxes_s": segment_s,
        f"{prefix}_device": device,
    }
    logger.info(
        "%s + %s: %d images, %d boxes: naive %.3f s, optimised %.3f s -> %.2fx (labels agree on %.4f of pixels)",
        detector_kind, segmenter, num_images, num_boxes, naive_s, optimised_s, naive_s / optimised_s, agreement,
    )
    return result


def bench_annotation(quick: bool) -> dict[str, Any]:
    """Optimised vs naive annotation for each of :data:`ANNOTATION_CASES` (tiny models).

    8 images of 128 px with 1-3 classes each; the tiny detectors have 5 queries and the tiny
    preset's thresholds are 0.0, so every image gets 5 boxes (40 SAM prompts in all). Returns, per
    case, ``<prefix>_speedup`` (naive seconds / optimised seconds) and the timings behind it:
    ``annotation_*`` for Grounding DINO + SamModel, ``annotation_mm_sam2_*`` for MM-Grounding-DINO
    + SAM 2.
    """
    result: dict[str, Any] = {}
    for prefix, detector_kind, segmenter in ANNOTATION_CASES:
        result.update(_bench_annotation_case(prefix, detector_kind, segmenter, quick))
    return result


def naive_pairs(
    pipe: Any, prompts: list[str], counterfactual_prompts: list[str], negatives: list[str], seeds: list[int],
    steps: int, size: int, family: Any = None, guidance_scale: float = 7.5, max_sequence_length: int | None = None,
) -> list[np.ndarray]:
    """The released code's way: one image per pipeline call, positive and counterfactual apart
    (each from its own seeded generator; a negative prompt only where the family has one)."""
    images = []
    extra: dict[str, Any] = {}
    if family is not None and family.max_sequence_length is not None and max_sequence_length is not None:
        extra["max_sequence_length"] = max_sequence_length
    with_negative = family is None or family.negative_prompt
    for prompt, cf_prompt, negative, seed in zip(prompts, counterfactual_prompts, negatives, seeds):
        for text, neg in ((prompt, ""), (cf_prompt, negative)):
            generator = torch.Generator("cpu").manual_seed(seed)
            if with_negative:
                extra["negative_prompt"] = neg
            images.append(pipe(text, generator=generator, num_inference_steps=steps, guidance_scale=guidance_scale,
                               height=size, width=size, output_type="np", **extra).images[0])
    return images


#: Every family's tiny twin is measured unless ``--families`` names fewer.
DIFFUSION_FAMILIES = ("stable-diffusion", "sdxl", "sd3", "flux")


def bench_diffusion_family(family_name: str, quick: bool) -> dict[str, Any]:
    """One family's tiny twin: batched shared-noise pairs (one denoiser batch of 2B) against one
    call per image, at the same steps (4), size (128 px), guidance and text length.

    Returns ``diffusion_speedup_<family>`` (naive seconds / batched seconds), the two timings and
    the batched pairs/s.
    """
    from magicseg_hf.families import FAMILIES
    from magicseg_hf.generation.images import PairImageGenerator
    from magicseg_hf.loading import load_diffusion_pipeline

    family = FAMILIES[family_name]
    defaults = family.defaults(tiny=True)
    pairs = 4 if quick else 8
    steps, size = 4, 128
    guidance, max_sequence_length = defaults["guidance_scale"], defaults["max_sequence_length"]
    pipe = load_diffusion_pipeline(family.tiny_id)
    maker = PairImageGenerator(
        pipe, num_inference_steps=steps, height=size, width=size, guidance_scale=guidance,
        family=family, max_sequence_length=max_sequence_length,
    )
    prompts = [f"a photo of a cat number {i} on a sofa" for i in range(pairs)]
    counterfactual_prompts = ["a photo of a sofa"] * pairs
    negatives = ["cat"] * pairs
    seeds = list(range(pairs))

    def optimised() -> None:
        maker.generate_pairs(prompts, counterfactual_prompts, negatives, seeds)

    def naive() -> None:
        naive_pairs(pipe, prompts, counterfactual_prompts, negatives, seeds, steps, size,
                    family=family, guidance_scale=guidance, max_sequence_length=max_sequence_length)

    optimised()  # warm-up: first-call allocations and lazy initialisation
    naive()
    (naive_s, optimised_s), (naive_cpu, optimised_cpu) = _timed_wall_and_cpu([naive, optimised], 3 if quick else 5)
    name = family.name
    logger.info(
        "diffusion %s: %d pairs: naive %.3f s, batched %.3f s -> %.2fx (%.1f pairs/s); CPU time %.3f / %.3f s -> %.2fx",
        name, pairs, naive_s, optimised_s, naive_s / optimised_s, pairs / optimised_s,
        naive_cpu, optimised_cpu, naive_cpu / optimised_cpu,
    )
    return {
        f"diffusion_pairs_{name}": pairs,
        f"diffusion_naive_s_{name}": round(naive_s, 4),
        f"diffusion_batched_s_{name}": round(optimised_s, 4),
        f"diffusion_pairs_per_s_{name}": round(pairs / optimised_s, 2),
        f"diffusion_speedup_{name}": round(naive_s / optimised_s, 2),
        f"diffusion_cpu_speedup_{name}": round(naive_cpu / optimised_cpu, 2),
    }


def _timed_wall_and_cpu(fns: list[Callable[[], Any]], repeats: int) -> tuple[list[float], list[float]]:
    """Median wall time and median CPU time (this process, all threads) of each of ``fns`` over
    ``repeats`` rounds, taking turns within a round. On a machine shared with other jobs the CPU
    time is the steadier figure: time-slicing stretches wall time, not the work done."""
    wall: list[list[float]] = [[] for _ in fns]
    cpu: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[i].append(time.perf_counter() - start_wall)
            cpu[i].append(time.process_time() - start_cpu)
    return [statistics.median(t) for t in wall], [statistics.median(t) for t in cpu]


def bench_diffusion(quick: bool, families: tuple[str, ...] = DIFFUSION_FAMILIES) -> dict[str, Any]:
    """:func:`bench_diffusion_family` for each of ``families``. The Stable Diffusion figures are
    also reported under the unsuffixed names (``diffusion_speedup``, ...) of earlier runs."""
    result: dict[str, Any] = {}
    for name in families:
        result.update(bench_diffusion_family(name, quick))
    if "stable-diffusion" in families:
        for key in ("pairs", "naive_s", "batched_s", "pairs_per_s", "speedup", "cpu_speedup"):
            result[f"diffusion_{key}"] = result[f"diffusion_{key}_stable-diffusion"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (finishes well under two minutes)")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch CPU threads (default: torch's choice; 1 gives steadier figures on a shared machine)",
    )
    parser.add_argument(
        "--families", default=",".join(DIFFUSION_FAMILIES),
        help=f"comma-separated diffusion families whose tiny twins are measured (default: {','.join(DIFFUSION_FAMILIES)})",
    )
    parser.add_argument(
        "--only", choices=["diffusion", "annotation"], default=None, help="run one benchmark only",
    )
    args = parser.parse_args(argv)
    families = tuple(name.strip() for name in args.families.split(",") if name.strip())
    unknown = [name for name in families if name not in DIFFUSION_FAMILIES]
    if unknown:
        parser.error(f"--families must name families among {', '.join(DIFFUSION_FAMILIES)} (got {', '.join(unknown)})")
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    logger.info("torch %s, %d CPU threads", torch.__version__, torch.get_num_threads())
    merged: dict[str, Any] = {}
    benchmarks = {"diffusion": functools.partial(bench_diffusion, families=families), "annotation": bench_annotation}
    for name, bench in benchmarks.items():
        if args.only not in (None, name):
            continue
        start = time.perf_counter()
        merged.update(bench(args.quick))
        logger.info("%s took %.1f s", name, time.perf_counter() - start)
    sys.stdout.write(json.dumps(merged, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
