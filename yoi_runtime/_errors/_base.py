"""The root of the error tree, and errors about a Runtime as a whole.

The caller's input, the Runtime's availability, tokens, bounds and the
durable store.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "InternalError",
    "InvalidInputError",
    "LimitExceededError",
    "OperationUnsupportedError",
    "RuntimeUnavailableError",
    "StorageFullError",
    "StoreDamagedError",
    "StoreError",
    "StoreWriteError",
    "UnauthorizedError",
    "YoiRuntimeError",
]


class YoiRuntimeError(Exception):
    """Base class of every error raised on purpose by :mod:`yoi_runtime`.

    Attributes:
        code: A stable machine-readable string (``"worker_busy"``, ...).
        message: A one-line human-readable description.
    """

    code: ClassVar[str] = "runtime_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, Any]:
        """Return the structured details of this error, JSON-ready.

        Returns:
            A dict with string keys; empty for errors without details.
        """
        return {}


class InvalidInputError(YoiRuntimeError):
    """A call's arguments are wrong: unknown profile or engine, bad limit, ...

    Attributes:
        path: Where the bad value is (``"limit"``, ``"worker_id"``), or None.
    """

    code = "invalid_input"

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    def details(self) -> dict[str, Any]:
        return {} if self.path is None else {"path": self.path}


class OperationUnsupportedError(YoiRuntimeError):
    """This Runtime (or handle) cannot perform the requested operation."""

    code = "operation_unsupported"


class RuntimeUnavailableError(YoiRuntimeError):
    """The Runtime is shutting down or closed and takes no more commands."""

    code = "runtime_unavailable"


class UnauthorizedError(YoiRuntimeError):
    """A Runtime process refused the request's token (or it had none)."""

    code = "unauthorized"


class InternalError(YoiRuntimeError):
    """A Runtime process failed with an unexpected error (a bug there)."""

    code = "internal_error"


class LimitExceededError(YoiRuntimeError):
    """A configured bound of the Runtime is reached (``Limits``), for
    example its maximum number of Workers.

    Attributes:
        limit: The name of the ``Limits`` field (``"max_workers"``).
        value: Its value in this Runtime.
    """

    code = "limit_exceeded"

    def __init__(self, message: str, *, limit: str, value: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value

    def details(self) -> dict[str, Any]:
        return {"limit": self.limit, "value": self.value}


class StoreError(YoiRuntimeError):
    """The durable store cannot be used: another process holds it, its schema
    is newer than this version knows, it is damaged or empty, or it is not a
    yoi-runtime store.

    Raised when a Runtime opens (never for one bad row: that becomes a
    :class:`~yoi_runtime.Diagnostic`), and by a command whose change has a
    value the store cannot keep (never for user input, which is checked
    first).
    """

    code = "store_error"


class StoreDamagedError(StoreError):
    """The store file cannot be read: a damaged page, a table missing, or
    an empty (zero-length) file that is not a new store.

    Raised when a Runtime opens; the message names the file and what to do
    (restore it from a backup, or move it away to start a new store).
    """

    code = "store_damaged"


class StoreWriteError(StoreError):
    """Writing the durable store failed (an I/O error), so the command's
    change was not acknowledged.

    The Runtime stays up: it is ``degraded`` (``RuntimeSummary.status``),
    keeps the change in memory, retries the write by itself and serves
    commands again once a write succeeds. Until then every command raises
    this error; reads keep working. A change refused this way may still be
    committed later: retry with the same ``input_id`` or ``worker_id`` to
    learn its outcome.
    """

    code = "store_write_failed"


class StorageFullError(StoreWriteError):
    """The store's disk (or the process's file size limit) has no room left.

    Like :class:`StoreWriteError`: the Runtime retries by itself and serves
    commands again once space is freed.
    """

    code = "storage_full"
