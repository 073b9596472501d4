"""Generation and push under a hostile user: kills at every step of finalisation, concurrent runs,
failures after the checks, attempts that raise, bad settings, and a Hub that never answers.

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
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import folder_digest, read_rows, subprocess_env, write_dataset_folder

from magicseg_hf import hub_access, loading, publish
from magicseg_hf.cli import main
from magicseg_hf.errors import InputError, MagicSegError, ModelLoadError
from magicseg_hf.folder import DatasetFolder
from magicseg_hf.generation import GenerationConfig, generate, load_vocabulary
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
    with pytest.raises(InputError, match="--output-dir must name a folder"):
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


# ----------------------------------------------------------------------------------------------
# Bad settings: one line, exit 2, nothing written
# ----------------------------------------------------------------------------------------------
def _unwritable(tmp_path: Path) -> str:
    if os.geteuid() == 0:  # root writes through permissions; /sys is read-only for everyone
        return "/sys/magicseg-test-output"
    locked = tmp_path / "read-only"
    locked.mkdir(mode=0o500)
    return str(locked / "out")


def _evil_pickle_model(tmp_path: Path) -> Path:
    """A tiny Grounding DINO folder whose weights are a pickle that would run a command."""
    folder = tmp_path / "pickled-detector"
    model, processor = loading.load_detector("grounding-dino", "tiny:grounding-dino")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "model.safetensors").unlink()

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    torch.save({"weight": Evil()}, folder / "pytorch_model.bin")
    return folder


def _vocabulary_with_nul(tmp_path: Path) -> str:
    path = tmp_path / "nul.txt"
    path.write_text("cat\nd\x00og\n")
    return str(path)


OPENAI = ["--prompt-backend", "openai", "--prompt-model", "any"]
#: (CLI arguments after the classes, a fragment of the one line). A callable builds its arguments.
BAD_SETTINGS = [
    (["--box-threshold", "2"], "--box-threshold must be in [0, 1] (got 2.0)"),
    (["--text-threshold", "1.5"], "--text-threshold must be in [0, 1]"),
    (["--box-threshold", "-0.5"], "--box-threshold must be in [0, 1]"),
    (["--counterfactual-threshold", "-1"], "--counterfactual-threshold must be >= 0"),
    (["--guidance-scale", "-1"], "--guidance-scale must be >= 0"),
    (["--guidance-scale", "nan"], "--guidance-scale must be a finite number (got nan)"),
    (["--guidance-scale", "inf"], "--guidance-scale must be a finite number (got inf)"),
    (["--min-mask-area", "nan"], "--min-mask-area must be a finite number"),
    (["--box-threshold", "nan"], "--box-threshold must be a finite number"),
    (["--device", "tpu"], "--device must be cpu, cuda, cuda:N or mps (got 'tpu')"),
    (["--device", f"cuda:{torch.cuda.device_count() + 7}"], "--device 'cuda:"),
    (["--device", ""], "--device must name a device"),
    (["--openai-base-url", "not-a-url", *OPENAI], "--openai-base-url must be an http(s) URL"),
    (["--openai-base-url", "ftp://127.0.0.1/v1", *OPENAI], "--openai-base-url must be an http(s) URL"),
    (["--openai-base-url", "http://user:hunter2@127.0.0.1:8000/v1", *OPENAI], "must not carry credentials"),
    (["--openai-base-url", "http://127.0.0.1:8000/v1?api-key=hunter2", *OPENAI], "must not carry credentials"),
    (["--openai-base-url", "http://127.0.0.1:9/v1", *OPENAI], "cannot connect"),
    (["--num-pairs", "1000000000000"], "--num-pairs must be a positive integer of at most 10,000,000"),
    (["--max-attempts", "100000000000"], "--max-attempts must be at most"),
    (["--max-classes-per-prompt", "300"], "--max-classes-per-prompt must be at most 254"),
    (["--num-inference-steps", "5000"], "--num-inference-steps must be in 1..1000"),
    (["--classes", "ca\x00t"], "holds the control character '\\x00'"),
    (["--classes", "ca\tt"], "holds the control character '\\t'"),
    (lambda tmp: ["--classes", " ".join(["word"] * 300)], "is too long for the diffusion model's text encoder"),
    (lambda tmp: ["--classes", *(" ".join(["word"] * n) for n in (24, 23, 22)), "--max-classes-per-prompt", "3"],
     "is too long for the grounding-dino detector"),
    (lambda tmp: ["--vocabulary", _vocabulary_with_nul(tmp)], "holds the control character"),
    (lambda tmp: ["--detector-model", str(_garbage_model_folder(tmp))], "cannot load grounding-dino detector"),
    (lambda tmp: ["--detector-model", str(_evil_pickle_model(tmp))], "holds more than tensors and is refused"),
]


@pytest.mark.parametrize(("args", "message"), BAD_SETTINGS, ids=[str(i) for i in range(len(BAD_SETTINGS))])
def test_bad_settings_are_one_line_exit_2_and_nothing_written(args, message, tmp_path, capsys):
    args = args(tmp_path) if callable(args) else args
    capsys.readouterr()  # what building a test model folder printed
    out = tmp_path / "out"
    classes = [] if {"--classes", "--vocabulary"} & set(args) else ["--classes", "cat", "dog"]
    command = ["generate", *classes, "--num-pairs", "2", "--output-dir", str(out), *TINY, *args]
    start = time.perf_counter()
    code, err = run_cli(command, capsys)
    assert code == 2, err
    assert message in err
    assert_one_line(err)
    assert "hunter2" not in err
    assert time.perf_counter() - start < 30
    assert not out.exists()
    assert not (tmp_path / "PWNED").exists(), "the pickle's code never ran"


@pytest.mark.parametrize("where", ["unwritable", "below a file"])
def test_an_output_dir_that_cannot_be_written_is_one_line(where, tmp_path, capsys):
    if where == "unwritable":
        out = _unwritable(tmp_path)
        expected = "is not writable" if os.geteuid() != 0 else "cannot be created"
    else:
        (tmp_path / "file.txt").write_text("x")
        out = str(tmp_path / "file.txt" / "out")
        expected = "cannot be created"
    code, err = run_cli(["generate", "--classes", "cat", "--num-pairs", "1", "--output-dir", out, *TINY], capsys)
    assert code == 2 and f"--output-dir {out!r} {expected}" in err
    assert_one_line(err)
    assert not Path(out).exists()


@pytest.mark.parametrize(
    ("kwargs", "field", "expected"),
    [
        ({"classes": "cat"}, "classes", "a list of class names or None (got 'cat', a str)"),
        ({"classes": ["cat", 3]}, "classes", "a list of class names"),
        ({"num_pairs": 2.5}, "num_pairs", "an integer (got 2.5, a float)"),
        ({"num_pairs": True}, "num_pairs", "an integer (got True, a bool)"),
        ({"batch_size": 0.5}, "batch_size", "an integer"),
        ({"guidance_scale": "high"}, "guidance_scale", "a number or None (got 'high', a str)"),
        ({"box_threshold": "0.3"}, "box_threshold", "a number or None (got '0.3', a str)"),
        ({"seed": "1"}, "seed", "an integer"),
        ({"safety_checker": "yes"}, "safety_checker", "True or False"),
        ({"detector": 3}, "detector", "a string or None (got 3, a int)"),
        ({"height": 64.0}, "height", "an integer or None"),
    ],
)
def test_config_field_types_are_checked_at_construction(kwargs, field, expected):
    with pytest.raises(InputError) as caught:
        GenerationConfig(**{"classes": ["cat"], "preset": "tiny", **kwargs})
    assert str(caught.value).startswith(f"GenerationConfig.{field} must be {expected}")


def test_config_takes_numpy_numbers_paths_and_tuples_as_their_python_values(tmp_path):
    config = GenerationConfig(classes=("cat", "dog"), num_pairs=np.int64(2), guidance_scale=np.float32(3.0),
                              vocabulary=None, sam_checkpoint=tmp_path / "sam.pth", preset="tiny")
    assert config.classes == ["cat", "dog"] and type(config.num_pairs) is int
    assert type(config.guidance_scale) is float and config.sam_checkpoint == str(tmp_path / "sam.pth")
    json.dumps(config.to_dict())  # generation.json can hold it


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"guidance_scale": float("nan")}, "--guidance-scale must be a finite number"),
        ({"guidance_scale": -2.0}, "--guidance-scale must be >= 0"),
        ({"box_threshold": 2.0}, "--box-threshold must be in [0, 1]"),
        ({"counterfactual_threshold": -1.0}, "--counterfactual-threshold must be >= 0"),
        ({"num_pairs": 10**12}, "--num-pairs must be a positive integer of at most"),
        ({"openai_base_url": "http://u:hunter2@localhost:1/v1", "prompt_backend": "openai"}, "credentials"),
        ({"device": "tpu"}, "--device must be"),
        ({"classes": ["cat", "ca\x00t"]}, "control character"),
    ],
)
def test_the_python_api_refuses_bad_settings_before_writing(kwargs, message, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")) as caught:
        generate(GenerationConfig(**{"classes": ["cat"], "num_pairs": 1, "preset": "tiny", **kwargs}), out)
    assert "hunter2" not in str(caught.value)
    assert not out.exists()


def test_vocabulary_files_drop_a_byte_order_mark_and_refuse_control_characters(tmp_path):
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffcat\r\ndog\n".encode())
    assert load_vocabulary(str(bom)) == ["cat", "dog"]
    with pytest.raises(InputError, match="control character"):
        load_vocabulary(_vocabulary_with_nul(tmp_path))


def test_help_states_the_bounds_and_the_resume_behaviour(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for fragment in ("1..10,000,000", "in [0, 1]", "a finite number >= 0", "settings saved there",
                     "without credentials", "cpu, cuda, cuda:N or mps"):
        assert fragment in text, fragment


# ----------------------------------------------------------------------------------------------
# The Hub: a server that never answers, credentials in HF_ENDPOINT
# ----------------------------------------------------------------------------------------------
@pytest.fixture()
def silent_server():
    """A TCP server that accepts connections and never answers; yields its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


@pytest.fixture()
def answering_server():
    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def dataset_folder(tmp_path_factory) -> Path:
    return write_dataset_folder(tmp_path_factory.mktemp("hub") / "ds", num_rows=3)


def test_reachability_asks_for_an_answer_not_just_a_connection(silent_server, answering_server, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{answering_server}")
    assert hub_access.hub_reachable(2.0)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent_server}")
    start = time.perf_counter()
    assert not hub_access.hub_reachable(0.5)
    assert time.perf_counter() - start < 2


def test_push_to_a_hub_that_never_answers_is_one_line_within_the_bound(dataset_folder, silent_server, monkeypatch,
                                                                          capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    monkeypatch.setenv("HF_ENDPOINT", f"http://erin:hunter2@127.0.0.1:{silent_server}")
    start = time.perf_counter()
    code, err = run_cli(["push", str(dataset_folder), "--repo-id", "erin/data"], capsys)
    elapsed = time.perf_counter() - start
    assert code == 2 and elapsed < 2 * hub_access.REACHABILITY_TIMEOUT + 3
    assert f"cannot reach the Hugging Face Hub at http://***@127.0.0.1:{silent_server} (no answer within 3 s)" in err
    assert_one_line(err)
    assert "hunter2" not in err


def test_every_hub_request_has_a_timeout_and_no_message_shows_credentials(dataset_folder, silent_server, monkeypatch,
                                                                             caplog):
    """Past the reachability check the Hub stops answering: each request ends after hub_timeout."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read by huggingface_hub at its import
    monkeypatch.setenv("HF_ENDPOINT", f"http://erin:hunter2@127.0.0.1:{silent_server}")
    monkeypatch.setattr(hub_access, "hub_reachable", lambda timeout=hub_access.REACHABILITY_TIMEOUT: True)
    start = time.perf_counter()
    with caplog.at_level(logging.DEBUG), pytest.raises(MagicSegError) as caught:
        publish.push_dataset_folder(dataset_folder, "erin/data", token="hf_x", hub_timeout=0.3)
    assert time.perf_counter() - start < 30
    message = str(caught.value)
    assert message == (f"the Hugging Face Hub at http://***@127.0.0.1:{silent_server} did not answer within 0.3 s "
                       "(ReadTimeout); check the network and push again")
    assert not any("hunter2" in record.getMessage() for record in caplog.records)


def test_hub_errors_naming_the_endpoint_are_redacted(dataset_folder, tmp_path, monkeypatch):
    import httpx2
    from helpers import HubStandIn
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    HubStandIn(tmp_path / "hub").install(monkeypatch)
    monkeypatch.setenv("HF_ENDPOINT", "https://erin:hunter2@hub.example?token=hunter2")

    def refuse(*args, **kwargs):
        request = httpx2.Request("POST", "https://erin:hunter2@hub.example/api/repos/create")
        raise HfHubHTTPError("500 Server Error for url https://erin:hunter2@hub.example/api/repos/create?sig=hunter2",
                             response=httpx2.Response(500, request=request))

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    with pytest.raises(MagicSegError) as caught:
        publish.push_dataset_folder(dataset_folder, "erin/data")
    assert "hunter2" not in str(caught.value) and "https://***@hub.example" in str(caught.value)

    def drop(*args, **kwargs):
        raise httpx2.ConnectError("connection reset")

    monkeypatch.setattr(HfApi, "create_repo", drop)
    with pytest.raises(MagicSegError) as caught:
        publish.push_dataset_folder(dataset_folder, "erin/data")
    assert str(caught.value) == "cannot reach the Hugging Face Hub at https://***@hub.example?token=***: ConnectError"


def test_model_loading_fails_at_once_on_a_hub_that_never_answers(silent_server, monkeypatch):
    monkeypatch.setattr(hub_access, "REACHABILITY_TIMEOUT", 0.5)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent_server}")
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="unreachable"):
        loading.check_model_available("someone/not-cached-model", what="diffusion model")
    assert time.perf_counter() - start < 2


def test_redact_removes_user_info_and_secret_query_values():
    assert hub_access.redact("see https://u:p@host/x?api_key=1&x=2&token=abc ok") == (
        "see https://***@host/x?api_key=***&x=2&token=*** ok"
    )
    assert hub_access.redact("http://host:8000/v1") == "http://host:8000/v1"
