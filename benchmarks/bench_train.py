"""Training step cost of MagicSeg pretraining: the counterfactual term's overhead and text-encoder calls.

A step here is what `MagicSegTrainer` does per batch: `MagicSegCollator` (category random sampling,
shared pair augmentation, label remapping) + forward + backward + AdamW. Measured per size:

- `counterfactual_overhead`: time of a step with counterfactual images / a positive-only step on
  the same rows (the counterfactuals go through the vision tower in the same batch; goal <= 2.1);
- `text_encoder_calls_per_step`: forward calls of the CLIP text tower during the timed steps,
  counted with a hook (goal 0: class embeddings are computed once and gathered per row);
- samples/s and peak memory (`_measure.measuring_peak_memory`: peak RSS growth on CPU,
  `max_memory_allocated` growth on GPU), each configuration in its own subprocess.

Sizes: `tiny` (the tiny preset) and `paper` (CLIP ViT-B/16 with random weights, 512 px, K=100).
The last line printed is JSON.

    python benchmarks/bench_train.py --quick                 # < 2 min on 2 CPU cores
    python benchmarks/bench_train.py                         # paper size at batch 4
    python benchmarks/bench_train.py --device cuda --dtype bf16 --sizes paper
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import emit_row, measuring_peak_memory, run_worker  # noqa: E402
from _measure import seconds as time_call  # noqa: E402

VOCABULARY_SIZE = 150


def _rows(count: int, size: int) -> list[dict[str, Any]]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for index in range(count):
        background = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        image, label = background.copy(), np.zeros((size, size), np.uint8)
        image[size // 4: size // 2, size // 4: size // 2] = (200, 40, 40)
        label[size // 4: size // 2, size // 4: size // 2] = 1
        rows.append({"id": f"r{index}", "classes": [f"class {index % VOCABULARY_SIZE}"],
                     "image": Image.fromarray(image), "counterfactual_image": Image.fromarray(background),
                     "label": Image.fromarray(label)})
    return rows


def _model(size: str) -> tuple[Any, Any]:
    import torch

    from magicseg_hf.loading import build_open_seg

    if size == "tiny":
        return build_open_seg("tiny")
    from magicseg_hf.modeling import (
        CLIPForOpenSegmentation,
        CLIPOpenSegConfig,
        CLIPOpenSegImageProcessor,
        CLIPOpenSegProcessor,
    )
    from magicseg_hf.twins import tiny_clip_tokenizer

    torch.manual_seed(0)
    model = CLIPForOpenSegmentation(CLIPOpenSegConfig(image_size=512))  # ViT-B/16 defaults, random weights
    model.freeze_backbone()
    image_processor = CLIPOpenSegImageProcessor(
        size={"max_height": 512, "max_width": 512}, pad_size={"height": 512, "width": 512}
    )
    return model, CLIPOpenSegProcessor(image_processor, tiny_clip_tokenizer())


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Time `args.warmup + args.steps` steps of one configuration in this process."""
    import torch

    from magicseg_hf.training.collator import MagicSegCollator

    torch.manual_seed(0)
    device = torch.device(args.device)
    model, processor = _model(args.size)
    model.to(device).train()
    vocabulary = [f"class {i}" for i in range(VOCABULARY_SIZE)]
    dim = model.config.projection_dim
    class_embeds = torch.nn.functional.normalize(torch.randn(VOCABULARY_SIZE, dim), dim=-1)  # (V, D)
    image_size = model.config.image_size
    collator = MagicSegCollator(processor, vocabulary, class_embeds, num_classes=args.num_classes,
                                counterfactual=args.counterfactual, seed=0)
    rows = _rows(args.batch_size, image_size * 2)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, weight_decay=0.01)
    text_calls: list[int] = []
    model.clip.text_model.register_forward_hook(lambda *unused: text_calls.append(1))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")

    def step(epoch: int) -> float:
        """Wall time of one step: the collator on ``rows`` at ``epoch``, forward, backward, AdamW."""

        def run() -> None:
            collator.set_epoch(epoch)
            batch = collator(rows)
            batch.pop("class_ids")
            batch = {key: value.to(device) for key, value in batch.items()}
            with autocast:
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return time_call(run, args.device)

    with measuring_peak_memory(args.device) as peak:
        for epoch in range(args.warmup):
            step(epoch)
        text_calls.clear()
        times = [step(args.warmup + i) for i in range(args.steps)]
    seconds = sum(times) / len(times)
    return {
        "seconds_per_step": seconds,
        "samples_per_second": args.batch_size / seconds,
        "peak_memory_gib": peak.gib,
        "text_encoder_calls_per_step": len(text_calls) / args.steps,
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps, paper size at batch 1 (< 2 min on CPU)")
    parser.add_argument("--sizes", nargs="+", default=["tiny", "paper"], choices=["tiny", "paper"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", default="tiny", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--num-classes", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--no-counterfactual", dest="counterfactual", action="store_false", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        emit_row(worker(args))
        return 0

    plan = {"tiny": {"batch": 8, "steps": 5 if args.quick else 20},
            "paper": {"batch": 1 if args.quick else 4, "steps": 1 if args.quick else 2}}
    report: dict[str, Any] = {"device": args.device, "dtype": args.dtype}
    for size in args.sizes:
        results = {}
        for counterfactual in (False, True):
            command = [sys.executable, __file__, "--worker", "--size", size, "--device", args.device,
                       "--dtype", args.dtype, "--batch-size", str(plan[size]["batch"]),
                       "--steps", str(plan[size]["steps"])]
            if not counterfactual:
                command.append("--no-counterfactual")
            result = run_worker(command, timeout=None)
            if result.error or not result.rows:
                sys.stderr.write(result.stderr_tail[-4000:])
                return result.returncode or 1
            results["with_counterfactual" if counterfactual else "positive_only"] = result.rows[-1]
        on, off = results["with_counterfactual"], results["positive_only"]
        report[size] = {
            "batch_size": plan[size]["batch"],
            "counterfactual_overhead": round(on["seconds_per_step"] / off["seconds_per_step"], 3),
            "text_encoder_calls_per_step": on["text_encoder_calls_per_step"] + off["text_encoder_calls_per_step"],
            "samples_per_second": round(on["samples_per_second"], 3),
            "samples_per_second_positive_only": round(off["samples_per_second"], 3),
            "peak_memory_gib": round(on["peak_memory_gib"], 3),
            "peak_memory_gib_positive_only": round(off["peak_memory_gib"], 3),
            "threads": on["threads"],
        }
        print(f"{size}: batch {plan[size]['batch']}, {on['seconds_per_step']:.3f} s/step with counterfactuals, "
              f"{off['seconds_per_step']:.3f} s/step without -> overhead x{report[size]['counterfactual_overhead']}, "
              f"text-encoder calls/step {report[size]['text_encoder_calls_per_step']:g}")
    summary = {key: value for key, value in report.items()}
    for size in args.sizes:
        summary[f"counterfactual_overhead_{size}"] = report[size]["counterfactual_overhead"]
    summary["counterfactual_overhead"] = max(report[size]["counterfactual_overhead"] for size in args.sizes)
    summary["text_encoder_calls_per_step"] = max(report[size]["text_encoder_calls_per_step"] for size in args.sizes)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
