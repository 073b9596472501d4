"""``generate(config, output_dir, resume=False)``: the one entry point of dataset generation.

vocabulary -> prompts -> positive image -> annotation -> counterfactual image -> counterfactual
score -> rows on disk. Determinism (DESIGN.md): attempt ``k`` draws its classes, prompt and noise
from seeds derived from ``(seed, k)``; shard ``j`` holds attempts ``[jA, (j+1)A)``; under ``W``
processes, process ``r`` takes the shards ``j = r (mod W)``; a batch never crosses a shard; the
dataset is the first ``num_pairs`` kept attempts in ``k`` order. A straight run, a killed and
resumed run and a multi-process run therefore write the same rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from magicseg_hf.errors import InputError
from magicseg_hf.generation.config import GenerationConfig
from magicseg_hf.generation.vocabulary import resolve_classes
from magicseg_hf.generation.writer import (
    KEPT,
    GenerationSummary,
    ShardStore,
    count_kept,
    finalize,
    write_run_files,
)
from magicseg_hf.schema import GENERATION_FILE, PROMPTS_FILE, WORK_DIR

logger = logging.getLogger(__name__)

#: Settings that may differ between a run and its resume without changing any row.
_RESUME_FREE_FIELDS = ("device",)


def derive_seed(seed: int, attempt: int, stream: str) -> int:
    """A 63-bit seed for ``stream`` ("noise", "classes", ...) of attempt ``attempt`` of a run."""
    digest = hashlib.sha256(f"magicseg:{seed}:{attempt}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass
class _Attempt:
    index: int
    classes: list[str]  # vocabulary lines
    names: list[str]  # bare names, used in text
    seed: int
    counterfactual_seed: int
    prompt: str = ""
    counterfactual_prompt: str = ""


def _library_versions() -> dict[str, str]:
    import datasets
    import diffusers
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "diffusers": diffusers.__version__,
        "datasets": datasets.__version__,
    }


def _models_record(config: GenerationConfig) -> dict[str, dict[str, str | None]]:
    roles = ["diffusion_model", "detector_model"]
    if config.counterfactual == "inpaint":
        roles.append("inpainting_model")
    if config.segmenter == "transformers":
        roles.append("segmenter_model")
    if config.prompt_backend in ("transformers", "openai"):
        roles.append("prompt_model")
    record = {role: {"id": getattr(config, role), "revision": getattr(config, f"{role}_revision")} for role in roles}
    if config.segmenter == "segment-anything":  # a .pth file and its architecture, or the tiny twin
        record["segmenter_model"] = (
            {"id": config.sam_checkpoint, "revision": config.sam_model_type}
            if config.sam_checkpoint
            else {"id": "tiny:segment-anything", "revision": "tiny"}
        )
    return record


def _check_models(config: GenerationConfig) -> None:
    """Fail at once, before anything is written, when a named model cannot be loaded."""
    from magicseg_hf.presets import check_model_available

    if config.segmenter == "segment-anything":
        if config.sam_checkpoint and not Path(config.sam_checkpoint).expanduser().is_file():
            raise InputError(f"--sam-checkpoint {config.sam_checkpoint!r}: no such file")
        if not config.sam_checkpoint and config.preset != "tiny":
            raise InputError("--segmenter segment-anything needs --sam-checkpoint (a .pth file) outside the tiny preset")
    for role, record in _models_record(config).items():
        if role == "prompt_model" and config.prompt_backend == "openai":
            continue  # a model name on the endpoint, not a Hub id
        if role == "segmenter_model" and config.segmenter == "segment-anything":
            continue  # checked above: a file, not a Hub id
        check_model_available(record["id"], record["revision"], role.replace("_", " "))


def _generation_record(config: GenerationConfig) -> dict[str, Any]:
    from magicseg_hf import __version__

    return {
        "config": config.to_dict(),
        "models": _models_record(config),
        "package_version": __version__,
        "library_versions": _library_versions(),
        "summary": None,
    }


def _check_output_dir(output_dir: Path, config: GenerationConfig, resume: bool) -> dict[str, Any] | None:
    """Validate the folder against ``resume``; returns the saved generation record on resume."""
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"--output-dir {str(output_dir)!r} is a file, not a folder")
    non_empty = output_dir.is_dir() and any(output_dir.iterdir())
    if not resume:
        if non_empty:
            raise InputError(
                f"--output-dir {str(output_dir)!r} is not empty; pass --resume to continue the run "
                "there, or choose a new folder"
            )
        return None
    if not non_empty:
        return None  # --resume on a fresh folder is a plain start
    saved_path = output_dir / GENERATION_FILE
    if not saved_path.is_file():
        raise InputError(f"cannot resume: {str(output_dir)!r} has no {GENERATION_FILE} (not a magicseg run folder)")
    try:
        saved = json.loads(saved_path.read_text())
        saved_config = saved["config"]
    except (ValueError, KeyError) as error:
        raise InputError(f"cannot resume: {str(saved_path)!r} is unreadable ({error})") from error
    current = config.to_dict()
    differing = [
        f"{key} (saved {saved_config.get(key)!r}, given {value!r})"
        for key, value in current.items()
        if key not in _RESUME_FREE_FIELDS and saved_config.get(key) != value
    ]
    if differing:
        raise InputError("cannot resume with different settings: " + "; ".join(differing))
    return saved


class _PromptCache:
    """LLM prompts of a run, kept in ``prompts.jsonl`` so that a resume replays them."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled
        self.prompts: dict[int, str] = {}
        if enabled and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill
                self.prompts[int(record["attempt"])] = record["prompt"]

    def add(self, attempts: list[_Attempt]) -> None:
        if not self.enabled:
            return
        data = "".join(
            json.dumps({"attempt": a.index, "classes": a.classes, "prompt": a.prompt}) + "\n" for a in attempts
        ).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        for attempt in attempts:
            self.prompts[attempt.index] = attempt.prompt


class _Engine:
    """Loaded components plus the per-batch work. Built once per process."""

    def __init__(self, config: GenerationConfig, vocabulary: list[str], output_dir: Path, device: str) -> None:
        from magicseg_hf.generation.annotate import build_annotator
        from magicseg_hf.generation.images import PairImageGenerator
        from magicseg_hf.presets import load_diffusion_pipeline

        self.config = config
        self.vocabulary = vocabulary
        self.backend = self._prompt_backend(config, device)
        self.prompt_cache = _PromptCache(output_dir / PROMPTS_FILE, enabled=config.prompt_backend != "template")
        pipe = load_diffusion_pipeline(
            config.diffusion_model,
            config.diffusion_model_revision,
            dtype=config.dtype,
            device=device,
            safety_checker=config.safety_checker,
        )
        inpaint_pipe = None
        if config.counterfactual == "inpaint":
            inpaint_pipe = load_diffusion_pipeline(
                config.inpainting_model,
                config.inpainting_model_revision,
                inpainting=True,
                dtype=config.dtype,
                device=device,
                safety_checker=config.safety_checker,
            )
        self.images = PairImageGenerator(
            pipe,
            inpaint_pipe=inpaint_pipe,
            num_inference_steps=config.num_inference_steps,
            guidance_scale=config.guidance_scale,
            height=config.height,
            width=config.width,
        )
        self.annotator = build_annotator(config, device=device, dtype=config.dtype)

    @staticmethod
    def _prompt_backend(config: GenerationConfig, device: str):
        from magicseg_hf.generation import prompts

        if config.prompt_backend == "template":
            return prompts.TemplatePromptBackend()
        if config.prompt_backend == "transformers":
            from magicseg_hf.presets import load_causal_lm

            model, tokenizer = load_causal_lm(
                config.prompt_model, config.prompt_model_revision, dtype=config.dtype, device=device
            )
            return prompts.TransformersPromptBackend(
                model, tokenizer, prompts_per_request=config.prompts_per_request
            )
        if not config.openai_base_url:
            raise InputError("--prompt-backend openai needs --openai-base-url (and OPENAI_API_KEY in the environment)")
        return prompts.OpenAIPromptBackend(
            base_url=config.openai_base_url,
            model=config.prompt_model,
            prompts_per_request=config.prompts_per_request,
        )

    # ---- attempts -------------------------------------------------------------------------------
    def make_attempts(self, indices: list[int]) -> list[_Attempt]:
        from magicseg_hf.generation.counterfactual import bare_name
        from magicseg_hf.generation.prompts import sample_class_sets

        attempts = []
        for k in indices:
            rng = random.Random(derive_seed(self.config.seed, k, "classes"))
            classes = sample_class_sets(self.vocabulary, 1, rng, max_classes=self.config.max_classes_per_prompt)[0]
            seed = derive_seed(self.config.seed, k, "noise")
            cf_seed = derive_seed(self.config.seed, k, "counterfactual-noise") if self.config.counterfactual == "paper" else seed
            attempts.append(_Attempt(k, classes, [bare_name(c) for c in classes], seed, cf_seed))
        return attempts

    def write_prompts(self, attempts: list[_Attempt]) -> None:
        from magicseg_hf.generation.counterfactual import counterfactual_prompt, replace_mentions

        missing = [a for a in attempts if a.index not in self.prompt_cache.prompts]
        # LLM answers are paid for one at a time, so each is cached as soon as it arrives.
        step = 1 if self.prompt_cache.enabled else max(1, len(missing))
        for start in range(0, len(missing), step):
            chunk = missing[start:start + step]
            texts = self.backend.write(
                [a.classes for a in chunk], [derive_seed(self.config.seed, a.index, "prompt") for a in chunk]
            )
            for attempt, text in zip(chunk, texts):
                attempt.prompt = text
            self.prompt_cache.add(chunk)
        for attempt in attempts:
            attempt.prompt = self.prompt_cache.prompts.get(attempt.index, attempt.prompt)
            if self.config.counterfactual == "paper":
                attempt.counterfactual_prompt = replace_mentions(attempt.prompt, attempt.classes, "nothing")
            else:
                attempt.counterfactual_prompt = counterfactual_prompt(attempt.prompt, attempt.classes)

    # ---- one batch: images -> annotation -> counterfactual -> score -> rows ---------------------
    def run_batch(self, attempts: list[_Attempt]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Returns (kept rows, per-attempt records) for a batch of attempts."""
        cfg = self.config
        self.write_prompts(attempts)
        negatives = [", ".join(a.names) for a in attempts]
        status: dict[int, str] = {}
        if cfg.counterfactual == "prompt":
            pairs = self.images.generate_pairs(
                [a.prompt for a in attempts], [a.counterfactual_prompt for a in attempts],
                negatives, [a.seed for a in attempts],
            )
            positives, counterfactuals, blank = pairs.positives, pairs.counterfactuals, pairs.blank
        elif cfg.counterfactual == "paper":
            batch = len(attempts)
            both = self.images.generate_images(
                [a.prompt for a in attempts] + [a.counterfactual_prompt for a in attempts],
                [a.seed for a in attempts] + [a.counterfactual_seed for a in attempts],
            )
            positives, counterfactuals = both.positives[:batch], both.positives[batch:]
            blank = [both.blank[i] or both.blank[batch + i] for i in range(batch)]
        else:  # inpaint: the counterfactual needs the positive's mask
            first = self.images.generate_images([a.prompt for a in attempts], [a.seed for a in attempts])
            positives, counterfactuals, blank = first.positives, [None] * len(attempts), first.blank

        for i in range(len(attempts)):
            if blank[i]:
                status[i] = "blank_image"
        live = [i for i in range(len(attempts)) if i not in status]
        annotations = dict(zip(live, self.annotator.annotate(
            [positives[i] for i in live], [attempts[i].names for i in live]
        ))) if live else {}
        for i in live:
            label = annotations[i].label
            if not annotations[i].boxes or not label.any():
                status[i] = "no_detection"
                continue
            area = float((label > 0).mean())
            if not cfg.min_mask_area <= area <= cfg.max_mask_area:
                status[i] = "mask_area"
        live = [i for i in live if i not in status]

        if cfg.counterfactual == "inpaint" and live:
            masks = [_dilate(annotations[i].label > 0) for i in live]
            repainted, cf_blank = self.images.inpaint(
                [positives[i] for i in live], masks,
                [attempts[i].counterfactual_prompt for i in live],
                [negatives[i] for i in live], [attempts[i].seed for i in live],
            )
            for i, image, is_blank in zip(live, repainted, cf_blank):
                counterfactuals[i] = image
                if is_blank:
                    status[i] = "blank_image"
            live = [i for i in live if i not in status]

        scores = dict(zip(live, self.annotator.score_counterfactual(
            [counterfactuals[i] for i in live], [attempts[i].names for i in live]
        ))) if live else {}
        for i in live:
            if scores[i] > cfg.counterfactual_threshold:
                status[i] = "counterfactual"

        rows, records = [], []
        for i, attempt in enumerate(attempts):
            records.append({"attempt": attempt.index, "status": status.get(i, KEPT)})
            if i in status:
                continue
            ann = annotations[i]
            rows.append(_row(attempt, positives[i], counterfactuals[i], ann, scores[i], cfg.seed))
        return rows, records


def _dilate(mask: np.ndarray) -> np.ndarray:
    """Grow a (H, W) bool mask by ~2% of the image side, so inpainting covers object borders."""
    from scipy.ndimage import binary_dilation

    radius = max(1, round(0.02 * max(mask.shape)))
    return binary_dilation(mask, iterations=radius)


def _row(attempt: _Attempt, image, counterfactual, annotation, score: float, run_seed: int) -> dict[str, Any]:
    from PIL import Image

    return {
        "id": f"s{run_seed}-a{attempt.index:08d}",
        "image": image,
        "counterfactual_image": counterfactual,
        "label": Image.fromarray(annotation.label.astype(np.uint8), mode="L"),
        "classes": list(attempt.classes),
        "prompt": attempt.prompt,
        "counterfactual_prompt": attempt.counterfactual_prompt,
        "seed": int(attempt.seed),
        "counterfactual_seed": int(attempt.counterfactual_seed),
        "boxes": [[float(v) for v in box] for box in annotation.boxes],
        "box_labels": [int(v) for v in annotation.box_labels],
        "box_scores": [float(v) for v in annotation.box_scores],
        "counterfactual_score": float(score),
    }


def _process_state():
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def generate(config: GenerationConfig, output_dir: str | os.PathLike, resume: bool = False) -> GenerationSummary:
    """Generate a MagicSeg dataset folder (see DESIGN.md for its layout and columns).

    Args:
        config: the run's settings; ``None`` fields take the preset's values.
        output_dir: the folder to write; it must be empty unless ``resume``.
        resume: continue an interrupted run in ``output_dir`` (same settings required).

    Returns:
        The run's :class:`GenerationSummary` (rows written, attempts, drops per filter).

    Under ``accelerate launch`` every process calls this; each takes its own shards, and the
    first process writes the folder's card once all are done.
    """
    start = time.perf_counter()
    config = config.resolved()
    vocabulary = resolve_classes(config.classes, config.vocabulary)
    output_dir = Path(output_dir).expanduser()
    state = _process_state()
    saved = _check_output_dir(output_dir, config, resume)
    _check_models(config)
    state.wait_for_everyone()  # every process has checked the folder before anyone writes to it
    if saved is not None and saved.get("summary"):
        logger.info("%s is already complete", output_dir)
        return GenerationSummary(output_dir=str(output_dir), **saved["summary"])
    generation = _generation_record(config)
    if state.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / WORK_DIR).mkdir(exist_ok=True)
        write_run_files(output_dir, vocabulary, generation)
    state.wait_for_everyone()

    with torch.inference_mode():
        summary = _run(config, vocabulary, output_dir, generation, state, start)
    logger.log(logging.WARNING if summary.shortfall else logging.INFO, "%s", summary.describe())
    return summary


def _run(config: GenerationConfig, vocabulary: list[str], output_dir: Path, generation: dict[str, Any],
         state, start: float) -> GenerationSummary:
    """Every process's part of :func:`generate` once the folder is set up: its shards, then the
    first process's :func:`finalize`."""
    device = config.device or str(state.device)
    if state.num_processes > 1 and torch.device(device).type == state.device.type:
        device = str(state.device)  # "--device cuda" under accelerate: each process its own GPU
    engine = _Engine(config, vocabulary, output_dir, device)
    store = ShardStore(output_dir)
    shard_size, batch_size = config.shard_size, config.batch_size
    max_attempts, target = config.max_attempts, config.num_pairs
    num_shards = -(-max_attempts // shard_size)
    rank, world = state.process_index, state.num_processes

    progress = tqdm(total=target, desc=f"generate[{rank}]" if world > 1 else "generate", unit="pair",
                    disable=None, position=rank if world > 1 else None)
    dropped: dict[str, int] = {}
    for shard in range(rank, num_shards, world):
        before = store.kept_before(shard, target)
        if before is not None and before >= target:
            break
        if store.is_complete(shard):
            progress.update(count_kept(store.records(shard)))
            continue
        first, last = shard * shard_size, min((shard + 1) * shard_size, max_attempts)
        rows: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        for batch_start in range(first, last, batch_size):
            indices = list(range(batch_start, min(batch_start + batch_size, last)))
            batch_rows, batch_records = engine.run_batch(engine.make_attempts(indices))
            rows += batch_rows
            records += batch_records
            progress.update(len(batch_rows))
            for record in batch_records:
                if record["status"] != KEPT:
                    dropped[record["status"]] = dropped.get(record["status"], 0) + 1
            progress.set_postfix(attempts=records[-1]["attempt"] + 1, **dropped, refresh=False)
            before = store.kept_before(shard, target) if before is None else before
            if before is not None and before + len(rows) >= target:
                break  # the rows needed are all here; later attempts of this shard would be cut
        store.write_shard(shard, rows, records)
    progress.close()

    state.wait_for_everyone()
    if state.is_main_process:
        summary = finalize(
            output_dir, num_shards, target, generation,
            elapsed_seconds=time.perf_counter() - start, num_processes=world,
        )
    state.wait_for_everyone()
    if not state.is_main_process:
        saved_summary = json.loads((output_dir / GENERATION_FILE).read_text())["summary"]
        summary = GenerationSummary(output_dir=str(output_dir), **saved_summary)
    return summary
