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
    ├── LimitExceededError           limit_exceeded         (a Limits bound reached)
    ├── StoreError                   store_error            (the durable store refused)
    │   ├── StoreDamagedError        store_damaged          (damaged or empty file)
    │   └── StoreWriteError          store_write_failed     (a write failed; retried)
    │       └── StorageFullError     storage_full           (no space for the store)
    ├── WorkerError                  (carries worker_id)
    │   ├── WorkerNotFoundError      worker_not_found
    │   ├── WorkerBusyError          worker_busy            (a turn is active)
    │   ├── WorkerStoppedError       worker_stopped         (stopped or failed)
    │   ├── ScopeConflictError       scope_conflict         (scope held by another)
    │   ├── IdempotencyConflictError idempotency_conflict   (same key, other body)
    │   │   └── WorkerExistsError                           (same worker_id)
    │   └── TurnNotCompletedError    turn_not_completed     (ask, open_turn: no answer)
    │       ├── TurnFailedError      turn_failed            (error.code says why)
    │       ├── TurnCancelledError   turn_cancelled         (cancel, stop, shutdown)
    │       └── TurnInterruptedError turn_interrupted       (its process died)
    └── EngineError                  (the model server's fault; fails one turn)
        ├── EngineConnectError       engine_unreachable
        ├── EngineTimeoutError       engine_timeout
        ├── EngineStatusError        engine_http_error      (HTTP 4xx / 5xx)
        ├── EngineProtocolError      engine_protocol_error  (malformed stream)
        │   └── EngineStreamIncompleteError engine_stream_incomplete
        │                                                   (no finish reason)
        ├── ContextLengthExceededError context_length_exceeded
        │                                                   (prompt too long)
        └── EngineConfigError        engine_config_error    (e.g. no API key)

An :class:`EngineError` never escapes the Runtime: it fails the turn it
happened in, and its ``code`` and message become the ``turn.failed`` event's
``data``. Messages never contain an API key or another secret.

A :class:`TurnNotCompletedError` is raised only by ``ask`` and ``open_turn``
(the caller waited for an answer that did not come); the event stream says
the same with ``turn.failed`` / ``turn.cancelled`` / ``turn.interrupted``.
"""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

from ._types import TurnError

__all__ = [
    "ContextLengthExceededError",
    "EngineConfigError",
    "EngineConnectError",
    "EngineError",
    "EngineProtocolError",
    "EngineStatusError",
    "EngineStreamIncompleteError",
    "EngineTimeoutError",
    "InternalError",
    "IdempotencyConflictError",
    "InvalidInputError",
    "LimitExceededError",
    "OperationUnsupportedError",
    "RuntimeUnavailableError",
    "ScopeConflictError",
    "StorageFullError",
    "StoreDamagedError",
    "StoreError",
    "StoreWriteError",
    "TurnCancelledError",
    "TurnFailedError",
    "TurnInterruptedError",
    "TurnNotCompletedError",
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


class TurnNotCompletedError(WorkerError):
    """A turn the caller waited for (``ask``, ``open_turn``) did not complete.

    Attributes:
        turn_id: The turn.
        text: The text the model streamed before the turn ended (may be
            partial, or empty).
    """

    code = "turn_not_completed"

    def __init__(
        self, message: str, *, worker_id: str, turn_id: str, text: str = ""
    ) -> None:
        super().__init__(message, worker_id=worker_id)
        self.turn_id = turn_id
        self.text = text

    def details(self) -> dict[str, Any]:
        return {"worker_id": self.worker_id, "turn_id": self.turn_id}


class TurnFailedError(TurnNotCompletedError):
    """The turn failed: the model server or engine broke it (``turn.failed``).

    Attributes:
        error: Why, as in the ``turn.failed`` event: ``error.code`` is the
            failure's code (``"engine_http_error"``,
            ``"engine_stream_incomplete"``, ``"context_length_exceeded"``,
            ``"worker_crashed"``, ...) and ``error.message`` its description.
    """

    code = "turn_failed"

    def __init__(
        self,
        message: str,
        *,
        worker_id: str,
        turn_id: str,
        error: TurnError,
        text: str = "",
    ) -> None:
        super().__init__(message, worker_id=worker_id, turn_id=turn_id, text=text)
        self.error = error

    def details(self) -> dict[str, Any]:
        error = {"code": self.error.code, "message": self.error.message}
        return {**super().details(), "error": error}


class TurnCancelledError(TurnNotCompletedError):
    """The turn was cancelled by someone else: cancel, stop or shutdown.

    Attributes:
        reason: The reason given to cancel or stop (``"shutdown"`` when the
            Runtime closed), or None.
    """

    code = "turn_cancelled"

    def __init__(
        self,
        message: str,
        *,
        worker_id: str,
        turn_id: str,
        reason: str | None = None,
        text: str = "",
    ) -> None:
        super().__init__(message, worker_id=worker_id, turn_id=turn_id, text=text)
        self.reason = reason

    def details(self) -> dict[str, Any]:
        return {**super().details(), "reason": self.reason}


class TurnInterruptedError(TurnNotCompletedError):
    """The process running the turn died; a durable Runtime that started again
    recorded it ``interrupted`` (``docs/store.md``).

    Attributes:
        reason: ``"process_exited"``, as in the ``turn.interrupted`` event.
    """

    code = "turn_interrupted"

    def __init__(
        self,
        message: str,
        *,
        worker_id: str,
        turn_id: str,
        reason: str | None = None,
        text: str = "",
    ) -> None:
        super().__init__(message, worker_id=worker_id, turn_id=turn_id, text=text)
        self.reason = reason

    def details(self) -> dict[str, Any]:
        return {**super().details(), "reason": self.reason}


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
        provider_code: The error ``code`` or ``type`` string of the server's
            error body (``"rate_limit_exceeded"``, ...), or None.
        retry_after: Seconds the server asked to wait (``Retry-After``), or
            None.
    """

    code = "engine_http_error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        provider_code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.provider_code = provider_code
        self.retry_after = retry_after

    def details(self) -> dict[str, Any]:
        details: dict[str, Any] = {"status_code": self.status_code}
        if self.provider_code is not None:
            details["provider_code"] = self.provider_code
        return details


class EngineProtocolError(EngineError):
    """The model server's stream was malformed or broke off."""

    code = "engine_protocol_error"


class EngineStreamIncompleteError(EngineProtocolError):
    """The stream ended without the model saying it finished.

    No choice carried a ``finish_reason``, whatever text came before: the
    server aborted the generation (llama.cpp interrupting a request, a vLLM or
    Ollama abort, a proxy closing the response). The partial text stays in
    the transcript, marked by the turn's ``failed`` status.
    """

    code = "engine_stream_incomplete"


class ContextLengthExceededError(EngineError):
    """The prompt does not fit the model's context.

    Raised when the model server refuses the prompt as too long (OpenAI's
    ``context_length_exceeded``, llama.cpp's ``exceed_context_size_error``),
    or before sending when the new input alone leaves no room. The Worker
    then sends less of its history, so the next turn succeeds.

    Attributes:
        status_code: The HTTP status the server answered, or None when the
            runtime refused the prompt before sending it.
    """

    code = "context_length_exceeded"

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code

    def details(self) -> dict[str, Any]:
        return {} if self.status_code is None else {"status_code": self.status_code}


class EngineConfigError(EngineError):
    """The engine is misconfigured (for example its API key cannot be read)."""

    code = "engine_config_error"
