"""Translate what a runtime process reports into the library's errors, once.

Every failure a :class:`~yoi_runtime.client.RuntimeClient` raises passes
through this module, so the embedded Runtime and the client raise the same
classes with the same attributes:

- an error envelope ``{"error": {"code", "message", "details"}}`` (an HTTP
  response, or a refused WebSocket upgrade) goes through one table,
  :data:`_FROM_CODE` (:func:`error_from_response`);
- a transport failure (refused, reset, timed out) becomes
  :class:`RuntimeUnavailableError` (:func:`map_http_errors`,
  :func:`map_websocket_errors`);
- a body without the documented shape becomes :class:`InternalError`
  (:func:`structure`, :func:`decode_json`).

No message built here contains a request header, so the token never shows.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import cattrs
import httpx
import trio
import trio_websocket

from .._errors import (
    IdempotencyConflictError,
    InternalError,
    InvalidInputError,
    LimitExceededError,
    OperationUnsupportedError,
    RuntimeUnavailableError,
    ScopeConflictError,
    StorageFullError,
    StoreDamagedError,
    StoreError,
    StoreWriteError,
    UnauthorizedError,
    WorkerBusyError,
    WorkerExistsError,
    WorkerNotFoundError,
    WorkerStoppedError,
    YoiRuntimeError,
)
from .._wire import converter

__all__ = [
    "decode_json",
    "error_from_response",
    "map_http_errors",
    "map_websocket_errors",
    "structure",
]

T = TypeVar("T")

_Factory = Callable[[str, Mapping[str, Any]], YoiRuntimeError]


def _worker_id(details: Mapping[str, Any]) -> str:
    return str(details.get("worker_id", ""))


def _busy(message: str, details: Mapping[str, Any]) -> YoiRuntimeError:
    return WorkerBusyError(
        message,
        worker_id=_worker_id(details),
        turn_id=str(details["turn_id"]),
        started_at=datetime.datetime.fromisoformat(details["started_at"]),
    )


def _stopped(message: str, details: Mapping[str, Any]) -> YoiRuntimeError:
    return WorkerStoppedError(
        message, worker_id=_worker_id(details), status=str(details["status"])
    )


def _conflict(message: str, details: Mapping[str, Any]) -> YoiRuntimeError:
    input_id = details.get("input_id")
    if input_id is None:
        return WorkerExistsError(message, worker_id=_worker_id(details))
    return IdempotencyConflictError(
        message, worker_id=_worker_id(details), input_id=str(input_id)
    )


def _invalid(message: str, details: Mapping[str, Any]) -> YoiRuntimeError:
    path = details.get("path")
    return InvalidInputError(message, path=None if path is None else str(path))


#: Error code of the envelope -> the exception it becomes. A code missing here
#: (``not_found``, ``method_not_allowed``, ``internal_error``, or one newer
#: than this client) becomes :class:`InternalError`.
_FROM_CODE: Mapping[str, _Factory] = {
    "worker_busy": _busy,
    "worker_stopped": _stopped,
    "worker_not_found": lambda m, d: WorkerNotFoundError(m, worker_id=_worker_id(d)),
    "idempotency_conflict": _conflict,
    "scope_conflict": lambda m, d: ScopeConflictError(
        m, worker_id=_worker_id(d), scope=str(d.get("scope", ""))
    ),
    "invalid_input": _invalid,
    "invalid_json": _invalid,
    "payload_too_large": _invalid,
    "operation_unsupported": lambda m, d: OperationUnsupportedError(m),
    "runtime_unavailable": lambda m, d: RuntimeUnavailableError(m),
    "unauthorized": lambda m, d: UnauthorizedError(m),
    "limit_exceeded": lambda m, d: LimitExceededError(
        m, limit=str(d.get("limit", "")), value=int(d.get("value", 0))
    ),
    "store_error": lambda m, d: StoreError(m),
    "store_damaged": lambda m, d: StoreDamagedError(m),
    "store_write_failed": lambda m, d: StoreWriteError(m),
    "storage_full": lambda m, d: StorageFullError(m),
}

#: The code assumed when a response carries no envelope (a proxy's page).
_CODE_OF_STATUS: Mapping[int, str] = {
    401: "unauthorized",
    502: "runtime_unavailable",
    503: "runtime_unavailable",
    504: "runtime_unavailable",
}


def error_from_response(status_code: int, body: bytes) -> YoiRuntimeError:
    """Return the exception a runtime process's error response stands for.

    Args:
        status_code: The HTTP status of the response (or of the refused
            WebSocket upgrade).
        body: The response body, ideally the JSON error envelope.

    Returns:
        The matching :class:`YoiRuntimeError` subclass (see :data:`_FROM_CODE`),
        with the server's message and the attributes its ``details`` carry.
    """
    code = _CODE_OF_STATUS.get(status_code, "internal_error")
    message = f"the runtime process answered HTTP {status_code}"
    details: Mapping[str, Any] = {}
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
        if isinstance(error.get("details"), Mapping):
            details = error["details"]
    except (ValueError, TypeError, KeyError):
        pass
    factory = _FROM_CODE.get(code)
    if factory is None:
        return InternalError(f"{code}: {message}")
    try:
        return factory(message, details)
    except (KeyError, TypeError, ValueError):
        return InternalError(f"{code} with malformed details: {message}")


@contextlib.contextmanager
def map_http_errors(what: str) -> Iterator[None]:
    """Turn httpx's transport errors into :class:`RuntimeUnavailableError`.

    Args:
        what: The operation, for the message (``"GET /v1/runtime"``).

    Raises:
        RuntimeUnavailableError: The process could not be reached, broke the
            connection, or did not answer within the client's timeouts.
    """
    try:
        yield
    except httpx.TimeoutException as exc:
        raise RuntimeUnavailableError(
            f"{what}: the runtime process did not answer in time"
        ) from exc
    except httpx.TransportError as exc:
        raise RuntimeUnavailableError(
            f"{what}: cannot reach the runtime process ({type(exc).__name__})"
        ) from exc


@contextlib.contextmanager
def map_websocket_errors(what: str) -> Iterator[None]:
    """Turn a failed WebSocket handshake into the library's errors.

    Args:
        what: The stream, for the message (``"events of w-1"``).

    Raises:
        YoiRuntimeError: The upgrade was refused with an HTTP error (mapped
            like any response, e.g. :class:`WorkerNotFoundError`).
        RuntimeUnavailableError: The process could not be reached or did not
            complete the handshake in time.
    """
    try:
        yield
    except trio_websocket.ConnectionRejected as exc:
        raise error_from_response(exc.status_code, exc.body or b"") from None
    except (trio_websocket.HandshakeError, trio.TooSlowError, OSError) as exc:
        raise RuntimeUnavailableError(
            f"{what}: cannot open the event stream ({type(exc).__name__})"
        ) from exc


def decode_json(body: bytes | str, what: str) -> Any:
    """Parse a body or frame the runtime process sent.

    Raises:
        InternalError: It is not JSON.
    """
    try:
        return json.loads(body)
    except ValueError:
        raise InternalError(f"{what}: the runtime process sent invalid JSON") from None


def structure(value: Any, cls: type[T], what: str) -> T:
    """Build a value type from the JSON the runtime process sent.

    Args:
        value: Decoded JSON.
        cls: The value type (``WorkerSummary``, ...).
        what: The operation, for the message.

    Raises:
        InternalError: The JSON does not have ``cls``'s shape; the message
            names the JSON paths that are wrong.
    """
    try:
        return converter.structure(value, cls)
    except (cattrs.BaseValidationError, KeyError, TypeError, ValueError) as exc:
        problems = "; ".join(cattrs.transform_error(exc, path="$"))
        raise InternalError(
            f"{what}: malformed {cls.__name__} from the runtime process: {problems}"
        ) from exc
