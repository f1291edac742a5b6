"""The browser-facing API: a Quart-Trio app in front of a RuntimeRegistry.

Handlers translate HTTP to registry calls and back (``docs/workspace.md``).
The browser names Runtimes and Workers only by ``runtime_id`` and
``worker_id``: a request carrying an endpoint, token or path (see
:data:`FORBIDDEN_KEYS`) is refused with ``400 invalid_input``, and no
response carries one. Errors use the runtime process's JSON envelope
(:func:`yoi_runtime._server._http.error_response`) with this API's statuses
(:data:`STATUS`); a hidden Worker is answered exactly like an unknown one.
WebSockets use the runtime process's frames, heartbeats and close codes
(:func:`yoi_runtime.serving._streams.serve_event_stream`); a Runtime that
goes away does not close a stream: it resumes when the Runtime is back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs
from quart import Response, g, has_websocket_context, request, websocket
from quart_trio import QuartTrio

from yoi_runtime import (
    Gap,
    InternalError,
    InvalidInputError,
    RuntimeUnavailableError,
    TranscriptPage,
    UnauthorizedError,
    WorkerNotFoundError,
    WorkerStatus,
    YoiRuntimeError,
)
from yoi_runtime.serving import STATUS as RUNTIME_STATUS
from yoi_runtime.serving import (
    AppMetrics,
    CancelBody,
    CreateWorkerBody,
    EventSource,
    InputBody,
    StopBody,
    StreamControl,
    converter,
    event_stream_response,
    install_error_handlers,
    install_route_names,
    item_cursor,
    item_to_json,
    json_response,
    parse_json,
    query_int,
    read_body,
    ready_within,
    refuse_control_characters,
    serve_event_stream,
    sse_resume,
    sse_resume_count,
)
from yoi_runtime.serving import error_response as envelope

from .._aggregate import AggregateItem
from .._auth import Authenticator
from .._identity import WorkspaceIdentity
from .._policy import Caller
from .._registry import RuntimeRegistry
from .._views import RuntimeView, WorkerViewPage
from ._console import install_console
from ._legacy import install_legacy_routes
from ._openapi import install_openapi
from ._request import idempotency_key, request_id
from ._session import current_caller, install_authentication

__all__ = ["FORBIDDEN_KEYS", "STATUS", "WorkspaceState", "create_app"]

T = TypeVar("T")

#: HTTP status of each error code: the runtime process's
#: (``yoi_runtime._server._http.STATUS``), but ``invalid_input`` is a 400,
#: plus the codes only this API has.
STATUS = {
    **RUNTIME_STATUS,
    "invalid_input": 400,
    "command_refused": 403,
    "unknown_runtime": 404,
}

#: Seconds the shutdown flush of a stream waits for each further batch (the
#: items of a remote Runtime arrive over the network).
FLUSH_GRACE = 0.1

#: Keys no request may carry, in a body (at any depth) or as a query
#: parameter, compared case-insensitively with ``-`` read as ``_``: the
#: browser never names where or how a Runtime is reached.
FORBIDDEN_KEYS = frozenset(
    {
        "url",
        "base_url",
        "endpoint",
        "host",
        "port",
        "address",
        "token",
        "token_env",
        "token_file",
        "api_key",
        "authorization",
        "secret",
        "password",
        "socket",
        "socket_path",
        "session_path",
        "metadata_path",
        "pods_dir",
        "path",
        "pid",
    }
)


@attrs.define(eq=False)
class WorkspaceState:
    """What the handlers share.

    Attributes:
        registry: Where every operation goes.
        streams: The open WebSockets and their shutdown.
        caller_header: The header naming the caller (set by the proxy).
        roles_header: The header listing the caller's roles, comma-separated.
        max_body_bytes: The largest request body, in bytes.
        draining: Set on shutdown: health answers 503.
        identity: The workspace served (its id scopes the legacy routes).
        auth: Who a request comes from (``docs/security.md``); by default
            ``none`` mode, every request being the caller ``local``.
        metrics: Served at ``GET /metrics`` (``docs/operations.md``); None:
            no such route.
    """

    registry: RuntimeRegistry
    streams: StreamControl
    caller_header: str = "X-Yoi-Caller"
    roles_header: str = "X-Yoi-Roles"
    max_body_bytes: int = 64 * 1024
    draining: bool = False
    identity: WorkspaceIdentity = WorkspaceIdentity("default")
    auth: Authenticator = attrs.field(factory=Authenticator.none)
    metrics: AppMetrics | None = None


def _refuse_forbidden(value: Any) -> None:
    """Refuse a JSON value holding a forbidden key, at any depth.

    Raises:
        InvalidInputError: The first such key (``path`` is the key).
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if str(key).lower().replace("-", "_") in FORBIDDEN_KEYS:
                raise _refuse(str(key))
            _refuse_forbidden(item)
    elif isinstance(value, list):
        for item in value:
            _refuse_forbidden(item)


def _refuse(key: str) -> InvalidInputError:
    return InvalidInputError(
        f"{key} is not accepted: Runtimes are named by runtime_id only", path=key
    )


def _for_browser(error: Exception, runtime_id: str | None) -> YoiRuntimeError:
    """The error as the browser sees it.

    A hidden Worker reads exactly like an unknown one; a Runtime that is
    unreachable or refuses the backend's credentials is ``runtime_unavailable``
    with a message naming only its id; anything unexpected is an
    ``internal_error`` without details.
    """
    where = f"runtime {runtime_id}" if runtime_id else "the runtime"
    if isinstance(error, WorkerNotFoundError):
        worker_id = error.worker_id
        return WorkerNotFoundError(
            f"no worker {worker_id!r} in {where}", worker_id=worker_id
        )
    if isinstance(error, RuntimeUnavailableError | UnauthorizedError):
        return RuntimeUnavailableError(f"{where} is unavailable")
    if isinstance(error, InternalError) or not isinstance(error, YoiRuntimeError):
        return InternalError("internal error")
    return error


def _caller_id() -> str | None:
    """The caller authentication found (for the access log), if any."""
    caller: Caller | None = getattr(g, "yoi_caller", None)
    return None if caller is None else caller.caller_id


def _gaps(batch: Sequence[Any]) -> int:
    """Gaps in a batch of a Worker's stream or of the aggregate stream."""
    return sum(1 for item in batch if type(getattr(item, "item", item)) is Gap)


def error_response(error: Exception, runtime_id: str | None = None) -> Response:
    """The runtime process's JSON envelope of the error as the browser sees
    it, with this API's statuses (:data:`STATUS`)."""
    return envelope(_for_browser(error, runtime_id), STATUS)


def create_app(state: WorkspaceState) -> QuartTrio:
    """Build the app serving ``state.registry`` (see ``docs/workspace.md``)."""
    app = QuartTrio(__name__)
    metrics = state.metrics
    install_route_names(app, _caller_id)  # first: the access log's route
    app.config["MAX_CONTENT_LENGTH"] = state.max_body_bytes
    registry = state.registry
    install_console(app)  # the page and its files need no caller
    install_authentication(app, state.auth)  # before the API's own hooks

    @app.before_request
    async def refuse_endpoints() -> None:
        _refuse_forbidden(dict.fromkeys(request.args))
        data = await request.get_data(cache=True)
        try:
            body = parse_json(data) if data.strip() else None
        except InvalidInputError:
            return  # read_body reports it
        _refuse_forbidden(body)

    @app.before_websocket
    async def refuse_stream_endpoints() -> None:
        _refuse_forbidden(dict.fromkeys(websocket.args))

    def caller() -> Caller:
        """The caller the authentication hook found (``docs/security.md``)."""
        return current_caller()

    def status() -> str | None:
        value = request.args.get("status")
        if value is not None and value not in WorkerStatus.__members__.values():
            raise InvalidInputError(f"unknown status {value!r}", path="status")
        return value

    def runtime_id_of() -> str | None:
        context = websocket if has_websocket_context() else request
        args = context.view_args or {}
        value = args.get("runtime_id", args.get("host_id"))
        return None if value is None else str(value)

    install_error_handlers(
        app, lambda error: error_response(error, runtime_id_of()), STATUS
    )
    if metrics is not None:
        metrics.install(app)

    def view(runtime: RuntimeView) -> dict[str, Any]:
        return converter.unstructure(runtime)  # type: ignore[no-any-return]

    @app.get("/api/health")
    async def health() -> Response:
        if state.draining:
            return json_response({"status": "draining"}, 503, **{"Retry-After": "5"})
        return json_response({"status": "serving"})

    @app.get("/api/runtimes/<runtime_id>")
    async def describe(runtime_id: str) -> Response:
        return json_response({"runtime": view(await registry.describe(runtime_id))})

    @app.get("/api/runtimes/<runtime_id>/workers")
    async def list_workers(runtime_id: str) -> Response:
        page = await registry.list_workers(
            caller(),
            runtime_id,
            status=status(),
            limit=query_int("limit"),
            cursor=request.args.get("cursor"),
        )
        return json_response(converter.unstructure(page, unstructure_as=WorkerViewPage))

    @app.post("/api/runtimes/<runtime_id>/workers")
    async def create_worker(runtime_id: str) -> Response:
        body = await read_body(CreateWorkerBody, optional=True)
        refuse_control_characters("display_name", body.display_name)
        worker = await registry.create_worker(
            caller(),
            runtime_id,
            body.profile,
            display_name=body.display_name,
            engine=body.engine,
            system_prompt=body.system_prompt,
            worker_id=body.worker_id,
            scopes=body.scopes,
            request_id=request_id(),
        )
        return json_response({"worker": converter.unstructure(worker)}, 201)

    @app.get("/api/runtimes/<runtime_id>/workers/<worker_id>")
    async def get_worker(runtime_id: str, worker_id: str) -> Response:
        worker = await registry.get_worker(caller(), runtime_id, worker_id)
        return json_response({"worker": converter.unstructure(worker)})

    @app.post("/api/runtimes/<runtime_id>/workers/<worker_id>/input")
    async def send_input(runtime_id: str, worker_id: str) -> Response:
        body = await read_body(InputBody)
        turn = await registry.send_input(
            caller(),
            runtime_id,
            worker_id,
            body.text,
            input_id=idempotency_key(worker_id, body.input_id),
            request_id=request_id(),
        )
        return json_response({"turn": converter.unstructure(turn)}, 202)

    @app.post("/api/runtimes/<runtime_id>/workers/<worker_id>/stop")
    async def stop(runtime_id: str, worker_id: str) -> Response:
        body = await read_body(StopBody, optional=True)
        worker = await registry.stop(
            caller(), runtime_id, worker_id, reason=body.reason, request_id=request_id()
        )
        return json_response({"worker": converter.unstructure(worker)})

    @app.post("/api/runtimes/<runtime_id>/workers/<worker_id>/cancel")
    async def cancel(runtime_id: str, worker_id: str) -> Response:
        body = await read_body(CancelBody, optional=True)
        result = await registry.cancel(
            caller(),
            runtime_id,
            worker_id,
            turn_id=body.turn_id,
            reason=body.reason,
            request_id=request_id(),
        )
        return json_response({"result": converter.unstructure(result)})

    @app.get("/api/runtimes/<runtime_id>/workers/<worker_id>/transcript")
    async def transcript(runtime_id: str, worker_id: str) -> Response:
        page = await registry.transcript(
            caller(),
            runtime_id,
            worker_id,
            limit=query_int("limit"),
            cursor=request.args.get("cursor"),
        )
        return json_response(converter.unstructure(page, unstructure_as=TranscriptPage))

    @app.websocket("/api/runtimes/<runtime_id>/workers/<worker_id>/events")
    async def worker_events(runtime_id: str, worker_id: str) -> None:
        after = query_int("after")
        stream = registry.subscribe(caller(), runtime_id, worker_id, after=after)
        async with stream:
            await push(stream, item_to_json)

    @app.websocket("/api/events")
    async def all_events() -> None:
        stream = registry.subscribe_all(caller(), after=websocket.args.get("after"))
        async with stream:
            await push(stream, AggregateItem.to_json)

    # The same streams as text/event-stream (docs/workspace.md).
    @app.get("/api/runtimes/<runtime_id>/workers/<worker_id>/events")
    async def worker_events_sse(runtime_id: str, worker_id: str) -> Response:
        after = sse_resume_count()
        stream = registry.subscribe(caller(), runtime_id, worker_id, after=after)
        return await event_stream_response(
            app.nursery,
            stream,
            state.streams,
            encode=item_to_json,
            item_id=lambda item: item_cursor(item, worker_stream=True),
            ready=lambda entered: ready_within(entered, FLUSH_GRACE),
            wrap=counted,
        )

    @app.get("/api/events")
    async def all_events_sse() -> Response:
        stream = registry.subscribe_all(caller(), after=sse_resume())
        return await event_stream_response(
            app.nursery,
            stream,
            state.streams,
            encode=AggregateItem.to_json,
            item_id=lambda item: item.position,
            ready=lambda entered: ready_within(entered, FLUSH_GRACE),
            wrap=counted,
        )

    def counted(stream: EventSource[T]) -> EventSource[T]:
        """The stream, counted in the metrics when they are on."""
        return stream if metrics is None else metrics.streams.counted(stream, _gaps)

    async def push(stream: EventSource[T], encode: Callable[[T], Any]) -> None:
        """Serve an entered stream down the WebSocket (until it ends)."""
        ready = ready_within(stream, FLUSH_GRACE)
        await serve_event_stream(
            websocket, counted(stream), state.streams, encode=encode, ready=ready
        )

    # -- the original server's routes and diagnostics (docs/workspace.md) ---
    install_legacy_routes(app, registry, state.identity, caller)
    install_openapi(app, registry)  # GET /api/openapi.json

    return app
