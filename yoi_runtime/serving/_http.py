"""HTTP plumbing shared by the runtime process and the workspace backend.

Both Quart-Trio apps answer in JSON and report every error in one envelope,
``{"error": {"code", "message", "details"}}`` (``docs/protocol.md``), whose
HTTP status comes from a table of error codes (:data:`STATUS` for the
runtime process; the workspace backend adds its own on top). Everything here
works on Quart's request context; nothing knows which app it serves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import cattrs
from quart import Quart, Response, has_websocket_context, request, websocket
from werkzeug.exceptions import HTTPException

from .._errors import InternalError, InvalidInputError, YoiRuntimeError
from .._util import parse_count
from .._wire import strict_converter

__all__ = [
    "DISPLAY_TEXT_PATTERN",
    "MAX_JSON_DEPTH",
    "STATUS",
    "InvalidJSONError",
    "MethodNotAllowedError",
    "PayloadTooLargeError",
    "RouteNotFoundError",
    "WebSocketRequiredError",
    "error_response",
    "http_error",
    "install_error_handlers",
    "json_response",
    "parse_json",
    "query_int",
    "read_body",
    "refuse_control_characters",
]

T = TypeVar("T")

#: HTTP status of each error code of the runtime process; anything else is
#: a 500.
STATUS: Mapping[str, int] = {
    "invalid_json": 400,
    "invalid_host": 400,
    "websocket_required": 400,
    "unauthorized": 401,
    "origin_not_allowed": 403,
    "worker_not_found": 404,
    "not_found": 404,
    "method_not_allowed": 405,
    "worker_busy": 409,
    "worker_stopped": 409,
    "idempotency_conflict": 409,
    "scope_conflict": 409,
    "limit_exceeded": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "host_not_allowed": 421,
    "invalid_input": 422,
    "operation_unsupported": 501,
    "runtime_unavailable": 503,
    "too_many_connections": 503,
    "store_write_failed": 503,
    "storage_full": 507,
}

#: The deepest nesting of arrays and objects a request body may have
#: (``{"a": [1]}`` is 2 deep); deeper is ``invalid_json``.
MAX_JSON_DEPTH = 32


class InvalidJSONError(InvalidInputError):
    """The request body is not JSON, repeats a key in an object, or nests
    deeper than :data:`MAX_JSON_DEPTH`."""

    code = "invalid_json"


class RouteNotFoundError(YoiRuntimeError):
    """No route matches the request's path."""

    code = "not_found"


class MethodNotAllowedError(YoiRuntimeError):
    """The route exists but not for the request's method."""

    code = "method_not_allowed"


class PayloadTooLargeError(YoiRuntimeError):
    """The request body is larger than the app's ``MAX_CONTENT_LENGTH``."""

    code = "payload_too_large"


class WebSocketRequiredError(YoiRuntimeError):
    """A plain HTTP request reached an ``.../events`` WebSocket route."""

    code = "websocket_required"


#: Request bodies: exact fields, exact JSON types (no "42" for 42).
_requests = strict_converter()


def json_response(body: Any, status: int = 200, **headers: str) -> Response:
    """A response whose body is ``body`` as JSON.

    Args:
        body: Anything :func:`json.dumps` takes.
        status: The HTTP status.
        headers: Extra response headers.
    """
    return Response(
        json.dumps(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(error: Exception, statuses: Mapping[str, int] = STATUS) -> Response:
    """The JSON error envelope for any exception (never a stack trace).

    Args:
        error: A :class:`YoiRuntimeError`; anything else is answered as an
            ``internal_error`` without details.
        statuses: HTTP status by error code; a code it lacks is a 500. A 503
            carries ``Retry-After: 5``.
    """
    if not isinstance(error, YoiRuntimeError):
        error = InternalError("internal error")
    status = statuses.get(error.code, 500)
    headers = {"Retry-After": "5"} if status == 503 else {}
    body = {
        "error": {
            "code": error.code,
            "message": error.message,
            "details": error.details(),
        }
    }
    return json_response(body, status, **headers)


def http_error(error: HTTPException) -> YoiRuntimeError:
    """Translate werkzeug's routing and body-size errors to coded errors.

    Returns:
        ``not_found`` (404), ``method_not_allowed`` (405),
        ``payload_too_large`` (413), ``websocket_required`` (a 400 on a path
        ending in ``/events``), else an ``internal_error`` naming the status.
    """
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


def install_error_handlers(
    app: Quart,
    respond: Callable[[Exception], Response] = error_response,
    statuses: Mapping[str, int] = STATUS,
) -> None:
    """Answer every error ``app`` raises with the JSON envelope.

    Args:
        app: The app to register the handlers on.
        respond: Turns a library error, or an unexpected exception (logged
            first, with its traceback), into the response; by default the
            envelope with the runtime process's statuses.
        statuses: HTTP status by error code for werkzeug's own errors
            (:func:`http_error`); a 405 also carries the ``Allow`` header.
    """

    @app.errorhandler(YoiRuntimeError)
    async def on_library_error(error: YoiRuntimeError) -> Response:
        return respond(error)

    @app.errorhandler(HTTPException)
    async def on_http_error(error: HTTPException) -> Response:
        response = error_response(http_error(error), statuses)
        allowed = getattr(error, "valid_methods", None)
        if error.code == 405 and allowed:
            response.headers["Allow"] = ", ".join(sorted(allowed))
        return response

    @app.errorhandler(Exception)
    async def on_bug(error: Exception) -> Response:
        app.logger.exception("unexpected error", exc_info=error)
        return respond(error)


class _DuplicateKeyError(Exception):
    """An object of the body names a key twice."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise _DuplicateKeyError
    return value


def parse_json(data: str | bytes) -> Any:
    """Parse a request body as strict JSON.

    Args:
        data: The raw body (UTF-8, UTF-16 or UTF-32, as JSON allows).

    Returns:
        The value (objects as dicts).

    Raises:
        InvalidJSONError: Not JSON, a key repeated in one object, or
            arrays and objects nested deeper than :data:`MAX_JSON_DEPTH`.
            Never logged with a traceback: the caller's fault.
        InvalidInputError: A string (or key) holds a lone surrogate (an
            escape such as ``"\\ud800"`` that is no character); ``path``
            names the value as the embedded Runtime names fields
            (``text``, ``a.b``, ``a[0]``; ``$`` for the body itself).
    """
    try:
        value = json.loads(data, object_pairs_hook=_no_duplicates)
    except _DuplicateKeyError:
        raise InvalidJSONError("the request body repeats a key in an object") from None
    except (ValueError, RecursionError):
        raise InvalidJSONError("the request body is not valid JSON") from None
    _check_value(value)
    return value


def _check_value(value: Any) -> None:
    """Refuse nesting past :data:`MAX_JSON_DEPTH` and lone surrogates."""
    stack: list[tuple[Any, str, int]] = [(value, "$", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise InvalidJSONError(
                    f"the request body nests deeper than {MAX_JSON_DEPTH} levels"
                )
            if isinstance(item, list):
                stack += [(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item)]
                continue
            for key, child in item.items():
                _check_text(key, path)
                if not key.isidentifier():
                    name = f"{path}[{key!r}]"
                else:
                    name = key if path == "$" else f"{path}.{key}"
                stack.append((child, name, depth + 1))


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            "the text holds a lone surrogate (not a character)", path=path
        ) from None


#: Characters refused in display texts (code points, inclusive ranges): C0
#: and C1 controls, the soft hyphen, line and paragraph separators,
#: zero-width, bidi and invisible formatting controls. Lone surrogates are
#: not listed: :func:`parse_json` refuses them in every string first, and
#: no regular expression engine that validates JSON Schema can name them.
_CONTROL_RANGES = (
    (0x00, 0x1F),
    (0x7F, 0x9F),
    (0xAD, 0xAD),
    (0x61C, 0x61C),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
)

#: The class as ``\uXXXX`` escapes, which Python's ``re``, ECMA-262 and
#: Rust's ``regex`` (schemathesis, jsonschema-rs) read alike.
_CONTROL_CLASS = "".join(
    f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in _CONTROL_RANGES
)

#: A regular expression (JSON Schema / ECMA) matching an allowed display
#: text; the OpenAPI document's ``pattern`` for ``display_name``.
DISPLAY_TEXT_PATTERN = f"^[^{_CONTROL_CLASS}]*$"

_CONTROL = re.compile(f"[{_CONTROL_CLASS}]")


def refuse_control_characters(name: str, value: str | None) -> None:
    """Refuse a display text holding control characters.

    Args:
        name: The field, for the error's ``path`` (``display_name``).
        value: The text; None passes.

    Raises:
        InvalidInputError: A C0/C1 control, a soft hyphen, a line or
            paragraph separator, or a zero-width, bidi or invisible
            formatting control (the class of :data:`DISPLAY_TEXT_PATTERN`;
            ``path`` is ``name``).
    """
    if value is None:
        return
    found = _CONTROL.search(value)
    if found is not None:
        raise InvalidInputError(
            f"{name} must not hold control characters "
            f"(found U+{ord(found.group()):04X})",
            path=name,
        )


async def read_body(cls: type[T], *, optional: bool = False) -> T:
    """Parse and validate the request's JSON body as ``cls``.

    Args:
        cls: An attrs class; the body must have exactly its fields, with
            exact JSON types.
        optional: Whether an empty body means ``cls()``.

    Raises:
        InvalidJSONError: The body is not JSON, repeats a key or nests too
            deep (:func:`parse_json`).
        InvalidInputError: Wrong fields or types, or a lone surrogate;
            ``path`` names the field as the embedded Runtime does (``text``,
            nested ``a.b``, ``a[0]``), ``$`` for the body as a whole.
    """
    data = await request.get_data(cache=False)
    if optional and not data.strip():
        return cls()
    value = parse_json(data)
    if not isinstance(value, dict):
        raise InvalidInputError("the request body must be a JSON object", path="$")
    try:
        return _requests.structure(value, cls)
    except Exception as exc:
        problems = [
            _field_path(problem) for problem in cattrs.transform_error(exc, path="$")
        ]
        path = problems[0].rpartition(" @ ")[2] if problems else "$"
        raise InvalidInputError("; ".join(problems), path=path) from None


def _field_path(text: str) -> str:
    """A cattrs problem (``"... @ $.a[0]"``) naming its field as the embedded
    Runtime does (``"... @ a[0]"``); the body itself stays ``$``."""
    head, at, path = text.rpartition(" @ ")
    return f"{head}{at}{path.removeprefix('$.')}" if at else text


def query_int(name: str) -> int | None:
    """The query parameter ``name`` of the request or WebSocket, as an int.

    Returns:
        None when it is absent.

    Raises:
        InvalidInputError: It is not a non-negative integer of at most 18
            digits (``path`` is ``name``).
    """
    args = websocket.args if has_websocket_context() else request.args
    raw = args.get(name)
    if raw is None:
        return None
    value = parse_count(raw)
    if value is None:
        raise InvalidInputError(f"{name} must be a non-negative integer", path=name)
    return value
