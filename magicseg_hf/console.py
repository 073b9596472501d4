"""What a ``magicseg`` command shows on its terminal: redacted always, and quiet until its checks pass.

Two promises of the command line are kept here, for every library at once:

- **No credential reaches the terminal.** The command's ``sys.stdout`` and ``sys.stderr`` are
  :class:`GuardedStream` wrappers that pass every write through :func:`hub_access.redact`: log
  lines (also redacted at the record, :func:`hub_access.redacted_logging`), ``warnings``, progress
  bars, ``print`` calls of other libraries and the traceback of a bug (the console script's
  ``sys.excepthook`` is :func:`redacting_excepthook`). Bytes that C code writes to the file
  descriptors directly do not pass through Python and are not covered.
- **Bad input prints one line.** Until the verb says its checks passed (:func:`checks_passed`),
  or :data:`HOLD_SECONDS` after the command started, what is written to stderr (INFO lines,
  ``datasets``' progress bars, warnings) is held back. A :class:`~magicseg_hf.errors.MagicSegError`
  in that time drops it, so the user reads only the error line; any other ending writes it out.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TextIO

from magicseg_hf import hub_access

#: Seconds during which stderr is held back unless the verb's checks pass sooner: long enough for the
#: up-front checks of every verb, short enough that a slow start still shows its progress soon.
HOLD_SECONDS = 5.0


class GuardedStream:
    """A text stream that redacts what it writes and can hold it back (see the module docstring).

    Args:
        stream: the stream written to.
        hold: whether writes are held back until :meth:`release` (or ``HOLD_SECONDS`` elapse).
    """

    def __init__(self, stream: TextIO, hold: bool = False) -> None:
        self._stream = stream
        self._held: list[str] | None = [] if hold else None
        self._deadline = time.monotonic() + HOLD_SECONDS

    def write(self, text: str) -> int:
        cleaned = hub_access.redact(text)
        if self._held is not None and time.monotonic() >= self._deadline:
            self.release()
        if self._held is not None:
            self._held.append(cleaned)
        else:
            self._stream.write(cleaned)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._held is None:
            self._stream.flush()

    def release(self) -> None:
        """Write what was held back and stop holding."""
        held, self._held = self._held, None
        if held:
            self._stream.write("".join(held))
            self._stream.flush()

    def discard(self) -> None:
        """Forget what was held back and stop holding."""
        self._held = None

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno, ... of the wrapped stream
        return getattr(self._stream, name)


_ACTIVE: list[GuardedStream] = []


@contextmanager
def guarded_output() -> Iterator[GuardedStream]:
    """Inside the block, ``sys.stdout`` redacts and ``sys.stderr`` redacts and holds back; yields
    the stderr guard (the caller discards it on bad input). The streams are restored on exit, and
    whatever is still held is written out unless it was discarded."""
    out, err = sys.stdout, sys.stderr
    guard_out, guard_err = GuardedStream(out), GuardedStream(err, hold=True)
    sys.stdout, sys.stderr = guard_out, guard_err  # type: ignore[assignment]
    _ACTIVE.append(guard_err)
    try:
        yield guard_err
    finally:
        _ACTIVE.remove(guard_err)
        guard_err.release()
        sys.stdout, sys.stderr = out, err


def checks_passed() -> None:
    """Called by a verb once its input is checked: the terminal shows everything from now on."""
    for guard in _ACTIVE:
        guard.release()


def redacting_excepthook(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    """``sys.excepthook`` that prints a bug's traceback with its credentials redacted."""
    sys.__stderr__.write(hub_access.redact("".join(traceback.format_exception(kind, error, trace))))
