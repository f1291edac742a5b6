"""The runtime process's HTTP API: a Quart-Trio app in front of one Runtime.

The handlers only translate HTTP to library calls and back: every Worker
semantic (admission, busy, cancel, stop, paging) lives in the library, and
every library error becomes the JSON error envelope of ``docs/protocol.md``
in one place (:func:`error_response`).

Browsers never talk to this app: its callers are programs holding its token,
the Python client and the workspace backend, which fronts browsers.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, TypeVar

import attrs
import cattrs
import trio
from quart import Response, request, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from .._errors import (
    IdempotencyConflictError,
    InternalError,
    InvalidInputError,
    UnauthorizedError,
    YoiRuntimeError,
)
from .._runtime import Runtime
from .._wire import converter, strict_converter
from ._openapi import openapi_document
from ._streams import StreamSettings, serve_event_stream

__all__ = ["ServerState", "create_app", "error_response"]

T = TypeVar("T")

#: HTTP status of each error code; anything else is a 500.
STATUS = {
    "invalid_json": 400,
    "websocket_required": 400,
    "unauthorized": 401,
    "worker_not_found": 404,
    "not_found": 404,
    "method_not_allowed": 405,
    "worker_busy": 409,
    "worker_stopped": 409,
    "idempotency_conflict": 409,
    "scope_conflict": 409,
    "payload_too_large": 413,
    "invalid_input": 422,
    "operation_unsupported": 501,
    "runtime_unavailable": 503,
}


class InvalidJSONError(InvalidInputError):
    """The request body is not JSON at all."""

    code = "invalid_json"


@attrs.define(eq=False)
class ServerState:
    """What the handlers share: the Runtime, the token, the drain flag."""

    runtime: Runtime
    token: str | None = attrs.field(repr=False)
    streams: StreamSettings
    max_body_bytes: int = 1024 * 1024
    draining: bool = False
    streams_closing: bool = False
    stream_scopes: set[trio.CancelScope] = attrs.field(factory=set)
    open_streams: int = 0
    _streams_closed: trio.Event = attrs.field(factory=trio.Event)

    def begin_drain(self) -> None:
        """Mark the process draining: health turns 503, streams close 1001."""
        self.draining = True

    async def close_streams(self) -> None:
        """Make every WebSocket stream flush what is ready and close; wait
        until all have closed."""
        self.streams_closing = True
        for scope in list(self.stream_scopes):
            scope.cancel()
        if self.open_streams:
            await self._streams_closed.wait()

    def stream_opened(self) -> None:
        self.open_streams += 1

    def stream_closed(self) -> None:
        self.open_streams -= 1
        if self.streams_closing and not self.open_streams:
            self._streams_closed.set()


@attrs.frozen
class CreateWorkerBody:
    profile: str = "companion"
    display_name: str | None = None
    engine: str | None = None
    system_prompt: str | None = None
    worker_id: str | None = None
    scopes: list[str] | None = None


@attrs.frozen
class InputBody:
    text: str
    input_id: str | None = None


@attrs.frozen
class StopBody:
    reason: str | None = None


@attrs.frozen
class CancelBody:
    reason: str | None = None
    turn_id: str | None = None


#: Request bodies: exact fields, exact JSON types (no "42" for 42).
_requests = strict_converter()


def json_response(body: Any, status: int = 200, **headers: str) -> Response:
    return Response(
        json.dumps(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(error: Exception) -> Response:
    """The JSON error envelope for any exception (never a stack trace)."""
    if not isinstance(error, YoiRuntimeError):
        error = InternalError("internal error")
    status = STATUS.get(error.code, 500)
    headers = {"Retry-After": "5"} if status == 503 else {}
    body = {
        "error": {
            "code": error.code,
            "message": error.message,
            "details": error.details(),
        }
    }
    return json_response(body, status, **headers)


class RouteNotFoundError(YoiRuntimeError):
    code = "not_found"


class MethodNotAllowedError(YoiRuntimeError):
    code = "method_not_allowed"


class PayloadTooLargeError(YoiRuntimeError):
    code = "payload_too_large"


class WebSocketRequiredError(YoiRuntimeError):
    code = "websocket_required"


def _http_error(error: HTTPException) -> YoiRuntimeError:
    """Translate werkzeug's routing and body-size errors to coded errors."""
    if error.code == 404:
        return RouteNotFoundError(f"no route {request.path}")
    if error.code == 405:
        return MethodNotAllowedError(
            f"{request.method} is not allowed on {request.path}"
        )
    if error.code == 413:
        return PayloadTooLargeError("the request body is too large")
    if error.code == 400 and request.path.endswith("/events"):
        return WebSocketRequiredError(f"{request.path} only speaks WebSocket")
    return InternalError(f"HTTP {error.code}")


async def read_body(cls: type[T], *, optional: bool = False) -> T:
    """Parse and validate the request's JSON body as ``cls``.

    Raises:
        InvalidJSONError: The body is not JSON.
        InvalidInputError: Wrong fields or types; ``path`` is the JSON path.
    """
    data = await request.get_data(cache=False)
    if optional and not data.strip():
        return cls()
    try:
        value = json.loads(data)
    except ValueError:
        raise InvalidJSONError("the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidInputError("the request body must be a JSON object", path="$")
    try:
        return _requests.structure(value, cls)
    except Exception as exc:
        problems = cattrs.transform_error(exc, path="$")
        path = problems[0].rpartition(" @ ")[2] if problems else "$"
        raise InvalidInputError("; ".join(problems), path=path) from None


def _query_int(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidInputError(f"{name} must be a non-negative integer", path=name)
    return int(raw)


def create_app(state: ServerState) -> QuartTrio:
    """Build the app serving ``state.runtime`` (see ``docs/protocol.md``)."""
    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = state.max_body_bytes
    runtime = state.runtime
    expected = None if state.token is None else f"Bearer {state.token}".encode()

    @app.before_request
    async def check_token() -> Response | None:
        if request.path == "/v1/health":
            return None
        return _check(request.headers.get("Authorization", ""))

    @app.before_websocket
    async def check_websocket_token() -> Response | None:
        return _check(websocket.headers.get("Authorization", ""))

    def _check(given: str) -> Response | None:
        if expected is None or hmac.compare_digest(given.encode(), expected):
            return None
        return error_response(UnauthorizedError("missing or wrong bearer token"))

    @app.errorhandler(YoiRuntimeError)
    async def on_library_error(error: YoiRuntimeError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    async def on_http_error(error: HTTPException) -> Response:
        response = error_response(_http_error(error))
        allowed = getattr(error, "valid_methods", None)
        if error.code == 405 and allowed:
            response.headers["Allow"] = ", ".join(sorted(allowed))
        return response

    @app.errorhandler(Exception)
    async def on_bug(error: Exception) -> Response:
        app.logger.exception("unexpected error", exc_info=error)
        return error_response(error)

    @app.get("/v1/health")
    async def health() -> Response:
        if state.draining:
            return json_response({"status": "draining"}, 503, **{"Retry-After": "5"})
        return json_response({"status": "serving"})

    @app.get("/v1/openapi.json")
    async def openapi() -> Response:
        capabilities = runtime.capabilities()
        return json_response(
            openapi_document(
                capabilities.profiles,
                tuple(engine.name for engine in capabilities.engines),
            )
        )

    @app.get("/v1/runtime")
    async def runtime_summary() -> Response:
        return json_response(converter.unstructure(await runtime.summary()))

    @app.get("/v1/diagnostics")
    async def diagnostics() -> Response:
        found = await runtime.diagnostics()
        return json_response({"diagnostics": converter.unstructure(found)})

    @app.get("/v1/workers")
    async def list_workers() -> Response:
        page = await runtime.list_workers(
            status=request.args.get("status"),
            limit=_query_int("limit"),
            cursor=request.args.get("cursor"),
        )
        return json_response(converter.unstructure(page))

    @app.post("/v1/workers")
    async def create_worker() -> Response:
        body = await read_body(CreateWorkerBody, optional=True)
        worker = await runtime.create_worker(
            body.profile,
            display_name=body.display_name,
            engine=body.engine,
            system_prompt=body.system_prompt,
            worker_id=body.worker_id,
            scopes=body.scopes,
        )
        return json_response({"worker": converter.unstructure(worker)}, 201)

    @app.get("/v1/workers/<worker_id>")
    async def get_worker(worker_id: str) -> Response:
        worker = await runtime.get_worker(worker_id)
        return json_response({"worker": converter.unstructure(worker)})

    @app.post("/v1/workers/<worker_id>/input")
    async def send_input(worker_id: str) -> Response:
        body = await read_body(InputBody)
        input_id = body.input_id
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            if input_id is not None and input_id != key:
                raise IdempotencyConflictError(
                    "the Idempotency-Key header and the body's input_id differ",
                    worker_id=worker_id,
                    input_id=input_id,
                )
            input_id = key
        turn = await runtime.send_input(worker_id, body.text, input_id=input_id)
        return json_response({"turn": converter.unstructure(turn)}, 202)

    @app.post("/v1/workers/<worker_id>/stop")
    async def stop(worker_id: str) -> Response:
        body = await read_body(StopBody, optional=True)
        worker = await runtime.stop(worker_id, reason=body.reason)
        return json_response({"worker": converter.unstructure(worker)})

    @app.post("/v1/workers/<worker_id>/cancel")
    async def cancel(worker_id: str) -> Response:
        body = await read_body(CancelBody, optional=True)
        result = await runtime.cancel(
            worker_id, turn_id=body.turn_id, reason=body.reason
        )
        return json_response({"result": converter.unstructure(result)})

    @app.get("/v1/workers/<worker_id>/transcript")
    async def transcript(worker_id: str) -> Response:
        page = await runtime.transcript(
            worker_id, limit=_query_int("limit"), cursor=request.args.get("cursor")
        )
        return json_response(converter.unstructure(page))

    @app.websocket("/v1/events")
    async def runtime_events() -> Response | None:
        return await _stream(None)

    @app.websocket("/v1/workers/<worker_id>/events")
    async def worker_events(worker_id: str) -> Response | None:
        return await _stream(worker_id)

    async def _stream(worker_id: str | None) -> Response | None:
        raw = websocket.args.get("after")
        after = None
        if raw is not None:
            if not raw.isdigit() or len(raw) > 18:
                raise InvalidInputError(
                    "after must be a non-negative integer", path="after"
                )
            after = int(raw)
        subscription = runtime.subscribe(worker_id, after=after)
        await serve_event_stream(websocket, subscription, state)
        return None

    return app
