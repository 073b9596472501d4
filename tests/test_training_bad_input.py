"""``magicseg train`` refuses bad settings and broken checkpoints up front (issue 18).

The promise: bad input is exactly one line on stderr, ``magicseg train: error: ...``, naming the
flag and the value given, exit status 2, no traceback — checked before any data is read, so the
output folder is left as it was (absent when it did not exist). A resume names what a checkpoint
lacks and the newest complete checkpoint; naming the output folder itself (or ``true``) resumes
from the newest complete one.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from pathlib import Path

import pytest
from helpers import folder_digest, write_dataset_folder

from magicseg_hf.cli import main

VOCABULARY = ["cat", "dog", "bird", "car"]
FAST = ["--preset", "tiny", "--num-classes", "4", "--validation-size", "0", "--logging_steps", "1",
        "--per_device_train_batch_size", "2", "--seed", "3"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data") / "ds"
    write_dataset_folder(folder, num_rows=8, vocabulary=VOCABULARY, size=(64, 64))
    return folder


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, dataset) -> Path:
    """A 2-step run that saved checkpoint-1 and checkpoint-2."""
    out = tmp_path_factory.mktemp("runs") / "model"
    assert main(["train", "--dataset", str(dataset), "--output-dir", str(out), *FAST,
                 "--max_steps", "2", "--save_steps", "1", "--save_total_limit", "5"]) == 0
    assert (out / "checkpoint-1" / "trainer_state.json").is_file()
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()
    return out


def assert_refused(code: int, err: str, *needles: str) -> str:
    """Exit 2 and exactly one stderr line, the error, holding every needle; returns the line."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err[-3000:]
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith("magicseg train: error:"), lines[0]
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ---- settings -------------------------------------------------------------------------------------
BAD_SETTINGS = {
    "no steps and no epochs": (["--max_steps", "0", "--num_train_epochs", "0"], ["--num_train_epochs", "0"]),
    "negative epochs": (["--max_steps", "-1", "--num_train_epochs", "-1"], ["--num_train_epochs", "-1"]),
    "negative epochs beside steps": (["--num_train_epochs", "-1"], ["--num_train_epochs", "-1"]),
    "nan epochs": (["--max_steps", "-1", "--num_train_epochs", "nan"], ["--num_train_epochs", "nan"]),
    "steps below -1": (["--max_steps", "-5"], ["--max_steps", "-5"]),
    "negative validation size": (["--validation-size", "-1"], ["--validation-size", "-1"]),
    "nan validation size": (["--validation-size", "nan"], ["--validation-size", "nan"]),
    "fractional validation count": (["--validation-size", "2.5"], ["--validation-size", "2.5"]),
    "negative learning rate": (["--learning_rate", "-1e-4"], ["--learning_rate", "-1e-4"]),
    "nan learning rate": (["--learning_rate", "nan"], ["--learning_rate", "nan"]),
    "zero batch": (["--per_device_train_batch_size", "0"], ["--per_device_train_batch_size", "0"]),
    "negative batch": (["--per_device_train_batch_size", "-2"], ["--per_device_train_batch_size", "-2"]),
    "zero eval batch": (["--per_device_eval_batch_size", "0"], ["--per_device_eval_batch_size", "0"]),
    "zero accumulation": (["--gradient_accumulation_steps", "0"], ["--gradient_accumulation_steps", "0"]),
    "zero accumulation, paper preset": (["--preset", "paper", "--gradient_accumulation_steps", "0"],
                                        ["--gradient_accumulation_steps", "0"]),
    "word accumulation, paper preset": (["--preset", "paper", "--gradient_accumulation_steps", "two"],
                                        ["--gradient_accumulation_steps", "two"]),
    "negative workers": (["--dataloader_num_workers", "-1"], ["--dataloader_num_workers", "-1"]),
    "unknown eval strategy": (["--eval_strategy", "sometimes"], ["--eval_strategy", "sometimes"]),
    "nan weight decay": (["--weight_decay", "nan"], ["--weight_decay", "nan"]),
    "unknown integration": (["--report_to", "carrier_pigeon"], ["--report_to", "carrier_pigeon"]),
    "lora rank 0": (["--lora-rank", "0"], ["--lora-rank", "0"]),
    "save steps 0 (never saving)": (["--save_steps", "0"], ["--save_steps", "0", "--save_strategy no"]),
}


def test_an_output_folder_that_cannot_be_made_is_refused_up_front(dataset, capsys):
    code = main(["train", "--dataset", str(dataset), "--output-dir", "/proc/magicseg-run", *FAST, "--max_steps", "2"])
    assert_refused(code, capsys.readouterr().err, "--output-dir", "/proc", "not writable")


@pytest.mark.parametrize("flags,needles", list(BAD_SETTINGS.values()), ids=list(BAD_SETTINGS))
def test_bad_settings_are_one_line_exit_2_and_nothing_written(flags, needles, dataset, tmp_path, capsys):
    out = tmp_path / "model"
    code = main(["train", "--dataset", str(dataset), "--output-dir", str(out), *FAST, "--max_steps", "2", *flags])
    assert_refused(code, capsys.readouterr().err, *needles)
    assert not out.exists()


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_an_integration_that_is_not_installed_is_named(dataset, tmp_path, capsys):
    out = tmp_path / "model"
    code = main(["train", "--dataset", str(dataset), "--output-dir", str(out), *FAST, "--max_steps", "2",
                 "--report_to", "wandb"])
    assert_refused(code, capsys.readouterr().err, "--report_to", "wandb", "pip install wandb")
    assert not out.exists()


def test_settings_are_checked_before_any_data_is_read(tmp_path, capsys, monkeypatch):
    from magicseg_hf.training import data

    def refuse(*args, **kwargs):
        raise AssertionError("data was read before the settings were checked")

    monkeypatch.setattr(data, "load_training_data", refuse)
    out = tmp_path / "model"
    code = main(["train", "--dataset", str(tmp_path / "missing"), "--output-dir", str(out), *FAST,
                 "--learning_rate", "-1"])
    assert_refused(code, capsys.readouterr().err, "--learning_rate", "-1")
    assert not out.exists()


def test_an_existing_output_folder_is_left_untouched(dataset, tmp_path, capsys):
    out = tmp_path / "model"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = folder_digest(out)
    code = main(["train", "--dataset", str(dataset), "--output-dir", str(out), *FAST, "--overwrite",
                 "--num_train_epochs", "-1"])
    assert_refused(code, capsys.readouterr().err, "--num_train_epochs", "-1")
    assert folder_digest(out) == before


# ---- resume -----------------------------------------------------------------------------------------
def _copy(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "model"
    shutil.copytree(run, out)
    return out


def _resume(dataset: Path, out: Path, checkpoint: str) -> int:
    return main(["train", "--dataset", str(dataset), "--output-dir", str(out), *FAST, "--max_steps", "2",
                 "--save_steps", "1", "--save_total_limit", "5", "--resume_from_checkpoint", checkpoint])


def test_a_missing_checkpoint_folder_is_named(dataset, finished_run, tmp_path, capsys):
    out = _copy(finished_run, tmp_path)
    before = folder_digest(out)
    missing = out / "checkpoint-7"
    code = _resume(dataset, out, str(missing))
    assert_refused(code, capsys.readouterr().err, "--resume_from_checkpoint", str(missing), "checkpoint-2")
    assert folder_digest(out) == before


def _truncate_weights(checkpoint: Path) -> None:
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _garbage_state(checkpoint: Path) -> None:
    (checkpoint / "trainer_state.json").write_text("{ not json")


def _killed_during_save(checkpoint: Path) -> None:
    # The Trainer writes trainer_state.json last: a kill during the save leaves the rest.
    (checkpoint / "trainer_state.json").unlink()
    (checkpoint / "rng_state.pth").unlink()


def _truncated_optimizer(checkpoint: Path) -> None:
    optimizer = checkpoint / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:100])


BROKEN = {
    "truncated weights": (_truncate_weights, "model.safetensors"),
    "garbage trainer state": (_garbage_state, "trainer_state.json"),
    "killed during its save": (_killed_during_save, "trainer_state.json"),
    "truncated optimizer": (_truncated_optimizer, "optimizer.pt"),
}


@pytest.mark.parametrize("damage,named", list(BROKEN.values()), ids=list(BROKEN))
def test_a_broken_checkpoint_names_the_problem_and_the_newest_complete_one(damage, named, dataset, finished_run, tmp_path, capsys):
    out = _copy(finished_run, tmp_path)
    damage(out / "checkpoint-2")
    before = folder_digest(out)
    code = _resume(dataset, out, str(out / "checkpoint-2"))
    line = assert_refused(code, capsys.readouterr().err, "--resume_from_checkpoint", named)
    assert str(out / "checkpoint-1") in line  # the newest complete checkpoint to resume from
    assert folder_digest(out) == before


@pytest.mark.parametrize("spelling", ["folder", "true"])
def test_resuming_the_output_folder_takes_the_newest_complete_checkpoint(spelling, dataset, finished_run, tmp_path,
                                                                          caplog):
    out = _copy(finished_run, tmp_path)
    _killed_during_save(out / "checkpoint-2")
    caplog.set_level(logging.INFO, logger="magicseg_hf")
    assert _resume(dataset, out, str(out) if spelling == "folder" else "true") == 0
    assert f"resuming from {out / 'checkpoint-1'}" in caplog.text
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2  # step 2 was trained again and checkpoint-2 saved whole
    assert json.loads((out / "training_summary.json").read_text())["global_steps"] == 2


def test_resuming_a_folder_without_a_complete_checkpoint_is_refused(dataset, finished_run, tmp_path, capsys):
    out = _copy(finished_run, tmp_path)
    _killed_during_save(out / "checkpoint-2")
    _garbage_state(out / "checkpoint-1")
    before = folder_digest(out)
    code = _resume(dataset, out, str(out))
    assert_refused(code, capsys.readouterr().err, "--resume_from_checkpoint", "no complete checkpoint")
    assert folder_digest(out) == before
