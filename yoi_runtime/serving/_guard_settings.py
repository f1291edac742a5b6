"""What :class:`~._guard.GuardedApp` allows, and the ASGI types it works on.

:class:`GuardSettings` holds the allowed hosts, origins and CORS origins and
the Content-Security-Policy (``docs/security.md``); :func:`refusal_bytes`
is the raw refusal the connection cap sends below HTTP parsing.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import attrs

__all__ = [
    "LOOPBACK_HOSTS",
    "SECURITY_HEADERS",
    "ASGIApp",
    "GuardSettings",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "error_body",
    "header_values",
    "normalize_origin",
    "parse_host",
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

#: What every HTTP response carries besides the CSP.
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)


@attrs.frozen
class GuardSettings:
    """What :class:`~._guard.GuardedApp` allows.

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
            parsed = "*" if name == "*" else parse_host(name.lower())
            if parsed is not None:
                hosts.add(parsed)
        extra: dict[str, Any] = {}
        if content_security_policy is not None:
            extra["content_security_policy"] = content_security_policy
        return cls(
            allowed_hosts=frozenset(hosts),
            any_ip_host=wildcard,
            allowed_origins=frozenset(normalize_origin(o) for o in allowed_origins),
            same_origin=same_origin,
            cors_origins=frozenset(normalize_origin(o) for o in cors_origins),
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


def normalize_origin(value: str) -> str:
    """An origin as compared: no surrounding space or trailing slash, lower case."""
    return value.strip().rstrip("/").lower()


def parse_host(value: str) -> str | None:
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


def header_values(scope: Scope, name: bytes) -> list[bytes]:
    """The values of the request header ``name`` (lower case bytes) in ``scope``."""
    return [value for key, value in scope["headers"] if key.lower() == name]


def error_body(status_code: str, message: str) -> bytes:
    """The JSON error envelope (``docs/protocol.md``) as bytes, no details."""
    error = {"code": status_code, "message": message, "details": {}}
    return json.dumps({"error": error}).encode()


def refusal_bytes(status: int, reason: str, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 response that refuses and closes, as raw bytes.

    For answers made below HTTP parsing (the connection cap): the JSON
    error envelope, ``Connection: close`` and the security headers.
    """
    body = error_body(code, message)
    head = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        "retry-after: 1",
        *(f"{k.decode()}: {v.decode()}" for k, v in SECURITY_HEADERS),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body
