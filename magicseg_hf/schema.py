"""The dataset schema: the column features and the file names of a dataset folder.

Label values are named in :mod:`magicseg_hf.labels`; :class:`magicseg_hf.folder.DatasetFolder`
is the one reader and writer of the folder these names describe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets

#: Columns of every MagicSeg dataset (``load_dataset(DIR)`` returns exactly these).
DATASET_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "image": datasets.Image(),
        "counterfactual_image": datasets.Image(),
        "label": datasets.Image(mode="L"),
        "classes": datasets.List(datasets.Value("string")),
        "prompt": datasets.Value("string"),
        "counterfactual_prompt": datasets.Value("string"),
        "seed": datasets.Value("int64"),
        "counterfactual_seed": datasets.Value("int64"),
        "boxes": datasets.List(datasets.List(datasets.Value("float32"), length=4)),
        "box_labels": datasets.List(datasets.Value("int32")),
        "box_scores": datasets.List(datasets.Value("float32")),
        "counterfactual_score": datasets.Value("float32"),
        "class_scores": datasets.List(datasets.Value("float32")),
    }
)

#: Columns added after the first release, in schema order. A folder written before one was added
#: lacks it and is still a valid dataset (``magicseg validate`` says so; training, evaluation and
#: ``load_dataset`` read it as it is).
LATER_COLUMNS = ("class_scores",)

#: Reasons an attempt is dropped: the filters, in the order they are applied, then ``error`` (the
#: attempt raised; the run goes on). Their counts go in ``generation.json`` and the card.
DROP_REASONS = ("blank_image", "no_detection", "mask_area", "class_score", "counterfactual", "error")

DATA_DIR = "data"
CARD_FILE = "README.md"
VOCABULARY_FILE = "vocabulary.txt"
GENERATION_FILE = "generation.json"
PREVIEW_FILE = "preview.png"
#: The class-histogram chart written beside the card.
HISTOGRAM_FILE = "class_histogram.png"
#: Work area of an unfinished run (per-shard parquet + stats); removed when the run completes.
WORK_DIR = ".work"
#: Cached LLM prompts (kept so that a resume replays them instead of asking again).
PROMPTS_FILE = "prompts.jsonl"
#: Lock of a running generation (holder's pid, host and start time): one run writes a folder at a time.
LOCK_FILE = ".magicseg.lock"


def folder_features(columns: Sequence[str]) -> datasets.Features | None:
    """The schema of a folder whose shards hold ``columns``: :data:`DATASET_FEATURES`, or the schema
    of an older folder (:data:`DATASET_FEATURES` without some of :data:`LATER_COLUMNS`); ``None``
    when ``columns`` are neither (a missing column that was always there, an unknown one, another
    order)."""
    names = list(columns)
    kept = [name for name in DATASET_FEATURES if name in names or name not in LATER_COLUMNS]
    if names != kept:
        return None
    return datasets.Features({name: DATASET_FEATURES[name] for name in kept})


def missing_later_columns(features: Mapping[str, Any]) -> list[str]:
    """The :data:`LATER_COLUMNS` that ``features`` (a folder's columns) lack: the folder predates them."""
    return [name for name in LATER_COLUMNS if name not in features]
