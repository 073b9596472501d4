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

The tiny preset's models have random weights: the demo proves the plumbing, not the quality.
"""

from __future__ import annotations

import argparse
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

Example:
  magicseg demo --output-dir demo-output"""

#: The demo's classes and sizes.
CLASSES = ("cat", "dog", "bird")
TRAIN_PAIRS = 48
HELDOUT_PAIRS = 12
#: Evaluation at the tiny model's own scale: 128 px images, 64 px windows.
EVAL_OVERRIDES = {"short_side": 128, "window": 64, "stride": 48, "threshold": 0.5, "decision": "threshold"}


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
    parser.add_argument("--output-dir", default="demo-output", help="Folder to write (must not exist or be empty).")
    parser.add_argument("--overwrite", action="store_true", help="Replace what an earlier demo wrote in --output-dir.")
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


def _prepare(settings: DemoSettings) -> None:
    folder = settings.output_dir
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--output-dir {str(folder)!r} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        if not settings.overwrite:
            raise InputError(f"--output-dir {str(folder)!r} is not empty (an earlier demo?); pass --overwrite to replace it")
        shutil.rmtree(folder)
    if settings.train_pairs < 8 or settings.heldout_pairs < 1:
        raise InputError(
            f"the demo needs at least 8 training pairs and 1 held-out pair (got {settings.train_pairs} and "
            f"{settings.heldout_pairs})"
        )
    if settings.max_steps is not None and settings.max_steps < 1:
        raise InputError(f"--max-steps must be a positive integer (got {settings.max_steps})")
    folder.mkdir(parents=True, exist_ok=True)


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
    _prepare(settings)
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
    from magicseg_hf.generation.config import GenerationConfig
    from magicseg_hf.generation.pipeline import generate

    root = settings.output_dir
    train = generate(GenerationConfig(classes=list(settings.classes), num_pairs=settings.train_pairs,
                                      preset="tiny", seed=0), root / "dataset")
    heldout = generate(GenerationConfig(classes=list(settings.classes), num_pairs=settings.heldout_pairs,
                                        preset="tiny", seed=1), root / "heldout")
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
