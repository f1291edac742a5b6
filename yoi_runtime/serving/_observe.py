"""Request ids, the access log and HTTP metrics, as ASGI middleware.

Both servers wrap their guarded app in :class:`ObservedApp`
(``serve_app(..., wrap=...)``), outside the browser-facing rules, so a
refusal of theirs (``421``, ``403``, ``415``, ...) is seen too. For every
HTTP request and WebSocket it:

- picks the **request id**: the request's ``X-Request-Id`` when it is sane,
  else a new one (:func:`~yoi_runtime.serving.new_request_id`); it is put
  in the scope (``yoi.request_id``), in
  :data:`~yoi_runtime.serving.REQUEST_ID` for the request's tasks, and in
  the response's ``X-Request-Id`` (also on a WebSocket's accept and on its
  refusal);
- writes **one access line** when the request ends: method, route template
  (``/v1/workers/<worker_id>``, noted by the app's first hook,
  :func:`install_route_names`; ``-`` when no route matched), status
  (``101`` for an accepted WebSocket, logged when it closes), duration in
  milliseconds, request id, and the caller where the app knows it;
- hands the same to a metrics callback (:class:`HTTPRecord`).

Nothing here reads a body or holds anything per connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any, cast

from quart import Quart, Response, request, websocket
from quart.typing import ResponseTypes

from ._guard_settings import ASGIApp, Message, Receive, Scope, Send
from ._request_id import HEADER, REQUEST_ID, new_request_id, sane_request_id

__all__ = ["HTTPRecord", "ObservedApp", "install_route_names"]

#: Scope keys the app's hooks fill in.
ROUTE_KEY = "yoi.route"
CALLER_KEY = "yoi.caller"
REQUEST_ID_KEY = "yoi.request_id"

_HEADER = HEADER.lower().encode()

#: ``record(method, route, status, seconds)``: one finished request.
HTTPRecord = Callable[[str, str, int, float], None]


def install_route_names(
    app: Quart, caller: Callable[[], str | None] | None = None
) -> None:
    """Make ``app`` note each request's route template (and caller) in the
    scope, for :class:`ObservedApp`. Call it before registering any other
    hook (hooks run in order, and one may answer early).

    Args:
        app: The Quart app.
        caller: Who the current request comes from, read after the
            response is made (None: not known).
    """

    @app.before_request
    async def note_route() -> None:
        rule = request.url_rule
        _scope(request.scope)[ROUTE_KEY] = None if rule is None else rule.rule

    @app.before_websocket
    async def note_websocket_route() -> None:
        rule = websocket.url_rule
        _scope(websocket.scope)[ROUTE_KEY] = None if rule is None else rule.rule

    if caller is None:
        return

    @app.after_request
    async def note_caller(response: Response) -> Response:
        _scope(request.scope)[CALLER_KEY] = caller()
        return response

    @app.after_websocket
    async def note_websocket_caller(
        response: ResponseTypes | None,
    ) -> ResponseTypes | None:
        _scope(websocket.scope)[CALLER_KEY] = caller()
        return response


def _scope(scope: object) -> MutableMapping[str, Any]:
    """The ASGI scope as the plain dict it is (Quart types it narrower)."""
    return cast("MutableMapping[str, Any]", scope)


class ObservedApp:
    """An ASGI app with request ids, an access log and HTTP metrics.

    Args:
        app: The app (the guarded Quart app).
        logger: Where the access lines go (INFO).
        record: Called once per finished request (metrics); None: nothing.
    """

    def __init__(
        self, app: ASGIApp, logger: logging.Logger, record: HTTPRecord | None = None
    ) -> None:
        self._app = app
        self._logger = logger
        self._record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = None
        for name, value in scope["headers"]:
            if name == _HEADER:
                request_id = sane_request_id(value.decode("latin-1"))
                break
        if request_id is None:
            request_id = new_request_id()
        scope[REQUEST_ID_KEY] = request_id
        id_header = (_HEADER, request_id.encode())
        status = 0

        async def observed_send(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if (
                kind == "http.response.start"
                or kind == "websocket.http.response.start"
                or kind == "websocket.accept"
            ):
                status = message.get("status", 101)
                headers = list(message.get("headers") or ())
                if not any(name.lower() == _HEADER for name, _ in headers):
                    headers.append(id_header)
                message = {**message, "headers": headers}
            elif kind == "websocket.close" and status == 0:
                status = 403  # closed before the handshake: Hypercorn's 403
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            await self._app(scope, receive, observed_send)
        finally:
            REQUEST_ID.reset(token)
            self._done(scope, request_id, status, time.perf_counter() - started)

    def _done(self, scope: Scope, request_id: str, status: int, seconds: float) -> None:
        method = "WS" if scope["type"] == "websocket" else scope["method"]
        route = scope.get(ROUTE_KEY) or "-"
        if self._record is not None:
            self._record(method, route, status, seconds)
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        caller = scope.get(CALLER_KEY)
        fields: dict[str, Any] = {
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "request_id": request_id,
        }
        if caller is not None:
            fields["caller"] = caller
        logger.info(
            "%s %s %d %.1fms request_id=%s%s",
            method,
            route,
            status,
            seconds * 1000,
            request_id,
            "" if caller is None else f" caller={caller}",
            extra=fields,
        )
