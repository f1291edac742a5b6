"""The exception tree of :mod:`yoi_runtime`.

Every error the library raises on purpose derives from :class:`YoiRuntimeError`
and carries a stable ``code`` string, the same one the runtime process puts in
its JSON error envelope::

    YoiRuntimeError
    ├── InvalidInputError            invalid_input          (caller's fault)
    ├── OperationUnsupportedError    operation_unsupported  (caller's fault)
    ├── RuntimeUnavailableError      runtime_unavailable    (closing, unreachable)
    ├── UnauthorizedError            unauthorized           (missing or wrong token)
    ├── InternalError                internal_error         (a bug on the other side)
    ├── StoreError                   store_error            (the durable store refused)
    ├── WorkerError                  (carries worker_id)
    │   ├── WorkerNotFoundError      worker_not_found
    │   ├── WorkerBusyError          worker_busy            (a turn is active)
    │   ├── WorkerStoppedError       worker_stopped         (stopped or failed)
    │   ├── ScopeConflictError       scope_conflict         (scope held by another)
    │   └── IdempotencyConflictError idempotency_conflict   (same key, other body)
    │       └── WorkerExistsError                           (same worker_id)
    └── EngineError                  (the model server's fault; fails one turn)
        ├── EngineConnectError       engine_unreachable
        ├── EngineTimeoutError       engine_timeout
        ├── EngineStatusError        engine_http_error      (HTTP 4xx / 5xx)
        ├── EngineProtocolError      engine_protocol_error  (malformed stream)
        └── EngineConfigError        engine_config_error    (e.g. no API key)

An :class:`EngineError` never escapes the Runtime: it fails the turn it
happened in, and its ``code`` and message become the ``turn.failed`` event's
``data``. Messages never contain an API key or another secret.
"""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

__all__ = [
    "EngineConfigError",
    "EngineConnectError",
    "EngineError",
    "EngineProtocolError",
    "EngineStatusError",
    "EngineTimeoutError",
    "InternalError",
    "IdempotencyConflictError",
    "InvalidInputError",
    "OperationUnsupportedError",
    "RuntimeUnavailableError",
    "ScopeConflictError",
    "StoreError",
    "UnauthorizedError",
    "WorkerBusyError",
    "WorkerError",
    "WorkerExistsError",
    "WorkerNotFoundError",
    "WorkerStoppedError",
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
        path: Where the bad value is (``"limit"``, ``"$.worker_id"``), or None.
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


class StoreError(YoiRuntimeError):
    """The durable store cannot be used: another process holds it, its schema
    is newer than this version knows, or it is not a yoi-runtime store.

    Raised when a Runtime opens (never for one bad row: that becomes a
    :class:`~yoi_runtime.Diagnostic`) and when a write fails, which closes
    the Runtime.
    """

    code = "store_error"


class WorkerError(YoiRuntimeError):
    """An error about one Worker.

    Attributes:
        worker_id: The runtime-scoped id of the Worker concerned.
    """

    def __init__(self, message: str, *, worker_id: str) -> None:
        super().__init__(message)
        self.worker_id = worker_id

    def details(self) -> dict[str, Any]:
        return {"worker_id": self.worker_id}


class WorkerNotFoundError(WorkerError):
    """No Worker with this id exists in this Runtime."""

    code = "worker_not_found"


class WorkerBusyError(WorkerError):
    """Input was rejected because the Worker already has an active turn.

    Nothing was queued: the caller may retry once the active turn ends.

    Attributes:
        turn_id: The id of the turn that is accepted or running.
        started_at: When that turn was accepted (UTC).
    """

    code = "worker_busy"

    def __init__(
        self,
        message: str,
        *,
        worker_id: str,
        turn_id: str,
        started_at: datetime.datetime,
    ) -> None:
        super().__init__(message, worker_id=worker_id)
        self.turn_id = turn_id
        self.started_at = started_at

    def details(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "turn_id": self.turn_id,
            "started_at": self.started_at.isoformat(),
        }


class WorkerStoppedError(WorkerError):
    """The Worker is stopped (or failed) and takes no more input.

    Attributes:
        status: ``"stopped"`` or ``"failed"``.
    """

    code = "worker_stopped"

    def __init__(self, message: str, *, worker_id: str, status: str) -> None:
        super().__init__(message, worker_id=worker_id)
        self.status = status

    def details(self) -> dict[str, Any]:
        return {"worker_id": self.worker_id, "status": self.status}


class ScopeConflictError(WorkerError):
    """A create claimed an exclusive scope that a live Worker holds.

    Attributes:
        worker_id: The Worker that holds the scope (the holder).
        scope: The scope claimed twice.
    """

    code = "scope_conflict"

    def __init__(self, message: str, *, worker_id: str, scope: str) -> None:
        super().__init__(message, worker_id=worker_id)
        self.scope = scope

    def details(self) -> dict[str, Any]:
        return {"worker_id": self.worker_id, "scope": self.scope}


class IdempotencyConflictError(WorkerError):
    """An idempotency key was reused with a different request.

    Retrying with the same key and the same request is not an error: it
    returns the original result.

    Attributes:
        input_id: The input's key, or None when the key was the ``worker_id``
            of a create.
    """

    code = "idempotency_conflict"

    def __init__(
        self, message: str, *, worker_id: str, input_id: str | None = None
    ) -> None:
        super().__init__(message, worker_id=worker_id)
        self.input_id = input_id

    def details(self) -> dict[str, Any]:
        if self.input_id is None:
            return {"worker_id": self.worker_id}
        return {"worker_id": self.worker_id, "input_id": self.input_id}


class WorkerExistsError(IdempotencyConflictError):
    """A create named an existing ``worker_id`` with different settings.

    Creating with the same id and the same settings is not an error: it returns
    the existing Worker (idempotent create).
    """


class EngineError(YoiRuntimeError):
    """A model server or engine failed a turn.

    Raised by engines inside a turn; the Worker turns it into a ``turn.failed``
    event and goes back to ``idle``. Never carries a secret.
    """

    code = "engine_error"


class EngineConnectError(EngineError):
    """The model server could not be reached (refused, DNS, TLS)."""

    code = "engine_unreachable"


class EngineTimeoutError(EngineError):
    """The model server did not connect or send data within its timeout."""

    code = "engine_timeout"


class EngineStatusError(EngineError):
    """The model server answered with an HTTP error status.

    Attributes:
        status_code: The HTTP status (400-599).
    """

    code = "engine_http_error"

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code

    def details(self) -> dict[str, Any]:
        return {"status_code": self.status_code}


class EngineProtocolError(EngineError):
    """The model server's stream was malformed or ended before it finished."""

    code = "engine_protocol_error"


class EngineConfigError(EngineError):
    """The engine is misconfigured (for example its API key cannot be read)."""

    code = "engine_config_error"
