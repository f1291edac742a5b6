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

The classes live in three modules, by whose fault an error is: ``_base`` (the
root, the caller's input, the Runtime's availability and bounds, the store),
``_worker`` (one Worker and its turns) and ``_engine`` (the model server).
Import them from here.
"""

from __future__ import annotations

from ._base import InternalError as InternalError
from ._base import InvalidInputError as InvalidInputError
from ._base import LimitExceededError as LimitExceededError
from ._base import OperationUnsupportedError as OperationUnsupportedError
from ._base import RuntimeUnavailableError as RuntimeUnavailableError
from ._base import StorageFullError as StorageFullError
from ._base import StoreDamagedError as StoreDamagedError
from ._base import StoreError as StoreError
from ._base import StoreWriteError as StoreWriteError
from ._base import UnauthorizedError as UnauthorizedError
from ._base import YoiRuntimeError as YoiRuntimeError
from ._engine import ContextLengthExceededError as ContextLengthExceededError
from ._engine import EngineConfigError as EngineConfigError
from ._engine import EngineConnectError as EngineConnectError
from ._engine import EngineError as EngineError
from ._engine import EngineProtocolError as EngineProtocolError
from ._engine import EngineStatusError as EngineStatusError
from ._engine import EngineStreamIncompleteError as EngineStreamIncompleteError
from ._engine import EngineTimeoutError as EngineTimeoutError
from ._worker import IdempotencyConflictError as IdempotencyConflictError
from ._worker import ScopeConflictError as ScopeConflictError
from ._worker import TurnCancelledError as TurnCancelledError
from ._worker import TurnFailedError as TurnFailedError
from ._worker import TurnInterruptedError as TurnInterruptedError
from ._worker import TurnNotCompletedError as TurnNotCompletedError
from ._worker import WorkerBusyError as WorkerBusyError
from ._worker import WorkerError as WorkerError
from ._worker import WorkerExistsError as WorkerExistsError
from ._worker import WorkerNotFoundError as WorkerNotFoundError
from ._worker import WorkerStoppedError as WorkerStoppedError

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
