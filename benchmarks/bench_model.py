"""CLIPForOpenSegmentation training step: time and peak memory, with and without activation checkpointing.

Random weights at the paper's size by default (CLIP ViT-B/16, 512 px, K=100 classes per image, batch 4, with
counterfactual images). Each configuration runs in its own subprocess so peak memory is measured cleanly
(`_measure.measuring_peak_memory`): on CPU the growth of the process's peak RSS (`VmHWM`, reset to the RSS before
the first step), on GPU `torch.cuda.max_memory_allocated` above the memory allocated before it.
Prints the checkpointing / plain ratios.

    python benchmarks/bench_model.py                         # paper size, CPU, fp32
    python benchmarks/bench_model.py --batch-size 1 --steps 1
    python benchmarks/bench_model.py --device cuda --dtype bf16
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


def _build(args: argparse.Namespace) -> Any:
    import torch
    from transformers import CLIPConfig

    from magicseg_hf.modeling import CLIPForOpenSegmentation, CLIPOpenSegConfig

    clip = CLIPConfig(
        vision_config={"patch_size": 16, "image_size": 224},  # ViT-B/16 (hidden 768, 12 layers)
        projection_dim=512,
    )
    config = CLIPOpenSegConfig(clip_config=clip.to_dict(), image_size=args.image_size)
    torch.manual_seed(0)
    model = CLIPForOpenSegmentation(config)
    return model


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Run `args.warmup + args.steps` training steps in this process and return the measurements."""
    import torch

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = _build(args).to(device)
    model.train()
    if args.checkpointing:
        model.activation_checkpointing_enable()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=2e-4, weight_decay=0.01)
    b, k, size = args.batch_size, args.num_classes, args.image_size
    pixel_values = torch.randn(b, 3, size, size, device=device)
    counterfactual = torch.randn(b, 3, size, size, device=device) if args.counterfactual else None
    class_embeds = torch.nn.functional.normalize(torch.randn(b, k, 512, device=device), dim=-1)  # (B, K, D)
    labels = torch.randint(0, 3, (b, size, size), device=device)  # a few ground-truth classes per image
    labels[:, : size // 4] = model.config.none_label
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")

    def step() -> None:
        with autocast:
            out = model(
                pixel_values=pixel_values,
                class_embeds=class_embeds,
                labels=labels,
                counterfactual_pixel_values=counterfactual,
            )
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with measuring_peak_memory(args.device) as peak:
        for _ in range(args.warmup):
            time_call(step, args.device)
        times = [time_call(step, args.device) for _ in range(args.steps)]
    return {
        "checkpointing": args.checkpointing,
        "seconds_per_step": sum(times) / len(times),
        "peak_memory_gib": peak.gib,
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=2, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-counterfactual", dest="counterfactual", action="store_false")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        emit_row(worker(args))
        return 0

    results = []
    for checkpointing in (False, True):
        command = [sys.executable, __file__, "--worker"] + [a for a in (argv or sys.argv[1:]) if a != "--worker"]
        if checkpointing:
            command.append("--checkpointing")
        result = run_worker(command, timeout=None)
        if result.error or not result.rows:
            sys.stderr.write(result.stderr_tail[-4000:])
            return result.returncode or 1
        results.append(result.rows[-1])

    plain, checkpointed = results
    setting = (
        f"ViT-B/16 {args.image_size}px, K={args.num_classes}, batch {args.batch_size}"
        f"{' + counterfactual' if args.counterfactual else ''}, {args.device} {args.dtype}, "
        f"{plain['threads']} threads"
    )
    print(f"CLIPForOpenSegmentation forward+backward+AdamW step ({setting})")
    print(f"{'':28s}{'s/step':>10s}{'peak GiB':>10s}")
    for name, result in (("plain", plain), ("activation checkpointing", checkpointed)):
        print(f"{name:28s}{result['seconds_per_step']:10.2f}{result['peak_memory_gib']:10.2f}")
    print(
        f"checkpointing / plain: time x{checkpointed['seconds_per_step'] / plain['seconds_per_step']:.2f}, "
        f"memory x{checkpointed['peak_memory_gib'] / max(plain['peak_memory_gib'], 1e-9):.2f}"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"setting": setting, "plain": plain, "checkpointing": checkpointed}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
