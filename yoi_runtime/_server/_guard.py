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

import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import attrs
import trio

from ..serving._streams import wants_event_stream

__all__ = [
    "EARLY_ANSWER_BYTES",
    "EARLY_ANSWER_WAIT",
    "LOOPBACK_HOSTS",
    "POLICY_VIOLATION",
    "ASGIApp",
    "GuardSettings",
    "GuardedApp",
    "refusal_bytes",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: An ASGI app (Quart's own signature is narrower than these aliases).
ASGIApp = Callable[..., Awaitable[None]]

#: Host names that always reach this machine only.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

#: Methods that change nothing (no Origin check).
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: The WebSocket close code sent when a client sends a data frame.
POLICY_VIOLATION = 1008

#: What every HTTP response carries besides the CSP.
_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)

#: Request headers a CORS preflight may ask for.
_CORS_HEADERS = b"authorization, content-type, idempotency-key"

#: Seconds an early answer waits for the rest of the request body.
EARLY_ANSWER_WAIT = 1.0

#: Bytes of request body still to come up to which an early answer waits
#: for them; a longer rest is not awaited (the close lingers instead).
EARLY_ANSWER_BYTES = 65536


@attrs.frozen
class GuardSettings:
    """What :class:`GuardedApp` allows.

    Attributes:
        allowed_hosts: Host names (lower case, no port, IPv6 without
            brackets) a request's ``Host`` may name; ``"*"`` allows any.
        any_ip_host: Also allow any IP literal (the server listens on a
            wildcard address, so every address of the machine reaches it; a
            literal address cannot be rebound by DNS).
        allowed_origins: Origins (``"https://ui.example"``, lower case, no
            trailing slash) allowed to send state-changing requests and
            open WebSockets.
        same_origin: Also allow the origin of the server itself, that is an
            ``http``/``https`` origin whose host and port are the request's
            ``Host`` (the workspace's own pages).
        cors_origins: Origins that get CORS headers (and preflight answers);
            they are allowed origins too. Empty: no CORS at all.
        content_security_policy: The ``Content-Security-Policy`` of every
            response.
    """

    allowed_hosts: frozenset[str] = LOOPBACK_HOSTS
    any_ip_host: bool = False
    allowed_origins: frozenset[str] = frozenset()
    same_origin: bool = False
    cors_origins: frozenset[str] = frozenset()
    content_security_policy: str = "default-src 'none'; frame-ancestors 'none'"

    @classmethod
    def for_bind(
        cls,
        host: str,
        *,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
        same_origin: bool = False,
        cors_origins: Iterable[str] = (),
        content_security_policy: str | None = None,
    ) -> GuardSettings:
        """The settings of a server bound to ``host``.

        Args:
            host: The bind address (``127.0.0.1``, ``0.0.0.0``, a name).
            allowed_hosts: Extra host names (a port, if given, is ignored;
                ``"*"`` allows any).
            allowed_origins: Extra allowed origins.
            same_origin: Allow the server's own origin.
            cors_origins: Origins that get CORS headers.
            content_security_policy: None keeps the default.

        Returns:
            Loopback names, the bind address and ``allowed_hosts``; a
            wildcard bind (``0.0.0.0``, ``::``) also allows IP literals.
        """
        bind = host.strip("[]").lower()
        wildcard = bind in {"0.0.0.0", "::", ""}
        hosts = set(LOOPBACK_HOSTS)
        if not wildcard:
            hosts.add(bind)
        for name in allowed_hosts:
            parsed = "*" if name == "*" else _parse_host(name.lower())
            if parsed is not None:
                hosts.add(parsed)
        extra: dict[str, Any] = {}
        if content_security_policy is not None:
            extra["content_security_policy"] = content_security_policy
        return cls(
            allowed_hosts=frozenset(hosts),
            any_ip_host=wildcard,
            allowed_origins=frozenset(_origin(o) for o in allowed_origins),
            same_origin=same_origin,
            cors_origins=frozenset(_origin(o) for o in cors_origins),
            **extra,
        )

    def host_allowed(self, host: str) -> bool:
        """Whether a parsed ``Host`` name is allowed."""
        if "*" in self.allowed_hosts or host in self.allowed_hosts:
            return True
        if self.any_ip_host:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                return False
            return True
        return False


def _origin(value: str) -> str:
    return value.strip().rstrip("/").lower()


def _parse_host(value: str) -> str | None:
    """The host name of a ``Host`` header (lower case, no port), or None
    when it is malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
        return name
    name, sep, port = value.partition(":")
    if sep and not (port.isascii() and port.isdigit()):
        return None
    name = name.rstrip(".")
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-.")
    if not name or not set(name) <= allowed:
        return None
    return name


def _headers(scope: Scope, name: bytes) -> list[bytes]:
    return [value for key, value in scope["headers"] if key.lower() == name]


def _error_body(status_code: str, message: str) -> bytes:
    error = {"code": status_code, "message": message, "details": {}}
    return json.dumps({"error": error}).encode()


def refusal_bytes(status: int, reason: str, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 response that refuses and closes, as raw bytes.

    For answers made below HTTP parsing (the connection cap): the JSON
    error envelope, ``Connection: close`` and the security headers.
    """
    body = _error_body(code, message)
    head = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        "retry-after: 1",
        *(f"{k.decode()}: {v.decode()}" for k, v in _SECURITY_HEADERS),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


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
        hosts = _headers(scope, b"host")
        if len(hosts) != 1:
            return 400, "invalid_host", "the request needs exactly one Host header"
        host = _parse_host(hosts[0].decode("latin-1"))
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
            origins = _headers(scope, b"origin")
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
        origin = _origin(raw.decode("latin-1"))
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
        types = _headers(scope, b"content-type")
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
            *_SECURITY_HEADERS,
            (
                b"content-security-policy",
                self.settings.content_security_policy.encode(),
            ),
        ]
        origins = _headers(scope, b"origin")
        if len(origins) == 1:
            origin = _origin(origins[0].decode("latin-1"))
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
            body = _error_body(code, message)
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
        origins = _headers(scope, b"origin")
        return (
            len(origins) == 1
            and _origin(origins[0].decode("latin-1")) in self.settings.cors_origins
            and bool(_headers(scope, b"access-control-request-method"))
        )

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope)
        if refusal is not None:
            status, code, message = refusal
            body = _error_body(code, message)
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
    lengths = _headers(scope, b"content-length")
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
    accept = [value.decode("latin-1") for value in _headers(scope, b"accept")]
    return wants_event_stream(accept)


def _has_body(scope: Scope) -> bool:
    if _headers(scope, b"transfer-encoding"):
        return True
    lengths = _headers(scope, b"content-length")
    return any(value.strip() not in {b"0", b""} for value in lengths)


async def _send_shielded(send: Send, message: Message) -> None:
    with trio.CancelScope(shield=True):
        await send(message)
