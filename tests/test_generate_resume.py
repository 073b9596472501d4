"""Generation under a hostile user: kills at every step of finalisation, concurrent runs and the
folder lock, failures after the checks, and attempts that raise.

Every run is on the tiny preset, offline. What is asserted is what a user sees: the exit status
and its one line, a folder that ``magicseg validate`` accepts, rows equal to a straight run's, and
nothing written (or a folder left as it was) when a run is refused.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import folder_digest, read_rows, subprocess_env

from magicseg_hf.cli import main
from magicseg_hf.errors import InputError
from magicseg_hf.folder import DatasetFolder
from magicseg_hf.generation import GenerationConfig, generate
from magicseg_hf.generation.annotate import GroundingDinoDetector
from magicseg_hf.lock import FolderLock
from magicseg_hf.schema import LOCK_FILE
from magicseg_hf.validate import validate_dataset_folder

TINY = ["--preset", "tiny"]
CLASSES = ["cat", "dog", "traffic light"]
#: 6 rows, shards of 4 attempts, batches of 2: several shards, so kills land between them.
SETTINGS = ["--classes", *CLASSES, "--num-pairs", "6", "--shard-size", "4", "--batch-size", "2", "--seed", "3", *TINY]


def generate_args(out: Path, *extra: str) -> list[str]:
    return ["generate", *SETTINGS, "--output-dir", str(out), *extra]


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def assert_one_line(err: str) -> None:
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def assert_finished(out: Path, reference: Path) -> None:
    """``out`` is a complete folder that validate accepts, with the reference run's rows."""
    report = validate_dataset_folder(out)
    assert report.ok, report.summary()
    assert (out / "README.md").is_file()
    assert not (out / ".work").exists() and not (out / ".work.removed").exists()
    assert not (out / LOCK_FILE).exists(), "the lock is released"
    assert read_rows(out) == read_rows(reference)



@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The reference: the settings run straight through."""
    out = tmp_path_factory.mktemp("straight") / "out"
    assert main(generate_args(out)) == 0
    return out


class Kill(BaseException):
    """Stands for SIGKILL in-process: no handler of the run catches it."""


# ----------------------------------------------------------------------------------------------
# Kills during finalisation, then --resume
# ----------------------------------------------------------------------------------------------
def _raise_kill(*args, **kwargs):
    raise Kill


def _kill_before_preview(monkeypatch):
    monkeypatch.setattr("magicseg_hf.generation.writer.pair_grid", _raise_kill)


def _kill_before_summary(monkeypatch):
    real = DatasetFolder.write_generation

    def write_generation(self, value):
        if value.get("summary"):
            raise Kill
        return real(self, value)

    monkeypatch.setattr(DatasetFolder, "write_generation", write_generation)


def _kill_before_histogram(monkeypatch):
    monkeypatch.setattr("magicseg_hf.cards.dataset.write_histogram_chart", _raise_kill)


def _kill_before_card(monkeypatch):
    monkeypatch.setattr("magicseg_hf.cards.dataset.render_dataset_card", _raise_kill)


def _kill_before_work_removal(monkeypatch):
    monkeypatch.setattr(DatasetFolder, "remove_work_dir", _raise_kill)


def _kill_during_work_removal(monkeypatch):
    import shutil

    real = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        path = Path(path)
        if path.exists():  # delete one file, then die
            next(p for p in path.rglob("*") if p.is_file()).unlink()
            raise Kill
        return real(path, *args, **kwargs)

    monkeypatch.setattr("magicseg_hf.folder.shutil.rmtree", rmtree)


#: kill point -> (patch, files that exist right after the kill, files that do not)
KILL_POINTS = {
    "data written, no preview": (_kill_before_preview, ["data/train-00000.parquet"], ["preview.png", "README.md"]),
    "preview written, no summary": (_kill_before_summary, ["preview.png"], ["README.md"]),
    "summary written, no histogram": (_kill_before_histogram, ["preview.png"], ["class_histogram.png", "README.md"]),
    "histogram written, no card": (_kill_before_card, ["class_histogram.png"], ["README.md"]),
    "card written, work area left": (_kill_before_work_removal, ["README.md", ".work"], []),
    "work area half deleted": (_kill_during_work_removal, ["README.md", ".work.removed"], [".work"]),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_kill_during_finalisation_is_finished_by_resume(point, straight, tmp_path, monkeypatch):
    patch, present, absent = KILL_POINTS[point]
    out = tmp_path / "out"
    with monkeypatch.context() as patched:
        patch(patched)
        with pytest.raises(Kill):
            main(generate_args(out))
    for name in present:
        assert (out / name).exists(), f"killed too early: no {name}"
    for name in absent:
        assert not (out / name).exists(), f"killed too late: {name}"
    assert main(generate_args(out, "--resume")) == 0
    assert_finished(out, straight)
    summary = json.loads((out / "generation.json").read_text())["summary"]
    assert summary["num_rows"] == 6


def test_resume_alone_uses_the_saved_settings(straight, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    with monkeypatch.context() as patched:
        _kill_before_card(patched)
        with pytest.raises(Kill):
            main(generate_args(out))
    code, err = run_cli(["generate", "--output-dir", str(out), "--resume", "--seed", "99"], capsys)
    assert code == 2 and "different settings: seed (saved 3, given 99)" in err
    assert_one_line(err)
    code, err = run_cli(["generate", "--output-dir", str(out), "--resume", "--device", "cpu"], capsys)
    assert code == 0, err
    assert_finished(out, straight)
    # the Python API: config=None resumes with the saved settings
    summary = generate(None, out, resume=True)
    assert summary.num_rows == 6
    with pytest.raises(InputError, match="needs resume=True"):
        generate(None, out)
    with pytest.raises(InputError, match="takes a GenerationConfig"):
        generate({"classes": ["cat"]}, tmp_path / "other")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="`output_dir` must name a folder"):
        generate(GenerationConfig(classes=["cat"], preset="tiny"), "")


# ----------------------------------------------------------------------------------------------
# One run per folder: the lock
# ----------------------------------------------------------------------------------------------
SLOW_CARD_SCRIPT = """
import sys, time
from magicseg_hf.cards import dataset as card
real = card.render_dataset_card
def slow(*args, **kwargs):
    time.sleep(300)  # killed here
    return real(*args, **kwargs)
card.render_dataset_card = slow
from magicseg_hf.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_two_concurrent_resumes_and_a_sigkill_during_finalisation(straight, tmp_path, monkeypatch, capsys, caplog):
    """A run is killed after its shards; two resumes start: the first (a real process) takes the
    folder, the second is refused by name. The first is SIGKILLed while it finalises; a third
    resume takes the dead run's lock over and finishes the folder."""
    out = tmp_path / "out"
    with monkeypatch.context() as patched:
        _kill_before_preview(patched)
        with pytest.raises(Kill):
            main(generate_args(out))
    script = tmp_path / "slow_card.py"
    script.write_text(SLOW_CARD_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), *generate_args(out, "--resume")], env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (out / "class_histogram.png").exists():
            if proc.poll() is not None:
                pytest.fail(f"generate ended before the kill: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        assert (out / "class_histogram.png").exists()
        summary_before = json.loads((out / "generation.json").read_text())["summary"]
        assert summary_before["num_rows"] == 6 and not (out / "README.md").exists()

        before = folder_digest(out)
        for args in (generate_args(out, "--resume"), generate_args(out)):
            code, err = run_cli(args, capsys)
            assert code == 2 and "in use by another magicseg run" in err
            assert f"pid {proc.pid} on host {socket.gethostname()}" in err
            assert_one_line(err)
        assert folder_digest(out) == before, "the refused runs wrote nothing"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    assert (out / LOCK_FILE).exists(), "the killed run's lock file is left behind"
    with caplog.at_level(logging.WARNING, logger="magicseg_hf"):
        assert main(generate_args(out, "--resume")) == 0
    assert any("taking over the lock" in r.getMessage() and f"pid {proc.pid}" in r.getMessage() for r in caplog.records)
    assert_finished(out, straight)


def test_a_second_run_is_refused_while_the_folder_is_locked(straight, tmp_path, capsys):
    out = tmp_path / "out"
    lock = FolderLock(out)
    lock.acquire()
    try:
        for extra in ([], ["--resume"]):
            code, err = run_cli(generate_args(out, *extra), capsys)
            assert code == 2 and f"pid {os.getpid()} on host {socket.gethostname()}" in err
            assert_one_line(err)
        assert [p.name for p in out.iterdir()] == [LOCK_FILE]
    finally:
        lock.release()
    assert main(generate_args(out)) == 0
    assert_finished(out, straight)


def test_a_lock_file_left_by_a_process_that_is_gone_is_taken_over(tmp_path, caplog):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / LOCK_FILE).write_text(json.dumps({"pid": dead_pid, "host": socket.gethostname(), "started": "then"}))
    with caplog.at_level(logging.WARNING, logger="magicseg_hf"), FolderLock(folder) as lock:
        assert lock.taken_over is not None and lock.taken_over.pid == dead_pid
        assert json.loads((folder / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert any(f"pid {dead_pid}" in r.getMessage() for r in caplog.records)
    assert not (folder / LOCK_FILE).exists()


# ----------------------------------------------------------------------------------------------
# Everything checked before anything is written; a run with no finished shard may restart
# ----------------------------------------------------------------------------------------------
def _garbage_model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "garbage-model"
    folder.mkdir()
    (folder / "config.json").write_bytes(b"\x00 not a config")
    (folder / "model.safetensors").write_bytes(os.urandom(512))
    return folder


@pytest.mark.parametrize("failure", ["device", "garbage model folder", "unreachable prompt server"])
def test_a_failed_check_leaves_nothing_and_the_corrected_command_runs(failure, straight, tmp_path, capsys):
    out = tmp_path / "out"
    bad = {
        "device": ["--device", "tpu"],
        "garbage model folder": ["--detector-model", str(_garbage_model_folder(tmp_path))],
        "unreachable prompt server": ["--prompt-backend", "openai", "--openai-base-url", "http://127.0.0.1:9/v1",
                                      "--prompt-model", "any"],
    }[failure]
    code, err = run_cli(generate_args(out, *bad), capsys)
    assert code == 2
    assert_one_line(err)
    assert not out.exists(), "refused before anything was written"
    assert main(generate_args(out)) == 0
    assert_finished(out, straight)


@pytest.mark.parametrize("resume", [False, True])
def test_a_run_that_failed_before_its_first_shard_restarts_with_other_settings(resume, straight, tmp_path,
                                                                                monkeypatch):
    """A run dies after writing its run files (out of memory in its first batch); the corrected
    command, with other settings, starts it again (with or without --resume)."""
    from magicseg_hf.generation import pipeline

    out = tmp_path / "out"
    with monkeypatch.context() as patched:
        patched.setattr(pipeline._Engine, "run_batch", lambda self, attempts: (_ for _ in ()).throw(MemoryError()))
        with pytest.raises(MemoryError):
            main(["generate", *SETTINGS, "--seed", "99", "--output-dir", str(out)])
    assert (out / "generation.json").is_file() and (out / ".work").is_dir()
    assert not (out / LOCK_FILE).exists(), "the lock is released on error"
    assert main(generate_args(out, *(["--resume"] if resume else []))) == 0
    assert_finished(out, straight)
    assert json.loads((out / "generation.json").read_text())["config"]["seed"] == 3


def test_a_started_run_still_needs_resume_and_its_settings(straight, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    with monkeypatch.context() as patched:
        _kill_before_preview(patched)
        with pytest.raises(Kill):
            main(generate_args(out))
    code, err = run_cli(generate_args(out), capsys)
    assert code == 2 and "is not empty (an unfinished run with 2 finished shard(s))" in err
    code, err = run_cli(generate_args(out, "--resume", "--num-pairs", "5"), capsys)
    assert code == 2 and "different settings: num_pairs" in err


# ----------------------------------------------------------------------------------------------
# An attempt that raises is counted; a broken setup stops the run
# ----------------------------------------------------------------------------------------------
def test_an_attempt_that_raises_is_dropped_counted_and_logged_once(tmp_path, monkeypatch, caplog):
    real = GroundingDinoDetector.detect

    def detect(self, images, class_names, *args, **kwargs):
        if any("dog" in names for names in class_names):
            raise RuntimeError("The size of tensor a (2000) must match the size of tensor b (256)\nmore")
        return real(self, images, class_names, *args, **kwargs)

    monkeypatch.setattr(GroundingDinoDetector, "detect", detect)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="magicseg_hf"):
        assert main(generate_args(out)) == 0
    summary = json.loads((out / "generation.json").read_text())["summary"]
    assert summary["num_rows"] == 6 and summary["dropped"]["error"] >= 1
    assert all("dog" not in row["classes"] for row in read_rows(out))
    logged = [r.getMessage() for r in caplog.records if "raised RuntimeError" in r.getMessage()]
    assert len(logged) == 1 and "size of tensor a (2000)" in logged[0] and "more" not in logged[0]
    card = (out / "README.md").read_text()
    assert f"| dropped: the attempt raised an error (logged by the run) | {summary['dropped']['error']} |" in card
    assert validate_dataset_folder(out).ok
    assert generate(None, out, resume=True).dropped["error"] == summary["dropped"]["error"]


def test_a_shard_of_attempts_that_all_raise_stops_the_run(tmp_path, monkeypatch):
    def detect(self, *args, **kwargs):
        raise RuntimeError("broken detector")

    monkeypatch.setattr(GroundingDinoDetector, "detect", detect)
    out = tmp_path / "out"
    config = GenerationConfig(classes=["cat"], num_pairs=2, shard_size=8, preset="tiny")
    with pytest.raises(RuntimeError, match="all 8 attempts of shard 0 raised"):
        generate(config, out)
    assert not (out / LOCK_FILE).exists() and not list((out / ".work").glob("*.json"))
