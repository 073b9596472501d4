"""The ``magicseg`` command: one entry point, one verb per job.

Every verb is a pair of functions below: ``_add_<verb>(subparsers)`` declares its flags and
``_run_<verb>(args) -> int`` does the work. :class:`~magicseg_hf.errors.MagicSegError` (bad
input, a model that cannot be loaded, an unreachable Hub) becomes one line on stderr and exit
status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence

from magicseg_hf.errors import MagicSegError

logger = logging.getLogger("magicseg_hf")

DESCRIPTION = """\
magicseg: turn a list of class names into a pixel-labelled segmentation dataset with a
diffusion model (MagicSeg), and train/evaluate a CLIP model that segments anything you name.

Start offline with tiny random models (seconds on a CPU):
  magicseg generate --classes cat dog --num-pairs 8 --preset tiny --output-dir out
then `magicseg validate out`, and `magicseg VERB --help` for each verb.
"""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors exit with status 2 and one line, like ours."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


# ----------------------------------------------------------------------------------------------
# generate
# ----------------------------------------------------------------------------------------------
def _field_type(field: dataclasses.Field) -> type:
    annotation = str(field.type)
    for name, kind in (("bool", bool), ("int", int), ("float", float)):
        if annotation.startswith(name) or f"[{name}]" in annotation:
            return kind
    return str


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per :class:`GenerationConfig` field (help text from the field)."""
    from magicseg_hf.generation.config import generation_fields
    from magicseg_hf.presets import generation_defaults

    paper, tiny = generation_defaults("paper"), generation_defaults("tiny")
    for field in generation_fields():
        flag = "--" + field.name.replace("_", "-")
        help_text = field.metadata.get("help", "")
        if field.name in paper:  # the .0s hides argparse's own "(default: None)"
            help_text += f" (default by --preset: paper {paper[field.name]}, tiny {tiny[field.name]})%(default).0s"
        elif field.default is None:
            help_text += " (default: none)%(default).0s"
        kind = _field_type(field)
        default = field.default if field.default is not dataclasses.MISSING else None
        kwargs: dict = {"dest": field.name, "help": help_text, "default": default}
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if "nargs" in field.metadata:
            kwargs["nargs"] = field.metadata["nargs"]
        if "choices" in field.metadata:
            kwargs["choices"] = field.metadata["choices"]
        parser.add_argument(flag, type=kind, **kwargs)


def _add_generate(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "generate",
        help="Generate a segmentation dataset folder from class names.",
        description=(
            "Class names -> scene prompts -> a positive image and a counterfactual image of the same\n"
            "scene without the classes -> detector boxes -> SAM masks -> per-class label maps ->\n"
            "a dataset folder that `datasets.load_dataset(DIR)` reads.\n\n"
            "Example (offline, tiny random models):\n"
            "  magicseg generate --classes cat dog --num-pairs 8 --preset tiny --output-dir out\n"
            "Real checkpoints: drop --preset tiny. Several GPUs:\n"
            "  accelerate launch -m magicseg_hf generate --vocabulary lvis --num-pairs 10000 --output-dir out"
        ),
        formatter_class=_Formatter,
    )
    parser.add_argument("--output-dir", required=True, help="Folder to write (must be empty unless --resume).")
    parser.add_argument(
        "--resume", action="store_true",
        help="Continue an interrupted run in --output-dir with the settings saved there.",
    )
    add_generation_arguments(parser)
    parser.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    from magicseg_hf.generation.config import GenerationConfig, generation_fields
    from magicseg_hf.generation.pipeline import generate

    values = {f.name: getattr(args, f.name) for f in generation_fields()}
    config = GenerationConfig(**values)
    generate(config, args.output_dir, resume=args.resume)  # logs its summary
    return 0


# ----------------------------------------------------------------------------------------------
# validate
# ----------------------------------------------------------------------------------------------
def _add_validate(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "validate",
        help="Check a dataset folder against the MagicSeg schema.",
        description=(
            "Checks columns and features, label values, image sizes, unique ids, boxes, generation.json,\n"
            "the dataset card (and that its features round-trip through `datasets`), and that\n"
            "`datasets.load_dataset(DIR)` reads the folder. Exit status 0 when valid, 1 when not."
        ),
        formatter_class=_Formatter,
    )
    parser.add_argument("dir", metavar="DIR", help="Dataset folder (as written by `magicseg generate`).")
    parser.add_argument("--max-problems", type=int, default=20, help="Problems to list when invalid.")
    parser.set_defaults(func=_run_validate)


def _run_validate(args: argparse.Namespace) -> int:
    from magicseg_hf.validate import validate_dataset_folder

    report = validate_dataset_folder(args.dir, max_problems=max(1, args.max_problems))
    sys.stdout.write(report.summary() + "\n")
    return 0 if report.ok else 1


# ----------------------------------------------------------------------------------------------
# push
# ----------------------------------------------------------------------------------------------
def _add_push(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "push",
        help="Publish a dataset folder (with its card) to the Hugging Face Hub.",
        description=(
            "Validates DIR, then uploads the shards, card, vocabulary.txt, generation.json and pictures\n"
            "in one commit so that `load_dataset(\"USER/NAME\")` returns the local rows. The token comes\n"
            "from HF_TOKEN or `hf auth login`. A push that fails half-way can simply be re-run."
        ),
        formatter_class=_Formatter,
    )
    parser.add_argument("dir", metavar="DIR", help="Dataset folder to publish.")
    parser.add_argument("--repo-id", required=True, help="Hub dataset repo, USER/NAME (created if missing).")
    parser.add_argument("--private", action="store_true", help="Create the repo as private.")
    parser.add_argument("--revision", default=None, help="Branch to push to (created if missing).")
    parser.add_argument("--commit-message", default=None, help="Commit message.")
    parser.set_defaults(func=_run_push)


def _run_push(args: argparse.Namespace) -> int:
    from magicseg_hf.hub import push_dataset_folder

    result = push_dataset_folder(
        args.dir, args.repo_id, private=args.private, revision=args.revision, commit_message=args.commit_message
    )
    sys.stdout.write(f"pushed {len(result.files)} files to {result.url}\n")
    return 0


# ----------------------------------------------------------------------------------------------
# entry points
# ----------------------------------------------------------------------------------------------
VERBS = (_add_generate, _add_validate, _add_push)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="magicseg", description=DESCRIPTION, formatter_class=_Formatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="Log debug messages.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    for add in VERBS:
        add(sub)
    return parser


def _setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("magicseg_hf").setLevel(level)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers is a core dependency
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``magicseg`` command with ``argv``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except MagicSegError as error:
        sys.stderr.write(f"magicseg {args.verb}: error: {error}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"magicseg {args.verb}: interrupted\n")
        return 130


def console_main() -> None:
    """The ``magicseg`` console script."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
