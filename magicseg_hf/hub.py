"""Cards and the Hub: the dataset-card renderer and the helpers that publish a dataset folder.

The dataset card (``README.md`` of a dataset folder) is regenerated from the folder's contents
— the parquet shards, ``generation.json`` and ``vocabulary.txt`` — by :func:`write_dataset_card`,
never edited by hand. It is written through huggingface_hub's :class:`~huggingface_hub.DatasetCard`
(whose YAML dump keeps key order: a sorted dump breaks ``load_dataset`` on nested list features),
and its ``configs``/``dataset_info`` metadata is produced by ``datasets`` itself, so that
``load_dataset(DIR)`` and ``load_dataset("USER/NAME")`` return exactly
:data:`~magicseg_hf.schema.DATASET_FEATURES`.

:func:`push_dataset_folder` publishes a folder with ``HfApi.create_repo`` + ``create_commit``.
It never writes into the folder, fails at once when the Hub is offline or unreachable, and takes
the token from huggingface_hub's usual sources without ever printing or writing it.
"""

from __future__ import annotations

import fnmatch
import io
import json
import logging
import os
import re
import shlex
import socket
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from magicseg_hf import __version__
from magicseg_hf.errors import InputError, MagicSegError
from magicseg_hf.schema import (
    CARD_FILE,
    DATA_DIR,
    DATASET_FEATURES,
    DROP_REASONS,
    GENERATION_FILE,
    PREVIEW_FILE,
    PROMPTS_FILE,
    VOCABULARY_FILE,
    WORK_DIR,
)

logger = logging.getLogger(__name__)

#: The class-histogram chart written beside the card.
HISTOGRAM_FILE = "class_histogram.png"
#: Glob (relative to the folder) of the data shards; also the card's ``configs`` data_files path.
SHARD_PATTERN = f"{DATA_DIR}/train-*.parquet"
CARD_DATA_FILES = f"{DATA_DIR}/train-*"
#: Classes listed in the card's histogram table and chart.
HISTOGRAM_TOP_K = 20
PAPER_URL = "https://arxiv.org/abs/2603.19575"
PAPER_CITATION = """\
@article{cai2026magicseg,
  title   = {MagicSeg: Open-World Segmentation Pretraining via Counterfactural Diffusion-Based Auto-Generation},
  author  = {Cai, Kaixin and Ren, Pengzhen and Han, Jianhua and Zhu, Yi and Xu, Hang and Liu, Jianzhuang and Liang, Xiaodan},
  journal = {arXiv preprint arXiv:2603.19575},
  year    = {2026}
}"""

#: What each column holds (DESIGN.md's schema table), in column order.
COLUMN_DESCRIPTIONS: dict[str, str] = {
    "id": "unique row id, stable across resumed runs",
    "image": "the positive image (shows the target classes)",
    "counterfactual_image": "the same scene without the target classes",
    "label": 'mode "L" label map: 0 background, i = `classes[i-1]`, 255 unknown (reserved)',
    "classes": "target classes in label-id order, each an exact vocabulary line",
    "prompt": "the prompt of the positive image",
    "counterfactual_prompt": "the prompt of the counterfactual image (classes removed)",
    "seed": "noise seed of the positive image",
    "counterfactual_seed": "noise seed of the counterfactual (equal to `seed` except in `paper` mode)",
    "boxes": "detector boxes, xyxy in pixels",
    "box_labels": "index into `classes` of each box",
    "box_scores": "detector score of each box",
    "counterfactual_score": "highest detector score of any target class on the counterfactual (lower = cleaner)",
}

DROP_DESCRIPTIONS: dict[str, str] = {
    "blank_image": "blank image (safety checker output)",
    "no_detection": "no detection of a target class",
    "mask_area": "labelled area outside the bounds",
    "counterfactual": "counterfactual still shows a target class",
}

_ROLE_TITLES = (
    ("prompt_model", "Prompt writer (LLM)"),
    ("diffusion_model", "Text-to-image diffusion"),
    ("inpainting_model", "Inpainting diffusion (counterfactuals)"),
    ("detector_model", "Open-vocabulary detector"),
    ("segmenter_model", "Segmenter (SAM)"),
)

# Licenses of known generators (Hub license identifiers); the images inherit them.
_GENERATOR_LICENSES: tuple[tuple[str, str, str], ...] = (
    # (substring of the lower-cased model id, Hub license id, human name)
    ("stable-diffusion-v1", "creativeml-openrail-m", "CreativeML OpenRAIL-M"),
    ("stable-diffusion-inpainting", "creativeml-openrail-m", "CreativeML OpenRAIL-M"),
    ("compvis/stable-diffusion", "creativeml-openrail-m", "CreativeML OpenRAIL-M"),
    ("stable-diffusion-2", "openrail++", "CreativeML OpenRAIL++-M"),
    ("stable-diffusion-xl", "openrail++", "CreativeML OpenRAIL++-M"),
)
_ANNOTATOR_LICENSES: tuple[tuple[str, str], ...] = (
    ("grounding-dino", "Apache-2.0"),
    ("groundingdino", "Apache-2.0"),
    ("owlv2", "Apache-2.0"),
    ("sam", "Apache-2.0"),
)


# ----------------------------------------------------------------------------------------------
# Reading a dataset folder
# ----------------------------------------------------------------------------------------------
def shard_paths(folder: str | Path) -> list[Path]:
    """The data shards of ``folder`` (``data/train-*.parquet``), sorted; ``.work/`` is ignored."""
    folder = Path(folder)
    return sorted(p for p in folder.glob(SHARD_PATTERN) if p.is_file())


@dataclass
class FolderStats:
    """What the card says about the data, read from the shards (only small columns are read)."""

    num_rows: int = 0
    num_shards: int = 0
    download_size: int = 0
    dataset_size: int = 0
    rows_per_class: Counter = field(default_factory=Counter)
    boxes_per_class: Counter = field(default_factory=Counter)
    num_boxes: int = 0
    image_size: tuple[int, int] | None = None
    mean_counterfactual_score: float | None = None


def read_folder_stats(folder: str | Path) -> FolderStats:
    """Row count, sizes and per-class counts of a folder's shards."""
    import pyarrow.parquet as pq
    from PIL import Image

    stats = FolderStats()
    score_total = 0.0
    for path in shard_paths(folder):
        parquet = pq.ParquetFile(path)
        metadata = parquet.metadata
        stats.num_shards += 1
        stats.num_rows += metadata.num_rows
        stats.download_size += path.stat().st_size
        stats.dataset_size += sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
        table = parquet.read(columns=["classes", "box_labels", "counterfactual_score"])
        for classes, box_labels, score in zip(
            table.column("classes").to_pylist(),
            table.column("box_labels").to_pylist(),
            table.column("counterfactual_score").to_pylist(),
        ):
            classes = classes or []
            stats.rows_per_class.update(set(classes))
            for index in box_labels or []:
                if 0 <= index < len(classes):
                    stats.boxes_per_class[classes[index]] += 1
            stats.num_boxes += len(box_labels or [])
            score_total += float(score or 0.0)
        if stats.image_size is None and metadata.num_rows:
            first = parquet.read_row_group(0, columns=["image"]).column("image")[0].as_py()
            if first and first.get("bytes"):
                stats.image_size = Image.open(io.BytesIO(first["bytes"])).size
    if stats.num_rows:
        stats.mean_counterfactual_score = score_total / stats.num_rows
    return stats


def read_generation_info(folder: str | Path) -> dict[str, Any]:
    """``generation.json`` of ``folder`` ({} when absent or unreadable, with a warning)."""
    path = Path(folder) / GENERATION_FILE
    if not path.is_file():
        logger.warning("%s has no %s; the card will lack provenance", folder, GENERATION_FILE)
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        logger.warning("cannot read %s: %s", path, error)
        return {}
    return value if isinstance(value, dict) else {}


def read_vocabulary(folder: str | Path) -> list[str]:
    """The run's vocabulary (``vocabulary.txt``: one class per line); [] when absent."""
    path = Path(folder) / VOCABULARY_FILE
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ----------------------------------------------------------------------------------------------
# Card pieces
# ----------------------------------------------------------------------------------------------
def size_category(num_rows: int) -> str:
    """The Hub's ``size_categories`` bucket for ``num_rows`` rows."""
    buckets = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
               (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))
    for limit, name in buckets:
        if num_rows < limit:
            return name
    return "1B<n<10B"


def generator_license(model_id: str | None) -> tuple[str, str]:
    """(Hub license id, human name) of the images made by diffusion model ``model_id``.

    The tiny preset's random weights are built by this package (Apache-2.0); an unknown model
    gives ``("other", ...)`` and the card tells readers to check the generator's model card.
    """
    if not model_id:
        return "other", "the license of the generating model"
    lowered = str(model_id).lower()
    if lowered.startswith("tiny:"):
        return "apache-2.0", "Apache-2.0 (random tiny weights built by magicseg-hf)"
    for needle, license_id, name in _GENERATOR_LICENSES:
        if needle in lowered:
            return license_id, name
    return "other", f"the license of `{model_id}` (see its model card)"


def _annotator_license(model_id: str | None) -> str:
    lowered = str(model_id or "").lower()
    if lowered.startswith("tiny:"):
        return "Apache-2.0"
    for needle, name in _ANNOTATOR_LICENSES:
        if needle in lowered:
            return name
    return "see its model card"


def _model_entry(models: dict[str, Any], config: dict[str, Any], role: str) -> tuple[str, str] | None:
    entry = models.get(role)
    if isinstance(entry, dict) and entry.get("id"):
        model_id, revision = str(entry["id"]), entry.get("revision")
    elif config.get(role):
        model_id, revision = str(config[role]), config.get(f"{role}_revision")
    else:
        return None
    if revision:
        return model_id, f"`{revision}`"
    return model_id, "— (built offline)" if model_id.startswith("tiny:") else "default branch (not pinned)"


def _vocabulary_phrase(config: dict[str, Any], vocabulary: list[str]) -> str:
    name = config.get("vocabulary")
    if name and str(name).lower() in {"lvis", "voc", "voc20", "context", "context59", "coco", "coco80"}:
        return f"the {str(name).upper()} vocabulary ({len(vocabulary)} classes)"
    if len(vocabulary) <= 6:
        return ", ".join(vocabulary) if vocabulary else "no classes"
    return f"{len(vocabulary)} classes"


def pretty_name(config: dict[str, Any], vocabulary: list[str]) -> str:
    """The card's ``pretty_name``: what the data shows, in a few words."""
    return f"MagicSeg synthetic segmentation: {_vocabulary_phrase(config, vocabulary)}"


def _md(text: Any) -> str:
    """Escape a value for a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _feature_name(feature: Any) -> str:
    """A short type name for the card's column table: ``string``, ``Image``, ``list[float32]``."""
    kind = type(feature).__name__
    if kind == "Value":
        return str(feature.dtype)
    if kind == "Image":
        return f'Image ("{feature.mode}")' if getattr(feature, "mode", None) else "Image"
    if kind == "List":
        inner = _feature_name(feature.feature)
        length = getattr(feature, "length", -1)
        return f"list[{inner}, {length}]" if length not in (None, -1) else f"list[{inner}]"
    return kind


def _reproduce_command(config: dict[str, Any]) -> str:
    """The ``magicseg generate`` line that reproduces the run (settings from ``generation.json``)."""
    parts = ["magicseg", "generate"]
    if config.get("vocabulary"):
        parts += ["--vocabulary", str(config["vocabulary"])]
    elif config.get("classes"):
        parts += ["--classes", *[str(c) for c in config["classes"]]]
    for key in ("num_pairs", "seed", "preset", "counterfactual", "prompt_backend"):
        if config.get(key) is not None:
            parts += [f"--{key.replace('_', '-')}", str(config[key])]
    parts += ["--output-dir", "out"]
    return shlex.join(parts)


def _build_card_data(
    config: dict[str, Any],
    vocabulary: list[str],
    stats: FolderStats,
    license_id: str,
    detector: str | None,
) -> Any:
    import datasets
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    tags = ["synthetic", "magicseg", "semantic-segmentation", "open-vocabulary", "counterfactual",
            "stable-diffusion", "sam"]
    if detector:
        tags.append(detector)
    card_data = DatasetCardData(
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
        card_data
    )
    info = datasets.DatasetInfo(
        features=DATASET_FEATURES,
        splits=datasets.SplitDict.from_split_dict(
            [{"name": "train", "num_bytes": stats.dataset_size, "num_examples": stats.num_rows}]
        ),
        download_size=stats.download_size,
        dataset_size=stats.dataset_size,
    )
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    return card_data


def _card_text(
    folder: Path,
    generation: dict[str, Any],
    vocabulary: list[str],
    stats: FolderStats,
    repo_id: str | None,
    image_license: str,
) -> str:
    config = generation.get("config") or {}
    models = generation.get("models") or {}
    summary = generation.get("summary") or {}
    libraries = generation.get("library_versions") or {}
    dataset_ref = repo_id or "USER/NAME"
    has_preview = (folder / PREVIEW_FILE).is_file()
    name = pretty_name(config, vocabulary)
    lines: list[str] = [f"# {name}", ""]

    mode = config.get("counterfactual", "prompt")
    lines += [
        f"**{stats.num_rows} image pairs** with pixel labels for {_vocabulary_phrase(config, vocabulary)}, "
        f"made from class names alone by magicseg-hf following "
        f"[MagicSeg]({PAPER_URL}) (Cai et al., 2026). Each row holds a generated image that shows its "
        "target classes, a *counterfactual* image of the same scene without them, and a label map "
        "obtained by an open-vocabulary detector followed by SAM. The pairs serve segmentation "
        "pretraining: pseudo-mask supervision on the positive image and a counterfactual contrastive "
        "loss between the two images.",
        "",
    ]
    if config.get("preset") == "tiny" or any(
        str((models.get(role) or {}).get("id", "")).startswith("tiny:") for role in models
    ):
        lines += [
            "> **Test data.** This dataset was made with the `tiny` preset: small models with random "
            "weights, built offline. Its pictures are noise and its labels are meaningless; it exists to "
            "exercise the pipeline, not to train on.",
            "",
        ]
    lines += [
        "Everything in this card is regenerated from the data files (`magicseg validate` checks "
        "that they agree); nothing here is written by hand.",
        "",
    ]
    if has_preview:
        lines += [
            f"![The first pairs: image, counterfactual, label overlay and classes]({PREVIEW_FILE})",
            "",
        ]

    # --- structure --------------------------------------------------------------------------------
    lines += ["## Dataset structure", "", "One split, `train`. Columns:", "",
              "| column | type | meaning |", "|---|---|---|"]
    for column, feature in DATASET_FEATURES.items():
        kind = _feature_name(feature)
        lines.append(f"| `{column}` | {kind} | {_md(COLUMN_DESCRIPTIONS.get(column, ''))} |")
    size = f"{stats.image_size[0]}×{stats.image_size[1]} px" if stats.image_size else "—"
    lines += [
        "",
        f"Images are {size}. A label value `i` in 1..len(classes) is `classes[i-1]`, 0 is background, "
        "255 is reserved for \"unknown\" (not written by default). The classes are exact lines of "
        f"`{VOCABULARY_FILE}` (LVIS qualifiers such as \"bow (weapon)\" kept); used as a benchmark, a "
        "row's global class id is `vocabulary.index(classes[i-1]) + 1`.",
        "",
    ]

    # --- how it was made --------------------------------------------------------------------------
    lines += ["## How it was made", "",
              "1. **Prompts**: each prompt names 1–"
              f"{_fmt(config.get('max_classes_per_prompt'))} classes drawn from the vocabulary, written by "
              f"the `{_fmt(config.get('prompt_backend'))}` prompt backend.",
              "2. **Image pairs**: the diffusion model draws the positive image; the counterfactual is made "
              f"in `{mode}` mode — "
              + {
                  "prompt": "the same initial noise with the classes removed from the prompt and used as "
                            "the negative prompt.",
                  "inpaint": "the positive image's own labelled region repainted by an inpainting model "
                             "(a pixel-aligned pair).",
                  "paper": "as in the released MagicSeg code: an independent sample with its own seed, "
                           "class words replaced by \"nothing\".",
              }.get(str(mode), "see `generation.json`."),
              "3. **Labels**: the detector finds boxes for the target classes; SAM turns all boxes of an "
              "image into masks in one call; overlaps go to the higher detector score.",
              "4. **Filters**: pairs are dropped for a blank image, no detection, a labelled area "
              "outside the bounds, or a counterfactual on which the detector still finds a target class.",
              "",
              "| role | model | revision | license |", "|---|---|---|---|"]
    for role, title in _ROLE_TITLES:
        entry = _model_entry(models, config, role)
        if entry is None:
            continue
        if role == "prompt_model" and config.get("prompt_backend") == "template":
            continue
        if role == "inpainting_model" and mode != "inpaint" and role not in models:
            continue
        if role in ("detector_model", "segmenter_model"):
            license_text = _annotator_license(entry[0])
        elif role == "prompt_model":
            license_text = "see its model card"
        else:
            license_text = generator_license(entry[0])[1]
        lines.append(f"| {title} | `{_md(entry[0])}` | {_md(entry[1])} | {_md(license_text)} |")
    if config.get("prompt_backend") == "template":
        lines.append("| Prompt writer | built-in `template` backend (no model) | — | — |")
    settings = [
        ("vocabulary", config.get("vocabulary") or "`--classes` (see `vocabulary.txt`)"),
        ("prompt backend", config.get("prompt_backend")),
        ("counterfactual mode", mode),
        ("denoising steps", config.get("num_inference_steps")),
        ("guidance scale", config.get("guidance_scale")),
        ("image size (h × w)", f"{_fmt(config.get('height'))} × {_fmt(config.get('width'))}"),
        ("safety checker", config.get("safety_checker")),
        ("detector", config.get("detector")),
        ("segmenter backend", config.get("segmenter")),
        ("box threshold", config.get("box_threshold")),
        ("text threshold", config.get("text_threshold")),
        ("counterfactual threshold", config.get("counterfactual_threshold")),
        ("mask area bounds (fraction of image)",
         f"{_fmt(config.get('min_mask_area'))} – {_fmt(config.get('max_mask_area'))}"),
        ("master seed", config.get("seed")),
        ("pairs asked / max attempts", f"{_fmt(config.get('num_pairs'))} / {_fmt(config.get('max_attempts'))}"),
        ("batch size / shard size", f"{_fmt(config.get('batch_size'))} / {_fmt(config.get('shard_size'))}"),
        ("processes", summary.get("num_processes")),
        ("magicseg-hf", generation.get("package_version", "—")),
    ]
    lines += ["", "| setting | value |", "|---|---|"]
    lines += [f"| {key} | {_md(_fmt(value))} |" for key, value in settings]
    if libraries:
        versions = ", ".join(f"{name} {version}" for name, version in sorted(libraries.items()))
        lines += ["", f"Libraries: {versions}."]
    lines += [
        "",
        f"Seeds: attempt *k* uses a seed derived from (master seed, *k*); each row records its own "
        "`seed` and `counterfactual_seed`, so any pair can be regenerated. The dataset is the first "
        "kept attempts in attempt order, the same whether the run was straight, resumed or split over "
        f"processes. Every setting is in `{GENERATION_FILE}`; to reproduce:",
        "",
        "```bash",
        _reproduce_command(config),
        "```",
        "",
    ]

    # --- counts ------------------------------------------------------------------------------------
    dropped = summary.get("dropped") or {}
    lines += ["## Counts", "", "| | pairs |", "|---|---|",
              f"| attempts | {_fmt(summary.get('attempts'))} |",
              f"| **kept (rows)** | **{stats.num_rows}** |"]
    for reason in DROP_REASONS:
        lines.append(f"| dropped: {DROP_DESCRIPTIONS.get(reason, reason)} | {_fmt(dropped.get(reason, 0))} |")
    for reason in sorted(set(dropped) - set(DROP_REASONS)):
        lines.append(f"| dropped: {_md(reason)} | {_fmt(dropped[reason])} |")
    if summary.get("shortfall"):
        lines.append(f"| shortfall (asked but not kept) | {_fmt(summary.get('shortfall'))} |")
    lines += [
        "",
        f"{stats.num_boxes} detector boxes in all"
        + (f"; mean `counterfactual_score` {stats.mean_counterfactual_score:.3f}"
           if stats.mean_counterfactual_score is not None else "")
        + ".",
        "",
    ]

    # --- classes -------------------------------------------------------------------------------------
    ordered = sorted(stats.rows_per_class.items(), key=lambda item: (-item[1], item[0]))
    missing = [name for name in vocabulary if name not in stats.rows_per_class]
    lines += ["## Classes", "",
              f"{len(stats.rows_per_class)} of the {len(vocabulary)} vocabulary classes appear in at least "
              f"one row. The {min(HISTOGRAM_TOP_K, len(ordered))} most frequent:", "",
              "| class | rows | boxes |", "|---|---|---|"]
    for class_name, count in ordered[:HISTOGRAM_TOP_K]:
        lines.append(f"| {_md(class_name)} | {count} | {stats.boxes_per_class.get(class_name, 0)} |")
    if len(ordered) > HISTOGRAM_TOP_K:
        rest = ordered[HISTOGRAM_TOP_K:]
        lines.append(f"| *{len(rest)} more classes* | {sum(c for _, c in rest)} | "
                     f"{sum(stats.boxes_per_class.get(n, 0) for n, _ in rest)} |")
    lines.append("")
    if (folder / HISTOGRAM_FILE).is_file() or stats.num_rows:
        lines += [f"![Rows per class]({HISTOGRAM_FILE})", ""]
    if missing:
        shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        lines += [f"Vocabulary classes with no row: {_md(shown)}.", ""]

    # --- usage ---------------------------------------------------------------------------------------
    lines += [
        "## How to load it",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'ds = load_dataset("{dataset_ref}", split="train")  # or a local copy of this folder',
        "row = ds[0]",
        'row["image"], row["counterfactual_image"]  # PIL images',
        'row["label"]                               # PIL image, mode "L": 0 background, i = row["classes"][i-1]',
        "",
        "# Stream without downloading everything first:",
        f'stream = load_dataset("{dataset_ref}", split="train", streaming=True)',
        "first = next(iter(stream))",
        "```",
        "",
        "## How to train on it",
        "",
        "Pretrain `CLIPForOpenSegmentation` (a CLIP ViT-B/16 with visual prompt tuning and a "
        "text-query decoder) on the pairs with pseudo-mask supervision and the counterfactual "
        "contrastive loss:",
        "",
        "```bash",
        "pip install magicseg-hf",
        f"magicseg train --dataset {dataset_ref} --output-dir clip-open-seg",
        "# several GPUs:",
        f"accelerate launch -m magicseg_hf train --dataset {dataset_ref} --output-dir clip-open-seg",
        "```",
        "",
        "then evaluate zero-shot, e.g. `magicseg evaluate --model clip-open-seg --benchmark voc21 "
        "--data-dir PATH --output results.json`.",
        "",
    ]

    # --- licensing -----------------------------------------------------------------------------------
    diffusion = _model_entry(models, config, "diffusion_model")
    detector = _model_entry(models, config, "detector_model")
    segmenter = _model_entry(models, config, "segmenter_model")
    lines += [
        "## Licensing",
        "",
        f"- **Images** (`image`, `counterfactual_image`) were generated by "
        f"`{diffusion[0] if diffusion else 'the diffusion model'}` and are distributed under "
        f"{image_license}."
        + (" The license's use-based restrictions (its Attachment A) pass on to anyone who uses or "
           "redistributes the images." if "OpenRAIL" in image_license else ""),
        f"- **Annotations** (`label`, `boxes`, `box_labels`, `box_scores`, `counterfactual_score`) were "
        f"produced automatically by `{detector[0] if detector else 'the detector'}` "
        f"({_annotator_license(detector[0] if detector else None)}) and "
        f"`{segmenter[0] if segmenter else 'SAM'}` "
        f"({_annotator_license(segmenter[0] if segmenter else None)}); they are released under the same "
        "terms as the images.",
        "- **Prompts** are machine-written text released with the images.",
        "- The generating software, magicseg-hf, is Apache-2.0.",
        "",
    ]

    # --- limitations -----------------------------------------------------------------------------------
    lines += [
        "## Limitations",
        "",
        "- **No human has checked any label.** Masks are pseudo-labels: the detector misses objects "
        "and finds objects that are not there, SAM boundaries are approximate, and a class can be "
        "confused with a similar one (rare LVIS classes especially). Pixels of a target class the "
        "detector missed are labelled background.",
        "- Only the row's own target classes are labelled; other objects in the picture are background.",
        "- A counterfactual can still show (parts of) a target class; `counterfactual_score` says how "
        "strongly the detector still sees one — filter on it for cleaner pairs.",
        "- Generated scenes inherit the biases and artefacts of the diffusion model and of its training "
        "data; class frequencies follow the vocabulary sampling, not the real world.",
        "- Use it for pretraining and research; evaluate on real, human-labelled benchmarks.",
        "",
        "## Citation",
        "",
        "```bibtex",
        PAPER_CITATION,
        "```",
        "",
    ]
    return "\n".join(lines)


def render_dataset_card(folder: str | Path, repo_id: str | None = None) -> Any:
    """The :class:`~huggingface_hub.DatasetCard` of dataset folder ``folder``.

    Reads only the folder (shards, ``generation.json``, ``vocabulary.txt``); writes nothing.
    ``repo_id`` is used in the card's loading examples (``USER/NAME`` when not given).
    """
    from huggingface_hub import DatasetCard

    folder = Path(folder)
    generation = read_generation_info(folder)
    vocabulary = read_vocabulary(folder)
    stats = read_folder_stats(folder)
    config = generation.get("config") or {}
    models = generation.get("models") or {}
    diffusion = _model_entry(models, config, "diffusion_model")
    license_id, license_name = generator_license(diffusion[0] if diffusion else None)
    card_data = _build_card_data(config, vocabulary, stats, license_id, config.get("detector"))
    text = _card_text(folder, generation, vocabulary, stats, repo_id, license_name)
    content = f"---\n{card_data.to_yaml()}\n---\n\n{text}"
    return DatasetCard(content)


def _atomic_write(path: Path, data: bytes) -> None:
    from magicseg_hf.generation.writer import atomic_write_bytes

    atomic_write_bytes(path, data)


def write_histogram_chart(folder: str | Path, stats: FolderStats | None = None) -> Path | None:
    """Draw ``class_histogram.png`` (rows per class) into ``folder``; None when there are no rows."""
    from magicseg_hf.visualization import class_histogram_chart

    folder = Path(folder)
    stats = stats if stats is not None else read_folder_stats(folder)
    if not stats.num_rows:
        return None
    chart = class_histogram_chart(stats.rows_per_class, top_k=HISTOGRAM_TOP_K,
                                  title=f"rows per class ({stats.num_rows} rows)")
    buffer = io.BytesIO()
    chart.save(buffer, format="PNG")
    path = folder / HISTOGRAM_FILE
    _atomic_write(path, buffer.getvalue())
    return path


def write_dataset_card(folder: str | Path) -> Path:
    """Regenerate ``README.md`` and ``class_histogram.png`` of dataset folder ``folder``.

    Called by the generation writer at the end of a run; safe to call again at any time (the
    result depends only on the folder's data files). Returns the card's path.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    write_histogram_chart(folder)
    card = render_dataset_card(folder)
    path = folder / CARD_FILE
    _atomic_write(path, str(card).encode("utf-8"))
    logger.debug("wrote %s", path)
    return path


# ----------------------------------------------------------------------------------------------
# Pushing
# ----------------------------------------------------------------------------------------------
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")

#: Files of a dataset folder that are published, besides the card (rendered for the repo).
PUSHED_PATTERNS = (SHARD_PATTERN, VOCABULARY_FILE, GENERATION_FILE, PREVIEW_FILE, HISTOGRAM_FILE, PROMPTS_FILE)


def check_repo_id(repo_id: str) -> str:
    """Return ``repo_id`` if it has the form ``USER/NAME``; raise :class:`InputError` otherwise."""
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or ".." in repo_id or repo_id.endswith(
        (".git", ".")
    ) or len(repo_id) > 96:
        raise InputError(f"--repo-id must look like USER/NAME (letters, digits, '-', '_', '.'); got {repo_id!r}")
    return repo_id


def hub_endpoint() -> str:
    """The Hub endpoint huggingface_hub talks to (``HF_ENDPOINT`` or huggingface.co)."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def hub_offline() -> bool:
    """Whether offline mode is on (``HF_HUB_OFFLINE``), read now, not at import time."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().upper() in {"1", "ON", "YES", "TRUE"}
    return bool(constants.HF_HUB_OFFLINE)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub endpoint opens within ``timeout`` seconds."""
    parsed = urlparse(hub_endpoint())
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name in ("httpx2", "httpx"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        errors.append(module.TransportError)
    return tuple(errors)


def _hub_error(error: BaseException, repo_id: str) -> MagicSegError:
    """A one-line :class:`MagicSegError` for a failed Hub call (never includes the token)."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(error, OfflineModeIsEnabled):
        return MagicSegError("HF_HUB_OFFLINE=1: cannot push to the Hub; unset it to publish")
    if isinstance(error, HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if status == 401:
            return MagicSegError(f"the Hub rejected the token (401) for {repo_id}: log in again with `hf auth login`")
        if status == 403:
            return MagicSegError(f"no write access to {repo_id} (403): check the token's permissions")
        return MagicSegError(f"the Hub refused the push to {repo_id} ({status or 'error'}): {first_line}")
    return MagicSegError(f"cannot reach the Hugging Face Hub at {hub_endpoint()}: {type(error).__name__}")


def _files_to_push(folder: Path) -> list[str]:
    """Relative posix paths of the folder's files that are published (``.work/`` never is)."""
    selected = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(folder).as_posix()
        if relative.split("/")[0] == WORK_DIR or any(part.startswith(".") for part in relative.split("/")):
            continue
        if any(fnmatch.fnmatch(relative, pattern) for pattern in PUSHED_PATTERNS):
            selected.append(relative)
    return selected


@dataclass
class PushResult:
    """What :func:`push_dataset_folder` published."""

    repo_id: str
    revision: str | None
    url: str
    files: list[str]
    deleted: list[str]
    commit_url: str | None = None


def push_dataset_folder(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    reachability_timeout: float = 3.0,
) -> PushResult:
    """Publish dataset folder ``folder`` to the Hub dataset repo ``repo_id``.

    Checks, in order and each failing at once with a :class:`MagicSegError`: the repo id's form,
    that ``folder`` is a valid dataset folder (:func:`magicseg_hf.validate.validate_dataset_folder`),
    offline mode, a token (``token``, else ``HF_TOKEN`` / ``hf auth login``), and that the Hub
    answers. Then creates the repo (and branch ``revision``) if needed and makes one commit with
    the shards, ``vocabulary.txt``, ``generation.json``, the pictures and the card (rendered with
    ``repo_id`` in its examples), deleting remote shards the folder no longer has. Nothing is written
    into ``folder``; a push that fails half-way can simply be re-run.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    from magicseg_hf.validate import validate_dataset_folder

    check_repo_id(repo_id)
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    # Cheap checks first, so an offline or unreachable Hub fails within seconds.
    if hub_offline():
        raise MagicSegError("HF_HUB_OFFLINE=1: cannot push to the Hub; unset it to publish")
    token = token or get_token()
    if not token:
        raise MagicSegError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    if not hub_reachable(reachability_timeout):
        raise MagicSegError(f"cannot reach the Hugging Face Hub at {hub_endpoint()}; check the network")
    report = validate_dataset_folder(folder)
    if not report.ok:
        raise InputError(
            f"{folder} is not a valid dataset folder ({report.num_problems} problem(s), first: "
            f"{report.problems[0]}); run `magicseg validate {folder}`"
        )

    files = _files_to_push(folder)
    card_bytes = str(render_dataset_card(folder, repo_id=repo_id)).encode("utf-8")
    operations: list[Any] = [CommitOperationAdd(path_in_repo=CARD_FILE, path_or_fileobj=card_bytes)]
    operations += [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files]
    api = HfApi(token=token)
    deleted: list[str] = []
    try:
        repo_url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
        remote = api.list_repo_files(repo_id, repo_type="dataset", revision=revision)
        deleted = sorted(
            name for name in remote
            if fnmatch.fnmatch(name, f"{DATA_DIR}/*") and name not in files
        )
        operations += [CommitOperationDelete(path_in_repo=name) for name in deleted]
        commit = api.create_commit(
            repo_id,
            operations=operations,
            commit_message=commit_message or f"Upload MagicSeg dataset ({report.num_rows} rows) with magicseg-hf {__version__}",
            repo_type="dataset",
            revision=revision,
        )
    except (HfHubHTTPError, OfflineModeIsEnabled, *_network_errors()) as error:
        raise _hub_error(error, repo_id) from None
    url = str(getattr(repo_url, "url", None) or f"{hub_endpoint()}/datasets/{repo_id}")
    if revision:
        url = f"{url}/tree/{revision}"
    logger.info("pushed %d files to %s%s", len(files) + 1, repo_id, f" ({revision})" if revision else "")
    return PushResult(
        repo_id=repo_id,
        revision=revision,
        url=url,
        files=[CARD_FILE, *files],
        deleted=deleted,
        commit_url=getattr(commit, "commit_url", None),
    )

