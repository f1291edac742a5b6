"""``GET /api/openapi.json``: the OpenAPI 3.1 document of the browser API.

Built with the runtime process's generator
(:mod:`yoi_runtime._server._openapi`): response schemas come from the attrs
classes the handlers serialise (:class:`~yoi_workspace.RuntimeView`,
:class:`~yoi_workspace.WorkerView`, ``TurnSummary``, ...), errors are its
``ErrorEnvelope`` and the command bodies are its request bodies, which this
API accepts field for field. The parts that depend on what is served are
filled from the registry when the document is asked for: ``runtime_id`` is
one of the registered Runtimes (any other is ``404 unknown_runtime``),
``profile`` and ``engine`` are those any Runtime reported. The original
server's routes get hand-written schemas of their shapes (``_legacy.py``),
their own error bodies included. Event streams are described in the
document's ``info.description``, as the runtime process does (WebSocket,
and their ``text/event-stream`` GETs, which are not listed as operations),
with their items as the ``Event``, ``Gap`` and ``StreamReset`` schemas. Like every
route but health and sign-in, the document needs a caller.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from quart import Response
from quart_trio import QuartTrio

from yoi_runtime import (
    CancelResult,
    Event,
    Gap,
    TranscriptPage,
    TurnSummary,
    WorkerStatus,
    __version__,
)
from yoi_runtime.serving import (
    CURSOR,
    ERROR_ENVELOPE,
    IDEMPOTENCY_KEY,
    LIMIT,
    TOOL_PROFILES,
    Schemas,
    json_response,
    request_bodies,
)

from .._registry import RuntimeRegistry
from .._views import RuntimeView, WorkerView, WorkerViewPage

__all__ = ["install_openapi", "openapi_document"]

_STRING = {"type": "string"}
_OBJECT = {"type": "object"}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("ErrorEnvelope"), description)


def _wrap(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {key: schema}, "required": [key]}


def _object(required: Sequence[str], **properties: Any) -> dict[str, Any]:
    """An object with these (at least) keys; further keys are additive."""
    return {"type": "object", "properties": properties, "required": list(required)}


#: The original server's shapes (``_legacy.py``), loosely: the keys every
#: item has, typed; items of embedded and remote Runtimes add keys.
_LEGACY_DIAGNOSTIC = _object(
    ["code", "severity", "message"], code=_STRING, severity=_STRING, message=_STRING
)
_LEGACY_SCHEMAS: dict[str, Any] = {
    "LegacyDiagnostic": _LEGACY_DIAGNOSTIC,
    "LegacyList": _object(
        ["workspace_id", "limit", "items", "source", "diagnostics"],
        workspace_id=_STRING,
        limit={"type": "integer"},
        items={"type": "array", "maxItems": 200, "items": _OBJECT},
        source={"const": "worker_runtime_registry"},
        diagnostics={
            "type": "array",
            "maxItems": 16,
            "items": _ref("LegacyDiagnostic"),
        },
    ),
    "LegacyWorkspace": _object(
        [
            "workspace_id",
            "display_name",
            "local_root",
            "record_authority",
            "schema_version",
            "auth",
            "extension_points",
        ],
        workspace_id=_STRING,
        display_name={"type": ["string", "null"]},
        local_root={"type": ["string", "null"]},
        record_authority=_STRING,
        schema_version={"type": "integer"},
        auth=_OBJECT,
        extension_points=_OBJECT,
    ),
    "LegacyError": _object(["error", "message"], error=_STRING, message=_STRING),
    "WorkspaceDiagnostics": _object(
        ["workspace_id", "diagnostics"],
        workspace_id=_STRING,
        diagnostics={
            "type": "array",
            "items": _object(
                ["source", "code", "severity", "message", "at", "worker_id"],
                source=_STRING,
                code=_STRING,
                severity=_STRING,
                message=_STRING,
                at={"type": "string", "format": "date-time"},
                worker_id={"type": ["string", "null"]},
            ),
        },
    ),
    "Session": _object(
        ["caller", "roles"], caller=_STRING, roles={"type": "array", "items": _STRING}
    ),
    "StreamReset": _object(
        ["type", "runtime_id", "reason", "position"],
        type={"const": "stream.reset"},
        runtime_id=_STRING,
        reason=_STRING,
        position=_STRING,
    ),
}


def _path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}  # fmt: skip


_WORKER_ID = _path("worker_id", _STRING, "the Worker, in its Runtime")
_HOST_ID = _path(
    "host_id",
    {"type": "string", "pattern": "^[A-Za-z0-9_:-]{1,120}$"},
    "a host of GET /api/hosts (another is 400 or 404, in the LegacyError shape)",
)

_DESCRIPTION = (
    "The workspace backend's browser API; see docs/workspace.md. Runtimes "
    "and Workers are named by runtime_id and worker_id only; a request "
    "carrying an endpoint, token or path is 400 invalid_input. The event "
    "streams are WebSocket routes (frames, heartbeats and close codes as the "
    "runtime process's, docs/protocol.md): "
    "/api/runtimes/{runtime_id}/workers/{worker_id}/events?after=SEQ, one "
    "Worker's Event and Gap items, and /api/events?after=CURSOR, every "
    "visible Worker's, each item with a position (the opaque cursor to "
    "resume after it) and StreamReset items when a Runtime's stream started "
    "over. A GET of either path with Accept: text/event-stream serves the "
    "same items as Server-Sent Events (id: the cursor; resume with "
    "Last-Event-ID or ?after=); those GETs are not listed as operations."
)


@functools.cache
def openapi_document(
    runtime_ids: tuple[str, ...], profiles: tuple[str, ...], engines: tuple[str, ...]
) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of every browser route (cached).

    Args:
        runtime_ids: The registered Runtimes, the values ``runtime_id`` takes.
        profiles: The profiles some Runtime accepts (``coder`` and
            ``reviewer`` are listed too: they answer 501 where unsupported).
        engines: The engine names some Runtime offers.
    """
    s = Schemas()
    bodies = request_bodies(sorted({*profiles, *TOOL_PROFILES}), engines)
    runtime_id = _path(
        "runtime_id",
        {"type": "string", "enum": list(runtime_ids)},
        "a registered Runtime (another id is 404 unknown_runtime)",
    )

    def ok(cls: Any, description: str, wrap: str | None = None) -> dict[str, Any]:
        schema = s.of(cls)
        return _json(schema if wrap is None else _wrap(wrap, schema), description)

    errors = {
        "400": _error("invalid input, or a key naming an endpoint, token or path"),
        "401": _error("no or wrong credentials"),
    }
    runtime_errors = {
        **errors,
        "404": _error("unknown Runtime (unknown_runtime) or Worker"),
        "503": _error("the Runtime is unavailable (Retry-After: 5)"),
    }
    command_errors = {
        **runtime_errors,
        "403": _error("the command policy refused (command_refused)"),
        "409": _error("worker_busy, worker_stopped, idempotency_conflict, ..."),
        "413": _error("body too large"),
        "501": _error("a profile or command the Runtime cannot do"),
    }
    legacy = {"400": errors["400"], "401": errors["401"]}
    worker = "/api/runtimes/{runtime_id}/workers/{worker_id}"

    def command(operation_id: str, body: str, status: str, answer: dict[str, Any],
                *extra: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        return {"post": {
            "operationId": operation_id,
            "parameters": [runtime_id, _WORKER_ID, *extra],
            "requestBody": bodies[body],
            "responses": {status: answer, **command_errors},
        }}  # fmt: skip

    def legacy_list(operation_id: str, description: str) -> dict[str, Any]:
        return {"get": {
            "operationId": operation_id,
            "responses": {"200": _json(_ref("LegacyList"), description), **legacy},
        }}  # fmt: skip

    paths = {
        "/api/health": {"get": {
            "operationId": "getHealth",
            "security": [],
            "responses": {"200": _json(_OBJECT, "serving"),
                          "503": _json(_OBJECT, "draining")},
        }},
        "/api/openapi.json": {"get": {
            "operationId": "getOpenAPI",
            "responses": {"200": _json(_OBJECT, "this document"), **errors},
        }},
        "/api/session": {
            "get": {
                "operationId": "getSession",
                "responses": {"200": _json(_ref("Session"), "the caller"), **errors},
            },
            "post": {
                "operationId": "openSession",
                "description": "token mode: trade the bearer token for the "
                               "yoi_session cookie (HttpOnly, SameSite=Strict)",
                "responses": {"200": _json(_ref("Session"), "the caller"), **errors},
            },
            "delete": {
                "operationId": "closeSession",
                "responses": {"200": _json(_object(["signed_out"],
                                                   signed_out={"type": "boolean"}),
                                           "signed out"), **errors},
            },
        },
        "/api/runtimes/{runtime_id}": {"get": {
            "operationId": "getRuntime",
            "parameters": [runtime_id],
            "responses": {"200": ok(RuntimeView, "the Runtime, with usage",
                                    wrap="runtime"), **runtime_errors},
        }},
        "/api/runtimes/{runtime_id}/workers": {
            "get": {
                "operationId": "listWorkers",
                "parameters": [
                    runtime_id,
                    {"name": "status", "in": "query", "required": False,
                     "schema": s.of(WorkerStatus),
                     "description": "only Workers with this status"},
                    LIMIT, CURSOR,
                ],
                "responses": {"200": ok(WorkerViewPage, "a page of visible Workers"),
                              **runtime_errors},
            },
            "post": {
                "operationId": "createWorker",
                "parameters": [runtime_id],
                "requestBody": bodies["create"],
                "responses": {"201": ok(WorkerView, "the Worker", wrap="worker"),
                              **command_errors},
            },
        },
        worker: {"get": {
            "operationId": "getWorker",
            "parameters": [runtime_id, _WORKER_ID],
            "responses": {"200": ok(WorkerView, "the Worker", wrap="worker"),
                          **runtime_errors},
        }},
        worker + "/input": command(
            "sendInput", "input", "202",
            ok(TurnSummary, "the accepted turn", wrap="turn"), IDEMPOTENCY_KEY),
        worker + "/stop": command(
            "stopWorker", "stop", "200",
            ok(WorkerView, "the stopped Worker", wrap="worker")),
        worker + "/cancel": command(
            "cancelTurn", "cancel", "200",
            ok(CancelResult, "what the cancel did", wrap="result")),
        worker + "/transcript": {"get": {
            "operationId": "getTranscript",
            "parameters": [runtime_id, _WORKER_ID, LIMIT, CURSOR],
            "responses": {"200": ok(TranscriptPage, "a transcript page"),
                          "501": _error("a source without transcripts"),
                          **runtime_errors},
        }},
        "/api/diagnostics": {"get": {
            "operationId": "getDiagnostics",
            "responses": {"200": _json(_ref("WorkspaceDiagnostics"),
                                       "every source's diagnostics"), **legacy},
        }},
        # The original server's routes: its shapes and error bodies.
        "/api/hosts": legacy_list("listHosts", "one host per Runtime"),
        "/api/runtimes": legacy_list("listRuntimes", "one item per Runtime"),
        "/api/workers": legacy_list("listAllWorkers", "every visible Worker"),
        "/api/hosts/{host_id}/workers": {"get": {
            "operationId": "listHostWorkers",
            "parameters": [_HOST_ID],
            "responses": {
                **legacy,
                "200": _json(_ref("LegacyList"), "the host's Workers"),
                "400": _json({"anyOf": [_ref("LegacyError"), _ref("ErrorEnvelope")]},
                             "not a valid host_id (LegacyError), or invalid "
                             "input (ErrorEnvelope)"),
                "404": _json(_ref("LegacyError"), "unknown host"),
            },
        }},
        "/api/workspace": {"get": {
            "operationId": "getWorkspace",
            "responses": {"200": _json(_ref("LegacyWorkspace"), "the workspace"),
                          **legacy},
        }},
    }  # fmt: skip
    s.of(Event)
    s.of(Gap)
    s.components["ErrorEnvelope"] = ERROR_ENVELOPE
    s.components.update(_LEGACY_SCHEMAS)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "yoi-workspace browser API",
            "version": __version__,
            "description": _DESCRIPTION,
        },
        "paths": paths,
        "components": {
            "schemas": s.components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "yoi_session"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
    }


def install_openapi(app: QuartTrio, registry: RuntimeRegistry) -> None:
    """Serve :func:`openapi_document` for ``registry`` at ``GET
    /api/openapi.json`` (behind authentication, as every route but health).

    The profiles and engines are those the Runtimes report now (a remote
    Runtime never reached adds none), so the document can grow once one is.
    """

    @app.get("/api/openapi.json")
    async def openapi() -> Response:
        views = await registry.list_runtimes()
        profiles: set[str] = set()
        engines: dict[str, None] = {}
        for view in views:
            if view.capabilities is not None:
                profiles.update(view.capabilities.profiles)
                engines.update(dict.fromkeys(e.name for e in view.capabilities.engines))
        document = openapi_document(
            tuple(view.runtime_id for view in views),
            tuple(sorted(profiles)),
            tuple(engines),
        )
        return json_response(document)
