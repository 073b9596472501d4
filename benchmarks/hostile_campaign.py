"""A hostile user's campaign against train / evaluate / predict / demo / push, on the tiny preset.

Not a speed benchmark: it measures how many bad inputs are answered as the project promises.

- **CLI bad inputs** (``bad``): promised = exit status 2, exactly one line on stderr
  (``magicseg VERB: error: ...``), nothing on stdout, no traceback, and no file created, changed or
  removed. ``noise`` = the right line, but other lines before it. ``valid`` edge inputs must exit 0.
- **Python-API cases**: clear = a ``ValueError``/``TypeError``/``MagicSegError`` (or a subclass)
  whose message names the parameter or value; not clear = any other exception, a message that does
  not say what was wrong, or no exception where one was due.
- **Kill scenarios**: SIGKILL at a chosen point (a patch in the forked command kills it there), then
  the documented way on (resume, or a rerun), compared with a straight run: weights bit-identical
  and records (``training_summary.json``, logged losses, results files) equal, no temporary left.

Each CLI case runs in a child forked from one process that has imported the command's modules, with
its stdout/stderr on files as a terminal would get them. Offline (``HF_HUB_OFFLINE=1``).

    python benchmarks/hostile_campaign.py [--out DIR] [--only train,evaluate,...]

Writes ``DIR/hostile_campaign.json`` (every case and its outcome) and prints the counts.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

VOCABULARY = ["cat", "dog", "bird", "car"]
FAST = ["--preset", "tiny", "--num-classes", "4", "--validation-size", "0", "--logging_steps", "1",
        "--per_device_train_batch_size", "2", "--seed", "3", "--max_steps", "2"]
TINY_PROTOCOL = ["--protocol", "sclip", "--short-side", "48", "--window", "32", "--stride", "16"]
CASE_TIMEOUT = 240.0


# ---- fixtures ------------------------------------------------------------------------------------
def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (its data is one byte): enough to trip a pixel cap."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def build_fixtures(work: Path) -> dict[str, Path]:
    """The dataset, model, benchmark and pictures the cases use (the model trained in a subprocess,
    so the forking parent has done no torch work)."""
    import numpy as np
    from helpers import write_dataset_folder
    from PIL import Image
    from test_evaluation_benchmarks import make_voc

    paths = {"ds": work / "ds", "model": work / "model", "voc": work / "voc", "img": work / "pictures"}
    write_dataset_folder(paths["ds"], num_rows=8, vocabulary=VOCABULARY, size=(64, 64))
    subprocess.run([sys.executable, "-m", "magicseg_hf", "train", "--dataset", str(paths["ds"]), "--output-dir",
                    str(paths["model"]), *FAST, "--save_steps", "1"], check=True, capture_output=True)
    make_voc(paths["voc"])
    pictures = paths["img"]
    pictures.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(pictures / "good.png")
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8), "L").convert("P").save(pictures / "palette.png")
    Image.fromarray(rng.integers(0, 65535, (48, 48), dtype=np.uint16)).save(pictures / "sixteen.png")
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).convert("CMYK").save(pictures / "cmyk.jpg")
    Image.new("RGBA", (50, 30), (200, 10, 10, 128)).save(pictures / "rgba.png")
    (pictures / "text.png").write_text("not a picture")
    (pictures / "empty.png").write_bytes(b"")
    (pictures / "bomb.png").write_bytes(_png_claiming(30_000, 30_000))
    good = (pictures / "good.png").read_bytes()
    (pictures / "cut.png").write_bytes(good[: len(good) // 3])
    (pictures / "folder.png").mkdir()
    return paths


# ---- running a command in a forked child ----------------------------------------------------------
def run_forked(argv: list[str], env: dict[str, str] | None = None, patch: Callable[[], None] | None = None,
               timeout: float = CASE_TIMEOUT) -> tuple[int, str, str]:
    """``magicseg *argv`` in a forked child as the console script runs it: (exit status, stdout, stderr).
    A child killed by a signal gives ``-signal``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # the child: the command, its output on the two files
            code = 1
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), line_buffering=True)
                sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), line_buffering=True)
                sys.__stderr__ = sys.stderr
                os.environ.update(env or {})
                from magicseg_hf import cli, console

                sys.excepthook = console.redacting_excepthook
                if patch is not None:
                    patch()
                try:
                    code = cli.main(argv)
                except SystemExit as exit_:
                    code = exit_.code if isinstance(exit_.code, int) else 1
                except BaseException:  # noqa: BLE001 - a bug: printed as the console script would
                    console.redacting_excepthook(*sys.exc_info())
                    code = 1
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = -1
                break
            time.sleep(0.05)
        code = os.waitstatus_to_exitcode(status) if status != -1 else -999
        out.seek(0)
        err.seek(0)
        return code, out.read().decode(errors="replace"), err.read().decode(errors="replace")


def tree_digest(*folders: Path) -> str:
    """Names, sizes and contents of every file under ``folders`` (what "nothing written" compares)."""
    digest = hashlib.sha256()
    for folder in folders:
        if not folder.exists():
            digest.update(f"absent:{folder}".encode())
            continue
        for path in sorted(folder.rglob("*")):
            digest.update(str(path.relative_to(folder)).encode())
            if path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


# ---- CLI cases -------------------------------------------------------------------------------------
@dataclass
class Case:
    """One command line: ``bad`` must be refused as promised, ``valid`` must succeed."""

    name: str
    argv: list[str]
    kind: str = "bad"
    needle: str = ""
    setup: Callable[[Path, dict[str, Path]], None] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def verb(self) -> str:
        return self.argv[0]


def _with_file(name: str, text: str) -> Callable[[Path, dict[str, Path]], None]:
    def setup(case_dir: Path, paths: dict[str, Path]) -> None:
        (case_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (case_dir / name).write_text(text)
    return setup


def _copy(what: str, to: str, damage: Callable[[Path], None] | None = None) -> Callable[[Path, dict[str, Path]], None]:
    def setup(case_dir: Path, paths: dict[str, Path]) -> None:
        shutil.copytree(paths[what], case_dir / to)
        if damage is not None:
            damage(case_dir / to)
    return setup


def _truncate_shard(folder: Path) -> None:
    shard = sorted((folder / "data").glob("*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[:200])


def _break_checkpoint(part: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        target = run / "checkpoint-2" / part
        if part == "trainer_state.json":
            target.write_text("{not json")
        else:
            target.write_bytes(target.read_bytes()[:100])
    return damage


def _voc_damage(kind: str) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        import numpy as np
        from PIL import Image

        voc = root / "VOCdevkit" / "VOC2012"
        if kind == "grey":
            path = voc / "SegmentationClass" / "2007_000039.png"
            label = np.array(Image.open(path))
            label[label == 20] = 100
            Image.fromarray(label, "L").save(path)
        elif kind == "jpeg":
            path = voc / "JPEGImages" / "2007_000039.jpg"
            path.write_bytes(path.read_bytes()[:200])
        elif kind == "split":
            (voc / "ImageSets" / "Segmentation" / "val.txt").write_bytes(bytes(range(256)))
        elif kind == "ignore":
            for path in (voc / "SegmentationClass").glob("*.png"):
                Image.fromarray(np.full(np.array(Image.open(path)).shape, 255, np.uint8), "L").save(path)
    return damage


def cli_cases() -> list[Case]:
    """The campaign's command lines ({ds}, {model}, {voc}, {img}: fixtures; {dir}: the case's folder)."""
    train = ["train", "--dataset", "{ds}", "--output-dir", "{dir}/run", *FAST]
    cases = [Case(f"train-{name}", [*train, *flags], needle=needle) for name, flags, needle in [
        ("lr-negative", ["--learning_rate", "-1"], "--learning_rate"),
        ("lr-nan", ["--learning_rate", "nan"], "--learning_rate"),
        ("lr-inf", ["--learning_rate", "inf"], "--learning_rate"),
        ("lr-exponent-negative", ["--learning_rate", "-1e-4"], "--learning_rate"),
        ("batch-0", ["--per_device_train_batch_size", "0"], "--per_device_train_batch_size"),
        ("batch-negative", ["--per_device_train_batch_size", "-2"], "--per_device_train_batch_size"),
        ("accumulation-0", ["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps"),
        ("workers-negative", ["--dataloader_num_workers", "-1"], "--dataloader_num_workers"),
        ("report-to-wandb", ["--report_to", "wandb"], "wandb"),
        ("eval-strategy-unknown", ["--eval_strategy", "sometimes"], "eval_strategy"),
        ("scheduler-unknown", ["--lr_scheduler_type", "zigzag"], "lr_scheduler_type"),
        ("epochs-and-steps-0", ["--max_steps", "0", "--num_train_epochs", "0"], ""),
        ("epochs-negative", ["--max_steps", "-1", "--num_train_epochs", "-1"], "--num_train_epochs"),
        ("validation-negative", ["--validation-size", "-1"], "--validation-size"),
        ("validation-nan", ["--validation-size", "nan"], "--validation-size"),
        ("validation-all-rows", ["--validation-size", "100"], "--validation-size"),
        ("num-classes-0", ["--num-classes", "0"], "--num-classes"),
        ("num-classes-255", ["--num-classes", "255"], "--num-classes"),
        ("lora-rank-0", ["--lora-rank", "0"], "--lora-rank"),
        ("cf-weight-negative", ["--counterfactual-loss-weight", "-1"], "--counterfactual-loss-weight"),
        ("cf-weight-nan", ["--counterfactual-loss-weight", "nan"], "--counterfactual-loss-weight"),
        ("weight-decay-nan", ["--weight_decay", "nan"], "--weight_decay"),
        ("warmup-negative", ["--warmup_steps", "-5"], "warmup_steps"),
        ("logging-steps-0", ["--logging_steps", "0"], "--logging_steps"),
        ("save-steps-0", ["--save_steps", "0"], "--save_steps"),
        ("max-grad-norm-nan", ["--max_grad_norm", "nan"], "--max_grad_norm"),
        ("unknown-flag", ["--learnin_rate", "1e-3"], "learnin_rate"),
        ("preset-unknown", ["--preset", "huge"], "--preset"),
        ("model-missing", ["--model", "{dir}/no-model"], "no-model"),
        ("vocabulary-unknown", ["--vocabulary", "nope"], "nope"),
        ("resume-missing", ["--resume_from_checkpoint", "{dir}/nowhere"], "--resume_from_checkpoint"),
        ("streaming-without-max-steps", ["--streaming", "--max_steps", "-1"], "--max_steps"),
    ]]
    cases += [
        Case("train-dataset-missing", ["train", "--dataset", "{dir}/nowhere", "--output-dir", "{dir}/run", *FAST],
             needle="nowhere"),
        Case("train-dataset-a-file", ["train", "--dataset", "{dir}/file.txt", "--output-dir", "{dir}/run", *FAST],
             setup=_with_file("file.txt", "hello")),
        Case("train-dataset-not-magicseg", ["train", "--dataset", "{dir}/other", "--output-dir", "{dir}/run", *FAST],
             setup=_with_file("other/data.csv", "a,b\n1,2\n")),
        Case("train-dataset-truncated-shard", ["train", "--dataset", "{dir}/ds", "--output-dir", "{dir}/run", *FAST],
             setup=_copy("ds", "ds", _truncate_shard), needle="parquet"),
        Case("train-output-holds-files", [*train], setup=_with_file("run/notes.txt", "mine"), needle="--output-dir"),
        Case("train-output-in-proc", ["train", "--dataset", "{ds}", "--output-dir", "/proc/magicseg-run", *FAST]),
        Case("train-resume-truncated-weights", [*train, "--resume_from_checkpoint", "{dir}/run/checkpoint-2"],
             setup=_copy("model", "run", _break_checkpoint("model.safetensors")), needle="checkpoint-2"),
        Case("train-resume-garbage-state", [*train, "--resume_from_checkpoint", "{dir}/run/checkpoint-2"],
             setup=_copy("model", "run", _break_checkpoint("trainer_state.json")), needle="checkpoint-2"),
        Case("train-resume-run-without-checkpoint", [*train, "--resume_from_checkpoint", "{dir}/run"],
             setup=_with_file("run/notes.txt", "mine"), needle="no complete checkpoint"),
    ]

    evaluate = ["evaluate", "--model", "{model}", "--output", "{dir}/out/results.json", *TINY_PROTOCOL]
    voc = ["--benchmark", "voc21", "--data-dir", "{voc}"]
    cases += [Case(f"evaluate-{name}", [*evaluate, *flags], needle=needle) for name, flags, needle in [
        ("data-missing", ["--benchmark", "voc21", "--data-dir", "{dir}/nowhere"], "nowhere"),
        ("benchmark-unknown", ["--benchmark", "ade20k", "--data-dir", "{voc}"], "ade20k"),
        ("protocol-unknown", [*voc, "--protocol", "mmseg"], "mmseg"),
        ("method-unknown", [*voc, "--method", "dinov2"], "dinov2"),
        ("window-not-patch-multiple", [*voc, "--window", "30"], "30"),
        ("stride-over-window", [*voc, "--stride", "64"], "stride"),
        ("stride-0", [*voc, "--stride", "0"], "stride"),
        ("batch-0", [*voc, "--batch-size", "0"], "--batch-size"),
        ("threshold-2", [*voc, "--threshold", "2"], "threshold"),
        ("threshold-nan", [*voc, "--threshold", "nan"], "threshold"),
        ("argmax-with-threshold", [*voc, "--decision", "argmax", "--threshold", "0.3"], "argmax"),
        ("window-over-short-side", [*voc, "--window", "64"], "window"),
        ("class-names-unknown", [*voc, "--class-names", "mine"], "class_names"),
        ("limit-0", [*voc, "--limit", "0"], "--limit"),
        ("limit-negative", [*voc, "--limit", "-1"], "--limit"),
        ("overlays-negative", [*voc, "--overlays", "-1"], "--overlays"),
        ("short-side-0", [*voc, "--short-side", "0"], "short"),
        ("area-threshold-negative", [*voc, "--area-threshold", "-0.5"], "area"),
        ("split-unknown", [*voc, "--split", "nosuchsplit"], "nosuchsplit"),
        ("output-in-proc", [*voc, "--output", "/proc/results.json"], "/proc"),
        ("model-missing", [*voc, "--model", "{dir}/no-model"], "no-model"),
        ("model-is-a-dataset", [*voc, "--model", "{ds}"], ""),
        ("update-card-hub-model", [*voc, "--model", "org/model", "--update-card"], "--update-card"),
        ("context-on-voc-layout", ["--benchmark", "context60", "--data-dir", "{voc}"], "Context"),
    ]]
    cases += [
        Case("evaluate-output-is-a-folder", [*evaluate, *voc, "--output", "{dir}/folder"],
             setup=_with_file("folder/keep.txt", "x")),
        Case("evaluate-grey-label", [*evaluate, "--benchmark", "voc21", "--data-dir", "{dir}/voc"],
             setup=_copy("voc", "voc", _voc_damage("grey")), needle="100"),
        Case("evaluate-truncated-jpeg", [*evaluate, "--benchmark", "voc21", "--data-dir", "{dir}/voc"],
             setup=_copy("voc", "voc", _voc_damage("jpeg")), needle="2007_000039.jpg"),
        Case("evaluate-binary-split-list", [*evaluate, "--benchmark", "voc21", "--data-dir", "{dir}/voc"],
             setup=_copy("voc", "voc", _voc_damage("split")), needle="val.txt"),
        Case("evaluate-no-labelled-pixel", [*evaluate, "--benchmark", "voc21", "--data-dir", "{dir}/voc"],
             setup=_copy("voc", "voc", _voc_damage("ignore")), needle="no labelled pixel"),
    ]

    predict = ["predict", "--model", "{model}", "--image", "{img}/good.png"]
    cases += [Case(f"predict-{name}", [*predict, *flags], needle=needle) for name, flags, needle in [
        ("threshold-2", ["--threshold", "2"], "threshold"),
        ("threshold-negative", ["--threshold", "-0.1"], "threshold"),
        ("threshold-nan", ["--threshold", "nan"], "threshold"),
        ("batch-0", ["--batch-size", "0"], "--batch-size"),
        ("classes-empty", ["--classes", ""], "class"),
        ("classes-duplicate", ["--classes", "cat", "cat"], "cat"),
        ("decision-unknown", ["--decision", "vote"], "vote"),
        ("background-with-threshold-rule", ["--background-classes", "sky"], "background"),
        ("argmax-with-threshold", ["--decision", "argmax", "--threshold", "0.4"], "argmax"),
        ("json-in-proc", ["--json", "/proc/segments.json"], "/proc"),
        ("json-is-a-folder", ["--json", "{img}"], "--json"),
        ("output-with-two-images", ["--image", "{img}/good.png", "{img}/palette.png", "--output", "{dir}/o.png"],
         "--output"),
        ("device-unknown", ["--device", "tpu"], "tpu"),
        ("model-missing", ["--model", "{dir}/no-model"], "no-model"),
        ("model-is-a-dataset", ["--model", "{ds}"], ""),
    ]]
    cases += [Case(f"predict-image-{name}", ["predict", "--model", "{model}", "--image", f"{{img}}/{file}"],
                   needle=file) for name, file in [
        ("missing", "nothing.png"), ("text", "text.png"), ("empty", "empty.png"), ("truncated", "cut.png"),
        ("bomb", "bomb.png"), ("folder", "folder.png"),
    ]]
    cases += [Case(f"predict-valid-{name}", ["predict", "--model", "{model}", "--image", f"{{img}}/{file}",
                                             "--json", "{dir}/s.json"], kind="valid")
              for name, file in [("palette", "palette.png"), ("16-bit", "sixteen.png"), ("cmyk", "cmyk.jpg"),
                                 ("rgba", "rgba.png")]]
    cases += [
        Case("predict-valid-argmax-classes", [*predict, "--classes", "cat", "dog", "--decision", "argmax"],
             kind="valid"),
        Case("evaluate-valid-limit-1", [*evaluate, *voc, "--limit", "1"], kind="valid"),
        Case("train-valid-no-validation", [*train], kind="valid"),
        Case("train-valid-resume-true", [*train, "--resume_from_checkpoint", "true"], kind="valid",
             setup=_copy("model", "run")),
    ]

    demo = ["demo", "--output-dir", "{dir}/demo"]
    user_folder = _with_file("demo/thesis.txt", "my thesis")
    cases += [
        Case("demo-overwrite-bad-train-pairs", [*demo, "--overwrite", "--train-pairs", "1"], setup=user_folder),
        Case("demo-overwrite-max-steps-0", [*demo, "--overwrite", "--max-steps", "0"], setup=user_folder),
        Case("demo-overwrite-classes-empty", [*demo, "--overwrite", "--classes", ""], setup=user_folder),
        Case("demo-overwrite-a-user-folder", [*demo, "--overwrite"], setup=user_folder, needle="demo"),
        Case("demo-output-holds-files", [*demo], setup=user_folder, needle="--output-dir"),
        Case("demo-output-in-proc", ["demo", "--output-dir", "/proc/magicseg-demo"], needle="/proc"),
        Case("demo-heldout-0", [*demo, "--heldout-pairs", "0"], needle="--heldout-pairs"),
        Case("demo-classes-duplicate", [*demo, "--classes", "cat", "cat"], needle="cat"),
    ]

    secrets = {"HF_TOKEN": "hf_campaignSecret123456", "HF_ENDPOINT": "https://bob:hunter2pass@127.0.0.1:9"}
    cases += [
        Case("push-offline-model", ["push", "{model}", "--repo-id", "user/model"], needle="offline"),
        Case("push-folder-missing", ["push", "{dir}/nowhere", "--repo-id", "user/model"], needle="nowhere"),
        Case("push-bad-repo-id", ["push", "{model}", "--repo-id", "a/b/c"], needle="a/b/c"),
        Case("push-not-a-folder-we-know", ["push", "{dir}/other", "--repo-id", "user/x"],
             setup=_with_file("other/file.txt", "x")),
        Case("push-unreachable-endpoint-with-credentials", ["push", "{model}", "--repo-id", "user/model"],
             env={**secrets, "HF_HUB_OFFLINE": "0"}),
    ]
    return cases


SECRET_TEXTS = ("hf_campaignSecret123456", "hunter2pass", "bob:")


def run_cli_case(case: Case, paths: dict[str, Path], work: Path) -> dict[str, Any]:
    case_dir = work / "cases" / case.name
    case_dir.mkdir(parents=True)
    if case.setup is not None:
        case.setup(case_dir, paths)
    argv = [word.format(dir=case_dir, **paths) for word in case.argv]
    watched = [paths["ds"], paths["model"], paths["voc"], paths["img"], case_dir]
    before = tree_digest(*watched)
    start = time.perf_counter()
    code, out, err = run_forked(argv, env=case.env)
    seconds = time.perf_counter() - start
    lines = err.splitlines()
    leaked = [text for text in SECRET_TEXTS if text in out + err]
    outcome = "not"
    if case.kind == "valid":
        outcome = "promised" if code == 0 and "Traceback" not in err and not leaked else "not"
    elif code == 2 and "Traceback" not in err and not leaked and lines \
            and lines[-1].startswith(f"magicseg {case.verb}: error: ") and case.needle.lower() in lines[-1].lower():
        unchanged = tree_digest(*watched) == before
        if len(lines) == 1 and not out and unchanged:
            outcome = "promised"
        elif unchanged:
            outcome = "noise"
    return {"name": case.name, "verb": case.verb, "kind": case.kind, "outcome": outcome, "exit": code,
            "stderr_lines": len(lines), "last_line": lines[-1][:300] if lines else "", "stdout": out[:200],
            "leaked": leaked, "seconds": round(seconds, 1)}


# ---- Python-API cases -----------------------------------------------------------------------------
def api_cases(paths: dict[str, Path]) -> list[tuple[str, Callable[[], Any], str | None]]:
    """(name, call, text the error message must hold; None: the call must succeed)."""
    from PIL import Image

    from magicseg_hf.loading import build_open_seg, load_open_seg
    from magicseg_hf.predict import predict_images
    from magicseg_hf.training.collator import MagicSegCollator
    from magicseg_hf.training.data import load_training_data

    model, processor = load_open_seg(str(paths["model"]))
    image = Image.open(paths["img"] / "good.png").convert("RGB")

    def pipe(**kwargs: Any) -> Any:
        from transformers import pipeline

        return pipeline("open-vocabulary-segmentation", model=str(paths["model"]))(image, **kwargs)

    def evaluation_config(**kwargs: Any) -> Any:
        from magicseg_hf.evaluation.run import EvaluationConfig

        return EvaluationConfig(model=str(paths["model"]), benchmark="voc21", output="x.json", **kwargs)

    def collator(**kwargs: Any) -> Any:
        embeds = model.encode_classes(VOCABULARY).detach()
        return MagicSegCollator(processor, kwargs.pop("vocabulary", VOCABULARY), embeds, **kwargs)

    def builder(**kwargs: Any) -> Any:
        from magicseg_hf.dataset_builders.magicseg import MagicSeg

        return MagicSeg(cache_dir=tempfile.mkdtemp(), classes=["cat"], num_pairs=1, preset="tiny", **kwargs)

    def generation(**kwargs: Any) -> Any:
        from magicseg_hf.generation import GenerationConfig

        return GenerationConfig(**{"classes": ["cat"], "num_pairs": 1, "preset": "tiny", **kwargs}).resolved()

    return [
        ("pipeline-threshold-5", lambda: pipe(threshold=5), "threshold"),
        ("pipeline-threshold-negative", lambda: pipe(threshold=-1), "threshold"),
        ("pipeline-stride-0", lambda: pipe(stride=0), "stride"),
        ("pipeline-crop-size-negative", lambda: pipe(crop_size=-1), "crop_size"),
        ("pipeline-decision-unknown", lambda: pipe(decision="vote"), "vote"),
        ("pipeline-classes-empty", lambda: pipe(candidate_labels=[]), "class"),
        ("predict-0x0-image", lambda: predict_images(model, processor, [Image.new("RGB", (0, 0))], ["cat"]), "0x0"),
        ("predict-threshold-string", lambda: predict_images(model, processor, [image], ["cat"], threshold="0.5"),
         "threshold"),
        ("predict-batch-fraction", lambda: predict_images(model, processor, [image], ["cat"], batch_size=1.5),
         "batch_size"),
        ("predict-batch-0", lambda: predict_images(model, processor, [image], ["cat"], batch_size=0), "batch_size"),
        ("predict-not-an-image", lambda: predict_images(model, processor, ["good.png"], ["cat"]), "image"),
        ("predict-classes-a-string-is-one-class", lambda: _expect(
            [p.classes for p in predict_images(model, processor, [image], "cat")] == [["cat"]]), None),
        ("predict-decision-unknown", lambda: predict_images(model, processor, [image], ["cat"], decision="x"), "x"),
        ("training-data-missing", lambda: load_training_data([str(paths["img"] / "none")]), "none"),
        ("training-data-empty-list", lambda: load_training_data([]), "dataset"),
        ("training-data-validation-all", lambda: load_training_data(str(paths["ds"]), validation_size=8),
         "validation"),
        ("training-data-vocabulary-unknown", lambda: load_training_data(str(paths["ds"]), vocabulary="nope"), "nope"),
        ("collator-num-classes-255", lambda: collator(num_classes=255), "num_classes"),
        ("collator-empty-vocabulary", lambda: collator(vocabulary=[]), "vocabulary"),
        ("collator-duplicate-vocabulary", lambda: collator(vocabulary=["cat", "cat", "dog", "car"]), "twice"),
        ("evaluation-device-tpu", lambda: evaluation_config(device="tpu"), "tpu"),
        ("evaluation-dtype-int8", lambda: evaluation_config(dtype="int8"), "int8"),
        ("evaluation-method-unknown", lambda: evaluation_config(method="dinov2"), "dinov2"),
        ("build-preset-unknown", lambda: build_open_seg("huge"), "huge"),
        ("load-model-missing", lambda: load_open_seg(str(paths["img"] / "none")), "none"),
        ("load-model-a-dataset", lambda: load_open_seg(str(paths["ds"])), "config"),
        ("builder-config-name-unknown", lambda: builder(config_name="tiny"), "tiny"),
        ("builder-num-pairs-0", lambda: builder(num_pairs=0), "num"),
        ("generation-num-pairs-negative", lambda: generation(num_pairs=-1), "num"),
        ("generation-classes-empty", lambda: generation(classes=[]), "class"),
        ("generation-guidance-nan", lambda: generation(guidance_scale=float("nan")), "guidance"),
        ("generation-preset-unknown", lambda: generation(preset="huge"), "huge"),
        ("encode-classes-empty", lambda: model.encode_classes([]), "class"),
        ("set-vocabulary-duplicate", lambda: model.set_vocabulary(["cat", "cat"]), "cat"),
    ]


def _expect(condition: bool) -> None:
    if not condition:
        raise AssertionError("wrong result")


def run_api_case(name: str, call: Callable[[], Any], needle: str | None) -> dict[str, Any]:
    """``needle`` None: the call must succeed (a valid edge input)."""
    from magicseg_hf.errors import MagicSegError

    if needle is None:
        try:
            call()
        except Exception as error:  # noqa: BLE001 - the finding
            return {"name": name, "outcome": "unclear", "error": f"{type(error).__name__}: {str(error)[:200]}"}
        return {"name": name, "outcome": "clear", "error": ""}
    try:
        call()
    except (ValueError, TypeError, MagicSegError) as error:
        message = str(error).splitlines()[0] if str(error) else ""
        clear = needle.lower() in message.lower() and type(error).__name__ not in ("JSONDecodeError",)
        return {"name": name, "outcome": "clear" if clear else "unclear", "error": f"{type(error).__name__}: {message[:200]}"}
    except Exception as error:  # noqa: BLE001 - the finding
        return {"name": name, "outcome": "unclear", "error": f"{type(error).__name__}: {str(error)[:200]}"}
    return {"name": name, "outcome": "unclear", "error": "no error raised"}


# ---- kill scenarios -------------------------------------------------------------------------------
def _kill_when(target: Any, attribute: str, condition: Callable[..., bool]) -> Callable[[], None]:
    """A patch: ``target.attribute`` SIGKILLs the process when ``condition(*args, **kwargs)`` holds."""
    def patch() -> None:
        original = getattr(target, attribute)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if condition(*args, **kwargs):
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)

        setattr(target, attribute, wrapper)
    return patch


def _training_records(run: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    summary = json.loads((run / "training_summary.json").read_text())
    for key in ("wall_time_seconds", "train_runtime_seconds"):
        summary.pop(key, None)
    for key in ("output_dir", "resume_from_checkpoint"):  # where it ran, and that it resumed: told apart on purpose
        summary["training_arguments"].pop(key, None)
    summary["validation"] = {k: v for k, v in summary.get("validation", {}).items()
                             if "runtime" not in k and "per_second" not in k and "preparation" not in k}
    weights = load_file(run / "model.safetensors")
    newest = max(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    logged = [{k: v for k, v in entry.items() if k != "learning_rate"}
              for entry in json.loads((newest / "trainer_state.json").read_text())["log_history"] if "loss" in entry]
    return {"summary": summary, "logged": logged, "checkpoints": sorted(p.name for p in run.glob("checkpoint-*")),
            "weights": {name: hashlib.sha256(value.numpy().tobytes()).hexdigest() for name, value in weights.items()},
            "card": (run / "README.md").read_text().split("optimizer steps")[0][-200:]}


def kill_scenarios(paths: dict[str, Path], work: Path) -> list[dict[str, Any]]:
    from transformers import Trainer

    from magicseg_hf.evaluation.metric import MeanIoUAccumulator

    train = ["train", "--dataset", str(paths["ds"]), "--preset", "tiny", "--num-classes", "4", "--validation-size", "2",
             "--logging_steps", "2", "--save_steps", "3", "--max_steps", "6", "--per_device_train_batch_size", "2",
             "--seed", "3"]
    straight = work / "kill" / "straight"
    assert run_forked([*train, "--output-dir", str(straight)])[0] == 0
    expected = _training_records(straight)
    results = []

    def train_scenario(name: str, patch: Callable[[], None], then: list[str]) -> None:
        run = work / "kill" / name
        first = run_forked([*train, "--output-dir", str(run)], patch=patch)
        code, _, err = run_forked([*train, "--output-dir", str(run), *then])
        same = code == 0 and _training_records(run) == expected
        leftovers = [str(p) for p in run.rglob("*.tmp*")]
        results.append({"name": name, "killed": first[0] == -signal.SIGKILL, "identical": same and not leftovers,
                        "rerun_exit": code, "detail": err.strip().splitlines()[-1:] if code else leftovers})

    step = lambda trainer, *a, **k: trainer.state.global_step == 4  # noqa: E731 - mid-interval, after checkpoint-3
    train_scenario("train-killed-mid-run", _kill_when(Trainer, "training_step", step),
                   ["--resume_from_checkpoint", "true"])
    in_save = lambda trainer, *a, **k: trainer.state.global_step == 6  # noqa: E731 - checkpoint-6 half written
    train_scenario("train-killed-in-checkpoint-save", _kill_when(Trainer, "_save_rng_state", in_save),
                   ["--resume_from_checkpoint", "true"])
    final = lambda trainer, output_dir=None, *a, **k: output_dir is not None and not Path(output_dir).name.startswith("checkpoint")  # noqa: E731
    train_scenario("train-killed-in-final-save", _kill_when(Trainer, "save_model", final),
                   ["--resume_from_checkpoint", "true"])
    early = lambda trainer, *a, **k: trainer.state.global_step == 1  # noqa: E731 - before any checkpoint
    train_scenario("train-killed-before-any-checkpoint", _kill_when(Trainer, "training_step", early), ["--overwrite"])

    evaluate = ["evaluate", "--model", str(paths["model"]), "--benchmark", "voc21", "--data-dir", str(paths["voc"]),
                *TINY_PROTOCOL, "--overlays", "2"]
    straight_eval = work / "kill" / "eval-straight"
    assert run_forked([*evaluate, "--output", str(straight_eval / "r.json")])[0] == 0
    run = work / "kill" / "eval-killed"
    second = lambda self, *a, **k: self.num_images == 1  # noqa: E731
    killed = run_forked([*evaluate, "--output", str(run / "r.json")], patch=_kill_when(MeanIoUAccumulator, "update", second))
    nothing_left = not run.exists() or not any(run.iterdir())
    code = run_forked([*evaluate, "--output", str(run / "r.json")])[0]

    def eval_record(folder: Path) -> Any:
        data = json.loads((folder / "r.json").read_text())
        return data.get("mean_iou"), data.get("per_class"), sorted(p.name for p in folder.glob("*.png"))
    results.append({"name": "evaluate-killed-mid-run", "killed": killed[0] == -signal.SIGKILL,
                    "identical": nothing_left and code == 0 and eval_record(run) == eval_record(straight_eval),
                    "rerun_exit": code, "detail": "no partial results or overlays left" if nothing_left else "left files"})

    predict = ["predict", "--model", str(paths["model"]), "--image", str(paths["img"] / "good.png"),
               str(paths["img"] / "palette.png")]
    straight_pred = work / "kill" / "predict-straight"
    assert run_forked([*predict, "--output-dir", str(straight_pred), "--json", str(straight_pred / "s.json")])[0] == 0
    run = work / "kill" / "predict-killed"
    calls = {"n": 0}

    def second_replace(*args: Any, **kwargs: Any) -> bool:
        calls["n"] += 1
        return calls["n"] == 2
    killed = run_forked([*predict, "--output-dir", str(run), "--json", str(run / "s.json")],
                        patch=_kill_when(os, "replace", second_replace))
    code = run_forked([*predict, "--output-dir", str(run), "--json", str(run / "s.json")])[0]
    leftovers = [p.name for p in run.glob("*") if ".tmp" in p.name]

    def predict_record(folder: Path) -> Any:
        data = json.loads((folder / "s.json").read_text())
        for image in data.get("images", []):
            image.pop("overlay", None)
            image.pop("seconds", None)
        return json.dumps(data.get("images"), sort_keys=True), sorted(
            (p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in folder.glob("*.png"))
    results.append({"name": "predict-killed-between-writes", "killed": killed[0] == -signal.SIGKILL,
                    "identical": code == 0 and not leftovers and predict_record(run) == predict_record(straight_pred),
                    "rerun_exit": code, "detail": leftovers})
    return results


# ---- secrets -------------------------------------------------------------------------------------
def secret_scan(paths: dict[str, Path], work: Path) -> dict[str, Any]:
    """Train, evaluate, predict and push given ``HF_TOKEN``, ``--hub_token`` and an ``HF_ENDPOINT`` with
    credentials: the places where any of them appears (streams and every file written)."""
    token, hub_token = "hf_envSecretToken98765", "hf_flagSecretToken43210"
    env = {"HF_TOKEN": token, "HF_ENDPOINT": "https://carol:pa55word99@127.0.0.1:9"}
    secrets = (token, hub_token, "pa55word99", "carol:")
    out = work / "secrets"
    runs = {
        "train": ["train", "--dataset", str(paths["ds"]), "--output-dir", str(out / "model"), *FAST,
                  "--save_steps", "1", "--hub_token", hub_token],
        "evaluate": ["evaluate", "--model", str(out / "model"), "--benchmark", "voc21", "--data-dir", str(paths["voc"]),
                     *TINY_PROTOCOL, "--output", str(out / "eval" / "r.json"), "--overlays", "1"],
        "predict": ["predict", "--model", str(out / "model"), "--image", str(paths["img"] / "good.png"),
                    "--json", str(out / "p.json"), "--output-dir", str(out / "overlays")],
        "push": ["push", str(out / "model"), "--repo-id", "user/model"],
    }
    found: list[str] = []
    for name, argv in runs.items():
        push_env = {**env, "HF_HUB_OFFLINE": "0"} if name == "push" else env
        code, stdout, stderr = run_forked(argv, env=push_env)
        found += [f"{name} {stream}: {secret}" for stream, text in (("stdout", stdout), ("stderr", stderr))
                  for secret in secrets if secret in text]
        if name != "push" and code != 0:
            found.append(f"{name}: exit {code}: {stderr.strip().splitlines()[-1:]}")
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.relative_to(out)}: {secret}" for secret in secrets if secret.encode() in data]
    return {"files_checked": sum(1 for p in out.rglob("*") if p.is_file()), "found": found}


# ---- main -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="hostile-campaign", help="folder for hostile_campaign.json")
    parser.add_argument("--only", default="", help="comma-separated parts: cli, api, kill, secrets (default all)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    parts = set(args.only.split(",")) if args.only else {"cli", "api", "kill", "secrets"}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="magicseg-hostile-"))
    paths = build_fixtures(work)
    # the modules every command needs, imported once before forking (no torch work done here)
    import torch

    import magicseg_hf.demo  # noqa: F401
    import magicseg_hf.evaluation.run  # noqa: F401
    import magicseg_hf.predict  # noqa: F401
    import magicseg_hf.training.run  # noqa: F401
    import magicseg_hf.training.trainer  # noqa: F401

    torch.set_num_threads(1)
    report: dict[str, Any] = {}
    if "cli" in parts:
        report["cli"] = [run_cli_case(case, paths, work) for case in cli_cases()]
    if "kill" in parts:
        report["kill"] = kill_scenarios(paths, work)
    if "secrets" in parts:
        report["secrets"] = secret_scan(paths, work)
    if "api" in parts:  # last: it does torch work in this process, after which forking is unsafe
        report["api"] = [run_api_case(*case) for case in api_cases(paths)]
    (out / "hostile_campaign.json").write_text(json.dumps(report, indent=1))
    lines = []
    if "cli" in report:
        bad = [r for r in report["cli"] if r["kind"] == "bad"]
        valid = [r for r in report["cli"] if r["kind"] == "valid"]
        lines.append(f"CLI bad inputs handled as promised: {sum(r['outcome'] == 'promised' for r in bad)}/{len(bad)} "
                     f"(right line after noise: {sum(r['outcome'] == 'noise' for r in bad)}); valid edge inputs "
                     f"succeeding: {sum(r['outcome'] == 'promised' for r in valid)}/{len(valid)}")
        lines += [f"  not: {r['name']}: exit {r['exit']}, {r['stderr_lines']} stderr lines, last: {r['last_line']}"
                  for r in report["cli"] if r["outcome"] != "promised"]
    if "api" in report:
        lines.append(f"API cases clear: {sum(r['outcome'] == 'clear' for r in report['api'])}/{len(report['api'])}")
        lines += [f"  unclear: {r['name']}: {r['error']}" for r in report["api"] if r["outcome"] != "clear"]
    if "kill" in report:
        lines.append(f"kill scenarios identical to a straight run: "
                     f"{sum(r['identical'] for r in report['kill'])}/{len(report['kill'])}")
        lines += [f"  differs: {r['name']}: {r}" for r in report["kill"] if not r["identical"]]
    if "secrets" in report:
        lines.append(f"credentials found in outputs: {len(report['secrets']['found'])} "
                     f"({report['secrets']['files_checked']} files and every stream checked)")
        lines += [f"  {where}" for where in report["secrets"]["found"]]
    (out / "hostile_campaign.txt").write_text("\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        sys.exit(1)
