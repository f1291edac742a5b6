"""Per-request values of the browser API: the request id, the idempotency key.

- **Request id.** A request's ``X-Request-Id`` header when it is sane (1 to
  128 characters of ``A-Z a-z 0-9 . _ : -``), else a fresh ``req-`` and 16
  hex digits, as the serving layer chose it for the access log
  (``yoi_runtime._server._observe``). It goes into the audit record of the
  command the request runs, to remote Runtimes the request calls, and back
  to the browser in the response's ``X-Request-Id``.
- **Idempotency key.** ``Idempotency-Key`` on the input route is the
  input's ``input_id``, as on the runtime process
  (``yoi_runtime._server._app``): both given and different is
  ``409 idempotency_conflict``.
"""

from __future__ import annotations

from typing import Any

from quart import Response, g, has_request_context, request
from quart_trio import QuartTrio

from yoi_runtime import IdempotencyConflictError
from yoi_runtime.serving import HEADER, new_request_id, sane_request_id

__all__ = ["idempotency_key", "install_request_ids", "request_id"]


def request_id() -> str:
    """The current request's id (see the module docstring); the same value
    for every call within one request."""
    if not has_request_context():
        return new_request_id()
    scope: dict[str, Any] = request.scope  # type: ignore[assignment]
    found: str | None = scope.get("yoi.request_id")
    if found is None:
        found = getattr(g, "yoi_request_id", None)
    if found is None:
        given = sane_request_id(request.headers.get(HEADER))
        found = given if given is not None else new_request_id()
        g.yoi_request_id = found
    return found


def idempotency_key(worker_id: str, input_id: str | None) -> str | None:
    """The input's ``input_id``: the body's, or the ``Idempotency-Key``.

    Raises:
        IdempotencyConflictError: Both are given and differ.
    """
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return input_id
    if input_id is not None and input_id != key:
        raise IdempotencyConflictError(
            "the Idempotency-Key header and the body's input_id differ",
            worker_id=worker_id,
            input_id=input_id,
        )
    return key


def install_request_ids(app: QuartTrio) -> None:
    """Send every HTTP response's request id back as ``X-Request-Id``."""

    @app.after_request
    async def echo_request_id(response: Response) -> Response:
        response.headers[HEADER] = request_id()
        return response
