"""Errors that mean "the user asked for something we cannot do".

The CLI turns any :class:`MagicSegError` into one line on stderr and exit status 2;
every other exception is a bug and keeps its traceback.

Library code names the *parameter* a caller passed, not a command-line flag: a parameter is written
between backticks (``InputError("`num_pairs` must be positive (got 0)")``), which a Python caller
reads as the name of the argument it gave; the command layer (:func:`as_flags`) turns each into the
flag the user typed (``--num-pairs``), so a message is written once for both readers.
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: A parameter named in a message: `snake_case` between backticks.
PARAMETER_PATTERN = re.compile(r"`([a-z][a-z0-9_]*)`")


class MagicSegError(Exception):
    """Bad input or an unavailable resource, explained in one line."""


class InputError(MagicSegError, ValueError):
    """An argument or file the user gave is invalid (no classes, N <= 0, unknown vocabulary...)."""


class ModelLoadError(MagicSegError, OSError):
    """A model named by id or path could not be loaded (bad path, offline or unreachable Hub)."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of ``error``'s message, or its type name when it has none.

    Used wherever a library exception is turned into one of ours: a one-line message, never a
    multi-line dump of another library's text.
    """
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def as_flags(message: str, flag_of: Callable[[str], str | None]) -> str:
    """``message`` with every backticked parameter that ``flag_of`` knows written as its flag
    (``flag_of("num_pairs") == "--num-pairs"``); one it does not know keeps its name, unquoted."""
    def replace(match: re.Match[str]) -> str:
        return flag_of(match.group(1)) or match.group(1)

    return PARAMETER_PATTERN.sub(replace, message)
