"""The OpenAPI 3.1 document of the runtime process, derived from the types.

Schemas come from the same attrs classes the handlers serialise with the
package's converter, so the document cannot drift from the responses; the
test suite validates it and fuzzes the process against it.
"""

from __future__ import annotations

import datetime
import enum
import functools
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

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
from ._http import DISPLAY_TEXT_PATTERN

__all__ = [
    "CURSOR",
    "ERROR_ENVELOPE",
    "IDEMPOTENCY_KEY",
    "LIMIT",
    "Schemas",
    "openapi_document",
    "request_bodies",
]


class Schemas:
    """Collects JSON Schemas of attrs classes under ``components/schemas``."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def of(self, hint: Any) -> dict[str, Any]:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if hint is type(None):
            return {"type": "null"}
        if origin in (typing.Union, types.UnionType):
            return {"anyOf": [self.of(arg) for arg in args]}
        if origin is typing.Literal:
            return {"enum": list(args)}
        if hint is Any:
            return {}
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return {"type": "string", "enum": [member.value for member in hint]}
        if hint is datetime.datetime:
            return {"type": "string", "format": "date-time"}
        simple = {str: "string", bool: "boolean", int: "integer", float: "number"}
        if hint in simple:
            return {"type": simple[hint]}
        if origin is not None and isinstance(origin, type):
            if issubclass(origin, Mapping):
                return {"type": "object", "additionalProperties": self.of(args[1])}
            if issubclass(origin, Sequence):
                return {"type": "array", "items": self.of(args[0])}
        if attrs.has(hint):
            return self._ref(hint)
        raise TypeError(f"no schema for {hint!r}")

    def _ref(self, cls: type) -> dict[str, Any]:
        name = cls.__name__
        if name not in self.components:
            self.components[name] = {}  # placeholder against recursion
            hints = typing.get_type_hints(cls)
            fields = attrs.fields(cls)
            self.components[name] = {
                "type": "object",
                "properties": {f.name: self.of(hints[f.name]) for f in fields},
                "required": [f.name for f in fields],
            }
        return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


def _error(description: str) -> dict[str, Any]:
    return _json({"$ref": "#/components/schemas/ErrorEnvelope"}, description)


def _body(properties: dict[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }
    return {
        "required": bool(required),
        "content": {"application/json": {"schema": schema}},
    }


_OPTIONAL_STRING = {"type": ["string", "null"]}
_ID = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


_WORKER_ID = {"name": "worker_id", "in": "path", "required": True,
              "schema": {"type": "string"}}  # fmt: skip
LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 500},
               "page size (default 50)")  # fmt: skip
CURSOR = _query("cursor", {"type": "string", "pattern": "^[0-9]{1,18}$"},
                "next_cursor of the previous page")  # fmt: skip
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "the input_id, as a header (must equal the "
                   "body's input_id if both are given)",
    "schema": _ID,
}  # fmt: skip

#: Every error's body (``components/schemas/ErrorEnvelope``).
ERROR_ENVELOPE = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message", "details"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                       "details": {"type": "object"}},
    }},
}  # fmt: skip


def request_bodies(
    profiles: Sequence[str], engines: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Return the request bodies of the Worker commands, by operation.

    Args:
        profiles: The profile names a create may ask for, listed as given.
        engines: The engine names Workers may pick.

    Returns:
        ``create``, ``input``, ``stop`` and ``cancel``: each an OpenAPI
        Request Body Object (strict JSON objects, as the handlers read them).
    """
    return {
        "create": _body({
            "profile": {"enum": list(profiles)},
            "display_name": {
                "type": ["string", "null"],
                "pattern": DISPLAY_TEXT_PATTERN,
            },
            "engine": {"enum": [*engines, None]},
            "system_prompt": _OPTIONAL_STRING,
            "worker_id": {"anyOf": [_ID, {"type": "null"}]},
            "scopes": {"anyOf": [
                {"type": "array", "maxItems": 16, "uniqueItems": True,
                 "items": {"type": "string", "minLength": 1,
                           "maxLength": 1024,
                           "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"}},
                {"type": "null"}]},
        }),
        "input": _body({"text": {"type": "string", "minLength": 1,
                                 "maxLength": 100_000},
                        "input_id": {"anyOf": [_ID, {"type": "null"}]}},
                       required=["text"]),
        "stop": _body({"reason": _OPTIONAL_STRING}),
        "cancel": _body({"reason": _OPTIONAL_STRING,
                         "turn_id": _OPTIONAL_STRING}),
    }  # fmt: skip


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
        return _json(schema, description)

    errors = {
        "401": _error("missing or wrong token"),
        "422": _error("invalid input"),
        "503": _error("shutting down"),
    }
    worker_errors = {**errors, "404": _error("unknown worker")}
    body_errors = {
        **worker_errors,
        "400": _error("body is not JSON"),
        "409": _error("conflict"),
        "413": _error("body too large"),
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
                    _query("status", s.of(WorkerStatus),
                           "only Workers with this status"),
                    LIMIT, CURSOR,
                ],
                "responses": {"200": ok(WorkerPage, "a page of Workers"), **errors},
            },
            "post": {
                "operationId": "createWorker",
                "requestBody": bodies["create"],
                "responses": {"201": ok(WorkerSummary, "the Worker", wrap="worker"),
                              "501": _error("a profile this Runtime cannot run"),
                              **body_errors},
            },
        },
        "/v1/workers/{worker_id}": {"get": {
            "operationId": "getWorker",
            "parameters": [_WORKER_ID],
            "responses": {"200": ok(WorkerSummary, "the Worker", wrap="worker"),
                          **worker_errors},
        }},
        "/v1/workers/{worker_id}/input": {"post": {
            "operationId": "sendInput",
            "parameters": [_WORKER_ID, IDEMPOTENCY_KEY],
            "requestBody": bodies["input"],
            "responses": {"202": ok(TurnSummary, "the accepted turn", wrap="turn"),
                          **body_errors},
        }},
        "/v1/workers/{worker_id}/stop": {"post": {
            "operationId": "stopWorker",
            "parameters": [_WORKER_ID],
            "requestBody": bodies["stop"],
            "responses": {"200": ok(WorkerSummary, "the stopped Worker", wrap="worker"),
                          **body_errors},
        }},
        "/v1/workers/{worker_id}/cancel": {"post": {
            "operationId": "cancelTurn",
            "parameters": [_WORKER_ID],
            "requestBody": bodies["cancel"],
            "responses": {"200": ok(CancelResult, "what the cancel did", wrap="result"),
                          **body_errors},
        }},
        "/v1/workers/{worker_id}/transcript": {"get": {
            "operationId": "getTranscript",
            "parameters": [_WORKER_ID, LIMIT, CURSOR],
            "responses": {"200": ok(TranscriptPage, "a transcript page"),
                          **worker_errors},
        }},
        "/v1/health": {"get": {
            "operationId": "getHealth",
            "security": [],
            "responses": {
                "200": _json({"type": "object"}, "serving"),
                "503": _json({"type": "object"}, "draining"),
            },
        }},
        "/v1/openapi.json": {"get": {
            "operationId": "getOpenAPI",
            "responses": {"200": _json({"type": "object"}, "this document"), **errors},
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
