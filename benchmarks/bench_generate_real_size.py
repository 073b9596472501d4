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

``--families sd15,sdxl,flux`` measures the diffusion part alone for each generator family at its
real architecture size and native resolution (SD-1.5 at 512 px; SDXL base: UNet 2.6B, 1024 px;
FLUX.1-dev: transformer 12B with 19 double-stream and 38 single-stream blocks 3072 wide, T5-XXL,
1024 px), random weights drawn on the GPU in ``--dtype`` (bfloat16 by default): pairs/s of
``PairImageGenerator`` (``--batch-size`` pairs per call), eager and under ``torch.compile``
(``--compile``), the peak memory, and the denoiser's achieved TFLOP/s — its FLOPs counted by
``torch.utils.flop_counter.FlopCounterMode`` on one call with the inputs of a real pipeline call,
divided by that call's time — against the GPU's measured dense bf16 matmul rate.

    python benchmarks/bench_generate_real_size.py --families sd15,sdxl,flux                  # GPU
    python benchmarks/bench_generate_real_size.py --families sdxl,flux --compile off --steps 4
    python benchmarks/bench_generate_real_size.py --families sd15,sdxl,flux --dry-run        # CPU: tiny twins
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import (  # noqa: E402
    matmul_tflops,
    median_seconds,
    peak_memory_gib,
    reset_peak_memory,
    synchronize,
)

logger = logging.getLogger("bench_generate_real_size")

UNET_TFLOP_PER_FORWARD_512 = 0.8


def build_stable_diffusion_15(folder: Path, dtype: torch.dtype) -> None:
    """SD-1.5's architecture (:func:`sd15_pipeline`) with random weights, saved as a pipeline folder."""
    sd15_pipeline().to(dtype=dtype).save_pretrained(folder)


def build_grounding_dino_t(folder: Path, dtype: torch.dtype) -> None:
    """Grounding DINO-T's architecture (Swin-T backbone, BERT-base text, 900 queries), random weights."""
    from transformers import (
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    from magicseg_hf.twins import tiny_bert_tokenizer

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
    return matmul_tflops(device, torch.bfloat16, size, repeats)


# ---- each family's denoiser at its real size (``--families``) ------------------------------------
#: ``--families`` name -> (magicseg family, native resolution in pixels).
REAL_SIZE_FAMILIES: dict[str, tuple[str, int]] = {
    "sd15": ("stable-diffusion", 512),
    "sdxl": ("sdxl", 1024),
    "flux": ("flux", 1024),
}


def _clip_text_config(hidden: int, layers: int, heads: int, intermediate: int, projection: int, act: str) -> Any:
    """A CLIP text encoder config of a real size whose special ids are the tiny tokenizer's (its ids
    fit the real 49408-token table)."""
    from transformers import CLIPTextConfig

    from magicseg_hf.twins import tiny_clip_tokenizer

    tokenizer = tiny_clip_tokenizer()
    return CLIPTextConfig(
        vocab_size=49408, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, max_position_embeddings=77, projection_dim=projection, hidden_act=act,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )


def _vae(latent_channels: int, sample_size: int, **settings: Any) -> dict[str, Any]:
    """The SD/SDXL/FLUX VAE layout (4 blocks 128-512 wide, scale factor 8)."""
    return {
        "block_out_channels": (128, 256, 512, 512),
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "layers_per_block": 2,
        "latent_channels": latent_channels,
        "sample_size": sample_size,
        **settings,
    }


def sd15_pipeline(device: str | None = None) -> Any:
    """SD-1.5's architecture (UNet 860M, VAE 84M, CLIP ViT-L/14 text encoder) with random weights."""
    from magicseg_hf.twins import random_stable_diffusion

    text_config = _clip_text_config(768, 12, 12, 3072, 768, "quick_gelu")
    unet = {"sample_size": 64, "cross_attention_dim": 768}  # UNet2DConditionModel's defaults are SD-1.x's
    return random_stable_diffusion(unet, _vae(4, 512), text_config, device=device)


def sdxl_pipeline(device: str | None = None) -> Any:
    """SDXL base 1.0's architecture (UNet 2.6B, CLIP ViT-L + OpenCLIP bigG text encoders, VAE 84M)
    with random weights, per stabilityai/stable-diffusion-xl-base-1.0's configs."""
    from magicseg_hf.twins import random_sdxl

    unet = {
        "sample_size": 128, "block_out_channels": (320, 640, 1280), "layers_per_block": 2,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        "transformer_layers_per_block": (1, 2, 10), "attention_head_dim": (5, 10, 20),
        "use_linear_projection": True, "cross_attention_dim": 2048, "addition_embed_type": "text_time",
        "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2816,  # 1280 + 6 x 256
    }
    clip_l = _clip_text_config(768, 12, 12, 3072, 768, "quick_gelu")
    clip_bigg = _clip_text_config(1280, 32, 20, 5120, 1280, "gelu")
    return random_sdxl(unet, _vae(4, 1024, scaling_factor=0.13025), clip_l, clip_bigg, device=device)


def flux_pipeline(device: str | None = None) -> Any:
    """FLUX.1-dev's architecture (transformer 12B: 19 double-stream + 38 single-stream blocks,
    3072 wide; T5-XXL encoder 4.7B; CLIP ViT-L; 16-channel VAE) with random weights."""
    from transformers import T5Config

    from magicseg_hf.twins import random_flux, tiny_t5_tokenizer

    transformer = {
        "patch_size": 1, "num_layers": 19, "num_single_layers": 38, "attention_head_dim": 128,
        "num_attention_heads": 24, "joint_attention_dim": 4096, "pooled_projection_dim": 768,
        "guidance_embeds": True, "axes_dims_rope": (16, 56, 56),
    }
    tokenizer = tiny_t5_tokenizer()  # its ids fit T5's 32128-token table
    t5_xxl = T5Config(
        vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
        feed_forward_proj="gated-gelu", pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    clip_l = _clip_text_config(768, 12, 12, 3072, 768, "quick_gelu")
    vae = _vae(16, 1024, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)
    return random_flux(transformer, vae, clip_l, t5_xxl, device=device)


REAL_SIZE_BUILDERS: dict[str, Callable[[str | None], Any]] = {
    "sd15": sd15_pipeline,
    "sdxl": sdxl_pipeline,
    "flux": flux_pipeline,
}


def parameter_counts(name: str) -> dict[str, int]:
    """Parameters of each model of family ``name`` at its real size, counted on the meta device
    (nothing is allocated), to check the architectures against the published sizes."""
    pipe = REAL_SIZE_BUILDERS[name]("meta")
    counts = {}
    for component in ("unet", "transformer", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, component, None)
        if module is not None:
            counts[component] = sum(p.numel() for p in module.parameters())
    return counts


def _capture_first_call(module: torch.nn.Module) -> tuple[dict[str, Any], Any]:
    """Arm a hook that keeps the positional and keyword inputs of ``module``'s next call."""
    seen: dict[str, Any] = {}

    def hook(_module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        if "args" not in seen:
            seen["args"], seen["kwargs"] = args, dict(kwargs)

    return seen, module.register_forward_pre_hook(hook, with_kwargs=True)


def _batch_of(args: tuple, kwargs: dict[str, Any]) -> int:
    """The batch size of a denoiser call: its ``sample`` (UNet) or ``hidden_states`` (transformers)."""
    sample = args[0] if args else kwargs.get("hidden_states", kwargs.get("sample"))
    return int(sample.shape[0])


def denoiser_flop_count(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any], device: str) -> int:
    """FLOPs of one call of the denoiser on these inputs, counted by ``FlopCounterMode``. On a CPU
    the math attention kernel is used for the count (the CPU flash kernel is not in the counter's
    table); the count is the same for any attention kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    kernels = sdpa_kernel([SDPBackend.MATH]) if not device.startswith("cuda") else contextlib.nullcontext()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), kernels, counter:
        module(*args, **kwargs)
    return counter.get_total_flops()


def bench_family_denoiser(
    name: str, *, device: str, dtype: torch.dtype, steps: int, pairs: int, size: int | None, compile_modes: list[bool],
    repeats: int, dry_run: bool,
) -> list[dict[str, Any]]:
    """Pairs/s of :class:`PairImageGenerator` (``pairs`` pairs per call: one denoiser batch of
    2 x pairs, x 2 again under classifier-free guidance) for family ``name`` at its native size,
    and its denoiser's achieved TFLOP/s on the inputs of that call, eager and/or compiled.

    ``dry_run``: the family's ``tiny:`` twin instead of the real architecture (a CPU smoke test).
    """
    from magicseg_hf.families import FAMILIES
    from magicseg_hf.generation.images import PairImageGenerator, denoiser
    from magicseg_hf.twins import tiny_diffusion_pipeline

    family_name, native = REAL_SIZE_FAMILIES[name]
    family = FAMILIES[family_name]
    defaults = family.defaults(tiny=dry_run)
    size = size or (defaults["height"] if dry_run else native)
    start = time.perf_counter()
    pipe = tiny_diffusion_pipeline(family.tiny_id) if dry_run else REAL_SIZE_BUILDERS[name](device)
    pipe = pipe.to(device) if dtype == torch.float32 else pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    built_s = time.perf_counter() - start
    maker = PairImageGenerator(
        pipe, num_inference_steps=steps, height=size, width=size, guidance_scale=defaults["guidance_scale"],
        family=family, max_sequence_length=defaults["max_sequence_length"],
    )
    prompts = [f"a photo of a cat number {i} on a sofa" for i in range(pairs)]
    counterfactuals, negatives, seeds = ["a photo of a sofa"] * pairs, ["cat"] * pairs, list(range(pairs))

    def run_pairs() -> None:
        maker.generate_pairs(prompts, counterfactuals, negatives, seeds)

    network = denoiser(pipe)
    seen, handle = _capture_first_call(network)
    run_pairs()  # eager warm-up; keeps the denoiser's inputs
    handle.remove()
    args, kwargs = seen["args"], seen["kwargs"]
    flops = denoiser_flop_count(network, args, kwargs, device)
    calls_per_run = steps  # one denoiser call per step, on the whole batch (guidance included)
    rows = []
    for compiled in compile_modes:
        if compiled:
            network.compile()
            start = time.perf_counter()
            run_pairs()  # compiles
            logger.info("%s: torch.compile warm-up %.0f s", name, time.perf_counter() - start)
        reset_peak_memory(device)

        def one_call() -> None:
            with torch.inference_mode():
                network(*args, **kwargs)

        one_call()
        denoiser_s = median_seconds(one_call, max(3, repeats), device)
        run_s = median_seconds(run_pairs, repeats, device)
        row: dict[str, Any] = {
            "family": name, "compiled": compiled, "dtype": str(dtype).removeprefix("torch."), "size": size,
            "steps": steps, "pairs_per_call": pairs, "denoiser_batch": _batch_of(args, kwargs),
            "build_s": round(built_s, 1), "pairs_per_s": round(pairs / run_s, 3), "call_s": round(run_s, 3),
            "denoiser_gflop_per_call": round(flops / 1e9, 3), "denoiser_call_s": round(denoiser_s, 4),
            "denoiser_tflops_achieved": round(flops / denoiser_s / 1e12, 4),
            "denoiser_share_of_call": round(calls_per_run * denoiser_s / run_s, 3),
            "peak_memory_gib": peak_memory_gib(device),
        }
        logger.info("%s", row)
        rows.append(row)
    return rows


def run_families(args: argparse.Namespace) -> dict[str, Any]:
    """``--families``: each family's real-size (or, with ``--dry-run``, tiny) pipeline in turn."""
    names = [n.strip() for n in args.families.split(",") if n.strip()]
    unknown = [n for n in names if n not in REAL_SIZE_FAMILIES]
    if unknown:
        raise SystemExit(f"--families must name families among {', '.join(REAL_SIZE_FAMILIES)} (got {', '.join(unknown)})")
    device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    dtype_name = args.dtype or ("bfloat16" if device == "cuda" else "float32")
    compile_modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "dry_run": args.dry_run,
        "parameters": {name: parameter_counts(name) for name in names},
        "bf16_matmul_tflops": None, "runs": [],
    }
    matmul = bf16_matmul_tflops(device)
    if matmul is not None:
        result["bf16_matmul_tflops"] = round(matmul, 1)
    for name in names:
        rows = bench_family_denoiser(
            name, device=device, dtype=getattr(torch, dtype_name), steps=args.steps if not args.dry_run else 1,
            pairs=args.batch_size if not args.dry_run else 1, size=args.size, compile_modes=compile_modes,
            repeats=args.repeats, dry_run=args.dry_run,
        )
        for row in rows:
            if matmul:
                row["denoiser_fraction_of_bf16_matmul_rate"] = round(row["denoiser_tflops_achieved"] / matmul, 3)
        result["runs"].extend(rows)
        gc.collect()  # the family's pipeline is gone: free its memory before the next one
        if device == "cuda":
            torch.cuda.empty_cache()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", help="Where the random models and the output go (the end-to-end SD-1.5 run).")
    parser.add_argument("--pairs", type=int, default=32, help="Pairs to generate (timed after a warm-up run).")
    parser.add_argument(
        "--batch-size", type=int, default=None,
        help="pairs per pipeline call (default: 8 end to end; 2 with --families)",
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=None, help="pixels (default: 512 end to end; each family's native size)")
    parser.add_argument(
        "--dtype", default=None,
        help="float16, bfloat16 or float32 (default on CUDA: float16 end to end, bfloat16 with --families; CPU: float32)",
    )
    parser.add_argument(
        "--families", default=None,
        help=f"comma-separated, of {', '.join(REAL_SIZE_FAMILIES)}: measure each family's pipeline at its real size "
        "(pairs/s, denoiser TFLOP/s, peak memory) instead of the end-to-end SD-1.5 run",
    )
    parser.add_argument(
        "--compile", choices=["off", "on", "both"], default="both",
        help="with --families: measure the denoiser eager, under torch.compile, or both (default)",
    )
    parser.add_argument("--repeats", type=int, default=2, help="with --families: timed pipeline calls (median)")
    parser.add_argument(
        "--dry-run", action="store_true",
        help="with --families: the tiny twins on the CPU, 1 step, 1 pair (checks the script; the real "
        "architectures' parameter counts are still reported, counted on the meta device)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.families is not None:
        if args.batch_size is None:
            args.batch_size = 2
        if args.dry_run and args.compile == "both":
            args.compile = "off"  # inductor on a CPU needs a compiler and minutes; ask with --compile on
        sys.stdout.write(json.dumps(run_families(args), sort_keys=True) + "\n")
        return 0
    if args.work_dir is None:
        parser.error("--work-dir is required for the end-to-end run (or pass --families)")
    args.batch_size = args.batch_size or 8
    args.size = args.size or 512

    from magicseg_hf.generation import GenerationConfig, generate
    from magicseg_hf.generation.images import PairImageGenerator
    from magicseg_hf.loading import load_diffusion_pipeline
    from magicseg_hf.twins.cache import write_folder_atomically

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype_name = args.dtype or ("float16" if device == "cuda" else "float32")
    dtype = getattr(torch, dtype_name)
    work = Path(args.work_dir)
    folders = {"sd": work / "sd15-random", "detector": work / "grounding-dino-t-random", "sam": work / "sam-vit-h-random"}
    for name, build in (("sd", build_stable_diffusion_15), ("detector", build_grounding_dino_t), ("sam", build_sam_vit_h)):
        # Written as the tiny twins' cache folders are: complete or not at all (a run killed while
        # saving leaves no half-written folder for the next run to load).
        start = time.perf_counter()
        if write_folder_atomically(folders[name], lambda staging, build=build: build(staging, dtype)):
            logger.info("built %s in %.0f s", folders[name], time.perf_counter() - start)

    settings = dict(
        classes=["cat", "dog", "traffic light"], preset="tiny", prompt_backend="template",
        diffusion_model=str(folders["sd"]), detector_model=str(folders["detector"]),
        segmenter_model=str(folders["sam"]), num_inference_steps=args.steps, height=args.size, width=args.size,
        batch_size=args.batch_size, dtype=dtype_name, safety_checker=False,
        box_threshold=0.0, text_threshold=0.0, min_mask_area=0.0, max_mask_area=1.0, counterfactual_threshold=2.0,
    )
    reset_peak_memory(device)
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
    synchronize(device)
    start = time.perf_counter()
    maker.generate_pairs(prompts, ["a photo of a sofa"] * batch, ["cat"] * batch, list(range(batch)))
    synchronize(device)
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
        "peak_memory_gib": peak_memory_gib(device),
    }
    if matmul:
        result["unet_fraction_of_matmul_rate"] = round(result["unet_tflops_achieved"] / matmul, 3)
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
