"""``generate(config, output_dir, resume=False)``: the one entry point of dataset generation.

vocabulary -> prompts -> positive image -> annotation -> counterfactual image -> counterfactual
score -> rows on disk. Determinism: attempt ``k`` draws its classes, prompt and noise
from seeds derived from ``(seed, k)``; shard ``j`` holds attempts ``[jA, (j+1)A)``; under ``W``
processes, process ``r`` takes the shards ``j = r (mod W)``; a batch never crosses a shard; the
dataset is the first ``num_pairs`` kept attempts in ``k`` order. A straight run, a killed and
resumed run and a multi-process run therefore write the same rows.

The settings are resolved once, on entry (:meth:`GenerationConfig.resolved`); the parts are built
from the resolved config by :mod:`magicseg_hf.generation.components`, and what differs between
counterfactual modes is in :mod:`magicseg_hf.generation.modes`. When every shard is written, the
first process finalises the folder: the data, preview and summary (:func:`writer.finalize`), then
the dataset card (:func:`magicseg_hf.cards.write_dataset_card`), then the work area goes
(:meth:`writer.ShardStore.remove`).
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import diffusers
import numpy as np
import torch
import transformers
from accelerate import PartialState
from PIL import Image
from tqdm.auto import tqdm

from magicseg_hf import __version__
from magicseg_hf.cards import write_dataset_card
from magicseg_hf.errors import InputError
from magicseg_hf.folder import DatasetFolder
from magicseg_hf.generation.annotate import Annotation
from magicseg_hf.generation.components import (
    Components,
    ModelsRecord,
    build_components,
    check_models,
    models_record,
)
from magicseg_hf.generation.config import GenerationConfig
from magicseg_hf.generation.names import bare_name
from magicseg_hf.generation.prompts import sample_class_sets
from magicseg_hf.generation.vocabulary import resolve_classes
from magicseg_hf.generation.writer import (
    KEPT,
    GenerationSummary,
    ShardStore,
    count_kept,
    finalize,
    write_run_files,
)
from magicseg_hf.seeding import derive_seed

logger = logging.getLogger(__name__)

#: Settings that may differ between a run and its resume without changing any row.
_RESUME_FREE_FIELDS = ("device",)
#: Namespace of the per-attempt seeds: ``derive_seed(SEED_NAMESPACE, seed, attempt, stream)``.
SEED_NAMESPACE = "magicseg"


@dataclass
class _Attempt:
    """Attempt ``index``: its classes and seeds, then its two prompts (a :class:`modes.PairSpec`)."""

    index: int
    classes: list[str]  # vocabulary lines
    names: list[str]  # bare names, used in text
    seed: int
    counterfactual_seed: int
    prompt: str = ""
    counterfactual_prompt: str = ""


def _library_versions() -> dict[str, str]:
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "diffusers": diffusers.__version__,
        "datasets": datasets.__version__,
    }


def _generation_record(config: GenerationConfig, models: ModelsRecord) -> dict[str, Any]:
    return {
        "config": config.to_dict(),
        "models": models,
        "package_version": __version__,
        "library_versions": _library_versions(),
        "summary": None,
    }


def _check_output_dir(folder: DatasetFolder, config: GenerationConfig, resume: bool) -> dict[str, Any] | None:
    """Validate the folder against ``resume``; returns the saved generation record on resume."""
    root = str(folder.root)
    if folder.root.exists() and not folder.root.is_dir():
        raise InputError(f"--output-dir {root!r} is a file, not a folder")
    if not resume:
        if not folder.is_empty():
            raise InputError(
                f"--output-dir {root!r} is not empty; pass --resume to continue the run "
                "there, or choose a new folder"
            )
        return None
    if folder.is_empty():
        return None  # --resume on a fresh folder is a plain start
    try:
        saved = folder.read_generation()
    except InputError as error:
        raise InputError(f"cannot resume: {error}") from error
    if saved is None:
        raise InputError(f"cannot resume: {root!r} has no {folder.generation_path.name} (not a magicseg run folder)")
    saved_config = saved.get("config")
    if not isinstance(saved_config, dict):
        raise InputError(f"cannot resume: {str(folder.generation_path)!r} has no saved settings")
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
    """LLM prompts of a run, kept in the folder's ``prompts.jsonl`` so that a resume replays them
    (disabled for the offline template backend, whose prompts are cheap to write again)."""

    def __init__(self, folder: DatasetFolder, enabled: bool) -> None:
        self.folder = folder
        self.enabled = enabled
        self.prompts: dict[int, str] = folder.read_prompts() if enabled else {}

    def add(self, attempts: list[_Attempt]) -> None:
        if not self.enabled:
            return
        self.folder.append_prompts({"attempt": a.index, "classes": a.classes, "prompt": a.prompt} for a in attempts)
        for attempt in attempts:
            self.prompts[attempt.index] = attempt.prompt


class _Engine:
    """The run's parts plus the per-batch work. Built once per process."""

    def __init__(
        self, config: GenerationConfig, vocabulary: list[str], parts: Components, prompt_cache: _PromptCache
    ) -> None:
        self.config = config
        self.vocabulary = vocabulary
        self.parts = parts
        self.mode = parts.mode
        self.prompt_cache = prompt_cache

    # ---- attempts -------------------------------------------------------------------------------
    def make_attempts(self, indices: list[int]) -> list[_Attempt]:
        """Attempt ``k``'s classes and noise seeds, from seeds derived from ``(seed, k)`` only."""
        run_seed = self.config.seed
        attempts = []
        for k in indices:
            rng = random.Random(derive_seed(SEED_NAMESPACE, run_seed, k, "classes"))
            classes = sample_class_sets(self.vocabulary, 1, rng, max_classes=self.config.max_classes_per_prompt)[0]
            seed = derive_seed(SEED_NAMESPACE, run_seed, k, "noise")
            cf_seed = self.mode.counterfactual_seed(
                seed, lambda stream, k=k: derive_seed(SEED_NAMESPACE, run_seed, k, stream)
            )
            attempts.append(_Attempt(k, classes, [bare_name(c) for c in classes], seed, cf_seed))
        return attempts

    def write_prompts(self, attempts: list[_Attempt]) -> None:
        """Each attempt's prompt (cached ones replayed) and its mode's counterfactual prompt."""
        missing = [a for a in attempts if a.index not in self.prompt_cache.prompts]
        # LLM answers are paid for one at a time, so each is cached as soon as it arrives.
        step = 1 if self.prompt_cache.enabled else max(1, len(missing))
        for start in range(0, len(missing), step):
            chunk = missing[start:start + step]
            texts = self.parts.prompt_backend.write(
                [a.classes for a in chunk],
                [derive_seed(SEED_NAMESPACE, self.config.seed, a.index, "prompt") for a in chunk],
            )
            for attempt, text in zip(chunk, texts):
                attempt.prompt = text
            self.prompt_cache.add(chunk)
        for attempt in attempts:
            attempt.prompt = self.prompt_cache.prompts.get(attempt.index, attempt.prompt)
            attempt.counterfactual_prompt = self.mode.counterfactual_prompt(attempt.prompt, attempt.classes)

    # ---- one batch: images -> annotation -> counterfactual -> score -> rows ---------------------
    def run_batch(self, attempts: list[_Attempt]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Returns (kept rows, per-attempt records) for a batch of attempts."""
        cfg = self.config
        images, annotator = self.parts.images, self.parts.annotator
        self.write_prompts(attempts)
        first = self.mode.first_images(images, attempts)
        positives, counterfactuals = first.positives, list(first.counterfactuals)
        status: dict[int, str] = {i: "blank_image" for i, blank in enumerate(first.blank) if blank}

        live = [i for i in range(len(attempts)) if i not in status]
        annotations: dict[int, Annotation] = dict(zip(live, annotator.annotate(
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

        repainted = self.mode.repaint(
            images, [positives[i] for i in live], [annotations[i].label for i in live], [attempts[i] for i in live]
        ) if live else None
        if repainted is not None:
            for i, image, blank in zip(live, *repainted):
                counterfactuals[i] = image
                if blank:
                    status[i] = "blank_image"
            live = [i for i in live if i not in status]

        scores = dict(zip(live, annotator.score_counterfactual(
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
            rows.append(_row(attempt, positives[i], counterfactuals[i], annotations[i], scores[i], cfg.seed))
        return rows, records


def _row(attempt: _Attempt, image: Image.Image, counterfactual: Image.Image, annotation: Annotation,
         score: float, run_seed: int) -> dict[str, Any]:
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


def _process_state() -> PartialState:
    return PartialState(cpu=not torch.cuda.is_available())


def generate(config: GenerationConfig, output_dir: str | os.PathLike, resume: bool = False) -> GenerationSummary:
    """Generate a MagicSeg dataset folder (layout: :mod:`magicseg_hf.folder`; columns:
    :data:`magicseg_hf.schema.DATASET_FEATURES`).

    Args:
        config: the run's settings; ``None`` fields take the preset's values.
        output_dir: the folder to write; it must be empty unless ``resume``.
        resume: continue an interrupted run in ``output_dir`` (same settings required).

    Returns:
        The run's :class:`GenerationSummary` (rows written, attempts, drops per filter).

    Raises:
        InputError: bad settings, a folder that is not empty (without ``resume``) or was written
            with other settings (with it).
        ModelLoadError: a model that cannot be loaded (checked before anything is written).

    Under ``accelerate launch`` every process calls this; each takes its own shards, and the
    first process writes the folder's card once all are done.
    """
    start = time.perf_counter()
    config = config.resolved()  # the one resolution: everything below reads this config
    vocabulary = resolve_classes(config.classes, config.vocabulary)
    folder = DatasetFolder(Path(output_dir).expanduser())
    models = models_record(config)
    state = _process_state()
    saved = _check_output_dir(folder, config, resume)
    check_models(config, models)
    state.wait_for_everyone()  # every process has checked the folder before anyone writes to it
    if saved is not None and saved.get("summary"):
        logger.info("%s is already complete", folder.root)
        return GenerationSummary(output_dir=str(folder.root), **saved["summary"])
    generation = _generation_record(config, models)
    if state.is_main_process:
        folder.work_dir.mkdir(parents=True, exist_ok=True)
        write_run_files(folder.root, vocabulary, generation)
    state.wait_for_everyone()

    with torch.inference_mode():
        summary = _run(config, vocabulary, folder, generation, state, start)
    logger.log(logging.WARNING if summary.shortfall else logging.INFO, "%s", summary.describe())
    return summary


def _run(config: GenerationConfig, vocabulary: list[str], folder: DatasetFolder, generation: dict[str, Any],
         state: PartialState, start: float) -> GenerationSummary:
    """Every process's part of :func:`generate` once the folder is set up: its shards, then the
    first process's finalisation."""
    device = config.device or str(state.device)
    if state.num_processes > 1 and torch.device(device).type == state.device.type:
        device = str(state.device)  # "--device cuda" under accelerate: each process its own GPU
    parts = build_components(config, device)
    prompt_cache = _PromptCache(folder, enabled=config.prompt_backend != "template")
    engine = _Engine(config, vocabulary, parts, prompt_cache)
    store = ShardStore(folder.root)
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
            folder.root, num_shards, target, generation,
            elapsed_seconds=time.perf_counter() - start, num_processes=world,
        )
        write_dataset_card(folder)
        store.remove()
    state.wait_for_everyone()
    if not state.is_main_process:
        saved = folder.read_generation() or {}
        summary = GenerationSummary(output_dir=str(folder.root), **saved["summary"])
    return summary
