"""``magicseg generate``: its flags (one per :class:`GenerationConfig` field) and its run.

Importing this module is cheap (no torch): ``magicseg generate --help`` builds its text from
the config's fields and the preset tables alone.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from magicseg_hf import settings
from magicseg_hf.generation.config import GenerationConfig, settings_for_resume
from magicseg_hf.presets import PRESETS, generation_defaults

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


def _help_with_default(field: dataclasses.Field, help_text: str) -> str:
    """A field's help, naming each preset's value where the preset sets it (and no "(default: None)")."""
    by_preset = {preset: generation_defaults(preset) for preset in PRESETS}
    if field.name in by_preset["paper"]:  # the .0s hides argparse's own "(default: None)"
        shown = ", ".join(f"{preset} {values[field.name]}" for preset, values in by_preset.items())
        return help_text + f" (default by --preset: {shown})%(default).0s"
    if field.default is None and "default" in help_text:
        return help_text + "%(default).0s"
    if field.default is None:
        return help_text + " (default: none)%(default).0s"
    return help_text


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per :class:`GenerationConfig` field (help text from the field), remembering
    which were given (:func:`~magicseg_hf.settings.given_settings`, for ``--resume``)."""
    settings.add_arguments(parser, GenerationConfig, help_of=_help_with_default, record_given=True)


@dataclass
class RunFlags:
    """The flags of ``magicseg generate`` that are not generation settings (where, and whether to resume)."""

    output_dir: str | None = field(default=None, metadata={
        "help": "Folder to write (must be empty unless --resume).", "required": True})
    resume: bool = field(default=False, metadata={
        "help": "Continue an interrupted run in --output-dir with the settings saved there (or finish its "
                "last steps); flags given must equal the saved ones. A folder whose run has not finished "
                "a shard yet is started again, with or without --resume, with the settings given."})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``magicseg generate``."""
    settings.add_arguments(parser, RunFlags)
    add_generation_arguments(parser)


def config_from_args(args: argparse.Namespace) -> GenerationConfig:
    """The run's settings: the flags given on top of the defaults, or with ``--resume`` on top of
    the settings saved in ``--output-dir`` (so ``--resume`` alone continues with those)."""
    from magicseg_hf.folder import DatasetFolder

    if args.resume:
        saved = DatasetFolder(Path(args.output_dir).expanduser()).read_generation()
        if saved is not None and isinstance(saved.get("config"), dict):
            return settings_for_resume(saved["config"], settings.given_settings(args))
    return settings.from_args(GenerationConfig, args)


def run(args: argparse.Namespace) -> int:
    """Generate the folder; the run logs its own summary."""
    from magicseg_hf.generation.pipeline import generate
    from magicseg_hf.processes import finish_process_group

    generate(config_from_args(args), args.output_dir, resume=args.resume)
    finish_process_group()
    return 0
