"""OpenAPI 3.1 building blocks both servers' documents share.

Schemas come from the same attrs classes the handlers serialise with the
package's converter (:class:`Schemas`), so a document cannot drift from the
responses; the request bodies (:func:`request_bodies`), paging parameters
and the error envelope are the same in ``yoi-runtime``'s document and the
workspace backend's.
"""

from __future__ import annotations

import datetime
import enum
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .._event_data import event_schemas
from .._events import Event
from .._ids import ID_PATTERN
from .._types import Page
from .._wire import page_form
from ._http import DISPLAY_TEXT_PATTERN

__all__ = [
    "CURSOR",
    "ERROR_ENVELOPE",
    "IDEMPOTENCY_KEY",
    "LIMIT",
    "WORKER_ID",
    "Schemas",
    "body_content",
    "error_content",
    "json_content",
    "query_parameter",
    "request_bodies",
]


class Schemas:
    """Collects JSON Schemas of attrs classes under ``components/schemas``.

    :class:`~yoi_runtime.Event` is described by
    :func:`~yoi_runtime._event_data.event_schemas`: one object per event
    type, with ``data`` typed by that type's payload class. A page alias
    (``Page[WorkerSummary]``) is described in its wire form
    (:func:`~yoi_runtime.serving.page_form`: its name, items key and
    whether it carries ``truncated``).
    """

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
        if origin is Page or hint is Page:
            return self._page(hint)
        if hint is Event:
            # One object per event type, its data typed by the type's class.
            self.components.update(event_schemas())
            return {"$ref": "#/components/schemas/Event"}
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

    def _page(self, alias: Any) -> dict[str, Any]:
        """A page alias's schema: the fields of :class:`Page` under their
        JSON names, the items typed by the alias's argument."""
        form = page_form(alias)  # TypeError for a bare or unknown page
        if form.name not in self.components:
            self.components[form.name] = {}  # placeholder, as in _ref
            (item,) = typing.get_args(alias)
            hints = {
                **typing.get_type_hints(Page),
                "items": tuple[item, ...],  # type: ignore[valid-type]
            }
            names = {"items": form.key, "next_cursor": "next_cursor"}
            if form.truncated:
                names["truncated"] = "truncated"
            self.components[form.name] = {
                "type": "object",
                "properties": {key: self.of(hints[f]) for f, key in names.items()},
                "required": list(names.values()),
            }
        return {"$ref": f"#/components/schemas/{form.name}"}


def json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """An OpenAPI Response Object with a JSON body of ``schema``."""
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


def error_content(description: str) -> dict[str, Any]:
    """An OpenAPI Response Object whose body is the error envelope."""
    return json_content({"$ref": "#/components/schemas/ErrorEnvelope"}, description)


def body_content(
    properties: dict[str, Any], required: Sequence[str] = ()
) -> dict[str, Any]:
    """An OpenAPI Request Body Object: a strict JSON object of ``properties``."""
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
_ID = {"type": "string", "pattern": f"^{ID_PATTERN}$"}


def query_parameter(
    name: str, schema: dict[str, Any], description: str
) -> dict[str, Any]:
    """An OpenAPI Parameter Object: the optional query parameter ``name``."""
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


WORKER_ID = {"name": "worker_id", "in": "path", "required": True,
              "schema": {"type": "string"}}  # fmt: skip
LIMIT = query_parameter("limit", {"type": "integer", "minimum": 1, "maximum": 500},
               "page size (default 50)")  # fmt: skip
CURSOR = query_parameter("cursor", {"type": "string", "pattern": "^[0-9]{1,18}$"},
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
        "create": body_content({
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
        "input": body_content({"text": {"type": "string", "minLength": 1,
                                 "maxLength": 100_000},
                        "input_id": {"anyOf": [_ID, {"type": "null"}]}},
                       required=["text"]),
        "stop": body_content({"reason": _OPTIONAL_STRING}),
        "cancel": body_content({"reason": _OPTIONAL_STRING,
                         "turn_id": _OPTIONAL_STRING}),
    }  # fmt: skip
