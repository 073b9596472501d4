"""``magicseg export``: MagicSeg data in the layouts other segmentation models train on.

A MagicSeg ``label`` is per row: value ``i`` is that row's ``classes[i-1]``, so the same value names
a different class in the next row. Every other segmentation model (SegFormer, Mask2Former, UperNet
through transformers' semantic-segmentation recipe, or mmsegmentation) expects one global label
set. This package gives that view:

- ``semantic``: a dataset folder in the transformers/datasets semantic-segmentation convention —
  columns ``id``, ``image``, ``label`` (mode "L": 0 background, ``vocabulary.index(name) + 1`` for
  each class, 255 unknown) and optionally ``counterfactual_image``; ``id2label.json`` and
  ``label2id.json`` at the root; a card; ``export.json`` (provenance, the completion marker).
- ``mmseg``: ``img_dir/{train,val}/*.jpg`` and ``ann_dir/{train,val}/*.png`` (the same global
  ids), ``id2label.json`` and ``mmseg_config.py`` (class list and palette).
- :func:`semantic_transform` / :func:`semantic_view`: the same rows as ``semantic`` without a copy,
  through ``load_dataset(DIR).with_transform(...)``.

Global ids fit one byte: a vocabulary of more than :data:`MAX_EXPORT_CLASSES` (254) classes is
refused with one line (255 stays "unknown", the ignore index of SegFormer & co.).

Importing this package is cheap (no torch, no datasets): the functions load on first use.
"""

from __future__ import annotations

from magicseg_hf.lazy import lazy_exports

#: Known export formats (``--format``).
SEMANTIC = "semantic"
MMSEG = "mmseg"
FORMATS = (SEMANTIC, MMSEG)
#: Global ids 1..254 (0 background, 255 unknown): the largest vocabulary an export holds.
MAX_EXPORT_CLASSES = 254
#: The export's record (provenance and options); written last, so it marks a finished export.
EXPORT_FILE = "export.json"
#: Hidden progress record of an unfinished export (finished source shards); removed at the end.
PROGRESS_FILE = ".export-progress.json"
ID2LABEL_FILE = "id2label.json"
LABEL2ID_FILE = "label2id.json"
#: The source folder's ``generation.json``, copied so that the card's link survives a push.
SOURCE_GENERATION_FILE = "source_generation.json"
#: The mmsegmentation config snippet (class list, palette, dataset settings).
MMSEG_CONFIG_FILE = "mmseg_config.py"
#: The name of global id 0.
BACKGROUND_NAME = "background"

_LAZY = {
    "ExportSummary": "magicseg_hf.export.core",
    "export_dataset": "magicseg_hf.export.core",
    "global_label": "magicseg_hf.export.labels",
    "label_table": "magicseg_hf.export.labels",
    "id2label": "magicseg_hf.export.labels",
    "semantic_transform": "magicseg_hf.export.labels",
    "semantic_view": "magicseg_hf.export.labels",
    "ExportCheck": "magicseg_hf.export.check",
    "check_export_folder": "magicseg_hf.export.check",
    "is_export_folder": "magicseg_hf.export.check",
    "export_published_files": "magicseg_hf.export.check",
}

__all__ = [
    "BACKGROUND_NAME", "EXPORT_FILE", "FORMATS", "ID2LABEL_FILE", "LABEL2ID_FILE", "MAX_EXPORT_CLASSES",
    "MMSEG", "MMSEG_CONFIG_FILE", "PROGRESS_FILE", "SEMANTIC", "SOURCE_GENERATION_FILE", *sorted(_LAZY),
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
