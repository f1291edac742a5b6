"""Browser-facing rules and connection hygiene, as ASGI middleware.

Both servers wrap their Quart-Trio app in :class:`GuardedApp` (see
``docs/security.md``). Before the app sees a request it checks, in order:

1. **Host** (DNS rebinding): the ``Host`` header must name an allowed host
   (:class:`GuardSettings`); a missing, repeated or malformed one is
   ``400 invalid_host``, any other host ``421 host_not_allowed``.
2. **Origin** (cross-site requests): a WebSocket upgrade, an event
   stream asked as ``text/event-stream`` (the same stream), or a request
   with a method other than GET, HEAD and OPTIONS that carries an
   ``Origin`` header not allowed is ``403 origin_not_allowed``. A request
   without ``Origin`` is not a browser's cross-site one and passes.
3. **Content type**: a request with a body must say ``application/json``
   (charset, if given, UTF-8); anything else, or a ``Content-Type`` that is
   not JSON even on an empty body, is ``415 unsupported_media_type``.

Every HTTP response gets ``X-Content-Type-Options: nosniff``,
``Referrer-Policy: no-referrer``, ``Cache-Control: no-store`` and the
configured ``Content-Security-Policy``; ``Access-Control-*`` headers only for
the configured CORS origins. A response sent before the request body was
read in full (``413``, ``415``, ``401``, ...) carries ``Connection: close``.

**Early answers.** Before such a response starts, the rest of the body is
awaited (and discarded) for at most :data:`EARLY_ANSWER_WAIT` seconds when
at most :data:`EARLY_ANSWER_BYTES` of it are still to come. Hypercorn's
HTTP/1.1 parser (h11) refuses any byte that follows a request whose answer
said ``Connection: close``; when the client had pipelined one, Hypercorn
closed the connection from its reader task while the app was still
sending the answer, and the client lost it. With the body read first the
parser pauses instead, the answer goes out whole, and the connection is
closed after it (gracefully: ``_hypercorn.py``'s lingering close).

Two fixes of the stack live here too:

- **Keep-alive under Quart-Trio.** Hypercorn recycles an HTTP/1.1
  connection (start the idle timer, or close it for ``Connection: close``,
  HTTP/1.0 or an unread body) inside the ``send`` of the response's last
  body message. That same call hands the app ``http.disconnect``, on which
  Quart-Trio's receive task cancels the request's nursery, so the rest of
  the recycle is cancelled and the connection is never timed out nor
  closed. The last body message is therefore sent shielded.
- **WebSocket input.** Clients send nothing but control frames; the stack
  queues whatever data they send (Hypercorn's app queue, then Quart-Trio's,
  ten messages each) and nobody reads it. The first data message closes
  the connection with ``1008`` and ends the app's handler, so nothing is
  queued; Hypercorn's own limit (``MAX_WEBSOCKET_MESSAGE``) bounds what one
  message may buffer before that.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import attrs
import trio

from ._guard_settings import (
    SECURITY_HEADERS,
    ASGIApp,
    GuardSettings,
    Message,
    Receive,
    Scope,
    Send,
    error_body,
    header_values,
    normalize_origin,
    parse_host,
)
from ._streams import wants_event_stream

__all__ = [
    "EARLY_ANSWER_BYTES",
    "EARLY_ANSWER_WAIT",
    "POLICY_VIOLATION",
    "GuardedApp",
]

#: Methods that change nothing (no Origin check).
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: The WebSocket close code sent when a client sends a data frame.
POLICY_VIOLATION = 1008

#: Request headers a CORS preflight may ask for.
_CORS_HEADERS = b"authorization, content-type, idempotency-key"

#: Seconds an early answer waits for the rest of the request body.
EARLY_ANSWER_WAIT = 1.0

#: Bytes of request body still to come up to which an early answer waits
#: for them; a longer rest is not awaited (the close lingers instead).
EARLY_ANSWER_BYTES = 65536


@attrs.define(eq=False)
class GuardedApp:
    """An ASGI app behind the rules of the module docstring.

    Attributes:
        app: The app (a Quart-Trio app).
        settings: What is allowed.
    """

    app: ASGIApp
    settings: GuardSettings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        """The status, code and message refusing the request, or None."""
        hosts = header_values(scope, b"host")
        if len(hosts) != 1:
            return 400, "invalid_host", "the request needs exactly one Host header"
        host = parse_host(hosts[0].decode("latin-1"))
        if host is None:
            return 400, "invalid_host", "the Host header is malformed"
        if not self.settings.host_allowed(host):
            return 421, "host_not_allowed", "this server does not serve that host"
        websocket = scope["type"] == "websocket"
        if (
            websocket
            or scope["method"] not in _SAFE_METHODS
            or _wants_event_stream(scope)
        ):
            origins = header_values(scope, b"origin")
            if origins and not (
                len(origins) == 1 and self._origin_allowed(origins[0], hosts[0])
            ):
                return (
                    403,
                    "origin_not_allowed",
                    "requests from that origin are refused",
                )
        if not websocket and not self._content_type_ok(scope):
            return (
                415,
                "unsupported_media_type",
                "request bodies must be application/json",
            )
        return None

    def _origin_allowed(self, raw: bytes, host: bytes) -> bool:
        origin = normalize_origin(raw.decode("latin-1"))
        settings = self.settings
        if origin in settings.allowed_origins or origin in settings.cors_origins:
            return True
        if settings.same_origin:
            parts = urlsplit(origin)
            own = host.decode("latin-1").strip().lower()
            return parts.scheme in {"http", "https"} and parts.netloc == own
        return False

    @staticmethod
    def _content_type_ok(scope: Scope) -> bool:
        types = header_values(scope, b"content-type")
        if not types:
            return not _has_body(scope)
        if len(types) > 1:
            return False
        media, _, params = types[0].decode("latin-1").partition(";")
        if media.strip().lower() != "application/json":
            return False
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset":
                if value.strip().strip('"').lower() not in {"utf-8", "utf8"}:
                    return False
        return True

    def _extra_headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        headers = [
            *SECURITY_HEADERS,
            (
                b"content-security-policy",
                self.settings.content_security_policy.encode(),
            ),
        ]
        origins = header_values(scope, b"origin")
        if len(origins) == 1:
            origin = normalize_origin(origins[0].decode("latin-1"))
            if origin in self.settings.cors_origins:
                headers += [
                    (b"access-control-allow-origin", origin.encode()),
                    (b"vary", b"Origin"),
                ]
        return headers

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope)
        extra = self._extra_headers(scope)
        if refusal is not None:
            status, code, message = refusal
            body = error_body(code, message)
            await _discard_body(scope, receive)
            await _send_shielded(
                send,
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                        *extra,
                    ],
                },
            )
            await _send_shielded(send, {"type": "http.response.body", "body": body})
            return
        if self._is_preflight(scope):
            await _send_shielded(
                send,
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [
                        *extra,
                        (b"access-control-allow-methods", b"GET, POST"),
                        (b"access-control-allow-headers", _CORS_HEADERS),
                        (b"access-control-max-age", b"600"),
                    ],
                },
            )
            await _send_shielded(send, {"type": "http.response.body", "body": b""})
            return
        body_ended = trio.Event()  # read in full, or the peer left
        if not _has_body(scope):
            body_ended.set()
        received = 0

        async def tracked_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if not message.get("more_body"):
                    body_ended.set()
            else:
                body_ended.set()
            return message

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), *extra]
                if not body_ended.is_set():
                    headers.append((b"connection", b"close"))
                    # The app (Quart-Trio's message task) is still reading
                    # the body: let it finish first (module docstring).
                    if _body_left(scope, received) <= EARLY_ANSWER_BYTES:
                        with trio.move_on_after(EARLY_ANSWER_WAIT):
                            await body_ended.wait()
                message = {**message, "headers": headers}
            if message["type"] == "http.response.body" and not message.get("more_body"):
                await _send_shielded(send, message)
            else:
                await send(message)

        await self.app(scope, tracked_receive, guarded_send)

    def _is_preflight(self, scope: Scope) -> bool:
        if scope["method"] != "OPTIONS" or not self.settings.cors_origins:
            return False
        origins = header_values(scope, b"origin")
        return (
            len(origins) == 1
            and normalize_origin(origins[0].decode("latin-1"))
            in self.settings.cors_origins
            and bool(header_values(scope, b"access-control-request-method"))
        )

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope)
        if refusal is not None:
            status, code, message = refusal
            body = error_body(code, message)
            await _send_shielded(
                send,
                {
                    "type": "websocket.http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        *self._extra_headers(scope),
                    ],
                },
            )
            await _send_shielded(
                send, {"type": "websocket.http.response.body", "body": body}
            )
            return
        closed = False

        async def guarded_receive() -> Message:
            nonlocal closed
            message = await receive()
            if message["type"] != "websocket.receive":
                return message
            # Clients send nothing but control frames: close, and tell the
            # app the peer is gone so its handler ends and nothing queues.
            if not closed:
                closed = True
                await _send_shielded(
                    send,
                    {
                        "type": "websocket.close",
                        "code": POLICY_VIOLATION,
                        "reason": "clients send no data frames",
                    },
                )
            return {"type": "websocket.disconnect", "code": POLICY_VIOLATION}

        async def guarded_send(message: Message) -> None:
            nonlocal closed
            if closed:
                return  # the handler is being cancelled; the peer is told
            if message["type"] == "websocket.close":
                closed = True
            await send(message)

        await self.app(scope, guarded_receive, guarded_send)


def _body_left(scope: Scope, received: int) -> int:
    """Bytes of the request body still to come (0 when unknown: chunked)."""
    lengths = header_values(scope, b"content-length")
    try:
        declared = int(lengths[0]) if len(lengths) == 1 else 0
    except ValueError:
        declared = 0
    return max(0, declared - received)


async def _discard_body(scope: Scope, receive: Receive) -> None:
    """Read and drop the request body before a refusal (see the module
    docstring), for at most :data:`EARLY_ANSWER_WAIT` seconds and
    :data:`EARLY_ANSWER_BYTES` bytes."""
    if not _has_body(scope) or _body_left(scope, 0) > EARLY_ANSWER_BYTES:
        return
    left = EARLY_ANSWER_BYTES
    with trio.move_on_after(EARLY_ANSWER_WAIT):
        while left >= 0:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                return
            left -= len(message.get("body", b""))


def _wants_event_stream(scope: Scope) -> bool:
    """Whether the request asks for an SSE stream (``_sse.py``)."""
    accept = [value.decode("latin-1") for value in header_values(scope, b"accept")]
    return wants_event_stream(accept)


def _has_body(scope: Scope) -> bool:
    if header_values(scope, b"transfer-encoding"):
        return True
    lengths = header_values(scope, b"content-length")
    return any(value.strip() not in {b"0", b""} for value in lengths)


async def _send_shielded(send: Send, message: Message) -> None:
    with trio.CancelScope(shield=True):
        await send(message)
