"""The dataset card: ``README.md`` of a dataset folder, rendered from ``dataset_card.md``.

The card is regenerated from the folder's contents — the parquet shards, ``generation.json`` and
``vocabulary.txt`` — never edited by hand: :func:`card_values` computes every value the card
shows, and the Jinja template ``dataset_card.md`` (package data beside this module) holds the
prose. It is rendered by huggingface_hub's :meth:`~huggingface_hub.DatasetCard.from_template`,
whose YAML dump keeps key order (a sorted dump breaks ``load_dataset`` on nested list features);
the ``configs``/``dataset_info`` metadata is produced by ``datasets`` itself, so that
``load_dataset(DIR)`` and ``load_dataset("USER/NAME")`` return exactly
:data:`~magicseg_hf.schema.DATASET_FEATURES`.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import datasets
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from magicseg_hf.cards.markdown import fmt_value as _fmt
from magicseg_hf.cards.markdown import md_cell as _md
from magicseg_hf.cards.paper import PAPER_CITATION, PAPER_URL
from magicseg_hf.errors import InputError
from magicseg_hf.folder import (
    CARD_DATA_FILES,
    HISTOGRAM_FILE,
    DatasetFolder,
    FolderStats,
    atomic_write_bytes,
    atomic_write_image,
)
from magicseg_hf.licenses import PROCEDURAL_LICENSE, model_license
from magicseg_hf.runtime import recorded_versions
from magicseg_hf.schema import (
    DATASET_FEATURES,
    DROP_REASONS,
    GENERATION_FILE,
    PREVIEW_FILE,
    VOCABULARY_FILE,
    folder_features,
)
from magicseg_hf.visualization import class_histogram_chart

logger = logging.getLogger(__name__)

#: The Jinja template of the dataset card (package data of ``magicseg_hf.cards``).
DATASET_CARD_TEMPLATE = "dataset_card.md"
#: Classes listed in the card's histogram table and chart.
HISTOGRAM_TOP_K = 20
#: Vocabulary classes named in the card's "no row" sentence before "and N more".
MISSING_CLASSES_SHOWN = 20
#: The command the card's first lines name for a global-label view of the folder (``label`` is per row).
EXPORT_COMMAND = "magicseg export DIR --format semantic --output-dir OUT"
#: Vocabulary names the card spells out in capitals ("the LVIS vocabulary").
SHIPPED_VOCABULARY_NAMES = frozenset({"lvis", "voc", "voc20", "context", "context59", "coco", "coco80"})

#: What each column holds (the dataset schema's meaning column), in column order.
COLUMN_DESCRIPTIONS: dict[str, str] = {
    "id": "unique row id, stable across resumed runs",
    "image": "the positive image (shows the target classes)",
    "counterfactual_image": "the same scene without the target classes",
    "label": 'mode "L" label map, per row: 0 background, i = `classes[i-1]`, 255 unknown (reserved); '
             "`magicseg export --format semantic` gives global ids",
    "classes": "target classes in label-id order, each an exact vocabulary line",
    "prompt": "the prompt of the positive image",
    "counterfactual_prompt": "the prompt of the counterfactual image (classes removed)",
    "seed": "noise seed of the positive image",
    "counterfactual_seed": "noise seed of the counterfactual (equal to `seed` except in `paper` mode)",
    "boxes": "detector boxes, xyxy in pixels",
    "box_labels": "index into `classes` of each box",
    "box_scores": "detector score of each box",
    "counterfactual_score": "highest detector score of any target class on the counterfactual (lower = cleaner)",
    "class_scores": "per class, CLIP cosine similarity of its masked crop with its name (higher = more clearly "
                    "shown); NaN for a class with no labelled pixel",
}

#: How the card's count table names each filter of :data:`~magicseg_hf.schema.DROP_REASONS`.
DROP_DESCRIPTIONS: dict[str, str] = {
    "blank_image": "blank image (safety checker output)",
    "no_detection": "no detection of a target class",
    "mask_area": "labelled area outside the bounds",
    "class_score": "a labelled class's masked crop scores below the CLIP threshold",
    "counterfactual": "counterfactual still shows a target class",
    "error": "the attempt raised an error (logged by the run)",
}
#: Drop reasons shown in the count table only when they happened (not filters of every run).
DROP_REASONS_SHOWN_WHEN_COUNTED = frozenset({"error"})

#: How each counterfactual mode makes its image (the card's "How it was made", step 2).
MODE_DESCRIPTIONS: dict[str, str] = {
    "prompt": "the same initial noise with the classes removed from the prompt and used as the negative prompt.",
    "inpaint": "the positive image's own labelled region repainted by an inpainting model (a pixel-aligned pair).",
    "paper": "as in the released MagicSeg code: an independent sample with its own seed, class words replaced "
             'by "nothing".',
}

#: (generation.json model role, the card's name for it), in the card's order.
MODEL_ROLES = (
    ("prompt_model", "Prompt writer (LLM)"),
    ("diffusion_model", "Text-to-image diffusion"),
    ("inpainting_model", "Inpainting diffusion (counterfactuals)"),
    ("detector_model", "Open-vocabulary detector"),
    ("segmenter_model", "Segmenter (SAM / SAM 2)"),
    ("class_score_model", "Class check (CLIP)"),
)

_SIZE_BUCKETS = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
)


# ----------------------------------------------------------------------------------------------
# Small pieces
# ----------------------------------------------------------------------------------------------
def size_category(num_rows: int) -> str:
    """The Hub's ``size_categories`` bucket for ``num_rows`` rows (``"n<1K"``, ``"1K<n<10K"``...)."""
    for limit, name in _SIZE_BUCKETS:
        if num_rows < limit:
            return name
    return "1B<n<10B"


def recorded_license(generation: dict[str, Any], role: str, model_id: str | None) -> str:
    """The licence name of ``role``'s model: as ``generation.json`` recorded it, else looked up."""
    entry = (generation.get("models") or {}).get(role)
    if isinstance(entry, dict) and entry.get("license"):
        return str(entry["license"])
    return model_license(model_id)[1]


def model_entry(generation: dict[str, Any], role: str) -> tuple[str, str] | None:
    """(model id, revision as the card shows it) of ``role`` in a ``generation.json``, or None.

    ``models`` (what was loaded) wins over ``config`` (what was asked).
    """
    models = generation.get("models") or {}
    config = generation.get("config") or {}
    entry = models.get(role)
    if isinstance(entry, dict) and entry.get("id"):
        model_id, revision = str(entry["id"]), entry.get("revision")
    elif config.get(role):
        model_id, revision = str(config[role]), config.get(f"{role}_revision")
    else:
        return None
    commit = entry.get("commit") if isinstance(entry, dict) else None
    loaded = f" (commit `{str(commit)[:12]}`)" if commit else ""
    if revision:
        return model_id, f"`{revision}`{loaded}"
    if model_id.startswith("tiny:"):
        return model_id, "— (built offline)"
    return model_id, f"default branch{loaded}" if loaded else "default branch (not pinned)"


def vocabulary_phrase(config: dict[str, Any], vocabulary: list[str]) -> str:
    """The classes in a few words: "the LVIS vocabulary (1203 classes)", "cat, dog", "40 classes"."""
    name = config.get("vocabulary")
    if name and str(name).lower() in SHIPPED_VOCABULARY_NAMES:
        return f"the {str(name).upper()} vocabulary ({len(vocabulary)} classes)"
    if len(vocabulary) <= 6:
        return ", ".join(vocabulary) if vocabulary else "no classes"
    return f"{len(vocabulary)} classes"


def pretty_name(config: dict[str, Any], vocabulary: list[str]) -> str:
    """The card's ``pretty_name``: what the data shows, in a few words."""
    return f"MagicSeg synthetic segmentation: {vocabulary_phrase(config, vocabulary)}"


def feature_name(feature: Any) -> str:
    """A short type name for the card's column table: ``string``, ``Image ("L")``, ``list[float32]``."""
    kind = type(feature).__name__
    if kind == "Value":
        return str(feature.dtype)
    if kind == "Image":
        return f'Image ("{feature.mode}")' if getattr(feature, "mode", None) else "Image"
    if kind == "List":
        inner = feature_name(feature.feature)
        length = getattr(feature, "length", -1)
        return f"list[{inner}, {length}]" if length not in (None, -1) else f"list[{inner}]"
    return kind


def reproduce_command(config: dict[str, Any]) -> str:
    """The ``magicseg generate`` line that reproduces the run (settings from ``generation.json``)."""
    parts = ["magicseg", "generate"]
    procedural = is_procedural(config)
    if procedural:
        parts += ["--source", "procedural"]
    if config.get("vocabulary"):
        parts += ["--vocabulary", str(config["vocabulary"])]
    elif config.get("classes"):
        parts += ["--classes", *[str(c) for c in config["classes"]]]
    keys = (("num_pairs", "seed", "max_classes_per_prompt", "height", "width", "context_bias") if procedural
            else ("num_pairs", "seed", "preset", "counterfactual", "prompt_backend"))
    for key in keys:
        if config.get(key) is not None:
            parts += [f"--{key.replace('_', '-')}", str(config[key])]
    parts += ["--output-dir", "out"]
    return shlex.join(parts)


# ----------------------------------------------------------------------------------------------
# The card's metadata and values
# ----------------------------------------------------------------------------------------------
def is_procedural(config: dict[str, Any]) -> bool:
    """Whether the run drew its scenes (``source`` procedural: no model made the images or labels)."""
    return config.get("source") == "procedural"


def card_data(
    config: dict[str, Any], vocabulary: list[str], stats: FolderStats, license_id: str
) -> DatasetCardData:
    """The card's YAML metadata: Hub fields, ``configs`` (the shard glob) and ``dataset_info``."""
    tags = ["synthetic", "magicseg", "semantic-segmentation", "open-vocabulary", "counterfactual"]
    if is_procedural(config):
        tags.append("procedural")
    else:
        tags += ["stable-diffusion", "sam"] + ([config["detector"]] if config.get("detector") else [])
    data = DatasetCardData(
        license=license_id,
        task_categories=["image-segmentation"],
        task_ids=["semantic-segmentation"],
        language=["en"],
        size_categories=[size_category(stats.num_rows)],
        pretty_name=pretty_name(config, vocabulary),
        tags=tags,
        source_datasets=["original"],
        annotations_creators=["machine-generated"],
        language_creators=["machine-generated"],
        multilinguality=["monolingual"],
    )
    MetadataConfigs({"default": {"data_files": [{"split": "train", "path": CARD_DATA_FILES}]}}).to_dataset_card_data(
        data
    )
    info = datasets.DatasetInfo(
        features=folder_card_features(stats),
        splits=datasets.SplitDict.from_split_dict(
            [{"name": "train", "num_bytes": stats.dataset_size, "num_examples": stats.num_rows}]
        ),
        download_size=stats.download_size,
        dataset_size=stats.dataset_size,
    )
    DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    return data


@dataclass
class DatasetCardValues:
    """Everything ``dataset_card.md`` shows, computed from the folder (markdown-ready strings).

    Table rows are tuples of cells, already escaped for a markdown table.
    """

    title: str
    num_rows: int
    vocabulary_phrase: str
    is_tiny: bool
    #: Drawn scenes (``source`` procedural): no diffusion model, detector or SAM; exact labels.
    procedural: bool
    preview_file: str | None
    columns: list[tuple[str, str, str]]
    image_size: str
    max_classes_per_prompt: str
    prompt_backend: str
    mode: str
    mode_description: str
    models: list[tuple[str, str, str, str]]
    template_prompts: bool
    settings: list[tuple[str, str]]
    libraries: str
    reproduce_command: str
    counts: list[tuple[str, str]]
    num_boxes: int
    mean_counterfactual_score: str | None
    has_class_scores: bool
    mean_class_score: str | None
    class_score_threshold: str | None
    classes_present: int
    vocabulary_size: int
    top_count: int
    top_classes: list[tuple[str, str, str]]
    histogram_file: str | None
    missing_classes: str | None
    dataset_ref: str
    diffusion_model: str
    image_license: str
    openrail: bool
    detector_model: str
    detector_license: str
    segmenter_model: str
    segmenter_license: str
    class_score_model: str | None
    class_score_license: str | None
    citation: str
    paper_url: str = PAPER_URL
    #: The card's first lines point to the global-label export (``label`` is per row).
    export_command: str = EXPORT_COMMAND
    vocabulary_file: str = VOCABULARY_FILE
    generation_file: str = GENERATION_FILE


def _model_rows(generation: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    config = generation.get("config") or {}
    models = generation.get("models") or {}
    mode = config.get("counterfactual", "prompt")
    rows = []
    for role, title in MODEL_ROLES:
        entry = model_entry(generation, role)
        if entry is None:
            continue
        if role == "prompt_model" and config.get("prompt_backend") == "template":
            continue
        if role == "inpainting_model" and mode != "inpaint" and role not in models:
            continue
        license_text = recorded_license(generation, role, entry[0])
        rows.append((title, _md(entry[0]), _md(entry[1]), _md(license_text)))
    return rows


def _family_text(diffusion: dict[str, Any] | None) -> str | None:
    """``"flux (FluxPipeline; distilled guidance)"`` from generation.json's ``diffusion`` record."""
    if not diffusion:
        return None
    return f"{diffusion.get('family')} ({diffusion.get('pipeline')}; {diffusion.get('guidance')} guidance)"


def _settings_rows(generation: dict[str, Any]) -> list[tuple[str, str]]:
    """The card's settings table: the diffusion run's settings, or the few a procedural run has."""
    config = generation.get("config") or {}
    summary = generation.get("summary") or {}
    image_size = ("image size (h × w)", f"{_fmt(config.get('height'))} × {_fmt(config.get('width'))}")
    if is_procedural(config):
        source = [
            ("source", "procedural (magicseg_hf.generation.procedural: drawn scenes, no model)"),
            ("objects per scene", f"1 – {_fmt(config.get('max_classes_per_prompt'))}"),
            ("context bias (P of a class's own context)", config.get("context_bias")),
            image_size,
        ]
        run = [("pairs asked", config.get("num_pairs")), ("shard size", config.get("shard_size"))]
    else:
        source = [
            ("prompt backend", config.get("prompt_backend")),
            ("counterfactual mode", config.get("counterfactual", "prompt")),
            ("generator family / pipeline", _family_text(generation.get("diffusion"))),
            ("counterfactual steered by", (generation.get("diffusion") or {}).get("counterfactual_steering")),
            ("denoising steps", config.get("num_inference_steps")),
            ("guidance scale", config.get("guidance_scale")),
            image_size,
            ("safety checker", config.get("safety_checker")),
            ("detector", config.get("detector")),
            ("segmenter", config.get("segmenter")),
            ("T5 text tokens (SD3/FLUX)", config.get("max_sequence_length")),
            ("box threshold", config.get("box_threshold")),
            ("text threshold", config.get("text_threshold")),
            ("counterfactual threshold", config.get("counterfactual_threshold")),
            ("mask area bounds (fraction of image)",
             f"{_fmt(config.get('min_mask_area'))} – {_fmt(config.get('max_mask_area'))}"),
            ("class score threshold (CLIP, -1 = off)", config.get("class_score_threshold")),
        ]
        run = [
            ("pairs asked / max attempts", f"{_fmt(config.get('num_pairs'))} / {_fmt(config.get('max_attempts'))}"),
            ("batch size / shard size", f"{_fmt(config.get('batch_size'))} / {_fmt(config.get('shard_size'))}"),
        ]
    settings = [
        ("vocabulary", config.get("vocabulary") or "`--classes` (see `vocabulary.txt`)"),
        *source,
        ("master seed", config.get("seed")),
        *run,
        ("processes", summary.get("num_processes")),
        ("magicseg-hf", recorded_versions(generation).get("magicseg_hf", "—")),
    ]
    return [(key, _md(_fmt(value))) for key, value in settings]


def folder_card_features(stats: FolderStats) -> datasets.Features:
    """The features the card declares: the shards' own schema (:func:`magicseg_hf.schema.folder_features`;
    an older folder's lacks the columns added since), :data:`DATASET_FEATURES` without shards."""
    return (folder_features(stats.columns) if stats.columns else None) or DATASET_FEATURES


def _class_score_threshold(config: dict[str, Any]) -> str | None:
    """The class check's threshold as the card shows it; None when the check was off (-1) or the
    run predates it."""
    threshold = config.get("class_score_threshold")
    if not isinstance(threshold, (int, float)) or threshold <= -1:  # -1: no cosine similarity is below it
        return None
    return _fmt(threshold)


def _count_rows(summary: dict[str, Any], num_rows: int, filtered: bool = True) -> list[tuple[str, str]]:
    """Attempts and kept rows, then (``filtered``: a run with filters) what each filter dropped."""
    dropped = summary.get("dropped") or {}
    rows = [("attempts", _fmt(summary.get("attempts"))), ("**kept (rows)**", f"**{num_rows}**")]
    if not filtered:
        return rows
    rows += [(f"dropped: {DROP_DESCRIPTIONS.get(reason, reason)}", _fmt(dropped.get(reason, 0)))
             for reason in DROP_REASONS
             if reason not in DROP_REASONS_SHOWN_WHEN_COUNTED or dropped.get(reason)]
    rows += [(f"dropped: {_md(reason)}", _fmt(dropped[reason])) for reason in sorted(set(dropped) - set(DROP_REASONS))]
    if summary.get("shortfall"):
        rows.append(("shortfall (asked but not kept)", _fmt(summary.get("shortfall"))))
    return rows


def _class_rows(stats: FolderStats) -> list[tuple[str, str, str]]:
    ordered = sorted(stats.rows_per_class.items(), key=lambda item: (-item[1], item[0]))
    rows = [(_md(name), str(count), str(stats.boxes_per_class.get(name, 0)))
            for name, count in ordered[:HISTOGRAM_TOP_K]]
    if len(ordered) > HISTOGRAM_TOP_K:
        rest = ordered[HISTOGRAM_TOP_K:]
        rows.append((f"*{len(rest)} more classes*", str(sum(c for _, c in rest)),
                     str(sum(stats.boxes_per_class.get(n, 0) for n, _ in rest))))
    return rows


def card_values(
    folder: DatasetFolder,
    generation: dict[str, Any],
    vocabulary: list[str],
    stats: FolderStats,
    repo_id: str | None = None,
) -> DatasetCardValues:
    """Every value of the card of ``folder`` (``repo_id`` goes in the loading examples)."""
    config = generation.get("config") or {}
    models = generation.get("models") or {}
    summary = generation.get("summary") or {}
    libraries = {name: version for name, version in recorded_versions(generation).items() if name != "magicseg_hf"}
    mode = config.get("counterfactual", "prompt")
    procedural = is_procedural(config)
    is_tiny = not procedural and (config.get("preset") == "tiny" or any(
        str((models.get(role) or {}).get("id", "")).startswith("tiny:") for role in models
    ))
    diffusion = model_entry(generation, "diffusion_model")
    detector = model_entry(generation, "detector_model")
    segmenter = model_entry(generation, "segmenter_model")
    class_scorer = model_entry(generation, "class_score_model")
    image_license = recorded_license(generation, "diffusion_model", diffusion[0] if diffusion else None)
    missing = [name for name in vocabulary if name not in stats.rows_per_class]
    missing_text = None
    if missing:
        shown = missing[:MISSING_CLASSES_SHOWN]
        more = len(missing) - len(shown)
        missing_text = _md(", ".join(shown) + (f" and {more} more" if more > 0 else ""))
    return DatasetCardValues(
        title=pretty_name(config, vocabulary),
        num_rows=stats.num_rows,
        vocabulary_phrase=vocabulary_phrase(config, vocabulary),
        is_tiny=is_tiny,
        procedural=procedural,
        preview_file=PREVIEW_FILE if folder.preview_path.is_file() else None,
        columns=[(column, feature_name(feature), _md(COLUMN_DESCRIPTIONS.get(column, "")))
                 for column, feature in folder_card_features(stats).items()],
        image_size=f"{stats.image_size[0]}×{stats.image_size[1]} px" if stats.image_size else "—",
        max_classes_per_prompt=_fmt(config.get("max_classes_per_prompt")),
        prompt_backend=_fmt(config.get("prompt_backend")),
        mode=str(mode),
        mode_description=MODE_DESCRIPTIONS.get(str(mode), "see `generation.json`."),
        models=[] if procedural else _model_rows(generation),
        template_prompts=config.get("prompt_backend") == "template",
        settings=_settings_rows(generation),
        libraries=", ".join(f"{name} {version}" for name, version in sorted(libraries.items())),
        reproduce_command=reproduce_command(config),
        counts=_count_rows(summary, stats.num_rows, filtered=not procedural),
        num_boxes=stats.num_boxes,
        mean_counterfactual_score=(f"{stats.mean_counterfactual_score:.3f}"
                                   if stats.mean_counterfactual_score is not None else None),
        has_class_scores="class_scores" in folder_card_features(stats),
        mean_class_score=f"{stats.mean_class_score:.3f}" if stats.mean_class_score is not None else None,
        class_score_threshold=_class_score_threshold(config),
        classes_present=len(stats.rows_per_class),
        vocabulary_size=len(vocabulary),
        top_count=min(HISTOGRAM_TOP_K, len(stats.rows_per_class)),
        top_classes=_class_rows(stats),
        histogram_file=HISTOGRAM_FILE if folder.histogram_path.is_file() or stats.num_rows else None,
        missing_classes=missing_text,
        dataset_ref=repo_id or "USER/NAME",
        diffusion_model=diffusion[0] if diffusion else "the diffusion model",
        image_license=image_license,
        openrail="OpenRAIL" in image_license,
        detector_model=detector[0] if detector else "the detector",
        detector_license=recorded_license(generation, "detector_model", detector[0] if detector else None),
        segmenter_model=segmenter[0] if segmenter else "SAM",
        segmenter_license=recorded_license(generation, "segmenter_model", segmenter[0] if segmenter else None),
        class_score_model=class_scorer[0] if class_scorer else None,
        class_score_license=recorded_license(generation, "class_score_model", class_scorer[0]) if class_scorer else None,
        citation=PAPER_CITATION,
    )


# ----------------------------------------------------------------------------------------------
# Rendering and writing
# ----------------------------------------------------------------------------------------------
def _read_generation(folder: DatasetFolder) -> dict[str, Any]:
    """``generation.json`` for the card: {} (with a warning) when absent or unreadable."""
    try:
        generation = folder.read_generation()
    except InputError as error:
        logger.warning("%s in %s; the card will lack provenance", error, folder.root)
        return {}
    if generation is None:
        logger.warning("%s has no %s; the card will lack provenance", folder.root, GENERATION_FILE)
        return {}
    return generation


def render_dataset_card(folder: str | Path | DatasetFolder, repo_id: str | None = None) -> DatasetCard:
    """The :class:`~huggingface_hub.DatasetCard` of dataset folder ``folder``.

    Reads only the folder (shards, ``generation.json``, ``vocabulary.txt``); writes nothing.
    ``repo_id`` is used in the card's loading examples (``USER/NAME`` when not given).
    """
    folder = DatasetFolder(folder)
    generation = _read_generation(folder)
    vocabulary = folder.read_vocabulary(check=False) if folder.vocabulary_path.is_file() else []
    stats = folder.stats()
    config = generation.get("config") or {}
    diffusion = model_entry(generation, "diffusion_model")
    # The images inherit the generator's licence; drawn scenes are magicseg-hf's own output (Apache-2.0).
    license_id = PROCEDURAL_LICENSE[0] if is_procedural(config) else model_license(diffusion[0] if diffusion else None)[0]
    values = card_values(folder, generation, vocabulary, stats, repo_id)
    template = resources.files(__package__) / DATASET_CARD_TEMPLATE
    with resources.as_file(template) as template_path:
        return DatasetCard.from_template(
            card_data(config, vocabulary, stats, license_id), template_path=str(template_path), **asdict(values)
        )


def write_histogram_chart(folder: str | Path | DatasetFolder, stats: FolderStats | None = None) -> Path | None:
    """Draw ``class_histogram.png`` (rows per class) into ``folder``; None when there are no rows."""
    folder = DatasetFolder(folder)
    stats = stats if stats is not None else folder.stats()
    if not stats.num_rows:
        return None
    chart = class_histogram_chart(stats.rows_per_class, top_k=HISTOGRAM_TOP_K,
                                  title=f"rows per class ({stats.num_rows} rows)")
    atomic_write_image(folder.histogram_path, chart)
    return folder.histogram_path


def write_dataset_card(folder: str | Path | DatasetFolder) -> Path:
    """Regenerate ``README.md`` and ``class_histogram.png`` of dataset folder ``folder``.

    Called by ``generate()`` once the writer has finished the folder; safe to call again at any
    time (the result depends only on the folder's data files). Returns the card's path.

    Raises:
        InputError: ``folder`` is not a directory.
    """
    folder = DatasetFolder(folder)
    if not folder.exists():
        raise InputError(f"{folder.root} is not a folder")
    write_histogram_chart(folder)
    card = render_dataset_card(folder)
    atomic_write_bytes(folder.card_path, str(card).encode("utf-8"))
    logger.debug("wrote %s", folder.card_path)
    return folder.card_path
