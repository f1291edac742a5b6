"""Errors about one Worker (the caller named it, or it could not take input).

Also the turns ``ask`` and ``open_turn`` waited for that did not complete.
"""

from __future__ import annotations

import datetime
from typing import Any

from .._types import TurnError
from ._base import YoiRuntimeError

__all__ = [
    "IdempotencyConflictError",
    "ScopeConflictError",
    "TurnCancelledError",
    "TurnFailedError",
    "TurnInterruptedError",
    "TurnNotCompletedError",
    "WorkerBusyError",
    "WorkerError",
    "WorkerExistsError",
    "WorkerNotFoundError",
    "WorkerStoppedError",
]


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


class _TurnEndedError(TurnNotCompletedError):
    """A turn that someone or something ended, for a ``reason`` (private:
    the common part of :class:`TurnCancelledError` and
    :class:`TurnInterruptedError`)."""

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


class TurnCancelledError(_TurnEndedError):
    """The turn was cancelled by someone else: cancel, stop or shutdown.

    Attributes:
        reason: The reason given to cancel or stop (``"shutdown"`` when the
            Runtime closed), or None.
    """

    code = "turn_cancelled"


class TurnInterruptedError(_TurnEndedError):
    """The process running the turn died; a durable Runtime that started again
    recorded it ``interrupted`` (``docs/store.md``).

    Attributes:
        reason: ``"process_exited"``, as in the ``turn.interrupted`` event.
    """

    code = "turn_interrupted"
