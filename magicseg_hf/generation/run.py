"""``magicseg generate``: its flags (one per :class:`GenerationConfig` field) and its run.

Importing this module is cheap (no torch): ``magicseg generate --help`` builds its text from
the config's fields and the preset tables alone.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from magicseg_hf.generation.config import GenerationConfig, generation_fields, settings_for_resume
from magicseg_hf.presets import PRESETS, generation_defaults

#: Namespace attribute listing the settings named on the command line (the others kept their defaults).
GIVEN_ATTRIBUTE = "given_settings"

HELP = "Generate a segmentation dataset folder from class names."
DESCRIPTION = """\
Class names -> scene prompts -> a positive image and a counterfactual image of the same
scene without the classes -> detector boxes -> SAM masks -> per-class label maps ->
a dataset folder that `datasets.load_dataset(DIR)` reads.

Example (offline, tiny random models):
  magicseg generate --classes cat dog --num-pairs 8 --preset tiny --output-dir out
No model at all (drawn scenes with exact labels, hundreds of pairs a second):
  magicseg generate --source procedural --classes sun house tree --num-pairs 200 --output-dir shapes
Real checkpoints: drop --preset tiny. Several GPUs:
  accelerate launch -m magicseg_hf generate --vocabulary lvis --num-pairs 10000 --output-dir out"""


def _field_type(field: dataclasses.Field) -> type:
    annotation = str(field.type)
    for name, kind in (("bool", bool), ("int", int), ("float", float)):
        if annotation.startswith(name) or f"[{name}]" in annotation:
            return kind
    return str


def _mark_given(namespace: argparse.Namespace, dest: str) -> None:
    given = getattr(namespace, GIVEN_ATTRIBUTE, None)
    if given is None:
        given = set()
        setattr(namespace, GIVEN_ATTRIBUTE, given)
    given.add(dest)


class _StoreSetting(argparse.Action):
    """Stores the value like argparse's ``store`` action and records that the flag was given."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        _mark_given(namespace, self.dest)


class _BooleanSetting(argparse.BooleanOptionalAction):
    """``--flag`` / ``--no-flag``, recording that the flag was given."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        _mark_given(namespace, self.dest)


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings named on the command line, by field name (flags left out are not in it)."""
    return {name: getattr(args, name) for name in sorted(getattr(args, GIVEN_ATTRIBUTE, None) or ())}


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per :class:`GenerationConfig` field (help text from the field)."""
    by_preset = {preset: generation_defaults(preset) for preset in PRESETS}
    for field in generation_fields():
        flag = "--" + field.name.replace("_", "-")
        help_text = field.metadata.get("help", "")
        if field.name in by_preset["paper"]:  # the .0s hides argparse's own "(default: None)"
            shown = ", ".join(f"{preset} {values[field.name]}" for preset, values in by_preset.items())
            help_text += f" (default by --preset: {shown})%(default).0s"
        elif field.default is None and "default" in help_text:
            help_text += "%(default).0s"
        elif field.default is None:
            help_text += " (default: none)%(default).0s"
        kind = _field_type(field)
        default = field.default if field.default is not dataclasses.MISSING else None
        kwargs: dict = {"dest": field.name, "help": help_text, "default": default}
        if kind is bool:
            parser.add_argument(flag, action=_BooleanSetting, **kwargs)
            continue
        if "nargs" in field.metadata:
            kwargs["nargs"] = field.metadata["nargs"]
        if "choices" in field.metadata:
            kwargs["choices"] = field.metadata["choices"]
        parser.add_argument(flag, type=kind, action=_StoreSetting, **kwargs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``magicseg generate``."""
    parser.add_argument("--output-dir", required=True, help="Folder to write (must be empty unless --resume).")
    parser.add_argument(
        "--resume", action="store_true",
        help="Continue an interrupted run in --output-dir with the settings saved there (or finish its "
             "last steps); flags given must equal the saved ones. A folder whose run has not finished "
             "a shard yet is started again, with or without --resume, with the settings given.",
    )
    add_generation_arguments(parser)


def config_from_args(args: argparse.Namespace) -> GenerationConfig:
    """The run's settings: the flags given on top of the defaults, or with ``--resume`` on top of
    the settings saved in ``--output-dir`` (so ``--resume`` alone continues with those)."""
    from magicseg_hf.folder import DatasetFolder

    if args.resume:
        saved = DatasetFolder(Path(args.output_dir).expanduser()).read_generation()
        if saved is not None and isinstance(saved.get("config"), dict):
            return settings_for_resume(saved["config"], given_settings(args))
    return GenerationConfig(**{f.name: getattr(args, f.name) for f in generation_fields()})


def run(args: argparse.Namespace) -> int:
    """Generate the folder; the run logs its own summary."""
    from magicseg_hf.generation.pipeline import generate
    from magicseg_hf.processes import finish_process_group

    generate(config_from_args(args), args.output_dir, resume=args.resume)
    finish_process_group()
    return 0
