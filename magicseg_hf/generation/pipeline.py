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

Safety, in the order :func:`generate` goes:

1. Everything that can be checked is checked before anything is written: the settings (types and
   bounds), the vocabulary, the device, the folder's state, the lock, the models (loaded), the
   class names against the loaded text encoders, the prompt server. A refused run leaves the
   folder as it was (one it had to create is removed again).
2. One run writes a folder at a time: the first process holds the folder's lock
   (:class:`~magicseg_hf.lock.FolderLock`) for the ranks of its run; a second run is refused
   with the holder's pid and host; the lock of a killed run is taken over with a warning.
3. An attempt that raises is dropped and counted as ``error`` (the first line of each distinct
   error is logged once) and the run goes on; a shard of at least
   :data:`ERRORS_BEFORE_GIVING_UP` attempts that all raised stops the run (a broken setup, not
   one bad attempt).
4. Every step writes whole files atomically; a folder is complete when ``generation.json`` has
   its summary and ``.work/`` is gone, so a resume finishes a finalisation that was killed.

What a folder may hold when a run starts:

* nothing (or it does not exist): a new run;
* only the files of a run that has not finished a shard yet (``generation.json`` without a
  summary, ``vocabulary.txt``, ``prompts.jsonl``, ``.work/`` without a finished shard): the run is
  started again, with or without ``resume`` and with any settings (the prompt cache is kept only
  when the settings are the same);
* a run with finished shards, or a finished run: ``resume=True`` with the same settings continues
  it (or returns its summary); anything else is refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from PIL import Image
from tqdm.auto import tqdm

from magicseg_hf.cards import write_dataset_card
from magicseg_hf.errors import InputError, MagicSegError, first_line
from magicseg_hf.folder import REMOVED_WORK_DIR, DatasetFolder
from magicseg_hf.generation.annotate import Annotation
from magicseg_hf.generation.class_scores import fails_class_check
from magicseg_hf.generation.components import (
    Components,
    ModelsRecord,
    build_components,
    check_class_names,
    check_device,
    check_models,
    diffusion_record,
    models_record,
)
from magicseg_hf.generation.config import GenerationConfig
from magicseg_hf.generation.names import bare_name
from magicseg_hf.generation.procedural import SOURCE as PROCEDURAL
from magicseg_hf.generation.procedural import ProceduralEngine, procedural_record
from magicseg_hf.generation.prompts import attempt_classes
from magicseg_hf.generation.vocabulary import resolve_classes
from magicseg_hf.generation.writer import (
    ERROR,
    KEPT,
    GenerationSummary,
    ShardStore,
    count_kept,
    finalize,
    is_complete,
    write_run_files,
)
from magicseg_hf.lock import FolderLock
from magicseg_hf.runtime import VERSIONS_RECORD_KEY, package_versions
from magicseg_hf.schema import GENERATION_FILE
from magicseg_hf.seeding import GENERATION_NAMESPACE, derive_seed

logger = logging.getLogger(__name__)

#: Settings that may differ between a run and its resume without changing any row.
_RESUME_FREE_FIELDS = ("device",)
#: A shard of at least this many attempts that all raised stops the run (the setup is broken).
ERRORS_BEFORE_GIVING_UP = 8
#: Errors that stop the run instead of dropping one attempt: ours (a prompt server that fails,
#: bad input) and running out of memory (a setting, not an attempt, is at fault).
_FATAL_ERRORS: tuple[type[BaseException], ...] = (
    MagicSegError,
    MemoryError,
    getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),
)

# What an output folder holds when a run starts (see the module's docstring).
_FRESH = "fresh"  # nothing: a new run
_RESTART = "restart"  # the run files of a run with no finished shard, with other settings
_RESUME = "resume"  # a run with the same settings to continue (or to finalise)
_COMPLETE = "complete"  # a finished run with the same settings


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


def _generation_record(config: GenerationConfig, models: ModelsRecord) -> dict[str, Any]:
    return {
        "config": config.to_dict(),
        "models": models,
        "diffusion": procedural_record(config) if config.source == PROCEDURAL else diffusion_record(config),
        VERSIONS_RECORD_KEY: package_versions(),
        "summary": None,
    }


@dataclass
class _FolderState:
    """What :func:`_check_output_dir` found: one of the states above, and the saved record."""

    state: str
    saved: dict[str, Any] | None = None


def _differing(saved_config: dict[str, Any], config: GenerationConfig) -> list[str]:
    """The settings of ``config`` that differ from ``saved_config`` (those free on resume aside)."""
    return [
        f"{key} (saved {saved_config.get(key)!r}, given {value!r})"
        for key, value in config.to_dict().items()
        if key not in _RESUME_FREE_FIELDS and saved_config.get(key) != value
    ]


def _check_output_dir(folder: DatasetFolder, config: GenerationConfig, resume: bool) -> _FolderState:
    """Validate the folder against ``config`` and ``resume`` (reading only); returns its state."""
    root = str(folder.root)
    if folder.root.exists() and not folder.root.is_dir():
        raise InputError(f"`output_dir` {root!r} is a file, not a folder")
    if folder.is_empty():
        return _FolderState(_FRESH)
    try:
        saved, problem = folder.read_generation(), None
    except InputError as error:
        saved, problem = None, error
    finished = folder.finished_work_shards()
    if folder.holds_only_run_files() and finished == 0 and not (saved or {}).get("summary"):
        saved_config = (saved or {}).get("config")
        if isinstance(saved_config, dict) and not _differing(saved_config, config):
            return _FolderState(_RESUME, saved)
        return _FolderState(_RESTART, saved)
    if not resume:
        unfinished = f" (an unfinished run with {finished} finished shard(s))" if finished else ""
        raise InputError(
            f"`output_dir` {root!r} is not empty{unfinished}; pass `resume` to continue the run "
            "there, or choose a new folder"
        )
    if problem is not None:
        raise InputError(f"cannot resume: {problem}") from problem
    if saved is None:
        raise InputError(f"cannot resume: {root!r} has no {GENERATION_FILE} (not a magicseg run folder)")
    saved_config = saved.get("config")
    if not isinstance(saved_config, dict):
        raise InputError(f"cannot resume: {str(folder.generation_path)!r} has no saved settings")
    differing = _differing(saved_config, config)
    if differing:
        raise InputError("cannot resume with different settings: " + "; ".join(differing))
    return _FolderState(_COMPLETE if is_complete(folder, saved) else _RESUME, saved)


def _saved_settings(folder: DatasetFolder, resume: bool) -> GenerationConfig:
    """The settings saved in ``folder`` (for ``generate(None, folder, resume=True)``)."""
    if not resume:
        raise InputError("generate() needs a GenerationConfig; config=None resumes with the saved settings "
                         "and needs resume=True")
    saved = folder.read_generation() if folder.root.is_dir() else None
    if not saved or not isinstance(saved.get("config"), dict):
        raise InputError(f"cannot resume: {str(folder.root)!r} has no saved settings ({GENERATION_FILE})")
    return GenerationConfig.from_dict(saved["config"])


def _on_main_process(state: PartialState, action: Callable[[], None]) -> None:
    """Run ``action`` on the first process only; a :class:`MagicSegError` it raises is raised on
    every process of the run (so that none waits for the others at a barrier)."""
    error: MagicSegError | None = None
    if state.is_main_process:
        try:
            action()
        except MagicSegError as caught:
            error = caught
    if state.num_processes > 1:
        message = [None if error is None else str(error)]
        broadcast_object_list(message, from_process=0)
        if error is None and message[0] is not None:
            raise InputError(message[0])
    if error is not None:
        raise error


def _needs_attempts(store: ShardStore, config: GenerationConfig) -> bool:
    """Whether some shard the dataset needs is not finished (else only finalisation is left)."""
    total = 0
    for shard in range(-(-config.max_attempts // config.shard_size)):
        if total >= config.num_pairs:
            return False
        if not store.is_complete(shard):
            return True
        total += count_kept(store.records(shard))
    return False


def _run_device(config: GenerationConfig, state: PartialState) -> str:
    """This process's device: ``--device``, else the process's own; ``--device cuda`` under
    accelerate gives each process its own GPU."""
    device = config.device or str(state.device)
    if state.num_processes > 1 and torch.device(device).type == state.device.type:
        device = str(state.device)
    return device


def _checked_components(config: GenerationConfig, vocabulary: list[str], device: str) -> Components:
    """The run's parts, loaded, with the class names and the prompt server checked against them."""
    parts = build_components(config, device)
    check_class_names(parts, vocabulary, config.max_classes_per_prompt)
    parts.prompt_backend.check()
    return parts


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
        self._errors_logged: set[str] = set()

    # ---- attempts -------------------------------------------------------------------------------
    def make_attempts(self, indices: list[int]) -> list[_Attempt]:
        """Attempt ``k``'s classes and noise seeds, from seeds derived from ``(seed, k)`` only."""
        run_seed = self.config.seed
        attempts = []
        for k in indices:
            classes = attempt_classes(self.vocabulary, run_seed, k, self.config.max_classes_per_prompt)
            seed = derive_seed(GENERATION_NAMESPACE, run_seed, k, "noise")
            cf_seed = self.mode.counterfactual_seed(
                seed, lambda stream, k=k: derive_seed(GENERATION_NAMESPACE, run_seed, k, stream)
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
                [derive_seed(GENERATION_NAMESPACE, self.config.seed, a.index, "prompt") for a in chunk],
            )
            for attempt, text in zip(chunk, texts):
                attempt.prompt = text
            self.prompt_cache.add(chunk)
        for attempt in attempts:
            attempt.prompt = self.prompt_cache.prompts.get(attempt.index, attempt.prompt)
            attempt.counterfactual_prompt = self.mode.counterfactual_prompt(attempt.prompt, attempt.classes)

    # ---- one batch, with the failures of single attempts counted --------------------------------
    def run_attempts(self, attempts: list[_Attempt]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """:meth:`run_batch`, where an attempt that raises is dropped with status ``error``.

        When a batch raises, its attempts run again one at a time, so that only the failing ones
        are dropped. Errors of :data:`_FATAL_ERRORS` stop the run.
        """
        try:
            return self.run_batch(attempts)
        except _FATAL_ERRORS:
            raise
        except Exception as error:  # noqa: BLE001 - one attempt's failure is counted, not fatal
            if len(attempts) > 1:
                rows: list[dict[str, Any]] = []
                records: list[dict[str, Any]] = []
                for attempt in attempts:
                    one_rows, one_records = self.run_attempts([attempt])
                    rows += one_rows
                    records += one_records
                return rows, records
            self._log_error(attempts[0], error)
            return [], [{"attempt": attempts[0].index, "status": ERROR}]

    def _log_error(self, attempt: _Attempt, error: Exception) -> None:
        """Log the first line of each distinct error once (the traceback at debug level)."""
        text = f"{type(error).__name__}: {first_line(error)}"
        if text in self._errors_logged:
            logger.debug("attempt %d dropped: %s", attempt.index, text)
            return
        self._errors_logged.add(text)
        logger.warning(
            "attempt %d (classes %s) raised %s; it is dropped and counted as %r, and the run goes on "
            "(later attempts failing the same way are counted without this message)",
            attempt.index, attempt.classes, text, ERROR,
        )
        logger.debug("the error of attempt %d", attempt.index, exc_info=error)

    # ---- one batch: images -> annotation -> class check -> counterfactual -> score -> rows -------
    def run_batch(self, attempts: list[_Attempt]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Returns (kept rows, per-attempt records) for a batch of attempts.

        The filters, in :data:`~magicseg_hf.schema.DROP_REASONS` order: a blank positive, no
        detection, the labelled area, the class check (each class's masked crop scored by CLIP
        against its name, one scorer call for the batch's live positives), then the counterfactual.
        """
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

        class_scores = dict(zip(live, self.parts.class_scorer.score(
            [positives[i] for i in live], [annotations[i].label for i in live], [attempts[i].names for i in live]
        ))) if live else {}
        for i in live:
            if fails_class_check(class_scores[i], cfg.class_score_threshold):
                status[i] = "class_score"
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
            rows.append(_row(attempt, positives[i], counterfactuals[i], annotations[i], scores[i], class_scores[i],
                             cfg.seed))
        return rows, records


def _row(attempt: _Attempt, image: Image.Image, counterfactual: Image.Image, annotation: Annotation,
         score: float, class_scores: list[float], run_seed: int) -> dict[str, Any]:
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
        "class_scores": [float(v) for v in class_scores],
    }


def _process_state() -> PartialState:
    return PartialState(cpu=not torch.cuda.is_available())


def generate(
    config: GenerationConfig | None, output_dir: str | os.PathLike, resume: bool = False
) -> GenerationSummary:
    """Generate a MagicSeg dataset folder (layout: :mod:`magicseg_hf.folder`; columns:
    :data:`magicseg_hf.schema.DATASET_FEATURES`).

    Args:
        config: the run's settings; ``None`` fields take the preset's values. ``None`` with
            ``resume=True`` uses the settings saved in ``output_dir``.
        output_dir: the folder to write; it must be empty unless ``resume`` (or hold only the
            files of a run that has not finished a shard yet, which is started again).
        resume: continue an interrupted run in ``output_dir`` (same settings required), or finish
            its finalisation; a finished run is returned as it is.

    Returns:
        The run's :class:`GenerationSummary` (rows written, attempts, drops per filter).

    Raises:
        InputError: bad settings or device, a folder that is not empty (without ``resume``), was
            written with other settings (with it), is not writable or is in use by another run,
            a class name too long for the text encoders, an unreachable prompt server.
        ModelLoadError: a model that cannot be loaded.
        Every one of these is raised before anything is written.

    Under ``accelerate launch`` every process calls this; each takes its own shards, and the
    first process holds the folder's lock and writes the folder's card once all are done.
    """
    start = time.perf_counter()
    if not isinstance(output_dir, (str, os.PathLike)) or not str(os.fspath(output_dir)).strip():
        raise InputError(f"`output_dir` must name a folder (got {output_dir!r})")
    if config is not None and not isinstance(config, GenerationConfig):
        raise InputError(f"generate() takes a GenerationConfig (got a {type(config).__name__})")
    folder = DatasetFolder(Path(output_dir).expanduser())
    if config is None:
        config = _saved_settings(folder, resume)
    config = config.resolved()  # the one resolution: everything below reads this config
    vocabulary = resolve_classes(config.classes, config.vocabulary)
    procedural = config.source == PROCEDURAL  # drawn scenes: no model to load or check
    models = {} if procedural else models_record(config)
    check_device(config.device)
    state = _process_state()
    lock = FolderLock(folder, what="--output-dir")
    # A run at work in the folder is named first. Only the first process looks (the others would
    # see their own run's lock later); what it finds is raised on every process.
    _on_main_process(state, lock.check_free)
    found = _check_output_dir(folder, config, resume)
    if found.state == _COMPLETE:
        return _complete_summary(folder, found.saved)

    _on_main_process(state, lock.acquire)  # the first process holds the lock for every rank of the run
    try:
        found = _check_output_dir(folder, config, resume)  # again: no other run can change it now
        if found.state == _COMPLETE:
            return _complete_summary(folder, found.saved)
        if not procedural:
            check_models(config, models)
        device = _run_device(config, state)
        store = ShardStore(folder.root)
        needed = not procedural and _needs_attempts(store, config)
        parts = _checked_components(config, vocabulary, device) if needed else None
        state.wait_for_everyone()  # every process has checked everything before anyone writes
        generation = _generation_record(config, models)
        if state.is_main_process:
            if found.state == _RESTART:
                logger.info("%s holds a run that had not finished a shard: starting it again with these settings",
                            folder.root)
                folder.remove_work_dir()
                folder.prompts_path.unlink(missing_ok=True)
            folder.work_dir.mkdir(parents=True, exist_ok=True)
            write_run_files(folder.root, vocabulary, generation)
        state.wait_for_everyone()

        with torch.inference_mode():
            summary = _run(config, vocabulary, folder, generation, state, start, parts, device)
    finally:
        lock.release(remove_created=True)  # a folder this run created stays only if written to
    logger.log(logging.WARNING if summary.shortfall else logging.INFO, "%s", summary.describe())
    return summary


def _complete_summary(folder: DatasetFolder, saved: dict[str, Any] | None) -> GenerationSummary:
    """The summary of a finished run (a work area whose deletion was cut short is deleted now)."""
    logger.info("%s is already complete", folder.root)
    if (folder.root / REMOVED_WORK_DIR).exists():
        with contextlib.suppress(OSError):
            folder.remove_work_dir()
    return GenerationSummary(output_dir=str(folder.root), **(saved or {})["summary"])


def _run(config: GenerationConfig, vocabulary: list[str], folder: DatasetFolder, generation: dict[str, Any],
         state: PartialState, start: float, parts: Components | None, device: str) -> GenerationSummary:
    """Every process's part of :func:`generate` once the folder is set up: its shards, then the
    first process's finalisation. ``parts`` is None when no attempt is left to make."""
    prompt_cache = _PromptCache(folder, enabled=config.prompt_backend != "template")
    engine: _Engine | ProceduralEngine | None = _Engine(config, vocabulary, parts, prompt_cache) if parts is not None else None
    if config.source == PROCEDURAL:
        engine = ProceduralEngine(config, vocabulary)
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
        if engine is None:  # only finalisation seemed left, yet a shard is missing: load the parts now
            engine = _Engine(config, vocabulary, _checked_components(config, vocabulary, device), prompt_cache)
        first, last = shard * shard_size, min((shard + 1) * shard_size, max_attempts)
        rows: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        for batch_start in range(first, last, batch_size):
            indices = list(range(batch_start, min(batch_start + batch_size, last)))
            batch_rows, batch_records = engine.run_attempts(engine.make_attempts(indices))
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
        if len(records) >= ERRORS_BEFORE_GIVING_UP and all(r["status"] == ERROR for r in records):
            raise RuntimeError(
                f"all {len(records)} attempts of shard {shard} raised (logged above): the setup is broken, "
                "not one attempt; fix it and run again with `resume`"
            )
        store.write_shard(shard, rows, records)
    progress.close()

    state.wait_for_everyone()
    if state.is_main_process:
        summary = finalize(
            folder.root, num_shards, target, generation,
            elapsed_seconds=time.perf_counter() - start, num_processes=world,
        )
        write_dataset_card(folder)
        store.remove()  # last: the folder is complete once .work is gone
    state.wait_for_everyone()
    if not state.is_main_process:
        saved = folder.read_generation() or {}
        summary = GenerationSummary(output_dir=str(folder.root), **saved["summary"])
    return summary
