"""``magicseg export DATASET --format semantic|mmseg --output-dir OUT``: flags and run.

Importing this module is cheap (no torch, no datasets): ``magicseg export --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys

from magicseg_hf.export import FORMATS, MAX_EXPORT_CLASSES

HELP = "Export a dataset folder with global label ids (transformers semantic segmentation, mmseg)."
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verb's flags."""
    parser.add_argument("dataset", metavar="DATASET", help="MagicSeg dataset folder (from `magicseg generate`).")
    parser.add_argument("--format", default="semantic", metavar="FORMAT",
                        help=f"Export format: {' or '.join(FORMATS)}.")
    parser.add_argument("--output-dir", required=True, help="Folder to write (created).")
    parser.add_argument("--overwrite", action="store_true", help="Replace an earlier export in --output-dir.")
    parser.add_argument("--with-counterfactual", action="store_true",
                        help="semantic: keep the counterfactual_image column.")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="mmseg: share of rows in val (chosen by a hash of the row id).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bar.")


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
