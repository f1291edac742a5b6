"""The runtime process's HTTP API: a Quart-Trio app in front of one Runtime.

The handlers only translate HTTP to library calls and back: every Worker
semantic (admission, busy, cancel, stop, paging) lives in the library, and
every library error becomes the JSON error envelope of ``docs/protocol.md``
in one place (:func:`yoi_runtime.serving.error_response`, with the
statuses of :data:`yoi_runtime.serving.STATUS`).

Browsers never talk to this app: its callers are programs holding its token,
the Python client and the workspace backend, which fronts browsers. The
serving layer's guard (:mod:`yoi_runtime.serving`) refuses foreign hosts,
every browser origin and non-JSON bodies before a handler runs
(``docs/security.md``).
"""

from __future__ import annotations

import hmac

import attrs
from quart import Response, request, websocket
from quart_trio import QuartTrio

from .._errors import IdempotencyConflictError, UnauthorizedError
from .._runtime import Runtime
from .._types import TranscriptPage, WorkerPage
from .._wire import converter, item_to_json
from ..serving._bodies import CancelBody, CreateWorkerBody, InputBody, StopBody
from ..serving._http import (
    error_response,
    install_error_handlers,
    json_response,
    query_int,
    read_body,
    refuse_control_characters,
)
from ..serving._metrics import AppMetrics
from ..serving._observe import install_route_names
from ..serving._sse import event_stream_response, item_cursor, sse_resume_count
from ..serving._streams import (
    StreamControl,
    StreamSettings,
    ready_now,
    serve_event_stream,
)
from ._openapi import openapi_document

__all__ = ["ServerState", "create_app"]


@attrs.define(eq=False)
class ServerState:
    """What the handlers share: the Runtime, the token, the drain flag.

    Attributes:
        runtime: Where every operation goes.
        token: The bearer token every request but health must carry; None
            accepts any request.
        streams: WebSocket timing.
        max_body_bytes: The largest request body, in bytes.
        draining: Set by :meth:`begin_drain`: health answers 503.
        stream_control: The open WebSockets (made from ``streams``).
        metrics: Served at ``GET /metrics`` (``docs/operations.md``); None:
            no such route.
    """

    runtime: Runtime
    token: str | None = attrs.field(repr=False)
    streams: StreamSettings
    max_body_bytes: int = 1024 * 1024
    draining: bool = False
    stream_control: StreamControl = attrs.field(init=False)
    metrics: AppMetrics | None = None

    @stream_control.default
    def _stream_control(self) -> StreamControl:
        return StreamControl(self.streams, shutdown_reason="runtime shutting down")

    def begin_drain(self) -> None:
        """Mark the process draining: health turns 503, streams close 1001."""
        self.draining = True
        self.stream_control.begin_drain()

    async def close_streams(self) -> None:
        """Make every WebSocket stream flush what is ready and close; wait
        until all have closed."""
        await self.stream_control.close_streams()


def create_app(state: ServerState) -> QuartTrio:
    """Build the app serving ``state.runtime`` (see ``docs/protocol.md``)."""
    app = QuartTrio(__name__)
    metrics = state.metrics
    install_route_names(app)  # first: it names the route for the access log
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

    install_error_handlers(app)
    if metrics is not None:
        metrics.install(app)

    @app.get("/v1/health")
    async def health() -> Response:
        if state.draining:
            return json_response({"status": "draining"}, 503, **{"Retry-After": "5"})
        reason = runtime.status_reason
        if reason is not None:
            # Degraded: reads work, commands are refused until the store
            # can be written again (it retries by itself).
            body = {"status": "degraded", "reason": reason}
            return json_response(body, 503, **{"Retry-After": "5"})
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
            limit=query_int("limit"),
            cursor=request.args.get("cursor"),
        )
        return json_response(converter.unstructure(page, unstructure_as=WorkerPage))

    @app.post("/v1/workers")
    async def create_worker() -> Response:
        body = await read_body(CreateWorkerBody, optional=True)
        refuse_control_characters("display_name", body.display_name)
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
            worker_id, limit=query_int("limit"), cursor=request.args.get("cursor")
        )
        return json_response(converter.unstructure(page, unstructure_as=TranscriptPage))

    @app.websocket("/v1/events")
    async def runtime_events() -> Response | None:
        return await _stream(None)

    @app.websocket("/v1/workers/<worker_id>/events")
    async def worker_events(worker_id: str) -> Response | None:
        return await _stream(worker_id)

    async def _stream(worker_id: str | None) -> Response | None:
        subscription = runtime.subscribe(worker_id, after=query_int("after"))
        counted = None if metrics is None else metrics.streams.counted(subscription)
        async with subscription:
            await serve_event_stream(
                websocket,
                subscription if counted is None else counted,
                state.stream_control,
                encode=item_to_json,
                ready=ready_now(subscription),
            )
        return None

    # The same streams as text/event-stream (docs/protocol.md).
    @app.get("/v1/events")
    async def runtime_events_sse() -> Response:
        return await _sse(None)

    @app.get("/v1/workers/<worker_id>/events")
    async def worker_events_sse(worker_id: str) -> Response:
        return await _sse(worker_id)

    async def _sse(worker_id: str | None) -> Response:
        subscription = runtime.subscribe(worker_id, after=sse_resume_count())
        worker_stream = worker_id is not None
        return await event_stream_response(
            app.nursery,
            subscription,
            state.stream_control,
            encode=item_to_json,
            item_id=lambda item: item_cursor(item, worker_stream=worker_stream),
            ready=ready_now,
            wrap=None if metrics is None else metrics.streams.counted,
        )

    return app
