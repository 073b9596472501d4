"""``magicseg train``: pretrain ``CLIPForOpenSegmentation`` on MagicSeg dataset folders or Hub repos.

Our own flags are the fields of :class:`TrainConfig`; every other flag is a
``transformers.TrainingArguments`` flag (``--learning_rate``, ``--max_steps``,
``--per_device_train_batch_size``, ``--gradient_accumulation_steps``, ``--bf16``,
``--torch_compile``, ``--report_to``, ``--resume_from_checkpoint`` ...), parsed by
``HfArgumentParser`` with the preset's values as defaults. ``--help`` lists our flags without
importing torch; ``TrainingArguments`` is only imported to run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magicseg_hf import settings
from magicseg_hf.console import checks_passed
from magicseg_hf.errors import InputError, first_line
from magicseg_hf.hub_access import register_secret
from magicseg_hf.presets import PAPER_GLOBAL_BATCH, training_defaults, training_recipe
from magicseg_hf.processes import finish_process_group
from magicseg_hf.runtime import VERSIONS_RECORD_KEY, package_versions
from magicseg_hf.training.checks import given_values, is_number

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Trains CLIPForOpenSegmentation on one or more MagicSeg dataset folders (or Hub dataset repos):
pseudo-mask focal + dice losses on each row's classes against K random negatives from the
vocabulary, plus the counterfactual contrastive loss on the pair. Saves a folder that
`AutoModel.from_pretrained` and `pipeline("open-vocabulary-segmentation")` load.

Every transformers TrainingArguments flag works too (--learning_rate, --max_steps,
--per_device_train_batch_size, --gradient_accumulation_steps, --bf16, --torch_compile,
--report_to tensorboard, --resume_from_checkpoint DIR, ...); the preset only sets their defaults.
Every setting is checked before any data is read. --resume_from_checkpoint takes a checkpoint
folder, or the output folder itself (or `true`) for its newest complete checkpoint.

Examples:
  magicseg generate --classes cat dog --num-pairs 64 --preset tiny --output-dir data
  magicseg train --dataset data --preset tiny --output-dir model
  accelerate launch -m magicseg_hf train --dataset USER/magicseg-lvis --output-dir model"""

ACCEPTS_EXTRA_ARGUMENTS = True

@dataclass
class TrainConfig:
    """The flags of ``magicseg train`` that are not TrainingArguments."""

    dataset: list[str] = field(
        default_factory=list,
        metadata={"help": "MagicSeg dataset folder(s) or Hub dataset repo(s); several are concatenated.", "nargs": "+",
                  "required": True, "default": None},
    )
    output_dir: str = field(default="", metadata={"help": "Folder for checkpoints and the trained model.",
                                                  "required": True})
    preset: str = field(default="paper", metadata={
        "help": "paper (CLIP ViT-B/16 at 512 px, the paper's schedule) or tiny (random tiny model, CPU minutes).",
        "choices": ("paper", "tiny"),
    })
    model: str | None = field(default=None, metadata={
        "help": "Start from a saved CLIPForOpenSegmentation folder instead of the preset's CLIP."})
    vocabulary: str | None = field(default=None, metadata={
        "help": "Class list to draw negatives from (a shipped vocabulary or a file); default: the datasets' "
                "vocabulary.txt files (else the classes their rows name)."})
    num_classes: int = field(default=100, metadata={
        "help": "K: classes per row (its own + random negatives), as in the paper (100); at most 254."})
    counterfactual_loss_weight: float | None = field(default=None, metadata={
        "help": "Weight of the counterfactual contrastive loss (the paper: 1; 0 turns it off).",
        "metavar": "W"})
    lora_rank: int | None = field(default=None, metadata={
        "help": "Train LoRA adapters of this rank in the vision tower (default: prompts and decoder only)."})
    validation_size: float = field(default=0.05, metadata={
        "help": "Rows held out for validation: a fraction (< 1) or a count (>= 1)."})
    streaming: bool = field(default=False, metadata={
        "help": "Stream the datasets instead of loading them (needs --max_steps)."})
    overwrite: bool = field(default=False, metadata={
        "help": "Train into an --output-dir that already holds a run (its files are replaced)."})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Our flags, one per :class:`TrainConfig` field (TrainingArguments flags are parsed in :func:`run`)."""
    settings.add_arguments(parser, TrainConfig)


def training_arguments(config: TrainConfig, extra: list[str]) -> Any:
    """TrainingArguments from ``extra`` flags with the preset's defaults."""
    from transformers import HfArgumentParser, TrainingArguments

    class _Parser(HfArgumentParser):
        """Refuses a bad value with our one-line error instead of argparse's usage dump."""

        def error(self, message: str) -> None:  # type: ignore[override]
            raise InputError(f"bad TrainingArguments flag: {message}")

    parser = _Parser(TrainingArguments)
    defaults = training_defaults(config.preset)
    given = given_values(extra)
    if config.preset == "paper" and "per_device_train_batch_size" not in given:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        accumulation = _int_value(given, "gradient_accumulation_steps", 1)
        if accumulation < 1 or world < 1:
            raise InputError(f"--gradient_accumulation_steps must be an integer >= 1 (got {accumulation})")
        per_device, remainder = divmod(PAPER_GLOBAL_BATCH, world * accumulation)
        if remainder or per_device < 1:
            raise InputError(
                f"the paper's global batch of {PAPER_GLOBAL_BATCH} does not split over {world} processes x "
                f"{accumulation} accumulation steps; pass --per_device_train_batch_size"
            )
        defaults["per_device_train_batch_size"] = per_device
    lr_kwargs = defaults.pop("lr_scheduler_kwargs", None)
    parser.set_defaults(**defaults)
    try:
        (arguments,) = parser.parse_args_into_dataclasses(
            args=[*_join_negative_numbers(extra), "--output_dir", config.output_dir], return_remaining_strings=False
        )
    except InputError:  # a bad value, refused by _Parser.error in one line
        raise
    except SystemExit as exit_:  # argparse printed its one-line usage error
        raise InputError(f"bad TrainingArguments flag in {' '.join(extra)!r}") from exit_
    except ValueError as error:  # unknown flags, or values TrainingArguments refuses
        raise InputError(f"bad TrainingArguments flags: {first_line(error)}") from error
    if lr_kwargs and not arguments.lr_scheduler_kwargs and arguments.lr_scheduler_type == "polynomial":
        arguments.lr_scheduler_kwargs = dict(lr_kwargs)
    register_secret(arguments.hub_token)  # redacted in every message and log line of the run
    arguments.remove_unused_columns = False  # the collator reads the raw image/label columns
    arguments.batch_eval_metrics = True  # the metric streams batch by batch
    arguments.label_names = ["labels"]
    if arguments.dataloader_persistent_workers:
        # Persistent workers keep their first copy of the collator, so each epoch's set_epoch would
        # never reach them and every epoch would repeat epoch 0's negatives and augmentations.
        logger.warning("--dataloader_persistent_workers is turned off: the collator draws per epoch")
        arguments.dataloader_persistent_workers = False
    if arguments.dataloader_pin_memory and arguments.device.type != "cuda":
        arguments.dataloader_pin_memory = False  # pinning only helps a GPU (and warns without one)
    return arguments


def _join_negative_numbers(extra: list[str]) -> list[str]:
    """``--flag -1e-4`` as ``--flag=-1e-4``: argparse takes a negative number in exponent notation
    (or ``-inf``, ``-nan``) for a flag of its own and would refuse the value unread."""
    joined: list[str] = []
    for word in extra:
        previous = joined[-1] if joined else ""
        if (word.startswith("-") and previous.startswith("--") and "=" not in previous
                and is_number(word) and not re.fullmatch(r"-\d+|-\d*\.\d+", word)):
            joined[-1] = f"{previous}={word}"
        else:
            joined.append(word)
    return joined


def _int_value(given: dict[str, str], name: str, default: int) -> int:
    """The integer given to ``--name`` (``given``: :func:`~magicseg_hf.training.checks.given_values`), else ``default``."""
    if name not in given:
        return default
    try:
        return int(given[name])
    except ValueError as error:
        raise InputError(f"bad TrainingArguments flag: argument --{name}: invalid int value: {given[name]!r}") from error


def run(args: argparse.Namespace) -> int:
    """Train and save; returns 0."""
    config = settings.from_args(TrainConfig, args)
    extra = list(getattr(args, "extra", []) or [])
    arguments = training_arguments(config, extra)
    train(config, arguments, given_flags=extra)
    finish_process_group()
    return 0


def train(config: TrainConfig, training_arguments: Any, given_flags: Sequence[str] = ()) -> dict[str, Any]:
    """Train ``CLIPForOpenSegmentation`` per ``config``; returns the training summary (also saved).

    Every setting, and the checkpoint to resume from, is checked first
    (:func:`~magicseg_hf.training.checks.check_run`), before any data is read or anything written;
    ``given_flags`` (the TrainingArguments flags as typed) lets its messages quote the value given.
    """
    from magicseg_hf.training import data as training_data
    from magicseg_hf.training.checks import check_run

    start = time.perf_counter()
    check_run(config, training_arguments, given_flags)
    data = training_data.load_training_data(
        config.dataset, vocabulary=config.vocabulary, validation_size=config.validation_size,
        seed=training_arguments.seed, streaming=config.streaming,
    )
    checks_passed()  # settings and data are read: the terminal shows the run from here on (console.py)
    model, processor = _build_model(config, training_arguments.seed)
    summary = _fit(config, training_arguments, data, model, processor)
    summary["wall_time_seconds"] = round(time.perf_counter() - start, 1)
    if training_arguments.process_index == 0:
        from magicseg_hf.cards.model import TRAINING_SUMMARY_FILE, write_model_card
        from magicseg_hf.folder import atomic_write_json

        atomic_write_json(Path(training_arguments.output_dir) / TRAINING_SUMMARY_FILE, summary)
        write_model_card(training_arguments.output_dir)
    return summary


def _build_model(config: TrainConfig, seed: int) -> tuple[Any, Any]:
    from magicseg_hf.loading import build_open_seg, load_open_seg

    overrides: dict[str, Any] = {}
    if config.counterfactual_loss_weight is not None:
        overrides["counterfactual_loss_weight"] = config.counterfactual_loss_weight
    if config.model:
        model, processor = load_open_seg(config.model)
        for key, value in overrides.items():
            setattr(model.config, key, value)
    else:
        model, processor = build_open_seg(config.preset, seed=seed, **overrides)
    if config.lora_rank is not None:  # checked positive up front
        model.enable_lora(rank=config.lora_rank)
    return model, processor


def _fit(config: TrainConfig, arguments: Any, data: Any, model: Any, processor: Any) -> dict[str, Any]:
    import torch

    from magicseg_hf.training.collator import MAX_NAMED_SKIPS, MagicSegCollator
    from magicseg_hf.training.resume import finished_checkpoint_state
    from magicseg_hf.training.trainer import MagicSegTrainer
    from magicseg_hf.training.transforms import augmentation_settings

    vocabulary = data.vocabulary
    with torch.no_grad():
        class_embeds = model.encode_classes(vocabulary).float().cpu()  # (V, D), once for the run
    counterfactual = model.config.counterfactual_loss_weight > 0
    common = {"processor": processor, "vocabulary": vocabulary, "class_embeds": class_embeds,
              "num_classes": config.num_classes, "seed": arguments.seed}
    # count_in_batch: each batch carries its data counts to the trainer (DataLoader workers' and other
    # processes' counts included), which sums them and keeps them across a resume.
    common["count_in_batch"] = True
    train_collator = MagicSegCollator(**common, augment=True, counterfactual=counterfactual,
                                      settings=augmentation_settings(config.preset))
    eval_collator = MagicSegCollator(**common, augment=False, counterfactual=counterfactual, fixed_negatives=True)
    trainer = MagicSegTrainer(
        model=model,
        args=arguments,
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=train_collator,
        eval_data_collator=eval_collator,
        num_vocabulary_classes=len(vocabulary),
        processing_class=processor,
        decay_norms_and_biases=training_recipe(config.preset)["decay_norms_and_biases"],
    )
    finished = finished_checkpoint_state(arguments.resume_from_checkpoint, arguments.max_steps,
                                         arguments.num_train_epochs)
    if finished is None:
        result = trainer.train(resume_from_checkpoint=arguments.resume_from_checkpoint)
        runtime = result.metrics.get("train_runtime", 0.0)
    else:
        # A kill during the final save left a checkpoint with the last step: load it, take no step more.
        logger.info("%s already holds the last step (%d): saving its model without training further",
                    arguments.resume_from_checkpoint, finished["global_step"])
        trainer.adopt_finished_checkpoint(arguments.resume_from_checkpoint, finished)
        runtime = 0.0
    metrics = trainer.evaluate() if data.validation is not None else {}
    model.set_vocabulary(vocabulary)
    trainer.save_model(arguments.output_dir)
    if trainer.is_world_process_zero():
        processor.save_pretrained(arguments.output_dir)
    history = trainer.state.log_history
    # The last logged step's losses; a run shorter than --logging_steps logged none: its mean loss.
    mean_loss = trainer.run_mean_loss()
    fallback = {"loss": None if mean_loss is None else round(mean_loss, 4)}
    last = next((entry for entry in reversed(history) if "loss" in entry), fallback)
    counts = trainer.run_data_counts()  # every process takes part (a sum over processes)
    named_skips = trainer.run_skipped_row_ids()
    return {
        "datasets": data.describe(),
        "vocabulary_size": len(vocabulary),
        "num_classes": config.num_classes,
        "preset": config.preset,
        "counterfactual_loss_weight": model.config.counterfactual_loss_weight,
        "training_arguments": json.loads(arguments.to_json_string()),
        "global_steps": trainer.state.global_step,
        "num_processes": arguments.world_size,
        "train_runtime_seconds": round(runtime, 1),
        "final_losses": {k: last.get(k) for k in ("loss", "focal_loss", "dice_loss", "counterfactual_loss")},
        "mean_loss": fallback["loss"],  # over every step of the run, a resumed one's included
        "validation": {k: v for k, v in metrics.items() if k.startswith("eval_")},
        # Label pixels outside their row's classes, in the training batches.
        "bad_label_pixels": counts["train/num_bad_label_pixels"],
        # Rows left out of their batch because a picture could not be decoded or sizes differ, in
        # training and evaluation batches: every batch that reached the model, on every process and
        # from every DataLoader worker, a resumed run's earlier steps included (a row drawn twice,
        # e.g. in two epochs, counts twice).
        "skipped_rows": counts["train/num_skipped_rows"] + counts["eval/num_skipped_rows"],
        # The first few of them by id (sorted), best effort: only rows skipped in the processes'
        # main processes are named (DataLoader workers log theirs).
        "skipped_row_ids": named_skips[:MAX_NAMED_SKIPS],
        VERSIONS_RECORD_KEY: package_versions(),
    }
