"""The ``magicseg`` command: one entry point, one verb per job.

A verb is a module (or a small namespace here) with ``DESCRIPTION``, ``add_arguments(parser)``
and ``run(args) -> int`` (and ``ACCEPTS_EXTRA_ARGUMENTS = True`` when it parses another
library's flags itself, as ``train`` does with TrainingArguments). Every verb's flags come from one
mechanism: the fields of its settings dataclass, turned into arguments by
:func:`magicseg_hf.settings.add_arguments` (help, choices, metavar from each field's metadata; each
dest is the field's name, so a library message's `` `num_pairs` `` is shown as ``--num-pairs``). A
verb's one-line help lives in :data:`VERBS` only. ``generate``'s and ``train``'s flags and runs live
beside the code they drive (:mod:`magicseg_hf.generation.run`, :mod:`magicseg_hf.training.run`),
and the two thin wrappers ``validate`` and ``push`` live here. Only the verb being run is imported,
so ``magicseg --help`` and ``magicseg VERB --help``
answer without importing torch. :class:`~magicseg_hf.errors.MagicSegError` (bad input, a model
that cannot be loaded, an unreachable Hub) becomes one line on stderr and exit status 2; anything
else is a bug and keeps its traceback. Every verb runs inside
:func:`magicseg_hf.hub_access.redacted_logging` and :func:`magicseg_hf.console.guarded_output`: no
log line, warning, progress bar or traceback of any library shows the credentials of
``HF_ENDPOINT`` or a known token, and what stderr would show before a verb's checks pass is dropped
when the input is refused (bad input prints one line).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from magicseg_hf import console, hub_access, settings
from magicseg_hf.errors import MagicSegError, as_flags

logger = logging.getLogger("magicseg_hf")

DESCRIPTION = """\
magicseg: turn a list of class names into a pixel-labelled segmentation dataset with a
diffusion model (MagicSeg), and train/evaluate a CLIP model that segments anything you name.

Start offline with tiny random models (seconds on a CPU):
  magicseg generate --classes cat dog --num-pairs 8 --preset tiny --output-dir out
then `magicseg validate out`, and `magicseg VERB --help` for each verb.
"""


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help text with defaults shown and descriptions kept as written."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors exit with status 2 and one line, like ours."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


class _Validate:
    """``magicseg validate DIR``."""

    DESCRIPTION = (
        "Checks columns and features, label values, image sizes, unique ids, boxes, generation.json,\n"
        "the dataset card (and that its features round-trip through `datasets`), and that\n"
        "`datasets.load_dataset(DIR)` reads the folder. Exit status 0 when valid, 1 when not."
    )

    @dataclass
    class Settings:
        dir: str = field(metadata={"help": "Dataset folder (as written by `magicseg generate`).", "flag": "DIR"})
        max_problems: int = field(default=20, metadata={"help": "Problems to list when invalid."})

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        settings.add_arguments(parser, cls.Settings)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from magicseg_hf.validate import validate_dataset_folder

        report = validate_dataset_folder(args.dir, max_problems=max(1, args.max_problems))
        sys.stdout.write(report.summary() + "\n")
        return 0 if report.ok else 1


class _Push:
    """``magicseg push DIR --repo-id USER/NAME``: a dataset folder or a model folder."""

    DESCRIPTION = (
        "Publishes a dataset folder or a model folder (told apart by their files) in one commit.\n"
        "A dataset folder is validated, then its shards, card, vocabulary.txt, generation.json and\n"
        "pictures go to a dataset repo, so that `load_dataset(\"USER/NAME\")` returns the local rows.\n"
        "A model folder (from `magicseg train`) is checked to load, then its weights, config,\n"
        "processor, remote code, training summary, results and card go to a model repo, so that\n"
        "`AutoModel.from_pretrained(\"USER/NAME\")` loads it. The token comes from HF_TOKEN or\n"
        "`hf auth login`. A push that fails half-way can simply be re-run."
    )

    @dataclass
    class Settings:
        dir: str = field(metadata={"help": "Dataset folder or model folder to publish.", "flag": "DIR"})
        repo_id: str | None = field(default=None, metadata={
            "help": "Hub repo, USER/NAME (a dataset or model repo by the folder's kind; created if missing).",
            "required": True})
        private: bool = field(default=False, metadata={"help": "Create the repo as private."})
        revision: str | None = field(default=None, metadata={"help": "Branch to push to (created if missing)."})
        commit_message: str | None = field(default=None, metadata={"help": "Commit message."})

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        settings.add_arguments(parser, cls.Settings)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from magicseg_hf.publish import push_folder

        result = push_folder(
            args.dir, args.repo_id, private=args.private, revision=args.revision,
            commit_message=args.commit_message,
        )
        sys.stdout.write(f"pushed {len(result.files)} files to {result.url}\n")
        return 0


@dataclass(frozen=True)
class Verb:
    """A ``magicseg`` verb: its name, one-line help and where its flags and run live."""

    name: str
    help: str
    target: str | type  # a module path, or a namespace class of this module

    def load(self) -> Any:
        return importlib.import_module(self.target) if isinstance(self.target, str) else self.target


VERBS = (
    Verb("generate", "Generate a segmentation dataset folder from class names.", "magicseg_hf.generation.run"),
    Verb("validate", "Check a dataset folder against the MagicSeg schema.", _Validate),
    Verb("push", "Publish a dataset or model folder (with its card) to the Hugging Face Hub.", _Push),
    Verb("train", "Pretrain CLIPForOpenSegmentation on MagicSeg datasets.", "magicseg_hf.training.run"),
    Verb("predict", "Segment images with a trained model.", "magicseg_hf.predict"),
    Verb("demo", "Run the whole chain offline on tiny random models, in minutes on a CPU.", "magicseg_hf.demo"),
    Verb("evaluate", "Evaluate a model zero-shot on PASCAL VOC, PASCAL Context, COCO-Object or a dataset folder.", "magicseg_hf.evaluation.command"),
    Verb("export", "Export a dataset folder with global label ids (transformers semantic segmentation, mmseg).",
         "magicseg_hf.export.run"),
)


def _requested_verb(argv: Sequence[str]) -> str | None:
    """The verb named in ``argv`` (the first word that is not an option), if any."""
    names = {verb.name for verb in VERBS}
    for word in argv:
        if not word.startswith("-"):
            return word if word in names else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``magicseg`` parser; only the verb named in ``argv`` gets its flags (and its imports).

    With ``argv=None`` every verb is loaded (for documentation tools and tests).
    """
    wanted = _requested_verb(argv) if argv is not None else None
    parser = Parser(prog="magicseg", description=DESCRIPTION, formatter_class=Formatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="Log debug messages.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    sub.required = True
    for verb in VERBS:
        if argv is not None and verb.name != wanted:
            sub.add_parser(verb.name, help=verb.help, add_help=False)
            continue
        module = verb.load()
        verb_parser = sub.add_parser(
            verb.name, help=verb.help, description=module.DESCRIPTION, formatter_class=Formatter
        )
        module.add_arguments(verb_parser)
        verb_parser.set_defaults(func=module.run, accepts_extra=getattr(module, "ACCEPTS_EXTRA_ARGUMENTS", False))
    return parser


_HANDLERS: list[logging.Handler] = []


def _setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    if not root.handlers:  # as logging.basicConfig, but the handler is ours to remove at the end
        handler = logging.StreamHandler(sys.stderr)  # the command's guarded stderr
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(level)
        _HANDLERS.append(handler)
    logging.getLogger("magicseg_hf").setLevel(level)
    # transformers reads TRANSFORMERS_VERBOSITY when first imported: set it instead of importing it here.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()


def _flag_namer(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Any:
    """parameter name -> the flag of the running verb that sets it (``num_pairs`` -> ``--num-pairs``);
    a verb that takes another library's flags (train: TrainingArguments) spells the rest ``--name``."""
    flags: dict[str, str] = {}
    for action in parser._subparsers._group_actions if parser._subparsers else []:  # noqa: SLF001 - argparse
        verb_parser = getattr(action, "choices", {}).get(args.verb)
        for option in getattr(verb_parser, "_actions", []):
            long = [text for text in option.option_strings if text.startswith("--")]
            if long and option.dest not in flags:
                flags[option.dest] = long[0]
    extra = getattr(args, "accepts_extra", False)
    return lambda name: flags.get(name) or (f"--{name}" if extra else None)


def _close_logging_handlers() -> None:
    """Remove the handler :func:`_setup_logging` added (it writes to this command's stderr guard)."""
    root = logging.getLogger()
    while _HANDLERS:
        root.removeHandler(_HANDLERS.pop())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``magicseg`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra  # a verb that takes another library's flags (train: TrainingArguments) parses them
    # Every log record and every write to stdout/stderr, whichever library makes it, has its
    # credentials redacted; stderr is held back until the verb's checks pass (console.py).
    with console.guarded_output() as held_stderr:
        _setup_logging(args.verbose)
        try:
            with hub_access.redacted_logging():
                return int(args.func(args) or 0)
        except MagicSegError as error:
            held_stderr.discard()  # bad input prints one line: not the INFO lines and bars before it
            message = as_flags(str(error), _flag_namer(parser, args))
            sys.stderr.write(f"magicseg {args.verb}: error: {message}\n")
            return 2
        except KeyboardInterrupt:
            sys.stderr.write(f"magicseg {args.verb}: interrupted\n")
            return 130
        finally:
            _close_logging_handlers()


def console_main() -> None:
    """The ``magicseg`` console script."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.excepthook = console.redacting_excepthook  # a bug's traceback is printed with secrets redacted
    sys.exit(main())
