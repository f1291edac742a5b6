"""What can go wrong with a store file, and what the store does about it.

- **Two processes on one file.** :func:`lock_store` locks the file's
  identity, not its name: an exclusive ``flock`` on the database file itself
  (so a hard link or a symlink to it finds the lock), plus one on
  ``PATH.lock`` beside the resolved file, which records the holder's pid for
  the message. Within one process the files open as stores are known by
  ``(st_dev, st_ino)``, so a second open is refused before it touches the
  file.
- **An empty file.** A zero-length file that existed before the store
  opened is refused (:class:`StoreError`) instead of being taken as a new
  store: it is usually a copy or a restore that went wrong.
- **A damaged file.** :func:`damaged` turns SQLite's "malformed" or "no such
  table" into a one-line :class:`StoreError` saying what to do.
- **A value SQLite cannot bind** (a string with a lone surrogate, an integer
  past 64 bits): :func:`repair_row` makes it storable (U+FFFD for a lone
  surrogate, a surrogate pair joined) and :class:`RowProblem` reports it.
- **A write that fails as a whole** (disk full, file size limit, I/O error):
  :func:`write_error` names the real cause in a :class:`StoreWriteError`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from .._errors import (
    StorageFullError,
    StoreDamagedError,
    StoreError,
    StoreWriteError,
)

__all__ = [
    "DATA_ERRORS",
    "RowProblem",
    "StoreLock",
    "damaged",
    "lock_store",
    "repair_row",
    "storable",
    "write_error",
]

#: Errors a single row's values cause (binding, constraints), as opposed to
#: the file or the disk failing.
DATA_ERRORS = (
    ValueError,  # UnicodeEncodeError: a lone surrogate
    OverflowError,
    TypeError,
    sqlite3.InterfaceError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.ProgrammingError,
)

#: SQLite's primary result codes used here.
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26

#: Free space (bytes) under which an I/O error is taken for a full disk.
_LOW_SPACE = 1 << 20
#: How close (bytes) to ``RLIMIT_FSIZE`` a store file must be for an I/O
#: error to be blamed on that limit.
_NEAR_LIMIT = 1 << 16
_INT64_MAX = (1 << 63) - 1

#: The files (``st_dev``, ``st_ino``) this process has open as stores. A
#: second open in the same process is refused before it opens the file:
#: closing any descriptor of a file drops every POSIX lock the process holds
#: on it, SQLite's included.
_held: set[tuple[int, int]] = set()
_held_lock = threading.Lock()


@attrs.define(eq=False)
class StoreLock:
    """The locks :func:`lock_store` took; :meth:`release` drops them.

    Attributes:
        path: The store file, symlinks resolved.
    """

    path: Path
    _fds: list[int]
    _identity: tuple[int, int] | None = None

    def release(self) -> None:
        """Close the lock descriptors (after the SQLite connection: closing
        a descriptor of the database file drops SQLite's own locks)."""
        if self._identity is not None:
            with _held_lock:
                _held.discard(self._identity)
            self._identity = None
        while self._fds:
            os.close(self._fds.pop())


def lock_store(path: Path) -> StoreLock:
    """Lock the store at ``path`` for this process (see the module docstring).

    The database file is created (empty) if it does not exist.

    Args:
        path: The store file as given (a symlink or a hard link is fine).

    Returns:
        The held locks; the caller releases them after closing the store.

    Raises:
        StoreError: Another process (or Runtime) has the file open, under
            this name or another; or the file or its lock cannot be
            opened.
        StoreDamagedError: The file existed and is empty.
    """
    real = Path(os.path.realpath(path))
    lock_path = real.with_name(real.name + ".lock")
    fds: list[int] = []
    lock = StoreLock(real, fds)
    try:
        name_fd = _open(lock_path, "store lock")
        fds.append(name_fd)
        if not _try_flock(name_fd):
            holder = os.pread(name_fd, 32, 0).decode(errors="replace").strip()
            raise StoreError(
                f"store {path} is in use by another yoi-runtime process "
                f"(pid {holder or 'unknown'})"
            )
        in_use = StoreError(
            f"store {path} is in use by another yoi-runtime process "
            "(which opened the same file under another name)"
        )
        with _held_lock:
            try:
                stat = os.stat(real)
            except FileNotFoundError:
                existed = False
            else:
                existed = True
                if (stat.st_dev, stat.st_ino) in _held:
                    raise in_use
            file_fd = _open(real, "store")
            fds.append(file_fd)
            if not _try_flock(file_fd):
                raise in_use
            stat = os.fstat(file_fd)
            identity = (stat.st_dev, stat.st_ino)
            _held.add(identity)
            lock = StoreLock(real, fds, identity)
        if existed and stat.st_size == 0:
            raise StoreDamagedError(
                f"store {path} is an empty file (0 bytes), not a yoi-runtime "
                "store: restore it from a backup, or delete it to start a new store"
            )
        os.ftruncate(name_fd, 0)
        os.pwrite(name_fd, str(os.getpid()).encode(), 0)
    except BaseException:
        lock.release()
        raise
    return lock


def _open(path: Path, what: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot open {what} {path}: {exc.strerror}") from None


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def damaged(path: Path, exc: sqlite3.Error) -> StoreError:
    """The error for a store SQLite cannot open or read (one line, what to
    do): :class:`StoreDamagedError`; a plain :class:`StoreError` for a file
    that is not SQLite at all, or when the disk (not the file) failed.

    Args:
        path: The store file.
        exc: What SQLite raised while opening or reading it.
    """
    primary = _primary(exc)
    if primary == _SQLITE_NOTADB:
        return StoreError(f"{path} is not a yoi-runtime store: {exc}")
    if primary in (_SQLITE_FULL, _SQLITE_IOERR):
        full, cause = _cause(exc, path)
        return StoreError(
            f"cannot open store {path}: {cause} (SQLite: {exc})"
            + ("; free space and start again" if full else "")
        )
    return StoreDamagedError(
        f"store {path} is damaged ({exc}): restore it from a backup, or move it "
        "away to start a new store"
    )


def storable(text: str) -> str:
    """``text`` as SQLite can keep it: surrogate pairs split into two code
    points are joined, and a lone surrogate becomes U+FFFD."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def repair_row(row: Sequence[Any]) -> tuple[Any, ...]:
    """Return ``row`` with every value made storable (:func:`storable`
    strings, integers clamped to 64 bits)."""
    return tuple(_repair(value) for value in row)


def _repair(value: Any) -> Any:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return max(-_INT64_MAX, min(_INT64_MAX, value))
    return value


@attrs.frozen
class RowProblem:
    """A row of a batch that could not be written as it was.

    Attributes:
        table: The table (``"turns"``, ``"transcript"``, ...).
        worker_id: The Worker the row belongs to (a scope for allocations).
        repaired: True if a repaired copy was written (:func:`repair_row`);
            False if the row was left out.
        error: What SQLite or the driver said about the original row.
    """

    table: str
    worker_id: str
    repaired: bool
    error: str


def write_error(exc: sqlite3.Error, path: Path) -> StoreWriteError:
    """Name the real cause of a failed write, without the file's path.

    Returns:
        :class:`StorageFullError` when the disk is full or the process's file
        size limit (``RLIMIT_FSIZE``) is reached; otherwise
        :class:`StoreWriteError` with SQLite's message.
    """
    full, cause = _cause(exc, path)
    message = (
        f"cannot write the store: {cause} (SQLite: {exc}); commands are refused "
        "until a write succeeds"
    )
    return StorageFullError(message) if full else StoreWriteError(message)


def _cause(exc: sqlite3.Error, path: Path) -> tuple[bool, str]:
    """Whether SQLite's error means no space is left, and the cause in words."""
    primary = _primary(exc)
    if primary in (_SQLITE_FULL, _SQLITE_IOERR):
        free = _free_bytes(path)
        if free is not None and free < _LOW_SPACE:
            return True, f"its disk is full ({free} bytes free)"
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and (
            _largest_file(path) + _NEAR_LIMIT >= limit
        ):
            return True, (
                f"the process's file size limit (RLIMIT_FSIZE, {limit} bytes) "
                "is reached"
            )
    if primary == _SQLITE_FULL:
        return True, "its disk is full"
    if primary == _SQLITE_IOERR:
        return False, "an I/O error"
    if primary == _SQLITE_CORRUPT:
        return False, "the file is damaged"
    return False, "SQLite refused the write"


def _primary(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def _free_bytes(path: Path) -> int | None:
    try:
        stat = os.statvfs(path.parent)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def _largest_file(path: Path) -> int:
    largest = 0
    for suffix in ("", "-wal", "-journal"):
        with contextlib.suppress(OSError):
            largest = max(largest, os.stat(f"{path}{suffix}").st_size)
    return largest
