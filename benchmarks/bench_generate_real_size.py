"""Generation throughput at the real architecture sizes, with random weights (for a GPU).

Builds random-weight twins of the paper's models at their real sizes — the Stable Diffusion 1.5
UNet/VAE/text encoder (512 px), Grounding DINO-T (Swin-T + BERT-base) and SAM ViT-H — saves them
as local folders, and runs ``magicseg_hf.generation.generate`` on them with the filters off, the
way a user runs real checkpoints (only the weights differ). Reports generated pairs/s, the UNet's
achieved TFLOP/s (about 0.8 TFLOP per 512 px forward; a pair at S steps with guidance is 4S
forwards: positive and counterfactual, each with its unconditional twin), the same as a fraction of
the GPU's measured dense bf16 matmul rate, and the peak memory. The last stdout line is JSON.

    python benchmarks/bench_generate_real_size.py --work-dir /tmp/real            # GPU: 20 steps, 512 px, fp16
    python benchmarks/bench_generate_real_size.py --work-dir /tmp/real --steps 1 --pairs 1 --size 256  # CPU smoke

Random weights may give meaningless pictures (or NaNs in fp16); the filters are off, so every pair
is kept and timed all the same.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

logger = logging.getLogger("bench_generate_real_size")

UNET_TFLOP_PER_FORWARD_512 = 0.8


def build_stable_diffusion_15(folder: Path, dtype: torch.dtype) -> None:
    """SD-1.5's architecture (UNet 860M, VAE 84M, CLIP ViT-L/14 text encoder) with random weights."""
    from transformers import CLIPTextConfig

    from magicseg_hf.tiny import random_stable_diffusion, tiny_clip_tokenizer

    tokenizer = tiny_clip_tokenizer()  # its ids fit the real 49408-token embedding table
    text_config = CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, projection_dim=768,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    unet = {"sample_size": 64, "cross_attention_dim": 768}  # UNet2DConditionModel's defaults are SD-1.x's
    vae = {
        "block_out_channels": (128, 256, 512, 512),
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "layers_per_block": 2,
        "latent_channels": 4,
        "sample_size": 512,
    }
    random_stable_diffusion(unet, vae, text_config).to(dtype=dtype).save_pretrained(folder)


def build_grounding_dino_t(folder: Path, dtype: torch.dtype) -> None:
    """Grounding DINO-T's architecture (Swin-T backbone, BERT-base text, 900 queries), random weights."""
    from transformers import (
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    from magicseg_hf.tiny import tiny_bert_tokenizer

    tokenizer = tiny_bert_tokenizer()  # BERT's special ids; every id fits the 30522-token table
    model = GroundingDinoForObjectDetection(GroundingDinoConfig())
    model.to(dtype).save_pretrained(folder)
    GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(), tokenizer=tokenizer).save_pretrained(folder)


def build_sam_vit_h(folder: Path, dtype: torch.dtype) -> None:
    """SAM ViT-H's architecture (632M image encoder at 1024 px), random weights."""
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor, SamVisionConfig

    vision = SamVisionConfig(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16,
                             global_attn_indexes=[7, 15, 23, 31])
    SamModel(SamConfig(vision_config=vision)).to(dtype).save_pretrained(folder)
    SamProcessor(image_processor=SamImageProcessor()).save_pretrained(folder)


def bf16_matmul_tflops(device: str, size: int = 8192, repeats: int = 20) -> float | None:
    """Measured dense bf16 matmul rate of the GPU (the reference for the UNet's share)."""
    if not device.startswith("cuda"):
        return None
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", required=True, help="Where the random models and the output go.")
    parser.add_argument("--pairs", type=int, default=32, help="Pairs to generate (timed after a warm-up run).")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--dtype", default=None, help="float16 (default on CUDA) or float32 (default on CPU).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    from magicseg_hf.generation import GenerationConfig, generate
    from magicseg_hf.generation.images import PairImageGenerator
    from magicseg_hf.loading import load_diffusion_pipeline

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype_name = args.dtype or ("float16" if device == "cuda" else "float32")
    dtype = getattr(torch, dtype_name)
    work = Path(args.work_dir)
    folders = {"sd": work / "sd15-random", "detector": work / "grounding-dino-t-random", "sam": work / "sam-vit-h-random"}
    for name, build in (("sd", build_stable_diffusion_15), ("detector", build_grounding_dino_t), ("sam", build_sam_vit_h)):
        if not (folders[name] / ("model_index.json" if name == "sd" else "config.json")).is_file():
            start = time.perf_counter()
            build(folders[name], dtype)
            logger.info("built %s in %.0f s", folders[name], time.perf_counter() - start)

    settings = dict(
        classes=["cat", "dog", "traffic light"], preset="tiny", prompt_backend="template",
        diffusion_model=str(folders["sd"]), detector_model=str(folders["detector"]),
        segmenter_model=str(folders["sam"]), num_inference_steps=args.steps, height=args.size, width=args.size,
        batch_size=args.batch_size, dtype=dtype_name, safety_checker=False,
        box_threshold=0.0, text_threshold=0.0, min_mask_area=0.0, max_mask_area=1.0, counterfactual_threshold=2.0,
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for run, pairs in (("warmup", min(args.pairs, args.batch_size)), ("timed", args.pairs)):
        out = work / f"out-{run}"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        summary = generate(GenerationConfig(num_pairs=pairs, shard_size=max(pairs, 1), **settings), out)
        elapsed = time.perf_counter() - start
        logger.info("%s: %s", run, summary.describe())

    # The diffusion share alone, on one batch, for the UNet's achieved rate.
    pipe = load_diffusion_pipeline(str(folders["sd"]), dtype=dtype_name, device=device, safety_checker=False)
    maker = PairImageGenerator(pipe, num_inference_steps=args.steps, height=args.size, width=args.size)
    batch = args.batch_size
    prompts = ["a photo of a cat on a sofa"] * batch
    maker.generate_pairs(prompts, ["a photo of a sofa"] * batch, ["cat"] * batch, list(range(batch)))
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    maker.generate_pairs(prompts, ["a photo of a sofa"] * batch, ["cat"] * batch, list(range(batch)))
    if device == "cuda":
        torch.cuda.synchronize()
    diffusion_s = time.perf_counter() - start
    forwards = 4 * args.steps * batch  # (positive + counterfactual) x (cond + uncond) per step
    unet_tflop = forwards * UNET_TFLOP_PER_FORWARD_512 * (args.size / 512) ** 2
    matmul = bf16_matmul_tflops(device)
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "dtype": dtype_name, "steps": args.steps, "size": args.size, "batch_size": batch,
        "pairs": summary.num_rows, "generate_s": round(elapsed, 2),
        "pairs_per_s": round(summary.num_rows / elapsed, 3),
        "diffusion_batch_s": round(diffusion_s, 3),
        "unet_tflops_achieved": round(unet_tflop / diffusion_s, 2),
        "bf16_matmul_tflops": None if matmul is None else round(matmul, 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
    }
    if matmul:
        result["unet_fraction_of_matmul_rate"] = round(result["unet_tflops_achieved"] / matmul, 3)
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
