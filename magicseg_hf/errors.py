"""Errors that mean "the user asked for something we cannot do".

The CLI turns any :class:`MagicSegError` into one line on stderr and exit status 2;
every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


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
