"""``FolderLock``: one writer per folder (a dataset folder being generated, an export being written).

The lock file (``.magicseg.lock``, :data:`magicseg_hf.schema.LOCK_FILE`, hidden: never published)
records the holder's pid, host and start time. Where the file system has advisory locks
(``flock``, POSIX) the lock is the kernel's and ends with its process however it ends; elsewhere
the file is created exclusively. See :class:`FolderLock`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from magicseg_hf.errors import InputError, first_line
from magicseg_hf.folder import DatasetFolder, json_bytes
from magicseg_hf.schema import LOCK_FILE

try:  # advisory file locks (POSIX); elsewhere the lock falls back to an exclusive create
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)


@dataclass
class LockHolder:
    """Who holds (or held) a folder's lock, as its lock file records it."""

    pid: int | None = None
    host: str | None = None
    started: str | None = None

    @classmethod
    def this_process(cls) -> LockHolder:
        return cls(pid=os.getpid(), host=socket.gethostname(), started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @classmethod
    def from_bytes(cls, data: bytes) -> LockHolder | None:
        """The holder recorded in lock-file bytes; None for an empty or unreadable record."""
        try:
            value = json.loads(data.decode("utf-8"))
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        pid = value.get("pid")
        return cls(pid=pid if isinstance(pid, int) else None, host=value.get("host"), started=value.get("started"))

    def to_bytes(self) -> bytes:
        return json_bytes({"pid": self.pid, "host": self.host, "started": self.started})

    def describe(self) -> str:
        """``pid 123 on host h, started 2026-01-01T10:00:00+0000`` (the parts it knows)."""
        parts = [f"pid {self.pid}" if self.pid is not None else "an unknown process"]
        if self.host:
            parts.append(f"on host {self.host}")
        text = " ".join(parts)
        return f"{text}, started {self.started}" if self.started else text

    def is_gone(self) -> bool:
        """Whether the holder is known to have ended: a process of this host that no longer runs."""
        if self.pid is None or self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # it runs, as another user
            return False
        return False


class FolderLock:
    """An exclusive lock on a dataset folder, held by the one run that writes it.

    The lock file (``.magicseg.lock``, hidden: never published) records the holder's pid, host
    and start time; a second run that asks for the lock gets an :class:`InputError` naming the
    holder. Where the file system has advisory locks (``flock``, POSIX), the lock is the kernel's:
    it ends with the holding process however that process ends (even SIGKILL), and a lock file
    left by a process that is gone is taken over with a warning naming it. Elsewhere the file is
    created exclusively (``O_EXCL``) and a file left by a process of this host that no longer runs
    is taken over, with the same warning.

    :meth:`acquire` creates the folder (and missing parents) if needed — the first write of a run,
    so it also tells an unwritable folder at once — and remembers what it created, so that
    ``release(remove_created=True)`` leaves no trace of a run that was refused.

    Example::

        lock = FolderLock("out")
        lock.acquire()          # InputError if another run holds it
        try:
            ...                 # write the folder
        finally:
            lock.release()
    """

    #: Attempts to take a lock whose file another process is removing at the same moment.
    _RETRIES = 20

    def __init__(self, folder: str | Path | DatasetFolder, what: str = "folder") -> None:
        self.folder = DatasetFolder(folder)
        self.path = self.folder.root / LOCK_FILE
        self.what = what
        self.holder = LockHolder.this_process()
        #: The holder of a lock file taken over from a process that had ended, if any.
        self.taken_over: LockHolder | None = None
        self._fd: int | None = None
        self._created: list[Path] = []

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _refuse(self, holder: LockHolder | None) -> InputError:
        who = holder.describe() if holder else "a process that has not recorded itself yet"
        return InputError(
            f"{self.what} {str(self.folder.root)!r} is in use by another magicseg run ({who}); wait for it to "
            f"finish (or stop it), then run again with --resume; if that run is gone, delete {self.path}"
        )

    def active_holder(self) -> LockHolder | None:
        """The run holding the lock now (another process, or this one through another object),
        found without taking the lock or writing anything; None when it is free."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            record = LockHolder.from_bytes(_read_all(fd))
            if fcntl is None:
                return record if record is not None and not record.is_gone() else None
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return record or LockHolder()
            except OSError:  # no flock here: judge by the record
                return record if record is not None and not record.is_gone() else None
            return None
        finally:
            os.close(fd)  # also gives back the shared lock taken to look

    def check_free(self) -> None:
        """Raise :class:`InputError` naming the holder when another run holds the lock (reads only)."""
        if self.held:
            return
        holder = self.active_holder()
        if holder is not None:
            raise self._refuse(holder)

    def _make_folder(self) -> None:
        missing: list[Path] = []
        for path in (self.folder.root, *self.folder.root.parents):
            if path.exists():
                break
            missing.append(path)
        try:
            self.folder.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InputError(f"{self.what} {str(self.folder.root)!r} cannot be created: {first_line(error)}") from error
        self._created = missing

    def acquire(self) -> None:
        """Take the lock, creating the folder if needed.

        Raises:
            InputError: another run holds the lock (named in the message), or the folder cannot
                be created or written.
        """
        if self.held:
            return
        self._make_folder()
        try:
            self._fd = self._acquire_flock() if fcntl is not None else None
            if self._fd is None:
                self._fd = self._acquire_exclusive()
        except InputError:
            self._remove_created()
            raise
        except OSError as error:
            self._remove_created()
            raise InputError(f"{self.what} {str(self.folder.root)!r} is not writable: {first_line(error)}") from error
        if self.taken_over is not None:
            logger.warning(
                "%s: taking over the lock left by a run that is gone (%s)", self.folder.root, self.taken_over.describe()
            )

    def _acquire_flock(self) -> int | None:
        """The locked descriptor of the lock file, or None where the file system has no ``flock``."""
        for _ in range(self._RETRIES):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = LockHolder.from_bytes(_read_all(fd))
                os.close(fd)
                raise self._refuse(holder) from None
            except OSError as error:
                os.close(fd)
                if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    return None
                raise
            try:  # the holder may have released (and unlinked) the file between our open and flock
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(current, os.fstat(fd)):
                self.taken_over = LockHolder.from_bytes(_read_all(fd))  # a record left by a run that ended
                os.ftruncate(fd, 0)
                os.pwrite(fd, self.holder.to_bytes(), 0)
                return fd
            os.close(fd)
        raise self._refuse(None)

    def _acquire_exclusive(self) -> int:
        """Without ``flock``: create the lock file exclusively; take over one whose holder is gone."""
        for _ in range(self._RETRIES):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    holder = LockHolder.from_bytes(self.path.read_bytes())
                except FileNotFoundError:
                    continue
                if holder is None or not holder.is_gone():
                    raise self._refuse(holder) from None
                self.taken_over = holder
                self.path.unlink(missing_ok=True)
                continue
            os.write(fd, self.holder.to_bytes())
            return fd
        raise self._refuse(None)

    def release(self, remove_created: bool = False) -> None:
        """Give the lock back (its file is removed); with ``remove_created``, also remove the
        folders :meth:`acquire` created, where they are still empty. No error when not held."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if remove_created:
            self._remove_created()

    def _remove_created(self) -> None:
        for path in self._created:  # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()
        self._created = []


def _read_all(fd: int) -> bytes:
    chunks, offset = [], 0
    while True:
        chunk = os.pread(fd, 65536, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)
