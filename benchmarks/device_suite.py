"""One GPU run measures the whole product at real size: device, generation, annotation, training, evaluation.

    python benchmarks/device_suite.py --out DIR            # a GPU: real sizes, random weights, < 8 minutes
    python benchmarks/device_suite.py --dry-run --out DIR  # a CPU: every section at the tiny size, < 3 minutes

Every model is a random-weight twin built from the published architecture configs (written below as
code, no download), drawn directly on the device in the measured dtype (``_measure.building_in``: torch's
default device and dtype for the block, never a float32 copy first). Every figure goes through the
project's own code: ``PairImageGenerator`` (paired diffusion: positive + counterfactual in one denoiser
batch), ``Annotator`` with the product's detector/segmenter wrappers, ``MagicSegTrainer`` with
``MagicSegCollator``, ``segment_images`` (the one inference path), and ``generate()`` for the whole
``magicseg generate`` chain.

Each measurement runs in its own subprocess (``--worker``), so an out-of-memory or a crash ends that
measurement only; rows stream back as they finish. Each section has a time budget (``--budget
section=seconds``); a measurement that would start past it is recorded as skipped, one running past it
is stopped and keeps the rows it finished. ``DIR/device_suite.json`` and ``DIR/device_suite.md`` are
rewritten after every measurement; the last stdout line is JSON with every figure (``summary``) and the
goals held against them. With ``--dry-run`` the measurements of a section share one subprocess (the
import of torch is most of a tiny measurement's cost on a CPU).

Sections: ``device`` (name, memory, measured bf16 matmul rate), ``generation`` (SD-1.5 pairs/s at 512 px,
batch 1/4/8/16, fp16/bf16, SDPA, torch.compile off/on with its compile time; SDXL, SD3, FLUX.1 s/step
and peak memory at 1024 px; the denoiser's achieved TFLOP/s against the matmul rate), ``annotation``
(Grounding DINO-T + SAM ViT-H, MM-Grounding-DINO-L + SAM 2.1-L, images/s, bf16), ``training`` (ViT-B/16,
512 px, K=100, batch 4/8, bf16, eager and ``--torch_compile``, with and without counterfactuals),
``evaluation`` (``segment_images`` at the zegclip protocol's 512 slide, ViT-B/16 and ViT-L/14), ``chain``
(``generate()`` pairs/s on SD-1.5 at 20 and 50 steps, filters off).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks' helpers

import _measure  # noqa: E402
from _measure import (  # noqa: E402
    building_in,
    is_out_of_memory,
    matmul_tflops,
    median_seconds,
    peak_memory_gib,
    reset_peak_memory,
    run_worker,
    seconds,
    synchronize,
)

from magicseg_hf.cards.markdown import fmt_value  # noqa: E402
from magicseg_hf.folder import atomic_write_bytes  # noqa: E402

logger = logging.getLogger("device_suite")

#: The measurement a worker is running: every row it emits is tagged with this name.
_CURRENT: dict[str, str] = {"name": ""}


def emit_row(row: dict[str, Any]) -> None:
    """Hand a finished row of the current measurement to the parent."""
    _measure.emit_row({"measurement": _CURRENT["name"], **row})

SECTIONS: tuple[str, ...] = ("device", "generation", "annotation", "training", "evaluation", "chain")
#: Seconds per section on a GPU (sum 470: the run ends within 8 minutes, workers' start-up included).
GPU_BUDGETS: dict[str, float] = {
    "device": 20, "generation": 170, "annotation": 50, "training": 130, "evaluation": 30, "chain": 70,
}
#: Seconds per section in --dry-run (tiny models on a CPU; sum 175 s).
DRY_RUN_BUDGETS: dict[str, float] = {
    "device": 10, "generation": 45, "annotation": 25, "training": 30, "evaluation": 15, "chain": 50,
}
#: The goals the figures are held against (benchmarks/README.md).
GOALS: dict[str, str] = {
    "unet_fraction_of_bf16_matmul": ">= 0.40: the SD-1.5 UNet's achieved TFLOP/s over the measured bf16 matmul rate",
    "sd15_20_steps_pairs_per_s": ">= 5 pairs/s: SD-1.5, 512 px, 20 steps, filters off, one H100/H200",
    "annotation_over_diffusion": ">= 8: annotation pairs/s over diffusion pairs/s at the same batch",
    "counterfactual_step_ratio": "<= 2.1: a training step with counterfactuals over a plain step, paper size",
}
SD15_BATCHES = (1, 4, 8, 16)
PROMPT_CLASSES = (["cat"], ["dog", "sofa"], ["car", "tree", "person"])


# ---- the published architectures, as configs -------------------------------------------------------------
def _real_size() -> Any:
    """``bench_generate_real_size``: SD-1.5, SDXL and FLUX.1 builders from their published configs."""
    import bench_generate_real_size

    return bench_generate_real_size


def sd3_pipeline(device: str | None = None) -> Any:
    """Stable Diffusion 3 Medium's architecture (MMDiT 2B: 24 joint blocks of 24 x 64 heads; CLIP-L,
    OpenCLIP bigG and T5-XXL text encoders; 16-channel VAE) with random weights, per
    stabilityai/stable-diffusion-3-medium-diffusers' configs."""
    from transformers import T5Config

    from magicseg_hf.twins import random_sd3, tiny_t5_tokenizer

    real = _real_size()
    transformer = {
        "sample_size": 128, "patch_size": 2, "in_channels": 16, "num_layers": 24, "attention_head_dim": 64,
        "num_attention_heads": 24, "joint_attention_dim": 4096, "caption_projection_dim": 1536,
        "pooled_projection_dim": 2048, "out_channels": 16, "pos_embed_max_size": 192,
    }
    tokenizer = tiny_t5_tokenizer()
    t5_xxl = T5Config(
        vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
        feed_forward_proj="gated-gelu", pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    clip_l = real._clip_text_config(768, 12, 12, 3072, 768, "quick_gelu")
    clip_bigg = real._clip_text_config(1280, 32, 20, 5120, 1280, "gelu")
    vae = real._vae(16, 1024, scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False,
                    use_post_quant_conv=False)
    return random_sd3(transformer, vae, clip_l, clip_bigg, t5_xxl, device=device)


def diffusion_pipeline(family: str, device: str, dtype: Any) -> Any:
    """``family``'s (sd15, sdxl, sd3, flux) real-size pipeline, its weights drawn on ``device`` in
    ``dtype``; the scheduler is made again outside that block (its tables stay float32 on the CPU)."""
    builders: dict[str, Callable[[str | None], Any]] = {**_real_size().REAL_SIZE_BUILDERS, "sd3": sd3_pipeline}
    with building_in(device, dtype):
        pipe = builders[family](device)
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    return pipe


def grounding_dino_t() -> tuple[Any, Any]:
    """Grounding DINO-T (IDEA-Research/grounding-dino-tiny: Swin-T, BERT-base text, 900 queries) and its processor."""
    from transformers import (
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    from magicseg_hf.twins import tiny_bert_tokenizer

    model = GroundingDinoForObjectDetection(GroundingDinoConfig()).eval()  # the defaults are Grounding DINO-T's
    return model, GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(), tokenizer=tiny_bert_tokenizer())


def mm_grounding_dino_l() -> tuple[Any, Any]:
    """MM-Grounding-DINO-L (openmmlab-community/mm_grounding_dino_large_o365v2_oiv6_goldg: Swin-L at
    384 px, window 12; BERT-base text; 900 queries) and its processor."""
    from transformers import (
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        MMGroundingDinoConfig,
        MMGroundingDinoForObjectDetection,
        SwinConfig,
    )

    from magicseg_hf.twins import tiny_bert_tokenizer

    swin_l = SwinConfig(
        image_size=384, embed_dim=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48], window_size=12,
        out_features=["stage2", "stage3", "stage4"],
    )
    model = MMGroundingDinoForObjectDetection(MMGroundingDinoConfig(backbone_config=swin_l)).eval()
    return model, GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(), tokenizer=tiny_bert_tokenizer())


def sam_vit_h() -> tuple[Any, Any]:
    """SAM ViT-H (facebook/sam-vit-huge: 632M image encoder at 1024 px) and its processor."""
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor, SamVisionConfig

    vision = SamVisionConfig(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16,
                             global_attn_indexes=[7, 15, 23, 31])
    return SamModel(SamConfig(vision_config=vision)).eval(), SamProcessor(image_processor=SamImageProcessor())


def sam2_1_hiera_l() -> tuple[Any, Any]:
    """SAM 2.1 Hiera-L (facebook/sam2.1-hiera-large: Hiera 2-6-36-4 blocks, 144-1152 wide, global
    attention in blocks 23, 33, 43) and its processor."""
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2ImageProcessor,
        Sam2Model,
        Sam2Processor,
        Sam2VisionConfig,
    )

    hiera_l = Sam2HieraDetConfig(
        hidden_size=144, num_attention_heads=2, blocks_per_stage=[2, 6, 36, 4],
        embed_dim_per_stage=[144, 288, 576, 1152], num_attention_heads_per_stage=[2, 4, 8, 16],
        window_size_per_stage=[8, 4, 16, 8], global_attention_blocks=[23, 33, 43],
    )
    vision = Sam2VisionConfig(backbone_config=hiera_l, backbone_channel_list=[1152, 576, 288, 144])
    return Sam2Model(Sam2Config(vision_config=vision)).eval(), Sam2Processor(image_processor=Sam2ImageProcessor())


def clip_vit_l14_scorer() -> tuple[Any, Any]:
    """CLIP ViT-L/14 (openai/clip-vit-large-patch14, the paper preset's class scorer) and a processor
    over the offline tokenizer (whose ids fit the 49408-token table)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from magicseg_hf.twins import tiny_clip_tokenizer

    tokenizer = tiny_clip_tokenizer()
    config = CLIPConfig(
        text_config=_real_size()._clip_text_config(768, 12, 12, 3072, 768, "quick_gelu").to_dict(),
        vision_config={"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                       "num_attention_heads": 16, "patch_size": 14, "image_size": 224},
        projection_dim=768,
    )
    return CLIPModel(config).eval(), CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer)


#: Evaluation backbones: CLIP vision settings, projection width, crop (a multiple of the patch).
OPEN_SEG_BACKBONES: dict[str, dict[str, Any]] = {
    "vit-b16": {"vision": {"patch_size": 16, "image_size": 224}, "text": {}, "projection_dim": 512, "image_size": 512},
    "vit-l14": {
        "vision": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
                   "patch_size": 14, "image_size": 224},
        "text": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12},
        "projection_dim": 768,
        "image_size": 504,  # 36 x 14: the 512 crop rounded to the patch
    },
}


def open_seg_model(backbone: str) -> Any:
    """``CLIPForOpenSegmentation`` on a random CLIP ``backbone`` (``OPEN_SEG_BACKBONES``), eval mode."""
    from transformers import CLIPConfig

    from magicseg_hf.modeling import CLIPForOpenSegmentation, CLIPOpenSegConfig

    spec = OPEN_SEG_BACKBONES[backbone]
    clip = CLIPConfig(vision_config=spec["vision"], text_config=spec["text"] or None, projection_dim=spec["projection_dim"])
    config = CLIPOpenSegConfig(clip_config=clip.to_dict(), image_size=spec["image_size"],
                               slide_crop_size=spec["image_size"], slide_stride=426)
    return CLIPForOpenSegmentation(config).eval()


# ---- the measurement plan ---------------------------------------------------------------------------------
@dataclass
class Measurement:
    """One unit of work for a worker process: ``kind`` names the worker function, ``params`` its settings."""

    section: str
    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


def plan(dry_run: bool) -> list[Measurement]:
    """Every measurement, in run order (within a section the most important first: a budget cuts the tail)."""
    m: list[Measurement] = [Measurement("device", "device", "device")]
    if dry_run:
        sd15 = {"steps": 2, "size": 64, "batches": [1, 2]}
        m += [
            Measurement("generation", "sd15-float32-eager", "sd15_pairs", {**sd15, "dtype": "float32", "compile": False}),
            Measurement("generation", "sd15-float32-compiled", "sd15_pairs",
                        {**sd15, "batches": [1], "dtype": "float32", "compile": True}),
        ]
        m += [Measurement("generation", f"{f}-float32", "family_steps", {"family": f, "steps": 2, "dtype": "float32"})
              for f in ("sdxl", "sd3", "flux")]
        m += [Measurement("annotation", f"{d}-float32", "annotation", {"detector": d, "batches": [1], "dtype": "float32"})
              for d in ("grounding-dino-t+sam-vit-h", "mm-grounding-dino-l+sam2.1-l")]
        for compiled in (False, True):
            for counterfactual in (True, False):
                label = f"b2-{'compiled' if compiled else 'eager'}-{'counterfactual' if counterfactual else 'plain'}"
                m.append(Measurement("training", label, "training", {
                    "batch": 2, "compile": compiled, "counterfactual": counterfactual, "dtype": "float32",
                    "steps": 2, "warmup": 1}))
        m += [Measurement("evaluation", "tiny-float32", "evaluation", {"backbone": "tiny", "images": 4, "dtype": "float32"})]
        # 2 and 5 steps stand for 20 and 50: the chain's code is the same, a tiny CPU run stays short.
        m += [Measurement("chain", f"chain-sd15-{s}-steps", "chain", {"steps": s, "pairs": 2, "batch": 2, "dtype": "float32"})
              for s in (2, 5)]
        return m
    for compiled in (False, True):  # eager first: the compiled runs take what the budget leaves
        for dtype in ("bfloat16", "float16"):
            batches = [8, 16, 1, 4] if compiled else list(SD15_BATCHES)
            m.append(Measurement("generation", f"sd15-{dtype}-{'compiled' if compiled else 'eager'}", "sd15_pairs",
                                 {"steps": 20, "size": 512, "batches": batches, "dtype": dtype, "compile": compiled}))
        if not compiled:
            m += [Measurement("generation", f"{f}-bfloat16", "family_steps", {"family": f, "steps": 4, "dtype": "bfloat16"})
                  for f in ("sdxl", "sd3", "flux")]
    m += [Measurement("annotation", f"{d}-bfloat16", "annotation",
                      {"detector": d, "batches": [8, 16, 4, 1], "dtype": "bfloat16"})
          for d in ("grounding-dino-t+sam-vit-h", "mm-grounding-dino-l+sam2.1-l")]
    for compiled in (False, True):
        for batch in ((4, 8) if not compiled else (8,)):  # compiling a step takes about a minute each
            for counterfactual in (True, False):
                label = f"b{batch}-{'compiled' if compiled else 'eager'}-{'counterfactual' if counterfactual else 'plain'}"
                m.append(Measurement("training", label, "training", {
                    "batch": batch, "compile": compiled, "counterfactual": counterfactual, "dtype": "bfloat16",
                    "steps": 5, "warmup": 3 if compiled else 2}))
    m += [Measurement("evaluation", f"{b}-bfloat16", "evaluation", {"backbone": b, "images": 32, "dtype": "bfloat16"})
          for b in ("vit-b16", "vit-l14")]
    m += [Measurement("chain", f"chain-sd15-{s}-steps", "chain", {"steps": s, "pairs": p, "batch": 8, "dtype": "float16"})
          for s, p in ((20, 32), (50, 16))]
    return m


# ---- workers (run in the subprocess) ------------------------------------------------------------------------
@dataclass
class Context:
    """What every worker function gets: the device, the mode and a scratch folder shared by the run."""

    device: str
    dry_run: bool
    work_dir: Path

    @property
    def repeats(self) -> int:
        """Timed repeats of a short call (medians): 3 on a device, 1 in a dry run."""
        return 1 if self.dry_run else 3

    def dtype(self, name: str) -> Any:
        import torch

        return getattr(torch, name)


def _images(count: int, size: int, seed: int = 0) -> list[Any]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB") for _ in range(count)]


def _pair_texts(batch: int) -> tuple[list[str], list[str], list[str], list[int]]:
    prompts = [f"a photo of a cat number {i} on a sofa in a living room" for i in range(batch)]
    return prompts, ["a photo of a sofa in a living room"] * batch, ["cat"] * batch, list(range(batch))


def work_device(params: dict[str, Any], ctx: Context) -> None:
    """Device name, memory and the measured bf16 matmul rate."""
    import torch

    row: dict[str, Any] = {"torch": torch.__version__}
    if ctx.device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        row.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                   capability=f"{props.major}.{props.minor}", count=torch.cuda.device_count(),
                   bf16_matmul_tflops=round(matmul_tflops(ctx.device, torch.bfloat16, 8192, 50), 1),
                   fp16_matmul_tflops=round(matmul_tflops(ctx.device, torch.float16, 8192, 50), 1))
    else:
        row.update(name=platform.processor() or platform.machine(), memory_gib=None, threads=torch.get_num_threads(),
                   bf16_matmul_tflops=round(matmul_tflops("cpu", torch.bfloat16, 256, 4), 4))
    import transformers

    row["transformers"] = transformers.__version__
    try:
        import diffusers

        row["diffusers"] = diffusers.__version__
    except ImportError:
        row["diffusers"] = None
    emit_row(row)


def _build_pipeline(family: str, ctx: Context, dtype_name: str) -> Any:
    from magicseg_hf.families import FAMILIES
    from magicseg_hf.twins import tiny_diffusion_pipeline

    names = {"sd15": "stable-diffusion", "sdxl": "sdxl", "sd3": "sd3", "flux": "flux"}
    if ctx.dry_run:
        pipe = tiny_diffusion_pipeline(FAMILIES[names[family]].tiny_id)
    else:
        pipe = diffusion_pipeline(family, ctx.device, ctx.dtype(dtype_name))
    pipe.set_progress_bar_config(disable=True)
    return pipe, FAMILIES[names[family]]


def _capture(module: Any) -> tuple[dict[str, Any], Any]:
    return _real_size()._capture_first_call(module)


def _attention_kind(network: Any) -> str:
    processors = getattr(network, "attn_processors", {}) or {}
    kinds = sorted({type(p).__name__ for p in processors.values()})
    return ",".join(kinds) or "n/a"


def work_sd15_pairs(params: dict[str, Any], ctx: Context) -> None:
    """SD-1.5 pairs/s through ``PairImageGenerator`` at each batch size, eager or compiled, and the UNet's
    achieved TFLOP/s (FLOPs counted once by ``FlopCounterMode``, linear in the batch)."""
    import torch

    from magicseg_hf.generation.images import PairImageGenerator, denoiser

    real = _real_size()
    pipe, family = _build_pipeline("sd15", ctx, params["dtype"])
    defaults = family.defaults(tiny=ctx.dry_run)
    size = params["size"] or defaults["height"]
    steps = params["steps"]
    network = denoiser(pipe)
    attention = _attention_kind(network)

    def maker(step_count: int) -> Any:
        return PairImageGenerator(pipe, num_inference_steps=step_count, height=size, width=size,
                                  guidance_scale=defaults["guidance_scale"], family=family)

    # Phase 1, eager: one 1-step call per batch keeps the UNet's inputs at that batch.
    inputs: dict[int, tuple[tuple, dict[str, Any]]] = {}
    for batch in params["batches"]:
        seen, handle = _capture(network)
        try:
            maker(1).generate_pairs(*_pair_texts(batch))
        except Exception as error:  # an OOM at this batch: record it, go on with the others
            if not is_out_of_memory(error):
                raise
            emit_row({"batch": batch, "error": "out of memory"})
            if ctx.device.startswith("cuda"):
                torch.cuda.empty_cache()
        finally:
            handle.remove()
        if "args" in seen:
            inputs[batch] = (seen["args"], seen["kwargs"])
    if not inputs:
        return
    first = min(inputs)
    args, kwargs = inputs[first]
    flops_per_sample = real.denoiser_flop_count(network, args, kwargs, ctx.device) / real._batch_of(args, kwargs)
    if params["compile"]:
        network.compile(**({"backend": "eager"} if ctx.dry_run else {}))
    full = maker(steps)
    for batch in params["batches"]:
        if batch not in inputs:
            continue
        args, kwargs = inputs[batch]
        texts = _pair_texts(batch)

        def pairs_call(texts: tuple = texts) -> None:
            full.generate_pairs(*texts)

        def one_call(args: tuple = args, kwargs: dict[str, Any] = kwargs) -> None:
            with torch.no_grad():  # the pipeline's grad mode: no recompile under torch.compile
                network(*args, **kwargs)

        try:
            reset_peak_memory(ctx.device)
            warm_s = seconds(pairs_call, ctx.device)  # compiles this shape when compiled
            call_s = seconds(pairs_call, ctx.device)

            denoiser_s = median_seconds(one_call, ctx.repeats, ctx.device)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            emit_row({"batch": batch, "error": "out of memory"})
            continue
        denoiser_batch = real._batch_of(args, kwargs)
        emit_row({
            "batch": batch, "dtype": params["dtype"], "compiled": params["compile"], "steps": steps, "size": size,
            "attention": attention, "pairs_per_s": round(batch / call_s, 3), "call_s": round(call_s, 3),
            "compile_s": round(warm_s - call_s, 1) if params["compile"] else None,
            "denoiser_batch": denoiser_batch, "denoiser_call_s": round(denoiser_s, 4),
            "denoiser_tflops": round(flops_per_sample * denoiser_batch / denoiser_s / 1e12, 3),
            "denoiser_share_of_call": round(steps * denoiser_s / call_s, 3),
            "peak_memory_gib": peak_memory_gib(ctx.device),
        })


def work_family_steps(params: dict[str, Any], ctx: Context) -> None:
    """SDXL / SD3 / FLUX.1: a pair at the family's native size, s/step from a 1-step and an S-step call,
    the denoiser's achieved TFLOP/s on one call, peak memory."""
    from magicseg_hf.generation.images import PairImageGenerator, denoiser

    real = _real_size()
    name, steps = params["family"], params["steps"]
    reset_peak_memory(ctx.device)
    start = time.perf_counter()
    pipe, family = _build_pipeline(name, ctx, params["dtype"])
    build_s = time.perf_counter() - start
    defaults = family.defaults(tiny=ctx.dry_run)
    size = defaults["height"] if ctx.dry_run else 1024

    def maker(step_count: int) -> Any:
        return PairImageGenerator(pipe, num_inference_steps=step_count, height=size, width=size,
                                  guidance_scale=defaults["guidance_scale"], family=family,
                                  max_sequence_length=defaults["max_sequence_length"])

    texts = _pair_texts(1)
    network = denoiser(pipe)
    seen, handle = _capture(network)
    maker(1).generate_pairs(*texts)  # warm-up; keeps the denoiser's inputs
    handle.remove()
    one_s = seconds(lambda: maker(1).generate_pairs(*texts), ctx.device)
    many_s = seconds(lambda: maker(steps).generate_pairs(*texts), ctx.device)
    args, kwargs = seen["args"], seen["kwargs"]
    flops = real.denoiser_flop_count(network, args, kwargs, ctx.device)

    def one_call() -> None:
        import torch

        with torch.no_grad():
            network(*args, **kwargs)

    denoiser_s = median_seconds(one_call, ctx.repeats, ctx.device)
    emit_row({
        "family": name, "dtype": params["dtype"], "size": size, "steps": steps, "build_s": round(build_s, 1),
        "denoiser_parameters_b": round(sum(p.numel() for p in network.parameters()) / 1e9, 3),
        "s_per_step": round((many_s - one_s) / (steps - 1), 4), "call_s": round(many_s, 3),
        "denoiser_batch": real._batch_of(args, kwargs), "denoiser_call_s": round(denoiser_s, 4),
        "denoiser_tflops": round(flops / denoiser_s / 1e12, 3), "peak_memory_gib": peak_memory_gib(ctx.device),
    })


def work_annotation(params: dict[str, Any], ctx: Context) -> None:
    """Images/s of ``Annotator.annotate`` (batched detection, one segmenter call per image with its boxes)
    and pairs/s with ``score_counterfactual`` (the counterfactual's detector pass), at the generator's
    batch sizes; at most 3 boxes per image (filters off: every query passes its threshold)."""
    from magicseg_hf.generation.annotate import (
        Annotator,
        GroundingDinoDetector,
        MMGroundingDinoDetector,
        Sam2Segmenter,
        TransformersSamSegmenter,
    )
    from magicseg_hf.twins import (
        tiny_grounding_dino,
        tiny_mm_grounding_dino,
        tiny_sam2,
        tiny_transformers_sam,
    )

    mm = params["detector"].startswith("mm-")
    if ctx.dry_run:
        (detector, dproc), (segmenter, sproc) = ((tiny_mm_grounding_dino() if mm else tiny_grounding_dino()),
                                                 (tiny_sam2() if mm else tiny_transformers_sam()))
        size = 128
    else:
        with building_in(ctx.device, ctx.dtype(params["dtype"])):
            detector, dproc = mm_grounding_dino_l() if mm else grounding_dino_t()
            segmenter, sproc = sam2_1_hiera_l() if mm else sam_vit_h()
        size = 512
    detector = detector.to(ctx.device)
    segmenter = segmenter.to(ctx.device)
    annotator = Annotator(
        (MMGroundingDinoDetector if mm else GroundingDinoDetector)(detector, dproc, ctx.device),
        (Sam2Segmenter if mm else TransformersSamSegmenter)(segmenter, sproc, ctx.device),
        box_threshold=0.0, text_threshold=0.0, max_detections=3,
    )
    for batch in params["batches"]:
        images = _images(batch, size)
        classes = [list(PROMPT_CLASSES[i % len(PROMPT_CLASSES)]) for i in range(batch)]

        def annotate(images: list[Any] = images, classes: list[list[str]] = classes) -> None:
            annotator.annotate(images, classes)

        def score(images: list[Any] = images, classes: list[list[str]] = classes) -> None:
            annotator.score_counterfactual(images, classes)

        try:
            reset_peak_memory(ctx.device)
            annotate()
            score()
            annotate_s = median_seconds(annotate, min(2, ctx.repeats), ctx.device)
            score_s = median_seconds(score, min(2, ctx.repeats), ctx.device)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            emit_row({"batch": batch, "error": "out of memory"})
            continue
        emit_row({
            "detector": params["detector"], "dtype": params["dtype"], "batch": batch, "size": size, "boxes_per_image": 3,
            "images_per_s": round(batch / annotate_s, 3), "pairs_per_s": round(batch / (annotate_s + score_s), 3),
            "annotate_s": round(annotate_s, 3), "score_counterfactual_s": round(score_s, 3),
            "peak_memory_gib": peak_memory_gib(ctx.device),
        })


def work_training(params: dict[str, Any], ctx: Context) -> None:
    """Samples/s and peak memory of ``MagicSegTrainer.train`` (``MagicSegCollator``: category sampling,
    pair augmentation) at ``batch`` per device, bf16 autocast, with ``torch_compile`` on or off, with or
    without counterfactual images; the time between the ends of consecutive steps after the warm-up."""
    import bench_train
    import torch
    from transformers import TrainerCallback, TrainingArguments

    from magicseg_hf.training.collator import MagicSegCollator
    from magicseg_hf.training.trainer import MagicSegTrainer

    batch, warmup, steps = params["batch"], params["warmup"], params["steps"]
    torch.manual_seed(0)
    model, processor = bench_train._model("tiny" if ctx.dry_run else "paper")  # ViT-B/16 at 512 px, random
    if not params["counterfactual"]:
        model.config.counterfactual_loss_weight = 0.0
    vocabulary = [f"class {i}" for i in range(bench_train.VOCABULARY_SIZE)]
    class_embeds = torch.nn.functional.normalize(torch.randn(len(vocabulary), model.config.projection_dim), dim=-1)
    collator = MagicSegCollator(processor, vocabulary, class_embeds, num_classes=100, seed=0, augment=True,
                                counterfactual=params["counterfactual"])
    rows = bench_train._rows(batch * (warmup + steps), model.config.image_size * 2)
    ends: list[float] = []
    peaks: list[float | None] = []

    class StepTimer(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            synchronize(ctx.device)
            ends.append(time.perf_counter())
            if len(ends) == warmup:
                reset_peak_memory(ctx.device)

    with tempfile.TemporaryDirectory(dir=ctx.work_dir) as out:
        arguments = TrainingArguments(
            output_dir=out, per_device_train_batch_size=batch, max_steps=warmup + steps, learning_rate=2e-4,
            bf16=params["dtype"] == "bfloat16", torch_compile=params["compile"], report_to=[], save_strategy="no",
            logging_steps=10_000, remove_unused_columns=False, disable_tqdm=True, seed=0,
            use_cpu=not ctx.device.startswith("cuda"),
            **({"torch_compile_backend": "eager"} if ctx.dry_run and params["compile"] else {}),
        )
        trainer = MagicSegTrainer(model=model, args=arguments, train_dataset=rows, data_collator=collator,
                                  processing_class=processor, callbacks=[StepTimer()])
        start = time.perf_counter()
        try:
            trainer.train()
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            emit_row({"batch": batch, "error": "out of memory"})
            return
        peaks.append(peak_memory_gib(ctx.device))
    timed = [b - a for a, b in zip(ends[warmup - 1:], ends[warmup:])]
    step_s = sum(timed) / len(timed)
    emit_row({
        "batch": batch, "dtype": params["dtype"], "compiled": params["compile"], "counterfactual": params["counterfactual"],
        "image_size": model.config.image_size, "num_classes": 100, "s_per_step": round(step_s, 4),
        "samples_per_s": round(batch / step_s, 3), "warmup_s": round(ends[warmup - 1] - start, 1),
        "peak_memory_gib": peaks[0],
    })


def work_evaluation(params: dict[str, Any], ctx: Context) -> None:
    """Images/s of ``segment_images`` (the one inference path) on VOC-sized images, 21 queries, at the
    zegclip protocol's geometry (short side 512, 512 windows, stride 426, slide)."""
    import bench_eval

    from magicseg_hf.modeling import InferenceGeometry

    if ctx.dry_run:
        model = bench_eval.build_model("tiny", ctx.device, params["dtype"])
        geometry = bench_eval.geometry(bench_eval.WINDOWS_GEOMETRY["tiny"])
    else:
        with building_in(ctx.device, ctx.dtype(params["dtype"])):
            model = open_seg_model(params["backbone"])
        window = model.config.image_size
        geometry = InferenceGeometry(short_side=512, window=window, stride=426, mode="slide")
    queries = bench_eval.random_queries(bench_eval.NUM_QUERIES, model.config.projection_dim)
    images = bench_eval.random_images([(375, 500)] * params["images"])
    window_batch = 16
    reset_peak_memory(ctx.device)
    bench_eval.segment_seconds(model, images[:2], queries, geometry, window_batch, ctx.device)  # warm-up
    elapsed = bench_eval.segment_seconds(model, images, queries, geometry, window_batch, ctx.device)
    emit_row({
        "backbone": params["backbone"], "dtype": params["dtype"], "images": len(images), "window": geometry.window,
        "stride": geometry.stride, "short_side": geometry.short_side, "window_batch_size": window_batch,
        "images_per_s": round(len(images) / elapsed, 3), "peak_memory_gib": peak_memory_gib(ctx.device),
    })


def _built(build: Callable[[], Any], device: str, dtype: Any) -> Any:
    """``build()`` with its weights drawn on ``device`` in ``dtype``."""
    with building_in(device, dtype):
        return build()


def _chain_folders(ctx: Context, dtype_name: str) -> dict[str, str]:
    """The SD-1.5, Grounding DINO-T, SAM ViT-H and CLIP ViT-L/14 twins saved as model folders (built once
    per run, on the device in ``dtype_name``), so ``generate()`` loads them as it loads real checkpoints."""
    root = ctx.work_dir / f"models-{dtype_name}"
    dtype = ctx.dtype(dtype_name)
    builders: dict[str, Callable[[], Any]] = {
        "diffusion": lambda: diffusion_pipeline("sd15", ctx.device, dtype),
        "detector": lambda: _built(grounding_dino_t, ctx.device, dtype),
        "segmenter": lambda: _built(sam_vit_h, ctx.device, dtype),
        "scorer": lambda: _built(clip_vit_l14_scorer, ctx.device, dtype),
    }
    from magicseg_hf.twins.cache import write_folder_atomically

    def saver(build: Callable[[], Any]) -> Callable[[Path], None]:
        def save(staging: Path) -> None:
            built = build()
            for part in built if isinstance(built, tuple) else (built,):
                part.save_pretrained(staging)

        return save

    folders = {}
    for name, build in builders.items():
        folder = root / name
        write_folder_atomically(folder, saver(build))  # exists only complete: a kill leaves no half a folder
        folders[name] = str(folder)
    return folders


def work_chain(params: dict[str, Any], ctx: Context) -> None:
    """Pairs/s of the whole ``magicseg generate`` chain (``generate()``: prompts, paired diffusion,
    annotation, counterfactual score, class scores, writing rows) on SD-1.5 at 512 px, filters off."""
    from magicseg_hf.generation import GenerationConfig, generate

    settings: dict[str, Any] = {
        "classes": ["cat", "dog", "traffic light"], "prompt_backend": "template",
        "num_inference_steps": params["steps"], "batch_size": params["batch"], "dtype": params["dtype"],
        "safety_checker": False, "box_threshold": 0.0, "text_threshold": 0.0, "min_mask_area": 0.0,
        "max_mask_area": 1.0, "counterfactual_threshold": 2.0, "class_score_threshold": -1.0, "max_boxes": 3,
        "device": ctx.device,
    }
    if ctx.dry_run:
        settings["preset"] = "tiny"
    else:
        start = time.perf_counter()
        folders = _chain_folders(ctx, params["dtype"])
        logger.info("chain models ready in %.0f s", time.perf_counter() - start)
        settings.update(preset="tiny", diffusion_model=folders["diffusion"], detector="grounding-dino",
                        detector_model=folders["detector"], segmenter="transformers",
                        segmenter_model=folders["segmenter"], class_score_model=folders["scorer"], height=512, width=512)
    results = {}
    for run, pairs in (("warmup", params["batch"]), ("timed", params["pairs"])):
        out = ctx.work_dir / f"chain-{params['steps']}-{run}"
        shutil.rmtree(out, ignore_errors=True)
        reset_peak_memory(ctx.device)
        start = time.perf_counter()
        summary = generate(GenerationConfig(num_pairs=pairs, shard_size=max(pairs, 1), **settings), out)
        results[run] = (time.perf_counter() - start, summary.num_rows)
        shutil.rmtree(out, ignore_errors=True)
    elapsed, rows = results["timed"]
    emit_row({
        "steps": params["steps"], "dtype": params["dtype"], "batch": params["batch"], "pairs": rows,
        "generate_s": round(elapsed, 2), "pairs_per_s": round(rows / elapsed, 3),
        "warmup_s": round(results["warmup"][0], 1), "peak_memory_gib": peak_memory_gib(ctx.device),
    })


WORKERS: dict[str, Callable[[dict[str, Any], Context], None]] = {
    "device": work_device, "sd15_pairs": work_sd15_pairs, "family_steps": work_family_steps,
    "annotation": work_annotation, "training": work_training, "evaluation": work_evaluation, "chain": work_chain,
}


def worker_main(measurements: list[dict[str, Any]], dry_run: bool, work_dir: Path) -> int:
    """Run ``measurements`` in this process, each row tagged with its measurement's name; a failure
    (out of memory included) becomes an error row and the next measurement runs."""
    import torch

    device = "cuda" if torch.cuda.is_available() and not dry_run else "cpu"
    ctx = Context(device=device, dry_run=dry_run, work_dir=work_dir)
    status = 0
    for item in measurements:
        measurement = Measurement(**item)
        _CURRENT["name"] = measurement.name
        try:
            WORKERS[measurement.kind](measurement.params, ctx)
        except Exception as error:  # one measurement's failure is its row; the others still run
            logger.exception("%s failed", measurement.name)
            emit_row({"error": "out of memory" if is_out_of_memory(error) else f"{type(error).__name__}: {error}"[:300]})
            status = 1
        finally:
            if device == "cuda":
                torch.cuda.empty_cache()
    return status


# ---- the parent: budgets, reports, summary ------------------------------------------------------------------
def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """Every figure as one flat dict, the derived ratios, and the goals' verdicts."""
    figures: dict[str, Any] = {}
    rows_of: dict[str, list[dict[str, Any]]] = {}
    for section in report["sections"].values():
        for item in section["measurements"]:
            rows_of[item["name"]] = [row for row in item["rows"] if "error" not in row]
    device = (rows_of.get("device") or [{}])[0]
    matmul = device.get("bf16_matmul_tflops")
    figures.update(device_name=device.get("name"), device_memory_gib=device.get("memory_gib"), bf16_matmul_tflops=matmul)
    unet_best = None
    sd15_20 = None
    for name, rows in rows_of.items():
        for row in rows:
            if "denoiser_tflops" in row and "batch" in row:  # SD-1.5 pairs
                key = f"{name}_b{row['batch']}"
                figures[f"{key}_pairs_per_s"] = row["pairs_per_s"]
                figures[f"{key}_denoiser_tflops"] = row["denoiser_tflops"]
                figures[f"{key}_peak_memory_gib"] = row.get("peak_memory_gib")
                if row.get("compile_s") is not None:
                    figures[f"{key}_compile_s"] = row["compile_s"]
                unet_best = max(unet_best or 0.0, row["denoiser_tflops"])
                if row["steps"] == 20:
                    sd15_20 = max(sd15_20 or 0.0, row["pairs_per_s"])
            elif "family" in row:
                figures[f"{row['family']}_s_per_step"] = row["s_per_step"]
                figures[f"{row['family']}_peak_memory_gib"] = row["peak_memory_gib"]
                figures[f"{row['family']}_denoiser_tflops"] = row["denoiser_tflops"]
            elif "detector" in row:
                figures[f"annotation_{name}_b{row['batch']}_images_per_s"] = row["images_per_s"]
                figures[f"annotation_{name}_b{row['batch']}_pairs_per_s"] = row["pairs_per_s"]
            elif "samples_per_s" in row:
                figures[f"training_{name}_samples_per_s"] = row["samples_per_s"]
                figures[f"training_{name}_peak_memory_gib"] = row["peak_memory_gib"]
                figures[f"training_{name}_s_per_step"] = row["s_per_step"]
            elif "backbone" in row:
                figures[f"evaluation_{row['backbone']}_images_per_s"] = row["images_per_s"]
            elif "generate_s" in row:
                figures[f"chain_sd15_{row['steps']}_steps_pairs_per_s"] = row["pairs_per_s"]
    figures["sd15_20_steps_pairs_per_s"] = sd15_20
    figures["unet_tflops_best"] = unet_best
    figures["unet_fraction_of_bf16_matmul"] = round(unet_best / matmul, 3) if unet_best and matmul else None
    # Annotation over diffusion: the first annotation pair (GDINO-T + SAM ViT-H) against eager bf16 SD-1.5, same batch.
    ratios = []
    for key, value in list(figures.items()):
        if key.startswith("annotation_grounding-dino-t") and key.endswith("_pairs_per_s"):
            batch = key.split("_b")[-1].split("_")[0]
            diffusion = figures.get(f"sd15-bfloat16-eager_b{batch}_pairs_per_s") or figures.get(
                f"sd15-float32-eager_b{batch}_pairs_per_s")
            if diffusion:
                figures[f"annotation_over_diffusion_b{batch}"] = round(value / diffusion, 2)
                ratios.append(value / diffusion)
    figures["annotation_over_diffusion"] = round(min(ratios), 2) if ratios else None
    overheads = []
    for key in list(figures):
        if key.startswith("training_") and key.endswith("-counterfactual_s_per_step"):
            plain = figures.get(key.replace("-counterfactual_", "-plain_"))
            if plain:
                label = key.removeprefix("training_").removesuffix("-counterfactual_s_per_step")
                figures[f"counterfactual_step_ratio_{label}"] = round(figures[key] / plain, 3)
                overheads.append(figures[key] / plain)
    figures["counterfactual_step_ratio"] = round(max(overheads), 3) if overheads else None
    checks = {
        "unet_fraction_of_bf16_matmul": lambda v: v >= 0.40,
        "sd15_20_steps_pairs_per_s": lambda v: v >= 5,
        "annotation_over_diffusion": lambda v: v >= 8,
        "counterfactual_step_ratio": lambda v: v <= 2.1,
    }
    verdicts = {}
    for name, check in checks.items():
        value = figures.get(name)
        if report["dry_run"]:
            verdicts[name] = "dry-run (tiny, CPU): not held against the goal"
        elif value is None:
            verdicts[name] = "not measured"
        else:
            verdicts[name] = "met" if check(value) else "NOT met"
    return {"figures": figures, "goals": {name: {"goal": GOALS[name], "value": figures.get(name), "verdict": verdicts[name]}
                                          for name in checks}}


def write_reports(report: dict[str, Any], out: Path) -> None:
    """``device_suite.json`` and ``device_suite.md`` in ``out`` (rewritten after every measurement)."""
    try:
        report["summary"] = summarize(report)
    except Exception as error:  # a bug in the summary must not lose the measured rows
        logger.exception("summary failed")
        report["summary"] = {"figures": {"summary_error": f"{type(error).__name__}: {error}"}, "goals": {}}
    atomic_write_bytes(out / "device_suite.json", (json.dumps(report, indent=2, default=str) + "\n").encode("utf-8"))
    lines = [f"# device_suite ({'dry-run, tiny models on a CPU' if report['dry_run'] else 'real sizes, random weights'})",
             "", f"Started {report['started']}; {report['elapsed_s']:.0f} s so far; command: `{report['command']}`.", ""]
    for section, data in report["sections"].items():
        lines += [f"## {section} (budget {data['budget_s']:.0f} s, spent {data['spent_s']:.0f} s)", ""]
        for item in data["measurements"]:
            rows = [r for r in item["rows"] if "error" not in r]
            errors = [r["error"] for r in item["rows"] if "error" in r] + ([item["error"]] if item.get("error") else [])
            status = f" — {'; '.join(errors)}" if errors else ""
            lines.append(f"**{item['name']}** ({item['seconds']:.0f} s){status}")
            lines.append("")
            if rows:
                columns = [k for k in rows[0] if k != "measurement"]
                for row in rows[1:]:
                    columns += [k for k in row if k not in columns and k != "measurement"]
                lines.append("| " + " | ".join(columns) + " |")
                lines.append("|" + "---|" * len(columns))
                lines += ["| " + " | ".join(fmt_value(row.get(c)) for c in columns) + " |" for row in rows]
                lines.append("")
    lines += ["## goals", "", "| figure | value | goal | verdict |", "|---|---|---|---|"]
    for name, goal in report["summary"]["goals"].items():
        lines.append(f"| {name} | {fmt_value(goal['value'])} | {goal['goal']} | {goal['verdict']} |")
    atomic_write_bytes(out / "device_suite.md", ("\n".join(lines) + "\n").encode("utf-8"))


def _parse_budgets(values: list[str], defaults: dict[str, float]) -> dict[str, float]:
    budgets = dict(defaults)
    for value in values:
        section, _, seconds_text = value.partition("=")
        if section not in budgets or not seconds_text:
            raise SystemExit(f"--budget takes SECTION=SECONDS with SECTION among {', '.join(SECTIONS)} (got {value!r})")
        budgets[section] = float(seconds_text)
    return budgets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="every section at the tiny size on the CPU (< 3 minutes)")
    parser.add_argument("--out", default="device-suite-out", help="folder of device_suite.json / device_suite.md")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated sections to run (default: all)")
    parser.add_argument("--budget", action="append", default=[], metavar="SECTION=SECONDS",
                        help="override a section's time budget (repeatable)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds for the whole run (default: the sum of the budgets); nothing starts past it")
    parser.add_argument("--work-dir", default=None,
                        help="scratch folder for model folders and outputs (default: a temporary folder, removed at the end)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    out = Path(args.out)
    # Scratch (model folders of GBs at real size) stays out of OUT: OUT comes back from a device whole.
    work_dir = Path(args.work_dir) if args.work_dir else Path(tempfile.gettempdir()) / f"device-suite-{os.getpid()}"
    if args.worker is not None and args.work_dir is None:
        parser.error("--worker needs --work-dir")
    if args.worker is not None:
        return worker_main(json.loads(args.worker), args.dry_run, work_dir)

    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"--sections: unknown {', '.join(unknown)} (known: {', '.join(SECTIONS)})")
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            parser.error("no CUDA device here: the real sizes need a GPU (use --dry-run on a CPU)")
    budgets = _parse_budgets(args.budget, DRY_RUN_BUDGETS if args.dry_run else GPU_BUDGETS)
    time_limit = args.time_limit or sum(budgets[s] for s in sections)
    out.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report: dict[str, Any] = {
        "dry_run": args.dry_run, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "elapsed_s": 0.0,
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "sections": {}, "time_limit_s": time_limit,
    }
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    base = [sys.executable, str(Path(__file__).resolve()), "--out", str(out), "--work-dir", str(work_dir)]
    if args.dry_run:
        base.append("--dry-run")
    measurements = [m for m in plan(args.dry_run) if m.section in sections]
    for section in sections:
        section_start = time.perf_counter()
        data = report["sections"][section] = {"budget_s": budgets[section], "spent_s": 0.0, "measurements": []}
        todo = [m for m in measurements if m.section == section]
        # A dry run puts a section's measurements in one process (the imports dominate on a CPU).
        groups = [todo] if args.dry_run else [[m] for m in todo]
        for group in groups:
            if not group:
                continue
            left = min(budgets[section] - (time.perf_counter() - section_start), time_limit - (time.perf_counter() - start))
            items = [{"name": m.name, "kind": m.kind, "params": m.params, "rows": [], "error": None, "seconds": 0.0}
                     for m in group]
            data["measurements"] += items
            if left <= 1:
                for item in items:
                    item["error"] = "skipped: section budget spent"
                continue
            logger.info("%s: %s (%.0f s left in the section)", section, ", ".join(m.name for m in group), left)
            result = run_worker([*base, "--worker", json.dumps([asdict(m) for m in group])], timeout=left, env=env)
            for item in items:
                item["rows"] = [row for row in result.rows if row.get("measurement") == item["name"]]
                item["seconds"] = round(result.seconds / len(items), 1)
                if not item["rows"]:
                    item["error"] = result.error or "no result"
                elif result.timed_out:
                    item["error"] = "stopped: time budget spent (rows above finished)"
            if result.error and not result.timed_out:
                logger.warning("%s: %s\n%s", section, result.error, result.stderr_tail[-2000:])
            data["spent_s"] = round(time.perf_counter() - section_start, 1)
            report["elapsed_s"] = round(time.perf_counter() - start, 1)
            write_reports(report, out)
        data["spent_s"] = round(time.perf_counter() - section_start, 1)
    report["elapsed_s"] = round(time.perf_counter() - start, 1)
    write_reports(report, out)
    if args.work_dir is None:
        shutil.rmtree(work_dir, ignore_errors=True)  # the scratch models and outputs (GBs at real size)
    sys.stdout.write(Path(out / "device_suite.md").read_text(encoding="utf-8"))
    final = {"dry_run": args.dry_run, "elapsed_s": report["elapsed_s"], **report["summary"]["figures"],
             "goals": {name: goal["verdict"] for name, goal in report["summary"]["goals"].items()}}
    sys.stdout.write(json.dumps(final, sort_keys=True, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
