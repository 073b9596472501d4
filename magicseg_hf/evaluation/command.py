"""The ``magicseg evaluate`` verb: its flags (``--suite`` and one per
:class:`~magicseg_hf.evaluation.run.EvaluationConfig` field) and its run, one evaluation
(:func:`~magicseg_hf.evaluation.run.evaluate_benchmark`) or a suite
(:func:`~magicseg_hf.evaluation.suite.run_suite`).

Importing this module is cheap (no torch): ``magicseg evaluate --help`` needs only the flag table.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from magicseg_hf import settings
from magicseg_hf.errors import InputError
from magicseg_hf.evaluation.run import EvaluationConfig, evaluate_benchmark

DESCRIPTION = """\
Zero-shot semantic segmentation of a benchmark by a CLIPForOpenSegmentation folder or Hub repo:
the benchmark's class names are the text queries; images are resized and predicted with sliding
windows as the protocol says; mIoU is accumulated over the whole dataset (mmsegmentation's way).

Benchmarks (--data-dir: the folder holding VOCdevkit or coco_stuff164k, or those folders themselves):
  voc21        VOCdevkit/VOC2012, 21 classes with background
  voc20        the same files, 20 classes, background ignored
  context60    VOCdevkit/VOC2010 (SegmentationClassContext), 60 classes with background
  context59    the same files, 59 classes, no background
  coco-object  coco_stuff164k (stuffthingmaps; or --coco-object-source instances), 81 classes
  DIR          a dataset folder written by `magicseg generate`

Protocols: the harness values of four reference codebases, per benchmark, each cited in the
results file (resize, slide or whole image, class-name file with its background words, synonym
rule, area threshold, PAMR); the decision rule our model uses under each is recorded beside them.
Each value is overridable. See docs/fidelity.md.
  zegclip   short side 512, slide 512/426, "background" queried as a class (the paper's code)
  groupvit  short side 448, slide 448/224, background below a threshold
  sclip     short side 336, slide 224/112, SCLIP's class names (background as stuff words)
  naclip    NACLIP's settings (short side 336, slide 224/112 or whole image, PAMR)
  clearclip ClearCLIP's settings (short side 448, slide 448/224; also MaskCLIP's here)

Methods (--method; default magicseg): magicseg is a trained CLIPForOpenSegmentation; maskclip, sclip,
clearclip and naclip run any CLIP checkpoint (transformers CLIPModel) training-free, changing its last
block at inference as the method's reference code does and scoring as its harness does (softmax over
the queries, its logit scale and probability threshold); each takes its own harness as --protocol by
default (maskclip: clearclip). See docs/baselines.md.

Example:
  magicseg evaluate --model model --benchmark voc21 --data-dir data --protocol zegclip \\
      --output results/voc21.json --overlays 8 --update-card
  magicseg evaluate --model openai/clip-vit-base-patch16 --method naclip --benchmark voc21 \\
      --data-dir data --output results/naclip-voc21.json"""


@dataclass
class SuiteFlag:
    """``--suite``: a whole comparison instead of one evaluation."""

    suite: str | None = field(default=None, metadata={
        "help": "Run every (model, method) x benchmark cell of a suite file into the folder --output (resumable), "
                "then write comparison.md and comparison.png there; with --update-card also put the table and the "
                "magicseg rows' results into the card of the suite's local model folder(s) (see docs/baselines.md).",
        "metavar": "SUITE.yaml"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``magicseg evaluate``: ``--suite`` and one per :class:`EvaluationConfig` field."""
    settings.add_arguments(parser, SuiteFlag)
    settings.add_arguments(parser, EvaluationConfig)


def run(args: argparse.Namespace) -> int:
    """Evaluate and write the results file; returns 0."""
    if getattr(args, "suite", None):
        from magicseg_hf.evaluation.suite import run_suite

        run_suite(args.suite, args.output, update_card=bool(getattr(args, "update_card", False)))
        return 0
    missing = [f"`{name}`" for name in ("model", "benchmark") if getattr(args, name) is None]
    if missing:  # the command line names them as flags (cli.as_flags)
        raise InputError(f"the following arguments are required: {', '.join(missing)} (or `suite` SUITE.yaml)")
    config = settings.from_args(EvaluationConfig, args)
    evaluate_benchmark(config)
    return 0
