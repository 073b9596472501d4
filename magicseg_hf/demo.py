"""``magicseg demo``: two acts, offline, in a few minutes on a CPU.

**Act 1, plumbing** — the MagicSeg generation chain on the tiny random models: generate a small
training set and a held-out set (random diffusion pictures, labels from a random detector and SAM),
validate them, train, evaluate, predict. It proves that every stage runs and hands the next one
what it needs; with random models its numbers mean nothing.

**Act 2, learning** — the same train / evaluate / predict commands on procedural scenes
(:mod:`magicseg_hf.generation.procedural`: drawn objects with exact labels): the tiny model is
trained on one seed's scenes and scored on another seed's (held-out, context bias 0), where the
numbers mean something.

Everything runs through the same functions as the individual commands. The output folder holds::

    DIR/plumbing/        act 1: dataset/, heldout/, model/, results.json, results-overlay-*.png,
                         prediction.png, prediction.json
    DIR/dataset/         act 2: the procedural training scenes (a dataset folder)
    DIR/heldout/         act 2: held-out procedural scenes (another seed), never trained on
    DIR/model/           act 2: the trained model (model card, training_summary.json, results-*.json)
    DIR/results.json     act 2: evaluation of the model on DIR/heldout
    DIR/results-overlay-*.png  act 2: image | ground truth | prediction pictures of the evaluation
    DIR/prediction.png   act 2: the model's prediction on one held-out scene (image | truth | prediction)
    DIR/SUMMARY.md       both acts: what each stage made and how long it took, with the pictures
    DIR/magicseg-demo.json  the marker, written first: what ``--overwrite`` recognises

``--overwrite`` replaces only a folder that holds the marker, and removes only the entries above
(a user's own files beside them stay); every setting is checked before the disk is touched.
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

from magicseg_hf import settings
from magicseg_hf.errors import InputError

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Two acts, offline, in a few minutes on a CPU.

Act 1 (plumbing): every MagicSeg stage on the tiny random models - generate a training set and a
held-out set, validate them, train, evaluate, predict. The models are random: the pictures are
noise and the numbers mean nothing; it proves the stages run and fit together.

Act 2 (learning): the same train / evaluate / predict on procedural scenes (drawn objects with exact
labels, `magicseg generate --source procedural`): the tiny model learns them, and its held-out
mIoU and prediction.png show it.

Leaves in --output-dir: plumbing/ (act 1's folders and pictures), dataset/, heldout/, model/,
results.json, results-overlay-*.png, prediction.png (act 2) and SUMMARY.md (both acts).

Every setting is checked before anything is written. The demo first writes magicseg-demo.json
at the folder's root: --overwrite replaces only a folder holding that file, and removes only what
a demo writes there (plumbing/, dataset/, heldout/, model/, results.json, results-overlay-*.png,
results-prediction-*.png, prediction.png, prediction.json, SUMMARY.md); any other non-empty folder
is refused.

Example:
  magicseg demo --output-dir demo-output"""

#: Act 1: the classes and sizes of the tiny diffusion chain (kept short: it proves plumbing only).
CLASSES = ("cat", "dog", "bird")
TRAIN_PAIRS = 16
HELDOUT_PAIRS = 4
PLUMBING_STEPS = 40
#: Act 1's evaluation at the tiny model's own scale: 128 px images, 64 px windows.
EVAL_OVERRIDES = {"short_side": 128, "window": 64, "stride": 48, "threshold": 0.5, "decision": "threshold"}
#: Act 2: procedural scenes at the tiny model's input size (64 px: one window), classes with their own look.
SCENE_CLASSES = ("sun", "house", "tree", "ball")
SCENE_SIZE = 64
SCENE_TRAIN_PAIRS = 256
SCENE_HELDOUT_PAIRS = 48
SCENE_STEPS = 1200
#: Seeds of act 2's two sets: the held-out scenes are another seed, never trained on.
SCENE_TRAIN_SEED = 0
SCENE_HELDOUT_SEED = 10_000
SCENE_EVAL_OVERRIDES = {"short_side": SCENE_SIZE, "window": SCENE_SIZE, "stride": 48, "threshold": 0.5,
                        "decision": "threshold"}
#: Act 1's outputs live under this folder of the demo's output.
PLUMBING_DIR = "plumbing"
#: The file a demo writes first at the root of its output folder: what --overwrite recognises.
MARKER_FILE = "magicseg-demo.json"
MARKER_KIND = "magicseg demo output"
#: What a demo writes at the root of its output folder (names or patterns): all that --overwrite removes.
OUTPUTS = (PLUMBING_DIR, "dataset", "heldout", "model", "results.json", "results-overlay-*.png",
           "results-prediction-*.png", "prediction.png", "prediction.json", "SUMMARY.md")
#: At most this many classes (the model trains on K <= 254 classes per row).
MAX_CLASSES = 254
#: The ``--help`` sections of each act's flags.
ACT_1 = "act 1, plumbing (the tiny random diffusion chain)"
ACT_2 = "act 2, learning (procedural scenes)"
#: Stages per act (for the "[act n, i/k]" progress lines).
ACT_STAGES = {1: 5, 2: 5}


def mark_demo_output(folder: Path) -> Path:
    """Write the marker that says ``folder`` holds a demo's output; returns its path."""
    from magicseg_hf import __version__
    from magicseg_hf.folder import atomic_write_json

    marker = folder / MARKER_FILE  # written atomically: --overwrite trusts it
    atomic_write_json(marker, {"kind": MARKER_KIND, "magicseg_hf": __version__})
    return marker


@dataclass
class Stage:
    """One stage's record for SUMMARY.md."""

    act: int
    name: str
    seconds: float
    made: str


@dataclass
class DemoSettings:
    """The knobs of a demo run (the command line's flags)."""

    output_dir: Path = field(metadata={
        "help": f"Folder to write: new, empty, or an earlier demo's output (with {MARKER_FILE}).",
        "default": "demo-output"})
    overwrite: bool = field(default=False, metadata={
        "help": f"Replace an earlier demo's output in --output-dir (recognised by its {MARKER_FILE}; "
                "only the demo's own files are removed)."})
    classes: tuple[str, ...] = field(default=CLASSES, metadata={
        "help": "Class names to generate and learn.", "group": ACT_1})
    train_pairs: int = field(default=TRAIN_PAIRS, metadata={"help": "Pairs in the training set.", "group": ACT_1})
    heldout_pairs: int = field(default=HELDOUT_PAIRS, metadata={"help": "Pairs in the held-out set.", "group": ACT_1})
    max_steps: int | None = field(default=PLUMBING_STEPS, metadata={"help": "Training steps of act 1.", "group": ACT_1})
    scene_classes: tuple[str, ...] = field(default=SCENE_CLASSES, metadata={
        "help": "Classes of the procedural scenes (sun, house, tree, car, ball, leaf, brick, star are "
                "drawn as themselves; other names get a shape and colour of their own).", "group": ACT_2})
    scene_train_pairs: int = field(default=SCENE_TRAIN_PAIRS, metadata={"help": "Training scenes.", "group": ACT_2})
    scene_heldout_pairs: int = field(default=SCENE_HELDOUT_PAIRS, metadata={"help": "Held-out scenes.", "group": ACT_2})
    scene_steps: int = field(default=SCENE_STEPS, metadata={"help": "Training steps of act 2.", "group": ACT_2})
    seed: int = field(default=0, metadata={"help": "Seed of act 2's training (data and model).", "group": ACT_2})
    stages: list[Stage] = field(default_factory=list)
    #: Act 2's held-out mIoU, once evaluated.
    learned_miou: float | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``magicseg demo``, one per :class:`DemoSettings` field with help."""
    settings.add_arguments(parser, DemoSettings)


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns 0."""
    demo = settings.from_args(DemoSettings, args)
    demo.output_dir = Path(demo.output_dir).expanduser()
    demo.classes, demo.scene_classes = tuple(demo.classes), tuple(demo.scene_classes)
    run_demo(demo)
    return 0


def check_settings(settings: DemoSettings) -> None:
    """Raise :class:`InputError` (one line) when a setting is unusable; touches nothing on disk.

    The classes and pair counts are checked as ``magicseg generate`` checks them (the four sets'
    :class:`~magicseg_hf.generation.config.GenerationConfig` are resolved), plus the demo's own bounds.
    """
    for flag, pairs, least in (("--train-pairs", settings.train_pairs, 8), ("--heldout-pairs", settings.heldout_pairs, 1),
                               ("--scene-train-pairs", settings.scene_train_pairs, 8),
                               ("--scene-heldout-pairs", settings.scene_heldout_pairs, 1)):
        if pairs < least:
            raise InputError(f"{flag} must be at least {least} (got {pairs})")
    for flag, steps in (("--max-steps", settings.max_steps), ("--scene-steps", settings.scene_steps)):
        if steps is not None and steps < 1:
            raise InputError(f"{flag} must be a positive integer (got {steps})")
    for flag, classes in (("--classes", settings.classes), ("--scene-classes", settings.scene_classes)):
        if not 1 <= len(classes) <= MAX_CLASSES:
            raise InputError(f"{flag} takes 1 to {MAX_CLASSES} names (got {len(classes)})")
    if settings.seed < 0:
        raise InputError(f"--seed must be >= 0 (got {settings.seed})")
    from magicseg_hf.generation.vocabulary import resolve_classes

    for classes in (settings.classes, settings.scene_classes):  # blanks, control characters, duplicates
        resolve_classes(list(classes), None)
    for pairs, seed in ((settings.train_pairs, 0), (settings.heldout_pairs, 1)):
        _generation_config(settings, pairs, seed).resolved()
    for pairs, seed in ((settings.scene_train_pairs, settings.seed), (settings.scene_heldout_pairs, SCENE_HELDOUT_SEED)):
        _scene_config(settings, pairs, seed).resolved()


def _generation_config(settings: DemoSettings, pairs: int, seed: int) -> Any:
    """The generation settings of one of act 1's two sets (``pairs`` pairs, seed ``seed``)."""
    from magicseg_hf.generation.config import GenerationConfig

    return GenerationConfig(classes=list(settings.classes), num_pairs=pairs, preset="tiny", seed=seed)


def _scene_config(settings: DemoSettings, pairs: int, seed: int) -> Any:
    """The generation settings of one of act 2's two procedural sets (context bias 0)."""
    from magicseg_hf.generation.config import GenerationConfig

    return GenerationConfig(source="procedural", classes=list(settings.scene_classes), num_pairs=pairs,
                            preset="tiny", seed=seed, height=SCENE_SIZE, width=SCENE_SIZE, context_bias=0.0)


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
    from magicseg_hf.folder import check_output_folder

    check_settings(settings)
    folder = settings.output_dir
    check_output_folder(folder, "--output-dir")  # a file, a path under a file, /proc: refused here
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


def _stage(settings: DemoSettings, act: int, number: int, name: str, work: Callable[[], str]) -> None:
    """Run one stage with one progress line before and one after."""
    prefix = f"[act {act}, {number}/{ACT_STAGES[act]}]"
    sys.stderr.write(f"{prefix} {name} ...\n")
    start = time.perf_counter()
    made = work()
    seconds = time.perf_counter() - start
    settings.stages.append(Stage(act, name, seconds, made))
    sys.stderr.write(f"{prefix} {name}: {made} ({seconds:.1f} s)\n")


def run_demo(settings: DemoSettings) -> list[Stage]:
    """Both acts in order; returns the stages' records (also written to SUMMARY.md).

    The terminal's last line says what was learned: act 2's held-out mIoU, and that act 1 is plumbing.
    """
    prepare_output_dir(settings)
    root = settings.output_dir
    plumbing = root / PLUMBING_DIR
    with _Quiet():
        sys.stderr.write("act 1 - plumbing: the MagicSeg chain on tiny RANDOM models (random pictures, random "
                         "labels; the numbers mean nothing)\n")
        _stage(settings, 1, 1, "generate", lambda: _generate(settings, plumbing))
        _stage(settings, 1, 2, "validate", lambda: _validate(plumbing))
        _stage(settings, 1, 3, "train", lambda: _train(settings, plumbing, len(settings.classes), settings.max_steps))
        _stage(settings, 1, 4, "evaluate", lambda: _evaluate(plumbing, EVAL_OVERRIDES)[0])
        _stage(settings, 1, 5, "predict", lambda: _predict(plumbing))
        sys.stderr.write("act 2 - learning: the tiny model trained on procedural scenes, scored on held-out "
                         "scenes (exact labels; the numbers mean something)\n")
        _stage(settings, 2, 1, "generate", lambda: _generate_scenes(settings))
        _stage(settings, 2, 2, "validate", lambda: _validate(root))
        _stage(settings, 2, 3, "train", lambda: _train(settings, root, len(settings.scene_classes),
                                                        settings.scene_steps, seed=settings.seed))
        _stage(settings, 2, 4, "evaluate", lambda: _evaluate_scenes(settings))
        _stage(settings, 2, 5, "predict", lambda: _predict_scene(root))
    _write_summary(settings)
    total = sum(stage.seconds for stage in settings.stages)
    sys.stderr.write(f"done in {total:.0f} s: see {root / 'SUMMARY.md'}\n")
    sys.stderr.write(f"{learned_line(settings)}\n")
    return settings.stages


def learned_line(settings: DemoSettings) -> str:
    """The demo's last line: what was learned (act 2) and what act 1 was."""
    miou = settings.learned_miou
    figure = "n/a" if miou is None else f"{miou:.2f}"
    return (f"learned: held-out mIoU {figure} on procedural scenes ({', '.join(settings.scene_classes)}; act 2); "
            "the tiny diffusion chain of act 1 is plumbing only")


def _generate(settings: DemoSettings, root: Path) -> str:
    from magicseg_hf.generation.pipeline import generate

    train = generate(_generation_config(settings, settings.train_pairs, 0), root / "dataset")
    heldout = generate(_generation_config(settings, settings.heldout_pairs, 1), root / "heldout")
    where = f"{root.name}/" if root != settings.output_dir else ""
    return f"{train.num_rows} training pairs in {where}dataset/, {heldout.num_rows} held-out pairs in {where}heldout/"


def _generate_scenes(settings: DemoSettings) -> str:
    from magicseg_hf.generation.pipeline import generate

    root = settings.output_dir
    train = generate(_scene_config(settings, settings.scene_train_pairs, settings.seed), root / "dataset")
    heldout = generate(_scene_config(settings, settings.scene_heldout_pairs, SCENE_HELDOUT_SEED), root / "heldout")
    return (f"{train.num_rows} procedural training scenes in dataset/, {heldout.num_rows} held-out scenes "
            f"(another seed) in heldout/")


def _validate(root: Path) -> str:
    from magicseg_hf.validate import validate_dataset_folder

    for name in ("dataset", "heldout"):
        report = validate_dataset_folder(root / name)
        if not report.ok:  # a bug, not bad input: the demo wrote these folders itself
            raise RuntimeError(f"the generated folder {name}/ is invalid:\n{report.summary()}")
    return "both folders valid (schema, labels, boxes, card, load_dataset)"


def _train(settings: DemoSettings, root: Path, num_classes: int, max_steps: int | None, seed: int | None = None) -> str:
    from magicseg_hf.training.run import TrainConfig, train, training_arguments

    config = TrainConfig(dataset=[str(root / "dataset")], output_dir=str(root / "model"), preset="tiny",
                         num_classes=num_classes, validation_size=0.1)
    extra = ["--disable_tqdm", "true", "--report_to", "none"]
    if max_steps is not None:
        extra += ["--max_steps", str(max_steps)]
    if seed is not None:
        extra += ["--seed", str(seed)]
    summary = train(config, training_arguments(config, extra))
    losses = summary.get("final_losses") or {}
    loss = losses.get("loss")
    loss_text = f"{loss:.3f}" if isinstance(loss, (int, float)) else str(loss)
    where = f"{root.name}/" if root != settings.output_dir else ""
    return (f"{summary['global_steps']} steps, final loss {loss_text}, "
            f"validation mIoU {summary['validation'].get('eval_mean_iou', float('nan')):.3f}; model in {where}model/")


def _evaluate(root: Path, overrides: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    from magicseg_hf.evaluation.run import EvaluationConfig, evaluate_benchmark

    config = EvaluationConfig(model=str(root / "model"), benchmark=str(root / "heldout"),
                              output=str(root / "results.json"), protocol="groupvit", overlays=4,
                              update_card=True, device="cpu", **overrides)
    results = evaluate_benchmark(config)
    made = (f"mIoU {results['mean_iou']:.3f} on {results['num_images']} held-out images; results.json, "
            f"{len(results.get('overlays') or [])} overlay pictures")
    return made, results


def _evaluate_scenes(settings: DemoSettings) -> str:
    made, results = _evaluate(settings.output_dir, SCENE_EVAL_OVERRIDES)
    settings.learned_miou = float(results["mean_iou"])
    per_class = ", ".join(f"{c['name']} {c['iou']:.2f}" for c in results.get("per_class") or []
                          if isinstance(c.get("iou"), (int, float)))
    return f"{made} (IoU: {per_class})" if per_class else made


def _write_prediction(root: Path, picture: Any, prediction: Any) -> None:
    """``prediction.png`` (``picture``) and ``prediction.json`` of an act, each written atomically."""
    from magicseg_hf.folder import atomic_write_image, atomic_write_json

    atomic_write_image(root / "prediction.png", picture)
    atomic_write_json(root / "prediction.json", prediction.to_dict())


def _predict(root: Path) -> str:
    from magicseg_hf.folder import DatasetFolder, decode_image
    from magicseg_hf.loading import load_open_seg
    from magicseg_hf.predict import predict_images

    row = next(DatasetFolder(root / "heldout").iter_rows(columns=["id", "image"]))
    image = decode_image(row["image"])
    model, processor = load_open_seg(str(root / "model"))
    (prediction,) = predict_images(model, processor, [image], sources=[row["id"]])  # the default: threshold 0.5
    _write_prediction(root, prediction.overlay(image), prediction)
    found = ", ".join(f"{s.label} {s.area:.0%}" for s in prediction.segments) or "no class above the threshold"
    return f"held-out image {row['id']}: {found}; prediction.png, prediction.json"


def _predict_scene(root: Path) -> str:
    """Segment a held-out scene (the first with two objects) with act 2's model; prediction.png is
    image | ground truth | prediction."""
    import numpy as np

    from magicseg_hf.folder import DatasetFolder, decode_image
    from magicseg_hf.loading import load_open_seg
    from magicseg_hf.predict import predict_images
    from magicseg_hf.visualization import prediction_triptych, shared_color_ids

    rows = DatasetFolder(root / "heldout").iter_rows(columns=["id", "image", "label", "classes"])
    first = row = next(rows)
    while len(row["classes"]) < 2:  # the first scene with two objects shows more; else the first
        row = next(rows, first)
        if row is first:
            break
    image = decode_image(row["image"])
    model, processor = load_open_seg(str(root / "model"))
    vocabulary = list(model.config.vocabulary)
    (prediction,) = predict_images(model, processor, [image], classes=vocabulary, sources=[row["id"]])
    label = np.asarray(decode_image(row["label"]))
    truth = shared_color_ids(row["classes"], vocabulary)[label]  # the row's ids -> the model's vocabulary ids
    predicted, _ = prediction.label_map()
    picture = prediction_triptych(image, truth, predicted, vocabulary,
                                  title=f"held-out scene {row['id']}")
    _write_prediction(root, picture, prediction)
    hits = []
    for name in row["classes"]:
        position = vocabulary.index(name)
        wanted, got = truth == position + 1, predicted == position + 1
        union = int((wanted | got).sum())
        hits.append(f"{name} IoU {int((wanted & got).sum()) / union:.2f}" if union else f"{name} -")
    found = ", ".join(f"{s.label} {s.area:.0%}" for s in prediction.segments) or "no class above the threshold"
    return f"held-out scene {row['id']} ({'; '.join(hits)}); found {found}; prediction.png, prediction.json"


def _stage_rows(settings: DemoSettings, act: int) -> list[str]:
    stages = [stage for stage in settings.stages if stage.act == act]
    return [
        "| stage | what it made | seconds |",
        "|---|---|---|",
        *(f"| {stage.name} | {stage.made} | {stage.seconds:.1f} |" for stage in stages),
        f"| total | | {sum(stage.seconds for stage in stages):.1f} |",
    ]


def _write_summary(settings: DemoSettings) -> None:
    root = settings.output_dir
    overlays = sorted(path.name for path in root.glob("results-overlay-*.png"))[:2]
    classes = " ".join(settings.scene_classes)
    lines = [
        "# magicseg demo",
        "",
        f"**What was learned:** {learned_line(settings).removeprefix('learned: ')}.",
        "",
        "## Act 1 — plumbing: the MagicSeg chain on tiny random models",
        "",
        "Every MagicSeg stage on the tiny preset, offline. **The tiny models (Stable Diffusion, "
        "Grounding DINO, SAM, CLIP) have random weights: this act proves the plumbing, not the "
        "quality** — the pictures are noise and the labels are what random detectors make of it, so its "
        "mIoU means nothing. With real checkpoints (`--preset paper`) the same commands make a real dataset "
        "and model.",
        "",
        *_stage_rows(settings, 1),
        "",
        f"![act 1: a random model's answer on a random picture]({PLUMBING_DIR}/prediction.png)",
        "",
        "```bash",
        f"magicseg generate --classes {' '.join(settings.classes)} --num-pairs {settings.train_pairs} --preset tiny "
        "--output-dir dataset",
        "magicseg validate dataset",
        f"magicseg train --dataset dataset --preset tiny --output-dir model --max_steps {settings.max_steps}",
        "magicseg evaluate --model model --benchmark heldout --protocol groupvit --short-side 128 --window 64 "
        "--stride 48 --decision threshold --threshold 0.5 --output results.json --overlays 4 --update-card",
        "magicseg predict --model model --image photo.png --output prediction.png",
        "```",
        "",
        "## Act 2 — learning: the tiny model on procedural scenes",
        "",
        "The same train / evaluate / predict commands on procedural scenes: drawn objects "
        f"({', '.join(settings.scene_classes)}) on textured backgrounds, each on a context patch, with "
        "occlusion; exact labels; the counterfactual is the scene without the objects. The model trains on "
        f"{settings.scene_train_pairs} scenes of seed {settings.seed} and is scored on {settings.scene_heldout_pairs} "
        f"scenes of seed {SCENE_HELDOUT_SEED} it never saw. Here the numbers mean something: "
        f"held-out mIoU **{settings.learned_miou if settings.learned_miou is not None else float('nan'):.3f}** "
        "(background + classes, threshold 0.5).",
        "",
        *_stage_rows(settings, 2),
        "",
        "![act 2: a held-out scene, its ground truth and the trained model's prediction](prediction.png)",
        "",
        *(f"![act 2: evaluation overlay]({name})" for name in overlays),
        "",
        "```bash",
        f"magicseg generate --source procedural --classes {classes} --num-pairs {settings.scene_train_pairs} "
        f"--height {SCENE_SIZE} --width {SCENE_SIZE} --seed {settings.seed} --preset tiny --output-dir dataset",
        f"magicseg generate --source procedural --classes {classes} --num-pairs {settings.scene_heldout_pairs} "
        f"--height {SCENE_SIZE} --width {SCENE_SIZE} --seed {SCENE_HELDOUT_SEED} --preset tiny --output-dir heldout",
        f"magicseg train --dataset dataset --preset tiny --output-dir model --max_steps {settings.scene_steps} "
        f"--seed {settings.seed}",
        f"magicseg evaluate --model model --benchmark heldout --protocol groupvit --short-side {SCENE_SIZE} "
        f"--window {SCENE_SIZE} --stride 48 --decision threshold --threshold 0.5 --output results.json --overlays 4 "
        "--update-card",
        "```",
        "",
    ]
    (root / "SUMMARY.md").write_text("\n".join(lines), encoding="utf-8")


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
