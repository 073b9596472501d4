"""``magicseg export DATASET --format semantic|mmseg --output-dir OUT``: flags and run.

Importing this module is cheap (no torch, no datasets): ``magicseg export --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from magicseg_hf import settings
from magicseg_hf.export import FORMATS, MAX_EXPORT_CLASSES

DESCRIPTION = f"""\
A MagicSeg `label` is per row (value i = that row's classes[i-1]). This writes the same rows with
one global id per class — 0 background, vocabulary.index(name) + 1, 255 unknown — so that any
segmentation model trains on them:

  semantic  a dataset folder (id, image, label) with id2label.json / label2id.json at the root, as
            transformers' semantic-segmentation recipe reads it (do_reduce_labels=False);
            `magicseg push OUT --repo-id USER/NAME` publishes it
  mmseg     img_dir/{{train,val}}/*.jpg, ann_dir/{{train,val}}/*.png and mmseg_config.py (classes,
            palette, BaseSegDataset settings)

Vocabularies over {MAX_EXPORT_CLASSES} classes are refused (one-byte labels). The source is never
written. An interrupted export resumes: run the same command again.

Example:
  magicseg export out --format semantic --output-dir out-semantic"""


@dataclass
class ExportSettings:
    """The flags of ``magicseg export`` (one per field)."""

    dataset: str = field(metadata={"help": "MagicSeg dataset folder (from `magicseg generate`).", "flag": "DATASET"})
    format: str = field(default="semantic", metadata={
        "help": f"Export format: {' or '.join(FORMATS)}.", "metavar": "FORMAT"})
    output_dir: str | None = field(default=None, metadata={"help": "Folder to write (created).", "required": True})
    overwrite: bool = field(default=False, metadata={"help": "Replace an earlier export in --output-dir."})
    with_counterfactual: bool = field(default=False, metadata={
        "help": "semantic: keep the counterfactual_image column."})
    val_fraction: float = field(default=0.1, metadata={
        "help": "mmseg: share of rows in val (chosen by a hash of the row id)."})
    no_progress: bool = field(default=False, metadata={"help": "No progress bar."})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verb's flags, one per :class:`ExportSettings` field."""
    settings.add_arguments(parser, ExportSettings)


def run(args: argparse.Namespace) -> int:
    """Run the export; bad input raises :class:`~magicseg_hf.errors.InputError` (one line, exit 2)."""
    from magicseg_hf.errors import InputError

    if args.format not in FORMATS:  # before any heavy import
        raise InputError(f"unknown format {args.format!r}; known formats: {', '.join(FORMATS)}")
    from magicseg_hf.export.core import export_dataset

    summary = export_dataset(
        args.dataset, args.output_dir, format=args.format, overwrite=args.overwrite,
        with_counterfactual=args.with_counterfactual, val_fraction=args.val_fraction,
        progress=not args.no_progress,
    )
    sys.stdout.write(summary.describe() + "\n")
    return 0
