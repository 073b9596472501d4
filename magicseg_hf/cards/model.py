"""The model card: ``README.md`` of a ``CLIPForOpenSegmentation`` folder, rendered from ``model_card.md``.

Like the dataset card, the model card is a pure function of the folder it describes, never edited
by hand: :func:`model_card_values` computes every value from the folder's files and the Jinja
template ``model_card.md`` (package data beside this module) holds the prose. It is rendered by
huggingface_hub's :meth:`~huggingface_hub.ModelCard.from_template`. The files read:

- ``config.json`` — the :class:`~magicseg_hf.modeling.CLIPOpenSegConfig` (read as JSON: rendering a
  card imports neither torch nor transformers): image size, prompt tokens, decoder, vocabulary;
- ``training_summary.json`` — written by ``magicseg train``: datasets, preset, training arguments,
  steps, final losses, validation metrics, wall time, package versions (optional);
- ``comparison.json`` — a finished ``magicseg evaluate --suite`` table (optional; written by
  ``--suite ... --update-card``): ``columns`` (benchmarks), ``rows`` (``name``, ``method``, ``ours``) and
  ``cells`` (``row``, ``column``, ``mean_iou_percent``, ``protocol``), shown as the card's "Comparison with
  training-free baselines" section (the model's own results come, as always, from ``results*.json``);
- ``results*.json`` — evaluation results (optional), each file one result, a list of results, or a
  dict with an ``eval_results`` list. A result is a dict with at least ``mean_iou`` (as the
  ``mean_iou`` metric returns it: a fraction in [0, 1]) and ``benchmark`` (``voc21``,
  ``context60``, ``context59``, ``coco-object`` or a dataset folder); optional keys:
  ``split``, ``num_images``, ``mean_accuracy``, ``overall_accuracy``, ``protocol`` (a name or a
  dict with ``name`` and its values), ``refine``, and ``dataset_type`` / ``dataset_name`` /
  ``dataset_config`` to override what is derived from ``benchmark``.

Results go into the YAML ``model-index`` (task ``image-segmentation``, metric ``mean_iou``) through
huggingface_hub's :class:`~huggingface_hub.ModelCardData` and :class:`~huggingface_hub.EvalResult`
(transformers' own Trainer card drops segmentation metrics), and into the body's results table
with their protocol.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from magicseg_hf.cards.markdown import fmt_value, md_cell
from magicseg_hf.cards.paper import PAPER_CITATION, PAPER_URL
from magicseg_hf.errors import InputError, first_line
from magicseg_hf.folder import atomic_write_bytes
from magicseg_hf.presets import PAPER_MODELS, TINY_OPEN_SEG
from magicseg_hf.runtime import recorded_versions
from magicseg_hf.schema import CARD_FILE

logger = logging.getLogger(__name__)

#: The Jinja template of the model card (package data of ``magicseg_hf.cards``).
MODEL_CARD_TEMPLATE = "model_card.md"
#: The model's configuration in a saved folder.
CONFIG_FILE = "config.json"
#: What ``magicseg train`` records about a run, in the model folder.
TRAINING_SUMMARY_FILE = "training_summary.json"
#: Evaluation results files the card picks up from the model folder.
RESULTS_GLOB = "results*.json"
#: A finished suite's comparison table (``magicseg evaluate --suite ... --update-card``) in the model folder.
COMPARISON_FILE = "comparison.json"
#: The repo id the card's code uses when none is given (the dataset card uses the same).
REPO_PLACEHOLDER = "USER/NAME"
#: Vocabulary classes the card names before "and N more".
FIRST_CLASSES_SHOWN = 10
#: Candidate labels in the usage snippet (the first classes of the vocabulary).
EXAMPLE_LABELS_SHOWN = 3
#: Candidate labels of the usage snippet when the model has no saved vocabulary.
FALLBACK_EXAMPLE_LABELS = ("cat", "dog", "tree")
#: The pipeline's default threshold the usage snippet names (the model's trained threshold).
EXAMPLE_THRESHOLD = 0.5
#: The Hub's task for the YAML ``pipeline_tag`` (``open-vocabulary-segmentation`` is a tag).
PIPELINE_TAG = "image-segmentation"
#: Tags of every model card.
MODEL_TAGS = (
    "open-vocabulary-segmentation",
    "semantic-segmentation",
    "magicseg",
    "clip",
    "visual-prompt-tuning",
    "counterfactual",
    "synthetic-data",
)

#: Benchmark name -> (model-index dataset type, dataset name as the card shows it).
BENCHMARKS: dict[str, tuple[str, str]] = {
    "voc21": ("pascal_voc", "PASCAL VOC 2012 (21 classes, with background)"),
    "voc20": ("pascal_voc", "PASCAL VOC 2012 (20 classes, background ignored)"),
    "context60": ("pascal_context", "PASCAL Context (60 classes, with background)"),
    "context59": ("pascal_context", "PASCAL Context (59 classes, no background)"),
    "coco-object": ("coco_object", "COCO-Object (81 classes, with background)"),
}

# Licenses of known base CLIP checkpoints: (lower-cased id prefix, Hub license id).
_BASE_LICENSES: tuple[tuple[str, str], ...] = (("openai/clip-", "mit"),)
# Protocol values the results table shows, in order.
_PROTOCOL_KEYS = ("short_side", "mode", "window", "stride", "rule", "threshold", "class_names", "refine")
# Training arguments the hyperparameter table shows, in order: (key, the card's name).
_HYPERPARAMETERS = (
    ("learning_rate", "learning rate"),
    ("lr_scheduler_type", "schedule"),
    ("lr_scheduler_kwargs", "schedule arguments"),
    ("warmup_steps", "warm-up steps"),
    ("weight_decay", "weight decay"),
    ("optim", "optimizer"),
    ("max_steps", "max steps"),
    ("per_device_train_batch_size", "batch size per device"),
    ("gradient_accumulation_steps", "gradient accumulation steps"),
    ("bf16", "bf16"),
    ("fp16", "fp16"),
    ("seed", "seed"),
)


# ----------------------------------------------------------------------------------------------
# Reading the folder
# ----------------------------------------------------------------------------------------------
def _read_json(path: Path, what: str) -> Any:
    """The JSON value of ``path``, or None (with a warning) when it is absent or unreadable."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        logger.warning("%s %s cannot be read (%s); the card leaves it out", what, path, first_line(error))
        return None


def _as_result_list(value: Any, source: str) -> list[dict[str, Any]]:
    """The results held by ``value``: one result dict, a list of them, or ``{"eval_results": [...]}``."""
    if isinstance(value, dict) and isinstance(value.get("eval_results"), list):
        value = value["eval_results"]
    items = value if isinstance(value, list) else [value]
    results = []
    for item in items:
        if isinstance(item, EvalResult):
            item = _eval_result_as_dict(item)
        if not isinstance(item, dict):
            raise InputError(f"{source} must hold result dicts with 'mean_iou' and 'benchmark' (got {type(item).__name__})")
        results.append(item)
    return results


def _eval_result_as_dict(result: EvalResult) -> dict[str, Any]:
    """A huggingface_hub ``EvalResult`` of metric ``mean_iou`` as this module's result dict."""
    if result.metric_type != "mean_iou":
        raise InputError(f"the model card reports metric 'mean_iou' (got an EvalResult of {result.metric_type!r})")
    return {
        "mean_iou": result.metric_value,
        "benchmark": result.dataset_config or result.dataset_type,
        "dataset_type": result.dataset_type,
        "dataset_name": result.dataset_name,
        "dataset_config": result.dataset_config,
        "split": result.dataset_split,
        "protocol": {"name": result.metric_config, **(result.metric_args or {})} if result.metric_config else None,
    }


@dataclass(frozen=True)
class EvaluationEntry:
    """One evaluation result as the card shows and indexes it.

    ``mean_iou`` is the metric's value (a fraction in [0, 1]); the table shows it in percent.
    """

    benchmark: str
    dataset_type: str
    dataset_name: str
    dataset_config: str | None
    split: str | None
    mean_iou: float
    mean_accuracy: float | None
    overall_accuracy: float | None
    num_images: int | None
    protocol_name: str | None
    protocol_values: dict[str, Any]
    refine: str | None

    def key(self) -> tuple[str, str | None, str | None, str]:
        """What makes two results the same row: benchmark, split, protocol and its values, refinement."""
        return self.benchmark, self.split, self.protocol_name, json.dumps(
            {**self.protocol_values, "refine": self.refine}, sort_keys=True
        )

    def eval_result(self) -> EvalResult:
        """The ``model-index`` entry: task image-segmentation, metric ``mean_iou``."""
        return EvalResult(
            task_type=PIPELINE_TAG,
            task_name="Semantic segmentation",
            dataset_type=self.dataset_type,
            dataset_name=self.dataset_name,
            dataset_config=self.dataset_config,
            dataset_split=self.split,
            metric_type="mean_iou",
            metric_name="mIoU",
            metric_value=self.mean_iou,
            metric_config=self.protocol_name,
            metric_args=dict(self.protocol_values) or None,
        )


def _float_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def evaluation_entry(result: dict[str, Any]) -> EvaluationEntry | None:
    """Normalise one result dict (see the module docstring); None when its mIoU is NaN (nothing measured).

    Raises:
        InputError: no ``mean_iou`` or ``benchmark``, or a ``mean_iou`` outside [0, 1].
    """
    if "mean_iou" not in result or not result.get("benchmark"):
        raise InputError(f"an evaluation result needs 'mean_iou' and 'benchmark' (got keys {sorted(result)})")
    try:
        mean_iou = float(result["mean_iou"])
    except (TypeError, ValueError) as error:
        raise InputError(f"mean_iou must be a number (got {result['mean_iou']!r})") from error
    if math.isnan(mean_iou):
        logger.warning("the %s result has no mIoU (NaN: no class was present); the card leaves it out",
                       result["benchmark"])
        return None
    if not 0.0 <= mean_iou <= 1.0:
        raise InputError(f"mean_iou must be a fraction in [0, 1] as the mean_iou metric returns it (got {mean_iou})")
    benchmark = str(result["benchmark"])
    known_type, known_name = BENCHMARKS.get(benchmark, (None, None))
    folder_name = Path(benchmark).name or benchmark
    protocol = result.get("protocol")
    if isinstance(protocol, dict):
        protocol_name = protocol.get("name")
        protocol_values = {key: protocol[key] for key in _PROTOCOL_KEYS if protocol.get(key) is not None}
    else:
        protocol_name, protocol_values = (str(protocol) if protocol else None), {}
    num_images = result.get("num_images")
    return EvaluationEntry(
        benchmark=benchmark if known_type else folder_name,
        dataset_type=str(result.get("dataset_type") or known_type or folder_name),
        dataset_name=str(result.get("dataset_name") or known_name or f"MagicSeg-format dataset {folder_name}"),
        dataset_config=result.get("dataset_config") or (benchmark if known_type else None),
        split=result.get("split") or result.get("dataset_split"),
        mean_iou=mean_iou,
        mean_accuracy=_float_or_none(result.get("mean_accuracy")),
        overall_accuracy=_float_or_none(result.get("overall_accuracy")),
        num_images=int(num_images) if isinstance(num_images, (int, float)) else None,
        protocol_name=str(protocol_name) if protocol_name else None,
        protocol_values=protocol_values,
        refine=str(result["refine"]) if result.get("refine") else None,
    )


def evaluation_entries(model_dir: str | Path, results: Any = None) -> list[EvaluationEntry]:
    """The results the card shows: ``results`` (given) first, then the folder's ``results*.json``.

    A result given twice (same benchmark, split and protocol) is shown once, the given one winning.
    An unreadable or malformed file in the folder is left out with a warning; a malformed
    ``results`` argument raises :class:`~magicseg_hf.errors.InputError`.
    """
    entries: list[EvaluationEntry] = []
    if results is not None:
        for item in _as_result_list(results, "results"):
            entry = evaluation_entry(item)
            if entry is not None:
                entries.append(entry)
    for path in sorted(Path(model_dir).glob(RESULTS_GLOB)):
        value = _read_json(path, "results file")
        if value is None:
            continue
        try:
            found = [evaluation_entry(item) for item in _as_result_list(value, str(path))]
        except InputError as error:
            logger.warning("%s: %s; the card leaves it out", path, error)
            continue
        entries += [entry for entry in found if entry is not None]
    unique: dict[tuple[str, str | None, str | None, str], EvaluationEntry] = {}
    for entry in entries:
        unique.setdefault(entry.key(), entry)
    return list(unique.values())


# ----------------------------------------------------------------------------------------------
# Small pieces
# ----------------------------------------------------------------------------------------------
def is_hub_id(source: str) -> bool:
    """Whether a ``--dataset`` value is a Hub repo id (``namespace/name``) rather than a local folder."""
    text = str(source)
    if text.count("/") != 1 or text.startswith((".", "/", "~")) or Path(text).expanduser().exists():
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def is_tiny_model(config: dict[str, Any], summary: dict[str, Any]) -> bool:
    """Whether the folder holds a ``tiny`` preset model (its summary says so, or its config has the tiny sizes)."""
    if summary.get("preset"):
        return summary["preset"] == "tiny"
    def same(saved: Any, value: Any) -> bool:  # config.json stores tuples as lists
        return saved == (list(value) if isinstance(value, tuple) else value)

    return bool(config) and all(same(config.get(key), value) for key, value in TINY_OPEN_SEG.items())


def base_model_id(config: dict[str, Any], summary: dict[str, Any], is_tiny: bool) -> str | None:
    """The Hub id of the CLIP the model was built on; None for the tiny preset's random CLIP."""
    if is_tiny:
        return None
    if summary.get("base_model"):
        return str(summary["base_model"])
    if summary.get("preset") == "paper":
        return PAPER_MODELS["clip_model"][0]
    name = str((config.get("clip_config") or {}).get("_name_or_path") or "")
    return name if name and is_hub_id(name) else None


def model_license(base_model: str | None, is_tiny: bool) -> str:
    """The Hub license id of the weights: Apache-2.0 for tiny random ones, else the base CLIP's."""
    if is_tiny:
        return "apache-2.0"
    lowered = (base_model or "").lower()
    for prefix, license_id in _BASE_LICENSES:
        if lowered.startswith(prefix):
            return license_id
    return "other"


def vocabulary_phrase(vocabulary: list[str]) -> str:
    """The saved vocabulary in a few words: "3 classes: cat, dog, tree", "1203 classes (first: ...)"."""
    if not vocabulary:
        return "no saved vocabulary (name the classes at every call)"
    shown = vocabulary[:FIRST_CLASSES_SHOWN]
    more = len(vocabulary) - len(shown)
    names = ", ".join(shown) + (f" and {more} more" if more > 0 else "")
    return f"{len(vocabulary)} {'class' if len(vocabulary) == 1 else 'classes'}: {names}"


def _source_name(source: str) -> str:
    """A training source as the card names it: a Hub id as is, a local folder by its name only."""
    return source if is_hub_id(source) else (Path(source).name or source)


def train_command(summary: dict[str, Any]) -> str | None:
    """A ``magicseg train`` line with the run's main settings (local folders by name); None without a summary."""
    if not summary:
        return None
    arguments = summary.get("training_arguments") or {}
    sources = [_source_name(str(item.get("source"))) for item in summary.get("datasets") or [] if item.get("source")]
    parts = ["magicseg", "train", "--dataset", *(sources or ["DATA"])]
    if summary.get("preset"):
        parts += ["--preset", str(summary["preset"])]
    parts += ["--output-dir", "model"]
    if summary.get("num_classes") is not None:
        parts += ["--num-classes", str(summary["num_classes"])]
    if summary.get("counterfactual_loss_weight") is not None:
        parts += ["--counterfactual-loss-weight", fmt_value(summary["counterfactual_loss_weight"])]
    for key in ("max_steps", "learning_rate", "per_device_train_batch_size", "seed"):
        if arguments.get(key) is not None:
            parts += [f"--{key}", fmt_value(arguments[key])]
    return shlex.join(parts)


def _python_literal(value: str | list[str]) -> str:
    """A string or a list of strings as Python source (double-quoted, like the rest of the snippet)."""
    return json.dumps(value, ensure_ascii=False)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


# ----------------------------------------------------------------------------------------------
# The card's metadata and values
# ----------------------------------------------------------------------------------------------
def model_card_data(
    model_name: str,
    base_model: str | None,
    license_id: str,
    datasets: list[str],
    entries: list[EvaluationEntry],
    use_lora: bool = False,
) -> ModelCardData:
    """The card's YAML metadata (``model-index`` when there are results)."""
    tags = list(MODEL_TAGS) + (["lora", "peft"] if use_lora else [])
    return ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        license=license_id,
        base_model=base_model,
        datasets=datasets or None,
        language=["en"],
        metrics=["mean_iou"],
        tags=tags,
        eval_results=[entry.eval_result() for entry in entries] or None,
    )


@dataclass
class ModelCardValues:
    """Everything ``model_card.md`` shows, computed from the folder (markdown-ready strings).

    Table rows are tuples of cells, already escaped for a markdown table; ``model_ref`` and
    ``example_labels`` are Python literals (the usage snippet must run), ``model_arg`` is
    shell-quoted.
    """

    model_name: str
    model_ref: str
    model_arg: str
    is_tiny: bool
    use_lora: bool
    base_model: str | None
    vocabulary_size: int
    vocabulary_phrase: str
    example_labels: str
    example_threshold: float
    architecture: list[tuple[str, str]]
    has_training: bool
    datasets: list[tuple[str, str, str]]
    hyperparameters: list[tuple[str, str]]
    losses: list[tuple[str, str]]
    validation: list[tuple[str, str]]
    global_steps: str
    wall_time: str
    libraries: str
    train_command: str | None
    results: list[tuple[str, ...]]
    protocols: list[tuple[str, str]]
    citation: str
    comparison: Comparison | None = None
    paper_url: str = PAPER_URL


def _architecture_rows(config: dict[str, Any], base_model: str | None, is_tiny: bool) -> list[tuple[str, str]]:
    clip = config.get("clip_config") or {}
    vision = clip.get("vision_config") or {}
    text = clip.get("text_config") or {}
    depth = config.get("prompt_depth")
    layers = vision.get("num_hidden_layers")
    prompt_layers = "all" if depth is None else str(depth)
    rows = [
        ("base CLIP (frozen)", f"`{base_model}`" if base_model else
         "random tiny CLIP built offline (`tiny` preset)" if is_tiny else "see `config.json`"),
        ("vision tower", f"width {fmt_value(vision.get('hidden_size'))}, {fmt_value(layers)} layers, "
                         f"patch {fmt_value(vision.get('patch_size'))}"),
        ("text tower", f"width {fmt_value(text.get('hidden_size'))}, {fmt_value(text.get('num_hidden_layers'))} layers; "
                       f"{len(config.get('templates') or [])} prompt templates averaged per class"),
        ("input size", f"{fmt_value(config.get('image_size'))} px (sliding window "
                       f"{fmt_value(config.get('slide_crop_size'))}/{fmt_value(config.get('slide_stride'))})"),
        ("visual prompts", f"{fmt_value(config.get('num_prompt_tokens'))} tokens per layer, {prompt_layers} of "
                           f"{fmt_value(layers)} layers; prompt_proj {'on' if config.get('use_prompt_proj') else 'off'}, "
                           f"prompt_norm {'on' if config.get('use_prompt_norm') else 'off'}"),
        ("decoder", f"{fmt_value(config.get('decoder_num_layers'))} layers, width "
                    f"{fmt_value(config.get('decoder_hidden_size'))}, {fmt_value(config.get('decoder_num_heads'))} "
                    f"heads, FFN {fmt_value(config.get('decoder_intermediate_size'))}"),
        ("losses", f"focal × {fmt_value(config.get('focal_loss_weight'))}, dice × "
                   f"{fmt_value(config.get('dice_loss_weight'))}, counterfactual × "
                   f"{fmt_value(config.get('counterfactual_loss_weight'))}"),
    ]
    if config.get("use_lora"):
        rows.append(("LoRA (vision tower)", f"rank {fmt_value(config.get('lora_rank'))}, alpha "
                                            f"{fmt_value(config.get('lora_alpha'))}"))
    return [(key, md_cell(value)) for key, value in rows]


def _dataset_rows(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    for item in summary.get("datasets") or []:
        source = str(item.get("source", "?"))
        name = f"[{source}](https://huggingface.co/datasets/{source})" if is_hub_id(source) else (
            f"local folder `{_source_name(source)}`")
        rows.append((md_cell(name), fmt_value(item.get("rows")), fmt_value(item.get("vocabulary"))))
    return rows


def _hyperparameter_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    arguments = summary.get("training_arguments") or {}
    rows = [("preset", fmt_value(summary.get("preset"))),
            ("classes per row (K)", fmt_value(summary.get("num_classes"))),
            ("training vocabulary", fmt_value(summary.get("vocabulary_size"))),
            ("counterfactual loss weight", fmt_value(summary.get("counterfactual_loss_weight")))]
    for key, name in _HYPERPARAMETERS:
        value = arguments.get(key)
        if value in (None, {}, "") or (key in ("bf16", "fp16") and not value):
            continue
        if key == "max_steps" and value <= 0:
            key, name, value = "num_train_epochs", "epochs", arguments.get("num_train_epochs")
        rows.append((name, json.dumps(value, sort_keys=True) if isinstance(value, dict) else fmt_value(value)))
    return [(key, md_cell(value)) for key, value in rows]


def _metric_rows(values: dict[str, Any], names: dict[str, str]) -> list[tuple[str, str]]:
    rows = []
    for key, name in names.items():
        number = _float_or_none(values.get(key))
        if number is not None:
            rows.append((name, f"{number:.4f}"))
    return rows


def _validation_rows(validation: dict[str, Any]) -> list[tuple[str, str]]:
    """The held-out metrics of ``training_summary.json``: IoU and accuracies in percent, the loss as is."""
    rows = [(name, f"{_percent(number)} %") for key, name in (
        ("eval_mean_iou", "mIoU"), ("eval_mean_accuracy", "mean accuracy"), ("eval_overall_accuracy", "pixel accuracy"))
        if (number := _float_or_none(validation.get(key))) is not None]
    return rows + _metric_rows(validation, {"eval_loss": "loss"})


def _result_rows(entries: list[EvaluationEntry]) -> list[tuple[str, ...]]:
    rows = []
    for entry in entries:
        rows.append((
            md_cell(entry.dataset_name),
            md_cell(entry.split or "—"),
            fmt_value(entry.num_images),
            md_cell(entry.protocol_name or "—") + (f" + {md_cell(entry.refine)}" if entry.refine else ""),
            f"**{_percent(entry.mean_iou)}**",
            _percent(entry.mean_accuracy),
        ))
    return rows


@dataclass(frozen=True)
class Comparison:
    """A suite's table as the card shows it: header cells (benchmarks) and rows (the method, then one
    ``mIoU (protocol)`` cell per benchmark), markdown-ready; the model's own rows in bold."""

    columns: list[str]
    rows: list[tuple[str, ...]]
    suite: str | None


def comparison_cell(mean_iou_percent: Any, protocol: Any) -> str:
    """One table cell, as ``comparison.md`` writes it: ``42.37 (zegclip)``; ``n/a`` for no mIoU, ``—`` for no cell."""
    if protocol is None:
        return "—"
    value = _float_or_none(mean_iou_percent)
    return md_cell(f"{'n/a' if value is None else f'{value:.2f}'} ({protocol})")


def read_comparison(model_dir: str | Path) -> Comparison | None:
    """The folder's ``comparison.json`` as the card shows it; None when absent or malformed (with a warning)."""
    path = Path(model_dir) / COMPARISON_FILE
    value = _read_json(path, "comparison file")
    if value is None:
        return None
    try:
        columns = [str(column) for column in value["columns"]]
        cells = {(str(cell["row"]), str(cell["column"])): (cell.get("mean_iou_percent"), cell.get("protocol"))
                 for cell in value["cells"]}
        rows = []
        for row in value["rows"]:
            name = md_cell(row["name"])
            shown = [comparison_cell(*cells.get((str(row["name"]), column), (None, None))) for column in columns]
            rows.append((f"**{name}**", *(f"**{cell}**" for cell in shown)) if row.get("ours") else (name, *shown))
    except (KeyError, TypeError, AttributeError) as error:
        logger.warning("comparison file %s is malformed (%s); the card leaves it out", path, first_line(error))
        return None
    suite = value.get("suite")
    return Comparison([md_cell(column) for column in columns], rows, str(suite) if suite else None)


def _protocol_rows(entries: list[EvaluationEntry]) -> list[tuple[str, str]]:
    rows: dict[str, str] = {}
    for entry in entries:
        name = entry.protocol_name or "—"
        values = ", ".join(f"{key.replace('_', ' ')} {fmt_value(entry.protocol_values[key])}"
                           for key in _PROTOCOL_KEYS if key in entry.protocol_values)
        rows.setdefault(md_cell(name), md_cell(values or "see the results file"))
    return list(rows.items())


def model_card_values(
    model_dir: Path,
    config: dict[str, Any],
    summary: dict[str, Any],
    entries: list[EvaluationEntry],
    repo_id: str | None = None,
) -> ModelCardValues:
    """Every value of the card of the model in ``model_dir`` (``repo_id`` goes in the code)."""
    is_tiny = is_tiny_model(config, summary)
    base_model = base_model_id(config, summary, is_tiny)
    vocabulary = [str(name) for name in config.get("vocabulary") or []]
    labels = vocabulary[:EXAMPLE_LABELS_SHOWN] or list(FALLBACK_EXAMPLE_LABELS)
    versions = recorded_versions(summary)
    wall_time = _float_or_none(summary.get("wall_time_seconds"))
    return ModelCardValues(
        model_name=repo_id.split("/")[-1] if repo_id else model_dir.resolve().name,
        model_ref=_python_literal(repo_id or REPO_PLACEHOLDER),
        model_arg=shlex.quote(repo_id or REPO_PLACEHOLDER),
        is_tiny=is_tiny,
        use_lora=bool(config.get("use_lora")),
        base_model=base_model,
        vocabulary_size=len(vocabulary),
        vocabulary_phrase=vocabulary_phrase(vocabulary),
        example_labels=_python_literal(labels),
        example_threshold=EXAMPLE_THRESHOLD,
        architecture=_architecture_rows(config, base_model, is_tiny),
        has_training=bool(summary),
        datasets=_dataset_rows(summary),
        hyperparameters=_hyperparameter_rows(summary) if summary else [],
        losses=_metric_rows(summary.get("final_losses") or {}, {
            "loss": "total", "focal_loss": "focal", "dice_loss": "dice", "counterfactual_loss": "counterfactual"}),
        validation=_validation_rows(summary.get("validation") or {}),
        global_steps=fmt_value(summary.get("global_steps")),
        wall_time=f"{wall_time / 60:.1f} min" if wall_time is not None else "—",
        libraries=", ".join(f"{name} {version}" for name, version in sorted(versions.items())),
        train_command=train_command(summary),
        results=_result_rows(entries),
        protocols=_protocol_rows(entries),
        citation=PAPER_CITATION,
        comparison=read_comparison(model_dir),
    )


# ----------------------------------------------------------------------------------------------
# Rendering and writing
# ----------------------------------------------------------------------------------------------
def render_model_card(model_dir: str | Path, repo_id: str | None = None, results: Any = None) -> ModelCard:
    """The :class:`~huggingface_hub.ModelCard` of the ``CLIPForOpenSegmentation`` saved in ``model_dir``.

    Reads only the folder (``config.json``, ``training_summary.json``, ``results*.json``,
    ``comparison.json``); writes
    nothing. ``repo_id`` is used in the usage code and the model-index name (``USER/NAME`` and the
    folder's name when not given). ``results``: evaluation results shown besides the folder's own
    (a result dict, a list of them, a dict with an ``eval_results`` list, or ``EvalResult`` objects
    of metric ``mean_iou``; see the module docstring).

    Raises:
        InputError: ``model_dir`` is not a folder holding a ``config.json``, or ``results`` is malformed.
    """
    folder = Path(model_dir).expanduser()
    config = _read_json(folder / CONFIG_FILE, "model config")
    if not isinstance(config, dict):
        raise InputError(f"{folder} is not a saved model folder (expected a readable {CONFIG_FILE})")
    summary = _read_json(folder / TRAINING_SUMMARY_FILE, "training summary")
    if summary is None:
        logger.info("%s has no %s; the card will lack the training section", folder, TRAINING_SUMMARY_FILE)
    summary = summary if isinstance(summary, dict) else {}
    entries = evaluation_entries(folder, results)
    values = model_card_values(folder, config, summary, entries, repo_id)
    datasets = [str(item["source"]) for item in summary.get("datasets") or []
                if item.get("source") and is_hub_id(str(item["source"]))]
    data = model_card_data(
        model_name=values.model_name,
        base_model=values.base_model,
        license_id=model_license(values.base_model, values.is_tiny),
        datasets=datasets,
        entries=entries,
        use_lora=bool(config.get("use_lora")),
    )
    template = resources.files(__package__) / MODEL_CARD_TEMPLATE
    with resources.as_file(template) as template_path:
        return ModelCard.from_template(data, template_path=str(template_path), **asdict(values))


def write_model_card(model_dir: str | Path, repo_id: str | None = None, results: Any = None) -> Path:
    """Render the card of ``model_dir`` (see :func:`render_model_card`) into its ``README.md``, atomically.

    Called at the end of ``magicseg train``; safe to call again at any time. Results passed here
    are rendered but not stored: keep them as a ``results*.json`` file in the folder so that every
    later rendering (e.g. ``magicseg push``) shows them too. Returns the card's path.
    """
    folder = Path(model_dir).expanduser()
    card = render_model_card(folder, repo_id=repo_id, results=results)
    path = folder / CARD_FILE
    atomic_write_bytes(path, str(card).encode("utf-8"))
    logger.debug("wrote %s", path)
    return path
