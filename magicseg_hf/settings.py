"""From settings to a command line: one ``--flag`` per dataclass field, by one helper.

Every ``magicseg`` verb declares its settings as a dataclass (``GenerationConfig``, ``TrainConfig``,
``EvaluationConfig``, ``PredictSettings``, ``DemoSettings``, ...) and :func:`add_arguments` turns the
fields that carry help text into argparse arguments. The type comes from the field's real
annotation (:func:`typing.get_type_hints`, never the annotation's text); the rest from its
``metadata``:

``help``
    The ``--help`` text; a field without it is not a flag (e.g. a run's records).
``choices``, ``metavar``, ``nargs``
    As argparse's (``nargs`` defaults to ``"+"`` for a ``list``/``tuple`` field).
``flag``
    The option string when it is not ``--field-name``; a word without dashes (``"DIR"``) makes a
    positional argument with that metavar.
``required``
    The flag must be given (a Python caller may still rely on the field's default).
``default``
    The command line's default when it differs from the field's (or the field has none).
``group``
    The title of the ``--help`` section the flag is listed under.

The dest of every argument is the field's name, so ``Config(**{name: getattr(args, name)})``
rebuilds the settings and the CLI turns a library message's `` `field_name` `` into the flag the
user typed (:func:`magicseg_hf.errors.as_flags`). Bool fields are ``--flag`` (default False) or
``--flag/--no-flag`` (default True). A bad value (``--num-pairs two``) is argparse's one-line
usage error, exit status 2. This module imports only the standard library: ``--help`` stays
torch-free and fast (``transformers.HfArgumentParser`` costs about a second to import; it parses
only ``TrainingArguments``, when ``magicseg train`` runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

#: Namespace attribute listing the settings named on the command line (the others kept their defaults).
GIVEN_ATTRIBUTE = "given_settings"

#: The metadata keys :func:`add_arguments` reads.
METADATA_KEYS = ("help", "choices", "metavar", "nargs", "flag", "required", "default", "group")


def flag_name(name: str) -> str:
    """The option string of field ``name``: ``num_pairs`` -> ``--num-pairs``."""
    return "--" + name.replace("_", "-")


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without ``None``, whether ``None`` is allowed)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) == 1:
            return args[0], optional
        raise TypeError(f"a flag needs one type, not {annotation!r}")
    return annotation, False


def _value_type(annotation: Any) -> tuple[Callable[[str], Any], bool]:
    """(what argparse converts each word with, whether the field takes several words)."""
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        (item, *_rest) = typing.get_args(annotation) or (str,)
        return _value_type(item)[0], True
    if annotation in (int, float, str):
        return annotation, False
    if isinstance(annotation, type) and issubclass(annotation, pathlib.PurePath):
        return str, False  # a path is typed as text; the verb expands it
    raise TypeError(f"no command-line type for annotation {annotation!r}")


def _field_default(item: dataclasses.Field) -> Any:
    if "default" in item.metadata:
        default = item.metadata["default"]
    elif item.default is not dataclasses.MISSING:
        default = item.default
    elif item.default_factory is not dataclasses.MISSING:
        default = item.default_factory()
    else:
        default = None
    return list(default) if isinstance(default, tuple) else default  # shown as the user types it


def _mark_given(namespace: argparse.Namespace, dest: str) -> None:
    given = getattr(namespace, GIVEN_ATTRIBUTE, None)
    if given is None:
        given = set()
        setattr(namespace, GIVEN_ATTRIBUTE, given)
    given.add(dest)


class _StoreGiven(argparse._StoreAction):  # noqa: SLF001 - argparse's own store action
    """``store``, recording that the flag was given."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        _mark_given(namespace, self.dest)


class _StoreTrueGiven(argparse._StoreTrueAction):  # noqa: SLF001 - argparse's own store_true action
    """``store_true``, recording that the flag was given."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        _mark_given(namespace, self.dest)


class _BooleanGiven(argparse.BooleanOptionalAction):
    """``--flag`` / ``--no-flag``, recording that the flag was given."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        _mark_given(namespace, self.dest)


def flag_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of dataclass ``cls`` that are flags (those with help text), in declaration order."""
    return [item for item in dataclasses.fields(cls) if "help" in item.metadata]


def add_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    help_of: Callable[[dataclasses.Field, str], str] | None = None,
    record_given: bool = False,
    only: Iterable[str] | None = None,
) -> None:
    """Add one argument per flag field of dataclass ``cls`` to ``parser`` (see the module's doc).

    Args:
        help_of: rewrites a field's help text (e.g. to name the preset's default).
        record_given: remember which flags were given (:func:`given_settings`), for settings that
            are combined with saved ones.
        only: add just these fields (names), in declaration order.
    """
    hints = typing.get_type_hints(cls)
    wanted = None if only is None else set(only)
    groups: dict[str, argparse._ArgumentGroup] = {}  # noqa: SLF001 - argparse's group type
    for item in flag_fields(cls):
        if wanted is not None and item.name not in wanted:
            continue
        metadata = item.metadata
        unknown = sorted(set(metadata) - set(METADATA_KEYS))
        if unknown:
            raise TypeError(f"{cls.__name__}.{item.name}: unknown flag metadata {unknown}")
        target: Any = parser
        if "group" in metadata:
            if metadata["group"] not in groups:
                groups[metadata["group"]] = parser.add_argument_group(metadata["group"])
            target = groups[metadata["group"]]
        help_text = metadata["help"] if help_of is None else help_of(item, metadata["help"])
        default = _field_default(item)
        kind, _optional = _base_type(hints[item.name])
        flag = metadata.get("flag", flag_name(item.name))
        if not flag.startswith("-"):  # a positional argument: its dest is the field's name
            target.add_argument(item.name, metavar=flag, help=help_text)
            continue
        kwargs: dict[str, Any] = {"dest": item.name, "help": help_text, "default": default}
        if metadata.get("required"):
            kwargs["required"] = True
        if kind is bool:
            if default:
                action: Any = _BooleanGiven if record_given else argparse.BooleanOptionalAction
            else:
                action = _StoreTrueGiven if record_given else "store_true"
            target.add_argument(flag, action=action, **kwargs)
            continue
        convert, several = _value_type(kind)
        if several or "nargs" in metadata:
            kwargs["nargs"] = metadata.get("nargs", "+")
        for key in ("choices", "metavar"):
            if key in metadata:
                kwargs[key] = metadata[key]
        if record_given:
            kwargs["action"] = _StoreGiven
        target.add_argument(flag, type=convert, **kwargs)


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings named on the command line, by field name (flags left out are not in it);
    only for fields added with ``record_given=True``."""
    return {name: getattr(args, name) for name in sorted(getattr(args, GIVEN_ATTRIBUTE, None) or ())}


def from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """An instance of dataclass ``cls`` from the flag fields in ``args`` (and ``overrides``)."""
    values = {item.name: getattr(args, item.name) for item in flag_fields(cls) if hasattr(args, item.name)}
    return cls(**{**values, **overrides})
