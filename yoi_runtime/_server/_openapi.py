"""The OpenAPI 3.1 document of the runtime process, derived from the types.

Schemas come from the same attrs classes the handlers serialise with the
package's converter, so the document cannot drift from the responses; the
test suite validates it and fuzzes the process against it.
"""

from __future__ import annotations

import functools
from typing import Any

from .._events import Event, Gap
from .._profiles import TOOL_PROFILES
from .._types import (
    CancelResult,
    Diagnostic,
    RuntimeSummary,
    TranscriptPage,
    TurnSummary,
    WorkerPage,
    WorkerStatus,
    WorkerSummary,
)
from .._version import PROTOCOL_VERSION, __version__
from ..serving._openapi import (
    CURSOR,
    ERROR_ENVELOPE,
    IDEMPOTENCY_KEY,
    LIMIT,
    WORKER_ID,
    Schemas,
    error_content,
    json_content,
    query_parameter,
    request_bodies,
)

__all__ = ["openapi_document"]


@functools.cache
def openapi_document(
    profiles: tuple[str, ...], engines: tuple[str, ...]
) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of every route (cached).

    Args:
        profiles: The profiles this Runtime accepts (``coder`` and
            ``reviewer`` are listed too: they answer 501 where unsupported).
        engines: The engine names Workers may pick.
    """
    s = Schemas()
    bodies = request_bodies(sorted({*profiles, *TOOL_PROFILES}), engines)

    def ok(cls: Any, description: str, wrap: str | None = None) -> dict[str, Any]:
        schema = s.of(cls)
        if wrap is not None:
            schema = {
                "type": "object",
                "properties": {wrap: schema},
                "required": [wrap],
            }
        return json_content(schema, description)

    errors = {
        "401": error_content("missing or wrong token"),
        "422": error_content("invalid input"),
        "503": error_content("shutting down"),
    }
    worker_errors = {**errors, "404": error_content("unknown worker")}
    body_errors = {
        **worker_errors,
        "400": error_content("body is not JSON"),
        "409": error_content("conflict"),
        "413": error_content("body too large"),
    }
    paths = {
        "/v1/runtime": {"get": {
            "operationId": "getRuntime",
            "responses": {"200": ok(RuntimeSummary, "the runtime summary"), **errors},
        }},
        "/v1/diagnostics": {"get": {
            "operationId": "getDiagnostics",
            "responses": {"200": ok(tuple[Diagnostic, ...], "diagnostics",
                                    wrap="diagnostics"), **errors},
        }},
        "/v1/workers": {
            "get": {
                "operationId": "listWorkers",
                "parameters": [
                    query_parameter("status", s.of(WorkerStatus),
                           "only Workers with this status"),
                    LIMIT, CURSOR,
                ],
                "responses": {"200": ok(WorkerPage, "a page of Workers"), **errors},
            },
            "post": {
                "operationId": "createWorker",
                "requestBody": bodies["create"],
                "responses": {"201": ok(WorkerSummary, "the Worker", wrap="worker"),
                              "501": error_content("a profile this Runtime cannot run"),
                              **body_errors},
            },
        },
        "/v1/workers/{worker_id}": {"get": {
            "operationId": "getWorker",
            "parameters": [WORKER_ID],
            "responses": {"200": ok(WorkerSummary, "the Worker", wrap="worker"),
                          **worker_errors},
        }},
        "/v1/workers/{worker_id}/input": {"post": {
            "operationId": "sendInput",
            "parameters": [WORKER_ID, IDEMPOTENCY_KEY],
            "requestBody": bodies["input"],
            "responses": {"202": ok(TurnSummary, "the accepted turn", wrap="turn"),
                          **body_errors},
        }},
        "/v1/workers/{worker_id}/stop": {"post": {
            "operationId": "stopWorker",
            "parameters": [WORKER_ID],
            "requestBody": bodies["stop"],
            "responses": {"200": ok(WorkerSummary, "the stopped Worker", wrap="worker"),
                          **body_errors},
        }},
        "/v1/workers/{worker_id}/cancel": {"post": {
            "operationId": "cancelTurn",
            "parameters": [WORKER_ID],
            "requestBody": bodies["cancel"],
            "responses": {"200": ok(CancelResult, "what the cancel did", wrap="result"),
                          **body_errors},
        }},
        "/v1/workers/{worker_id}/transcript": {"get": {
            "operationId": "getTranscript",
            "parameters": [WORKER_ID, LIMIT, CURSOR],
            "responses": {"200": ok(TranscriptPage, "a transcript page"),
                          **worker_errors},
        }},
        "/v1/health": {"get": {
            "operationId": "getHealth",
            "security": [],
            "responses": {
                "200": json_content({"type": "object"}, "serving"),
                "503": json_content({"type": "object"}, "draining"),
            },
        }},
        "/v1/openapi.json": {"get": {
            "operationId": "getOpenAPI",
            "responses": {
                "200": json_content({"type": "object"}, "this document"),
                **errors,
            },
        }},
    }  # fmt: skip
    s.of(Event)
    s.of(Gap)
    s.components["ErrorEnvelope"] = ERROR_ENVELOPE
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "yoi-runtime",
            "version": __version__,
            "description": f"Runtime process protocol v{PROTOCOL_VERSION}; "
            "see docs/protocol.md. Not for browsers. The WebSocket event "
            "streams (/v1/events, /v1/workers/{worker_id}/events) are "
            "described there; their items are the Event and Gap schemas.",
        },
        "paths": paths,
        "components": {
            "schemas": s.components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
