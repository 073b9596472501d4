"""Up-front checks of ``magicseg train``: every setting and the checkpoint to resume from.

:func:`check_run` runs before any data is read, any model is built and anything is written: a
setting out of range, an integration that is not installed, or a checkpoint that cannot be resumed
is one :class:`~magicseg_hf.errors.InputError` naming the flag and the value given (the CLI prints
it as one line, exit status 2), never a traceback half-way through a run.

A checkpoint is *complete* when the Trainer finished saving it: ``trainer_state.json`` (written
last) and ``config.json`` parse, the weights are whole (a safetensors file's header and length
agree), and every torch file it holds (optimizer, scheduler, RNG state, arguments) is a whole zip
archive. Resuming from the output folder itself, from a run folder, or from ``true`` takes the
newest complete checkpoint in it; naming a broken checkpoint names what is wrong and the newest
complete checkpoint to resume from instead.
"""

from __future__ import annotations

import json
import logging
import math
import re
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from magicseg_hf.errors import InputError

logger = logging.getLogger(__name__)

#: A Trainer checkpoint folder's name.
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
#: The file the Trainer writes last when it saves a checkpoint.
TRAINER_STATE_FILE = "trainer_state.json"
#: Torch files a checkpoint may hold (checked when present: a save may leave out the optimizer).
TORCH_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "training_args.bin", "pytorch_model.bin")
#: ``--report_to`` integrations -> (transformers' availability check, what to install): the install hint.
#: Which names exist is transformers' own table (``INTEGRATION_TO_CALLBACK``), read at check time.
INTEGRATIONS = {
    "azure_ml": ("is_azureml_available", "azureml-core"),
    "clearml": ("is_clearml_available", "clearml"),
    "codecarbon": ("is_codecarbon_available", "codecarbon"),
    "comet_ml": ("is_comet_available", "comet_ml"),
    "dagshub": ("is_dagshub_available", "dagshub"),
    "dvclive": ("is_dvclive_available", "dvclive"),
    "flyte": ("is_flytekit_available", "flytekit"),
    "kubeflow": ("is_kubeflow_available", "kubeflow"),
    "mlflow": ("is_mlflow_available", "mlflow"),
    "neptune": ("is_neptune_available", "neptune"),
    "swanlab": ("is_swanlab_available", "swanlab"),
    "tensorboard": ("is_tensorboard_available", "tensorboard"),
    "trackio": ("is_trackio_available", "trackio"),
    "wandb": ("is_wandb_available", "wandb"),
}
_TRUE_WORDS = ("true", "True", "TRUE")
_FALSE_WORDS = ("false", "False", "FALSE")


def check_run(config: Any, arguments: Any, given_flags: Sequence[str] = ()) -> None:
    """Check ``magicseg train``'s settings before anything is read or written.

    Also resolves ``arguments.resume_from_checkpoint`` in place: a run folder (the output folder
    itself, or ``true``) becomes its newest complete checkpoint (logged), ``false`` becomes None.

    Args:
        config: the :class:`~magicseg_hf.training.run.TrainConfig`.
        arguments: the parsed ``transformers.TrainingArguments``.
        given_flags: the TrainingArguments flags as typed, so that messages quote the value given.

    Raises:
        InputError: the first setting out of range, an integration that is not installed, an
            output folder in the way, or a checkpoint that cannot be resumed (what it lacks and the
            newest complete checkpoint).
    """
    given = given_values(given_flags)

    def shown(name: str, value: Any) -> str:
        return given.get(name, str(value))

    _check_own_flags(config, arguments)
    _check_ranges(arguments, shown)
    _check_schedule(config, arguments, shown)
    _check_report_to(arguments, shown)
    resume = resolve_resume(arguments.resume_from_checkpoint, arguments.output_dir)
    arguments.resume_from_checkpoint = resume
    _check_output_dir(config, resume)


# ---- our flags and the schedule -----------------------------------------------------------------------
def _check_own_flags(config: Any, arguments: Any) -> None:
    if not 1 <= config.num_classes <= 254:
        raise InputError(f"`num_classes` must lie in 1..254 (got {config.num_classes})")
    weight = config.counterfactual_loss_weight
    if weight is not None and not (math.isfinite(weight) and weight >= 0):
        raise InputError(f"`counterfactual_loss_weight` must be a finite number >= 0 (got {weight})")
    if config.lora_rank is not None and config.lora_rank <= 0:
        raise InputError(f"`lora_rank` must be positive (got {config.lora_rank})")
    size = config.validation_size
    if not (math.isfinite(size) and size >= 0) or (size >= 1 and size != int(size)):
        raise InputError(
            f"`validation_size` must be a fraction in [0, 1) or a whole count of rows >= 1 (got {size:g})"
        )


def _check_schedule(config: Any, arguments: Any, shown: Any) -> None:
    epochs, steps = arguments.num_train_epochs, arguments.max_steps
    if not (math.isfinite(epochs) and epochs >= 0):
        raise InputError(f"`num_train_epochs` must be a finite number >= 0 (got {shown('num_train_epochs', epochs)})")
    if steps < -1:
        raise InputError(
            f"`max_steps` must be a positive count of steps, or -1 to train by `num_train_epochs` "
            f"(got {shown('max_steps', steps)})"
        )
    if steps <= 0 and epochs <= 0:
        raise InputError(
            f"nothing to train: `max_steps` {shown('max_steps', steps)} and `num_train_epochs` "
            f"{shown('num_train_epochs', epochs)}; give a positive count of steps or epochs"
        )
    if config.streaming and steps <= 0:
        raise InputError("`streaming` needs `max_steps` (a stream has no length to count epochs in)")
    no_validation = config.validation_size == 0 or (config.streaming and config.validation_size < 1)
    strategy = str(getattr(arguments.eval_strategy, "value", arguments.eval_strategy))
    if strategy != "no" and no_validation:
        raise InputError(
            f"`eval_strategy` {strategy} needs validation rows, but `validation_size` {config.validation_size:g} "
            "holds out none" + (" (a stream holds out a count of rows, not a fraction)" if config.streaming else "")
        )


def _check_ranges(arguments: Any, shown: Any) -> None:
    def number(name: str, low: float, high: float = math.inf, high_open: bool = False) -> None:
        value = getattr(arguments, name)
        if value is None:
            return
        ok = math.isfinite(value) and low <= value and (value < high if high_open else value <= high)
        if not ok:
            bounds = f">= {low:g}" if high == math.inf else f"in [{low:g}, {high:g}{')' if high_open else ']'}"
            raise InputError(f"`{name}` must be a finite number {bounds} (got {shown(name, value)})")

    def count(name: str, low: int) -> None:
        value = getattr(arguments, name)
        if value is not None and value < low:
            raise InputError(f"`{name}` must be an integer >= {low} (got {shown(name, value)})")

    number("learning_rate", 0.0)
    number("weight_decay", 0.0)
    number("adam_beta1", 0.0, 1.0, high_open=True)
    number("adam_beta2", 0.0, 1.0, high_open=True)
    number("adam_epsilon", 0.0)
    number("max_grad_norm", 0.0)
    count("per_device_train_batch_size", 1)
    count("per_device_eval_batch_size", 1)
    count("gradient_accumulation_steps", 1)
    count("dataloader_num_workers", 0)
    strategies = {"save_steps": "save_strategy", "logging_steps": "logging_strategy", "eval_steps": "eval_strategy"}
    for name, strategy in strategies.items():  # 0 steps would mean "never" under a "steps" strategy
        value = getattr(arguments, name)
        if str(getattr(getattr(arguments, strategy), "value", "")) == "steps" and value is not None and not value > 0:
            raise InputError(
                f"`{name}` must be > 0 with `{strategy}` steps (got {shown(name, value)}); "
                f"use `{strategy}` no to turn it off"
            )


def _check_report_to(arguments: Any, shown: Any) -> None:
    from transformers.integrations import integration_utils

    known = integration_utils.INTEGRATION_TO_CALLBACK
    names = arguments.report_to or []
    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        if name in ("none", "all"):
            continue
        if name not in known:
            raise InputError(
                f"`report_to` {shown('report_to', name)}: unknown integration; known: {', '.join(sorted(known))}"
            )
        if name not in INTEGRATIONS:
            continue  # an integration newer than this table: transformers checks it when the run starts
        available, package = INTEGRATIONS[name]
        check = getattr(integration_utils, available, None)
        if check is not None and not check():
            raise InputError(f"`report_to` {name}: {package} is not installed here (pip install {package})")


def given_values(flags: Sequence[str]) -> dict[str, str]:
    """``{name: text}`` of the ``--name value`` / ``--name=value`` words in ``flags`` (last wins)."""
    given: dict[str, str] = {}
    words = list(flags)
    for index, word in enumerate(words):
        if not word.startswith("--"):
            continue
        name, equals, value = word[2:].partition("=")
        name = name.replace("-", "_")
        if equals:
            given[name] = value
        elif index + 1 < len(words) and not _is_flag(words[index + 1]):
            given[name] = words[index + 1]
    return given


def _is_flag(word: str) -> bool:
    return word.startswith("--") or (word.startswith("-") and not is_number(word))


def is_number(word: str) -> bool:
    """Whether `word` reads as a number (`float` accepts it: "-1e-4", "nan", "-inf")."""
    try:
        float(word)
    except ValueError:
        return False
    return True


# ---- the output folder ------------------------------------------------------------------------------
def _check_output_dir(config: Any, resume: str | None) -> None:
    from magicseg_hf.folder import check_output_folder

    path = Path(config.output_dir).expanduser()
    check_output_folder(path, "`output_dir`")
    if path.is_dir() and any(path.iterdir()) and not (config.overwrite or resume):
        raise InputError(
            f"`output_dir` {str(path)!r} already holds files; pass `resume_from_checkpoint` to continue "
            "its run or `overwrite` to replace it"
        )


# ---- checkpoints --------------------------------------------------------------------------------------
def resolve_resume(value: str | bool | None, output_dir: str) -> str | None:
    """The checkpoint folder to resume from, checked; None for no resume.

    ``value`` may name a checkpoint folder, a run folder (the output folder itself, or any folder
    of ``checkpoint-N`` folders: its newest complete one is taken, and logged), or be ``true``
    (the output folder's newest complete checkpoint) or ``false``.

    Raises:
        InputError: the folder is missing, the checkpoint is broken (what is wrong, and the newest
            complete checkpoint to resume from), or a run folder holds no complete checkpoint.
    """
    if value is None or value is False or (isinstance(value, str) and value in _FALSE_WORDS + ("",)):
        return None
    text = "true" if value is True else str(value)
    output = Path(output_dir).expanduser()
    if text in _TRUE_WORDS:
        return str(_newest_or_refuse(output, text))
    path = Path(text).expanduser()
    if not path.is_dir():
        where = "a file, not a folder" if path.exists() else "no such folder"
        raise InputError(f"`resume_from_checkpoint` {text}: {where}; {_newest_hint(output, path)}")
    is_run_folder = not (path / TRAINER_STATE_FILE).exists() and (
        _same_path(path, output) or any(_checkpoints(path))
    )
    if is_run_folder:
        return str(_newest_or_refuse(path, text))
    problem = checkpoint_problem(path)
    if problem:
        raise InputError(f"`resume_from_checkpoint` {text}: {problem}; {_newest_hint(output, path)}")
    logger.info("resuming from %s", path)
    return str(path)


def checkpoint_problem(folder: str | Path) -> str | None:
    """What keeps ``folder`` from being a complete Trainer checkpoint, in a few words; None if whole."""
    folder = Path(folder)
    if not folder.is_dir():
        return "no such folder"
    state = folder / TRAINER_STATE_FILE
    if not state.is_file():
        return f"it lacks {TRAINER_STATE_FILE} (its save was cut short)"
    problem = _json_problem(state, needs="global_step")
    if problem:
        return problem
    config = folder / "config.json"
    if not config.is_file():
        return "it lacks config.json"
    problem = _json_problem(config)
    if problem:
        return problem
    problem = _weights_problem(folder)
    if problem:
        return problem
    for path in sorted([*(folder / name for name in TORCH_FILES), *folder.glob("rng_state*.pth")]):
        if path.is_file():
            problem = _torch_file_problem(path)
            if problem:
                return problem
    return None


def newest_complete_checkpoint(run_folder: str | Path) -> Path | None:
    """The complete ``checkpoint-N`` folder of ``run_folder`` with the highest N, if any."""
    for checkpoint in _checkpoints(Path(run_folder)):
        if checkpoint_problem(checkpoint) is None:
            return checkpoint
    return None


def _checkpoints(folder: Path) -> list[Path]:
    """``folder``'s ``checkpoint-N`` folders, newest (highest N) first."""
    if not folder.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in folder.iterdir()
             if path.is_dir() and (match := CHECKPOINT_PATTERN.match(path.name))]
    return [path for _, path in sorted(found, reverse=True)]


def _newest_or_refuse(run_folder: Path, given: str) -> Path:
    newest = newest_complete_checkpoint(run_folder)
    if newest is None:
        if not run_folder.is_dir():
            raise InputError(f"`resume_from_checkpoint` {given}: {run_folder} does not exist: nothing to resume")
        broken = _checkpoints(run_folder)
        detail = f" ({broken[0].name}: {checkpoint_problem(broken[0])})" if broken else ""
        raise InputError(
            f"`resume_from_checkpoint` {given}: no complete checkpoint in {run_folder}{detail}; "
            "start again with `overwrite`"
        )
    for skipped in _checkpoints(run_folder):
        if skipped == newest:
            break
        logger.warning("skipping %s: %s", skipped, checkpoint_problem(skipped))
    logger.info("resuming from %s (the newest complete checkpoint in %s)", newest, run_folder)
    return newest


def _newest_hint(output: Path, named: Path) -> str:
    """Where to resume from instead: the newest complete checkpoint beside ``named`` or in ``output``."""
    for folder in dict.fromkeys([output, named.parent]):
        newest = newest_complete_checkpoint(folder)
        if newest is not None:
            return f"the newest complete checkpoint is {newest}"
    return f"no complete checkpoint in {output}"


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _json_problem(path: Path, needs: str | None = None) -> str | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return f"{path.name} is not readable JSON (truncated or damaged)"
    if needs and not (isinstance(value, dict) and isinstance(value.get(needs), int)):
        return f"{path.name} has no {needs}"
    return None


def _weights_problem(folder: Path) -> str | None:
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file():
        return _safetensors_problem(single)
    if index.is_file():
        problem = _json_problem(index, needs=None)
        if problem:
            return problem
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values()))
        for shard in shards:
            problem = _safetensors_problem(folder / shard)
            if problem:
                return problem
        return None
    if (folder / "pytorch_model.bin").is_file():
        return None  # checked with the other torch files
    return "it holds no model weights (model.safetensors)"


def _safetensors_problem(path: Path) -> str | None:
    """Whether ``path`` is a whole safetensors file: its header parses and its length is the data's."""
    if not path.is_file():
        return f"it lacks {path.name}"
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(handle.read(length))
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    except (OSError, struct.error, ValueError, KeyError, TypeError, IndexError):
        return f"{path.name} is not a readable safetensors file (truncated or damaged)"
    if 8 + length + max(ends, default=0) != size:
        return f"{path.name} is truncated ({size} bytes; its header describes {8 + length + max(ends, default=0)})"
    return None


def _torch_file_problem(path: Path) -> str | None:
    """Whether ``path`` (a ``torch.save`` file) looks whole: its zip directory reads and fits the file.

    Only the directory is read (not every entry's bytes): an optimizer state can be gigabytes.
    """
    try:
        with path.open("rb") as handle:
            magic = handle.read(2)
    except OSError:
        return f"{path.name} cannot be read"
    if magic != b"PK":
        return None if magic else f"{path.name} is empty"  # not a zip: torch's legacy format, left to torch
    try:  # the zip directory sits at the end of the file: a cut-short save has none
        with zipfile.ZipFile(path) as archive:
            ends = [entry.header_offset + entry.compress_size for entry in archive.infolist()]
    except (OSError, zipfile.BadZipFile, ValueError):
        return f"{path.name} is truncated or damaged"
    return f"{path.name} is damaged (its entries run past its end)" if max(ends, default=0) > path.stat().st_size else None
