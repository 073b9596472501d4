"""The Gradio Space (``examples/space/app.py``), served on localhost and called with ``gradio_client``.

gradio pins ``pillow<13`` and the project's environment may hold a newer Pillow, so the Space runs
in an environment of its own, ``.venv-space/`` at the repository root (git-ignored, built once and
reused): an empty venv whose ``.pth`` file appends this environment's site-packages after its own,
so torch, transformers and magicseg_hf are shared, not installed twice, and pip installs only what
gradio adds (gradio, gradio_client, fastapi, uvicorn, ..., Pillow < 13), which then shadows this
environment's copy there and nowhere else. Building it takes a few seconds and about 120 MB; the
test is skipped, saying so, only when pip cannot reach the package index.

The test builds a tiny model folder with a saved vocabulary, starts the app on a free port with
``MAGICSEG_MODEL`` pointing at it, and calls its ``/segment`` endpoint from a client script run in
the Space environment. It checks what a visitor sees: the overlay (the uploaded picture, exactly,
and one mask per class found, each tinted in the colour ``magicseg predict`` gives that class) and
the table (each class's area and score) — against the package's own prediction of the same image.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from filelock import FileLock
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "examples" / "space"
SPACE_ENV = REPO / ".venv-space"
VOCABULARY = ["cat", "dog", "grass"]
#: Seconds the app may take to start (torch, transformers and gradio imports on a busy CI core).
STARTUP_TIMEOUT = 240
#: Markers of pip output that mean "the package index could not be reached".
INDEX_UNREACHABLE = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Name or service not known",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ProxyError",
    "No matching distribution found",
    "Could not find a version that satisfies",
)

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# The Space environment
# ----------------------------------------------------------------------------------------------
def space_requirements() -> list[str]:
    """What the Space adds to this environment: requirements.txt without magicseg-hf, plus the client."""
    lines = (SPACE / "requirements.txt").read_text(encoding="utf-8").splitlines()
    requirements = [line.split("#")[0].strip() for line in lines]
    ours = ("magicseg-hf", "magicseg_hf")
    return [line for line in requirements if line and not line.lower().startswith(ours)] + ["gradio_client"]


def _site_dirs() -> list[str]:
    """This environment's site-packages folders (pure and platform), in order, once each."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def _pip(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _build_space_env(requirements: list[str]) -> None:
    """Create SPACE_ENV: an empty venv that sees this one's packages after its own, plus requirements."""
    shutil.rmtree(SPACE_ENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(SPACE_ENV)], check=True)
    python = SPACE_ENV / "bin" / "python"
    own_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    # site.addsitedir (not a bare path line) also runs the .pth files there: editable installs.
    lines = [f"import site; site.addsitedir({folder!r})" for folder in _site_dirs()]
    Path(own_site, "zz_magicseg_shared.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")
    install = _pip("--python", str(python), "install", "--timeout", "60", *requirements)
    if install.returncode != 0:
        output = install.stdout + install.stderr
        shutil.rmtree(SPACE_ENV, ignore_errors=True)
        with tempfile.TemporaryDirectory() as probe_dir:
            probe = _pip("download", "--no-deps", "--timeout", "30", "--dest", probe_dir, "gradio_client", timeout=120)
        reasons = [line.strip() for line in (probe.stdout + probe.stderr).splitlines()
                   if any(marker in line for marker in INDEX_UNREACHABLE)]  # fmt: skip
        if probe.returncode != 0 and reasons:
            pytest.skip(f"pip cannot reach the package index to install the Space's requirements: {reasons[-1]}")
        pytest.fail(f"installing the Space's requirements failed:\n{output[-3000:]}")
    # The two environments share numpy, huggingface_hub, pandas, ...: both sides' pins must still hold.
    check = _pip("--python", str(python), "check")
    if check.returncode != 0:
        shutil.rmtree(SPACE_ENV, ignore_errors=True)
        pytest.fail(f"the Space environment has conflicting requirements:\n{check.stdout}{check.stderr}")


@pytest.fixture(scope="session")
def space_python() -> Path:
    """The Python of the Space environment, built on first use and reused while its recipe holds."""
    requirements = space_requirements()
    # Rebuilt when the requirements or this environment change (pip's choices depend on both).
    installed = sorted(f"{dist.metadata['Name']}=={dist.version}" for dist in importlib.metadata.distributions())
    recipe = json.dumps(
        {"python": sys.version, "site": _site_dirs(), "requirements": requirements, "installed": installed}
    )
    key = hashlib.sha256(recipe.encode()).hexdigest()
    marker = SPACE_ENV / "magicseg-recipe.sha256"
    with FileLock(str(REPO / ".venv-space.lock")):
        if not (marker.is_file() and marker.read_text() == key):
            start = time.perf_counter()
            _build_space_env(requirements)
            marker.write_text(key)
            logger.warning("built %s in %.1f s", SPACE_ENV.name, time.perf_counter() - start)
    return SPACE_ENV / "bin" / "python"


# ----------------------------------------------------------------------------------------------
# The model and the running app
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIPForOpenSegmentation saved with its processor and the vocabulary cat, dog, grass."""
    from magicseg_hf.loading import build_open_seg

    model, processor = build_open_seg("tiny", seed=0)
    model.set_vocabulary(VOCABULARY)
    folder = tmp_path_factory.mktemp("space_model")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _space_environ(tmp: Path, **extra: str) -> dict[str, str]:
    environ = dict(os.environ)
    environ.update(
        HF_HUB_OFFLINE="1",
        GRADIO_ANALYTICS_ENABLED="False",
        GRADIO_TEMP_DIR=str(tmp / "gradio"),
        OMP_NUM_THREADS="1",
        **extra,
    )
    return environ


@pytest.fixture(scope="module")
def space_url(space_python: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start examples/space/app.py on a free localhost port; its URL once it answers."""
    tmp = tmp_path_factory.mktemp("space_run")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    environ = _space_environ(
        tmp, MAGICSEG_MODEL=str(model_dir), GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port)
    )
    log = (tmp / "app.log").open("w")
    process = subprocess.Popen(
        [str(space_python), str(SPACE / "app.py")], cwd=tmp, env=environ, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"the Space exited with status {process.returncode}:\n{(tmp / 'app.log').read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the Space did not answer within {STARTUP_TIMEOUT} s:\n{(tmp / 'app.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# The client runs in the Space environment (gradio_client is installed there, not here). It makes
# each call, copies the returned files into its output folder and writes the answers as JSON.
CLIENT = textwrap.dedent(
    """
    import json, sys
    from gradio_client import Client, handle_file

    url, calls_file, out_dir = sys.argv[1:]
    client = Client(url, verbose=False, download_files=out_dir)
    answers = []
    for call in json.load(open(calls_file)):
        image = handle_file(call["image"]) if call["image"] else None
        try:
            overlay, table = client.predict(
                image, call["classes"], call["threshold"], call.get("decision", "threshold"), api_name="/segment"
            )
        except Exception as error:
            answers.append({"error": f"{type(error).__name__}: {error}"})
            continue
        answers.append({"overlay": overlay, "table": table})
    json.dump(answers, open(out_dir + "/answers.json", "w"))
    """
)


def call_space(space_python: Path, url: str, calls: list[dict[str, Any]], tmp: Path) -> list[dict[str, Any]]:
    """Each call's answer from the running Space: {"overlay", "table"} or {"error"}."""
    calls_file = tmp / "calls.json"
    calls_file.write_text(json.dumps(calls))
    out = tmp / "answers"
    out.mkdir()
    done = subprocess.run(
        [str(space_python), "-c", CLIENT, url, str(calls_file), str(out)],
        env=_space_environ(tmp), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "answers.json").read_text())


# ----------------------------------------------------------------------------------------------
# The test
# ----------------------------------------------------------------------------------------------
def _picture(width: int, height: int) -> Image.Image:
    """A mid-grey picture with a random texture: far from every class colour, so a tint shows."""
    rng = np.random.default_rng(7)
    pixels = 110 + rng.integers(0, 30, size=(height, width, 3))
    return Image.fromarray(pixels.astype(np.uint8))


def _overlay_value(overlay: dict[str, Any]) -> dict[str, Any]:
    """The AnnotatedImage's value, whether the app returned it plainly or as a component update."""
    return overlay["value"] if "value" in overlay else overlay


def test_space_segments_an_upload_like_the_package(space_python: Path, space_url: str, model_dir: Path, tmp_path: Path):
    from magicseg_hf.loading import load_open_seg
    from magicseg_hf.predict import predict_images
    from magicseg_hf.visualization import class_color

    picture = _picture(96, 64)  # not square: the overlay must keep the upload's size
    upload = tmp_path / "upload.png"
    picture.save(upload)
    model, processor = load_open_seg(str(model_dir))
    # A threshold that some pixels clear and others do not: the mean score of the largest class.
    [unthresholded] = predict_images(model, processor, [picture], ["dog", "grass", "cat"], decision="argmax")
    threshold = round(unthresholded.segments[0].score, 4)
    calls = [
        {"image": str(upload), "classes": "cat, dog", "threshold": 0.0},
        {"image": str(upload), "classes": "", "threshold": 0.0},  # empty: the model's vocabulary
        {"image": str(upload), "classes": "dog\ngrass, cat,dog", "threshold": threshold},
        {"image": None, "classes": "cat", "threshold": 0.0},
    ]
    answers = call_space(space_python, space_url, calls, tmp_path)

    expected_classes = [["cat", "dog"], VOCABULARY, ["dog", "grass", "cat"]]
    for call, classes, answer in zip(calls, expected_classes, answers):
        assert "error" not in answer, answer
        [expected] = predict_images(model, processor, [picture], classes, threshold=call["threshold"])
        value = _overlay_value(answer["overlay"])
        shown = Image.open(value["image"])
        assert shown.size == (96, 64)
        assert np.array_equal(np.asarray(shown.convert("RGB")), np.asarray(picture)), "the upload is shown as is"

        # One mask per class found, as the package found them, tinted in the class's overlay colour.
        labels = [annotation["label"] for annotation in value["annotations"]]
        assert labels == [segment.label for segment in expected.segments]
        assert labels, "a tiny model still assigns its pixels to some class"
        composite = Image.new("RGBA", shown.size)
        composite.paste(shown.convert("RGBA"))
        covered = np.zeros((64, 96), dtype=bool)
        for annotation in value["annotations"]:
            mask = Image.open(annotation["image"])
            assert mask.mode == "RGBA" and mask.size == (96, 64)
            rgba = np.asarray(mask)
            drawn = rgba[..., 3] > 0
            assert np.array_equal(drawn, expected.mask(annotation["label"]))
            assert not (covered & drawn).any(), "masks do not overlap"
            covered |= drawn
            color = class_color(classes.index(annotation["label"]) + 1)
            assert (rgba[drawn][:, :3] == color).all()
            composite = Image.alpha_composite(composite, mask)
        # What the browser shows: labelled pixels move towards their class colour, the rest do not move.
        seen = np.asarray(composite.convert("RGB")).astype(int)
        original = np.asarray(picture).astype(int)
        assert np.array_equal(seen[~covered], original[~covered])
        assert (np.abs(seen[covered] - original[covered]).sum(axis=-1) > 30).all()
        if call["threshold"] == 0.0:
            assert covered.all(), "at threshold 0 every pixel gets a class"
        else:
            assert 0 < covered.sum() < covered.size, "with a threshold some pixels get no class"

        # The table: class, area in percent, score; the areas are those of the masks.
        table = answer["table"]
        assert table["headers"] == ["class", "area %", "score"]
        assert [row[0] for row in table["data"]] == labels
        for (name, area, score), segment in zip(table["data"], expected.segments):
            assert isinstance(area, float) and isinstance(score, float), "numbers, not text"
            assert area == pytest.approx(100 * segment.area, abs=0.006)
            assert area == pytest.approx(100 * expected.mask(name).mean(), abs=0.006)
            assert score == pytest.approx(segment.score, abs=0.0006)
            assert 0.0 <= score <= 1.0
        if call["threshold"] == 0.0:
            assert sum(row[1] for row in table["data"]) == pytest.approx(100.0, abs=0.05)

    assert "upload an image" in answers[3]["error"]


def test_space_refuses_an_upload_over_its_cap(space_python: Path, space_url: str, tmp_path: Path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(21 * 1024 * 1024))  # over MAX_UPLOAD_SIZE (20 MB)
    [answer] = call_space(space_python, space_url, [{"image": str(big), "classes": "cat", "threshold": 0.5}], tmp_path)
    assert "error" in answer and ("413" in answer["error"] or "size" in answer["error"].lower()), answer


def test_space_slider_starts_at_the_models_default_threshold(space_url: str):
    """A visitor who changes nothing gets the pipeline's default answer: threshold 0.5."""
    from magicseg_hf.modeling import DEFAULT_THRESHOLD

    with urllib.request.urlopen(f"{space_url.rstrip('/')}/config", timeout=30) as response:
        config = json.loads(response.read())
    sliders = [c["props"] for c in config["components"] if c.get("type") == "slider"]
    assert [slider["value"] for slider in sliders] == [DEFAULT_THRESHOLD]


def test_space_refuses_a_folder_that_is_not_a_model(space_python: Path, tmp_path: Path):
    (tmp_path / "notes.txt").write_text("not a model")
    environ = _space_environ(tmp_path, MAGICSEG_MODEL=str(tmp_path))
    done = subprocess.run(
        [str(space_python), str(SPACE / "app.py")], env=environ, capture_output=True, text=True, timeout=STARTUP_TIMEOUT
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == f"magicseg space: error: MAGICSEG_MODEL={tmp_path}: no config.json (not a saved model folder)"
    assert "Traceback" not in done.stderr


def test_space_answers_as_the_pipeline_under_each_rule(space_python: Path, space_url: str, model_dir: Path, tmp_path: Path):
    """The Space's endpoint and `pipeline("open-vocabulary-segmentation")` give the same masks for the same
    uploads (wide, tall, smaller than a window), with each decision rule."""
    from transformers import pipeline

    import magicseg_hf  # noqa: F401  (registers the task)

    segmenter = pipeline("open-vocabulary-segmentation", model=str(model_dir))
    uploads = []
    for width, height in ((96, 64), (50, 120), (40, 30)):
        uploads.append(tmp_path / f"upload-{width}x{height}.png")
        _picture(width, height).save(uploads[-1])
    settings = {"threshold": {"threshold": 0.5}, "background-class": {"decision": "background-class"},
                "argmax": {"decision": "argmax"}}
    calls = [{"image": str(upload), "classes": "", "threshold": 0.5, "decision": rule}
             for rule in settings for upload in uploads]  # fmt: skip
    answers = call_space(space_python, space_url, calls, tmp_path)
    for call, answer in zip(calls, answers):
        assert "error" not in answer, answer
        expected = segmenter(call["image"], **settings[call["decision"]])
        value = _overlay_value(answer["overlay"])
        shown = {annotation["label"]: np.asarray(Image.open(annotation["image"]))[..., 3] > 0
                 for annotation in value["annotations"]}  # fmt: skip
        assert sorted(shown) == sorted(segment["label"] for segment in expected), call
        for segment in expected:
            assert np.array_equal(shown[segment["label"]], np.array(segment["mask"]) > 0), call
