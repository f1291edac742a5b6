"""Errors the workspace adds to :mod:`yoi_runtime`'s tree.

The registry passes a Runtime's own errors through unchanged
(``worker_busy`` keeps its details, ``worker_not_found``,
``runtime_unavailable``, ``operation_unsupported``, ``invalid_input``), and
adds these, so one JSON envelope serves both::

    YoiRuntimeError                       (yoi_runtime)
    ├── UnknownRuntimeError      unknown_runtime       no Runtime with that id
    ├── RuntimeExistsError       runtime_exists        registering a duplicate id
    ├── WorkerNotVisibleError    worker_not_visible    policy hides the Worker
    │                                                  (the browser API reports it
    │                                                  as worker_not_found)
    └── CommandRefusedError      command_refused       policy refuses a command
"""

from __future__ import annotations

from typing import Any

from yoi_runtime import WorkerNotFoundError, YoiRuntimeError

__all__ = [
    "CommandRefusedError",
    "RuntimeExistsError",
    "UnknownRuntimeError",
    "WorkerNotVisibleError",
]


class UnknownRuntimeError(YoiRuntimeError):
    """No Runtime with this id is registered.

    Attributes:
        runtime_id: The id asked for.
    """

    code = "unknown_runtime"

    def __init__(self, message: str, *, runtime_id: str) -> None:
        super().__init__(message)
        self.runtime_id = runtime_id

    def details(self) -> dict[str, Any]:
        return {"runtime_id": self.runtime_id}


class RuntimeExistsError(YoiRuntimeError):
    """A Runtime with this id is already registered.

    Attributes:
        runtime_id: The duplicate id.
    """

    code = "runtime_exists"

    def __init__(self, message: str, *, runtime_id: str) -> None:
        super().__init__(message)
        self.runtime_id = runtime_id

    def details(self) -> dict[str, Any]:
        return {"runtime_id": self.runtime_id}


class WorkerNotVisibleError(WorkerNotFoundError):
    """The Worker exists but the visibility policy hides it from the caller.

    A subclass of :class:`~yoi_runtime.WorkerNotFoundError`, so code that only
    knows "not found" treats both alike; the browser API answers exactly as
    for an unknown Worker (``404 worker_not_found``) and the registry records
    the real reason.

    Attributes:
        reason: Why the policy hid it (recorded, never sent to the browser).
    """

    code = "worker_not_visible"

    def __init__(self, message: str, *, worker_id: str, reason: str) -> None:
        super().__init__(message, worker_id=worker_id)
        self.reason = reason


class CommandRefusedError(YoiRuntimeError):
    """The command policy does not let this caller run this command.

    Attributes:
        operation: The command (``"input"``, ``"stop"``, ...).
    """

    code = "command_refused"

    def __init__(self, message: str, *, operation: str) -> None:
        super().__init__(message)
        self.operation = operation

    def details(self) -> dict[str, Any]:
        return {"operation": self.operation}
