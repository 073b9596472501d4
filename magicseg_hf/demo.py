"""``magicseg demo``: the whole chain, offline, on the tiny preset — generate, validate, train,
evaluate, predict — in a few minutes on a CPU.

Everything runs through the same functions as the individual commands. The output folder holds
what each stage made::

    DIR/dataset/         the generated training set (a dataset folder: load_dataset("DIR/dataset"))
    DIR/heldout/         a second generated set, never trained on, for evaluation
    DIR/model/           the trained model (model card, training_summary.json, results-*.json)
    DIR/results.json     evaluation of the model on DIR/heldout
    DIR/results-overlay-*.png  image | ground truth | prediction pictures of the evaluation
    DIR/prediction.png   the model's prediction on one held-out image, with a legend
    DIR/SUMMARY.md       what each stage made and how long it took
    DIR/magicseg-demo.json  the marker, written first: what ``--overwrite`` recognises

``--overwrite`` replaces only a folder that holds the marker, and removes only the entries above
(a user's own files beside them stay); every setting is checked before the disk is touched.

The tiny preset's models have random weights: the demo proves the plumbing, not the quality.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magicseg_hf.errors import InputError

logger = logging.getLogger(__name__)

HELP = "Run the whole chain offline on tiny random models (generate, validate, train, evaluate, predict)."
DESCRIPTION = """\
Runs every stage of magicseg on the tiny preset, offline, in a few minutes on a CPU:
generate a training set and a held-out set, validate them, train a model, evaluate it on the
held-out set and segment one held-out image. Leaves in --output-dir the dataset folders, the
model folder (with its card and results), results.json, overlay pictures, prediction.png and
SUMMARY.md.
The tiny models are random: this proves the plumbing, not the quality.

Every setting is checked before anything is written. The demo first writes magicseg-demo.json
at the folder's root: --overwrite replaces only a folder holding that file, and removes only what
a demo writes there (dataset/, heldout/, model/, results.json, results-overlay-*.png,
prediction.png, prediction.json, SUMMARY.md); any other non-empty folder is refused.

Example:
  magicseg demo --output-dir demo-output"""

#: The demo's classes and sizes.
CLASSES = ("cat", "dog", "bird")
TRAIN_PAIRS = 48
HELDOUT_PAIRS = 12
#: Evaluation at the tiny model's own scale: 128 px images, 64 px windows.
EVAL_OVERRIDES = {"short_side": 128, "window": 64, "stride": 48, "threshold": 0.5, "decision": "threshold"}
#: The file a demo writes first at the root of its output folder: what --overwrite recognises.
MARKER_FILE = "magicseg-demo.json"
MARKER_KIND = "magicseg demo output"
#: What a demo writes at the root of its output folder (names or patterns): all that --overwrite removes.
OUTPUTS = ("dataset", "heldout", "model", "results.json", "results-overlay-*.png", "prediction.png",
           "prediction.json", "SUMMARY.md")
#: At most this many classes (the model trains on K <= 254 classes per row).
MAX_CLASSES = 254


def mark_demo_output(folder: Path) -> Path:
    """Write the marker that says ``folder`` holds a demo's output; returns its path."""
    from magicseg_hf import __version__

    marker = folder / MARKER_FILE
    content = {"kind": MARKER_KIND, "magicseg_hf": __version__}
    marker.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return marker


@dataclass
class Stage:
    """One stage's record for SUMMARY.md."""

    name: str
    seconds: float
    made: str


@dataclass
class DemoSettings:
    """The knobs of a demo run (the command line's flags)."""

    output_dir: Path
    classes: tuple[str, ...] = CLASSES
    train_pairs: int = TRAIN_PAIRS
    heldout_pairs: int = HELDOUT_PAIRS
    max_steps: int | None = None
    overwrite: bool = False
    stages: list[Stage] = field(default_factory=list)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``magicseg demo``."""
    parser.add_argument("--output-dir", default="demo-output",
                        help=f"Folder to write: new, empty, or an earlier demo's output (with {MARKER_FILE}).")
    parser.add_argument("--overwrite", action="store_true",
                        help=f"Replace an earlier demo's output in --output-dir (recognised by its {MARKER_FILE}; "
                             "only the demo's own files are removed).")
    parser.add_argument("--classes", nargs="+", default=list(CLASSES), help="Class names to generate and learn.")
    parser.add_argument("--train-pairs", type=int, default=TRAIN_PAIRS, help="Pairs in the training set.")
    parser.add_argument("--heldout-pairs", type=int, default=HELDOUT_PAIRS, help="Pairs in the held-out set.")
    parser.add_argument("--max-steps", type=int, default=None, help="Training steps (default: the tiny preset's).")


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns 0."""
    settings = DemoSettings(
        output_dir=Path(args.output_dir).expanduser(), classes=tuple(args.classes),
        train_pairs=args.train_pairs, heldout_pairs=args.heldout_pairs, max_steps=args.max_steps,
        overwrite=args.overwrite,
    )
    run_demo(settings)
    return 0


def check_settings(settings: DemoSettings) -> None:
    """Raise :class:`InputError` (one line) when a setting is unusable; touches nothing on disk.

    The classes and pair counts are checked as ``magicseg generate`` checks them (both sets'
    :class:`~magicseg_hf.generation.config.GenerationConfig` are resolved), plus the demo's own bounds.
    """
    if settings.train_pairs < 8 or settings.heldout_pairs < 1:
        raise InputError(
            f"the demo needs at least 8 training pairs and 1 held-out pair (got {settings.train_pairs} and "
            f"{settings.heldout_pairs})"
        )
    if settings.max_steps is not None and settings.max_steps < 1:
        raise InputError(f"--max-steps must be a positive integer (got {settings.max_steps})")
    if not 1 <= len(settings.classes) <= MAX_CLASSES:
        raise InputError(f"--classes takes 1 to {MAX_CLASSES} names (got {len(settings.classes)})")
    for pairs, seed in ((settings.train_pairs, 0), (settings.heldout_pairs, 1)):
        _generation_config(settings, pairs, seed).resolved()


def _generation_config(settings: DemoSettings, pairs: int, seed: int) -> Any:
    """The generation settings of one of the demo's two sets (``pairs`` pairs, seed ``seed``)."""
    from magicseg_hf.generation.config import GenerationConfig

    return GenerationConfig(classes=list(settings.classes), num_pairs=pairs, preset="tiny", seed=seed)


def is_demo_output(folder: Path) -> bool:
    """Whether ``folder`` holds a demo's output: its root has the marker :data:`MARKER_FILE`
    (a regular file, not a link) that :func:`mark_demo_output` writes before anything else."""
    marker = folder / MARKER_FILE
    if marker.is_symlink() or not marker.is_file():
        return False
    try:
        content = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(content, dict) and content.get("kind") == MARKER_KIND


def _demo_entries(folder: Path) -> list[Path]:
    """The entries at the root of ``folder`` that a demo writes (:data:`OUTPUTS`), marker last."""
    entries = [path for path in sorted(folder.iterdir())
               if path.name != MARKER_FILE and any(fnmatch.fnmatchcase(path.name, name) for name in OUTPUTS)]
    return [*entries, folder / MARKER_FILE]


def _remove(path: Path) -> None:
    """Remove a file, a link (never what it points to) or a folder."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path)


def prepare_output_dir(settings: DemoSettings) -> None:
    """Check every setting, then the output folder, then make it ready: nothing on disk is touched
    before every check has passed.

    The folder may be missing or empty; a folder holding an earlier demo's output
    (:func:`is_demo_output`) is cleared with ``overwrite`` — only the entries a demo writes
    (:data:`OUTPUTS`), anything else in it stays. Any other non-empty folder is refused. The
    marker is written first, so that a demo stopped half-way can be overwritten too.
    """
    check_settings(settings)
    folder = settings.output_dir
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--output-dir {str(folder)!r} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        if not is_demo_output(folder):
            raise InputError(
                f"--output-dir {str(folder)!r} is not empty and not the output of a magicseg demo (it has no "
                f"{MARKER_FILE}); choose a new or empty folder"
            )
        if not settings.overwrite:
            raise InputError(
                f"--output-dir {str(folder)!r} holds an earlier demo's output; pass --overwrite to replace it"
            )
        entries = _demo_entries(folder)
        logger.info("removing the earlier demo's output in %s: %s", folder, ", ".join(p.name for p in entries))
        for entry in entries:
            _remove(entry)
    folder.mkdir(parents=True, exist_ok=True)
    mark_demo_output(folder)


def _stage(settings: DemoSettings, number: int, name: str, work: Callable[[], str]) -> None:
    """Run one stage with one progress line before and one after."""
    total = 5
    sys.stderr.write(f"[{number}/{total}] {name} ...\n")
    start = time.perf_counter()
    made = work()
    seconds = time.perf_counter() - start
    settings.stages.append(Stage(name, seconds, made))
    sys.stderr.write(f"[{number}/{total}] {name}: {made} ({seconds:.1f} s)\n")


def run_demo(settings: DemoSettings) -> list[Stage]:
    """Every stage in order; returns their records (also written to SUMMARY.md)."""
    prepare_output_dir(settings)
    quiet = _Quiet()
    root = settings.output_dir
    with quiet:
        _stage(settings, 1, "generate", lambda: _generate(settings))
        _stage(settings, 2, "validate", lambda: _validate(root))
        _stage(settings, 3, "train", lambda: _train(settings))
        _stage(settings, 4, "evaluate", lambda: _evaluate(root))
        _stage(settings, 5, "predict", lambda: _predict(root))
    _write_summary(settings)
    sys.stderr.write(f"done: see {root / 'SUMMARY.md'}\n")
    return settings.stages


def _generate(settings: DemoSettings) -> str:
    from magicseg_hf.generation.pipeline import generate

    root = settings.output_dir
    train = generate(_generation_config(settings, settings.train_pairs, 0), root / "dataset")
    heldout = generate(_generation_config(settings, settings.heldout_pairs, 1), root / "heldout")
    return f"{train.num_rows} training pairs in dataset/, {heldout.num_rows} held-out pairs in heldout/"


def _validate(root: Path) -> str:
    from magicseg_hf.validate import validate_dataset_folder

    for name in ("dataset", "heldout"):
        report = validate_dataset_folder(root / name)
        if not report.ok:  # a bug, not bad input: the demo wrote these folders itself
            raise RuntimeError(f"the generated folder {name}/ is invalid:\n{report.summary()}")
    return "both folders valid (schema, labels, boxes, card, load_dataset)"


def _train(settings: DemoSettings) -> str:
    from magicseg_hf.training.run import TrainConfig, train, training_arguments

    root = settings.output_dir
    config = TrainConfig(dataset=[str(root / "dataset")], output_dir=str(root / "model"), preset="tiny",
                         num_classes=len(settings.classes), validation_size=0.1)
    extra = ["--disable_tqdm", "true", "--report_to", "none"]
    if settings.max_steps is not None:
        extra += ["--max_steps", str(settings.max_steps)]
    summary = train(config, training_arguments(config, extra))
    losses = summary.get("final_losses") or {}
    return (f"{summary['global_steps']} steps, final loss {losses.get('loss')}, "
            f"validation mIoU {summary['validation'].get('eval_mean_iou', float('nan')):.3f}; model in model/")


def _evaluate(root: Path) -> str:
    from magicseg_hf.evaluation.run import EvaluationConfig, evaluate_benchmark

    config = EvaluationConfig(model=str(root / "model"), benchmark=str(root / "heldout"),
                              output=str(root / "results.json"), protocol="groupvit", overlays=4,
                              update_card=True, device="cpu", **EVAL_OVERRIDES)
    results = evaluate_benchmark(config)
    return (f"mIoU {results['mean_iou']:.3f} on {results['num_images']} held-out images; results.json, "
            f"{len(results.get('overlays') or [])} overlay pictures")


def _predict(root: Path) -> str:
    from magicseg_hf.folder import DatasetFolder, decode_image
    from magicseg_hf.loading import load_open_seg
    from magicseg_hf.predict import predict_images

    row = next(DatasetFolder(root / "heldout").iter_rows(columns=["id", "image"]))
    image = decode_image(row["image"])
    model, processor = load_open_seg(str(root / "model"))
    (prediction,) = predict_images(model, processor, [image], sources=[row["id"]])  # the default: threshold 0.5
    prediction.overlay(image).save(root / "prediction.png")
    (root / "prediction.json").write_text(json.dumps(prediction.to_dict(), indent=2) + "\n", encoding="utf-8")
    found = ", ".join(f"{s.label} {s.area:.0%}" for s in prediction.segments) or "no class above the threshold"
    return f"held-out image {row['id']}: {found}; prediction.png, prediction.json"


def _write_summary(settings: DemoSettings) -> None:
    total = sum(stage.seconds for stage in settings.stages)
    lines = [
        "# magicseg demo",
        "",
        "The whole MagicSeg chain on the tiny preset, offline. **The tiny models (Stable Diffusion, "
        "Grounding DINO, SAM, CLIP) have random weights: this run proves the plumbing, not the "
        "quality** — the pictures are noise and the labels are what random detectors make of it. "
        "With real checkpoints (`--preset paper`) the same commands make a real dataset and model.",
        "",
        "| stage | what it made | seconds |",
        "|---|---|---|",
        *(f"| {stage.name} | {stage.made} | {stage.seconds:.1f} |" for stage in settings.stages),
        f"| total | | {total:.1f} |",
        "",
        "Each stage is a command you can run yourself:",
        "",
        "```bash",
        f"magicseg generate --classes {' '.join(settings.classes)} --num-pairs {settings.train_pairs} --preset tiny --output-dir dataset",
        "magicseg validate dataset",
        "magicseg train --dataset dataset --preset tiny --output-dir model",
        "magicseg evaluate --model model --benchmark heldout --protocol groupvit --short-side 128 --window 64 "
        "--stride 48 --decision threshold --threshold 0.5 --output results.json --overlays 4 --update-card",
        "magicseg predict --model model --image photo.png --output prediction.png",
        "```",
        "",
    ]
    (settings.output_dir / "SUMMARY.md").write_text("\n".join(lines), encoding="utf-8")


class _Quiet:
    """Keep the stages' own logs, printed log lines and progress bars out of the demo's output:
    one line per stage is what the user reads (the stages' records are in the folders)."""

    def __enter__(self) -> _Quiet:
        import contextlib
        import io
        import os

        self._levels = {name: logging.getLogger(name).level for name in ("magicseg_hf", "transformers", "datasets")}
        for name in self._levels:
            logging.getLogger(name).setLevel(logging.WARNING)
        self._environment = {name: os.environ.get(name) for name in ("TRANSFORMERS_VERBOSITY", "TQDM_DISABLE")}
        os.environ.update(TRANSFORMERS_VERBOSITY="error", TQDM_DISABLE="1")  # tqdm reads TQDM_* defaults
        self._stdout = contextlib.redirect_stdout(io.StringIO())  # the Trainer prints its log lines
        self._stdout.__enter__()
        import datasets
        from transformers.utils import logging as hf_logging

        self._bars = not datasets.are_progress_bars_disabled()
        datasets.disable_progress_bars()
        hf_logging.disable_progress_bar()
        return self

    def __exit__(self, *exc: Any) -> None:
        import os

        from transformers.utils import logging as hf_logging

        self._stdout.__exit__(*exc)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        for name, value in self._environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        hf_logging.enable_progress_bar()
        if self._bars:
            import datasets

            datasets.enable_progress_bars()
