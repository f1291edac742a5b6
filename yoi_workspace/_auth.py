"""Who a browser request comes from: the workspace's authentication modes.

The ``[auth]`` table of the config picks one (``docs/security.md``):

- ``none``: nobody is asked; every request is the caller ``local``. Only on
  a loopback bind (the backend refuses to start otherwise).
- ``token``: each request carries ``Authorization: Bearer TOKEN`` or the
  session cookie that ``POST /api/session`` gave in exchange for a token.
  Tokens are read once at start from secret references (a file or an
  environment variable), each mapped to a caller and roles.
- ``proxy``: an authenticating reverse proxy names the caller and roles in
  headers; they are believed only from the proxy (its shared-secret header,
  or a configured proxy address), and a repeated identity header is refused.

Nothing here knows HTTP frameworks: :class:`Authenticator` takes header
lists and addresses and answers a :class:`~yoi_workspace.Caller` or raises.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from typing import Literal

import attrs
import trio

from yoi_runtime import InvalidInputError, UnauthorizedError

from ._policy import ANONYMOUS, Caller
from ._secrets import SecretRef

__all__ = [
    "LOCAL",
    "MIN_TOKEN_LENGTH",
    "SESSION_COOKIE",
    "AuthConfig",
    "Authenticator",
    "TokenConfig",
]

#: The caller of every request in ``none`` mode.
LOCAL = Caller("local")

#: The shortest token accepted on a non-loopback bind, in characters.
MIN_TOKEN_LENGTH = 32

#: The session cookie's name.
SESSION_COOKIE = "yoi_session"

#: The longest caller id or role list taken from the proxy's headers.
_MAX_HEADER = 256


@attrs.frozen
class TokenConfig:
    """One ``[[auth.tokens]]`` entry: a token and whom it stands for.

    Attributes:
        caller: The caller id its requests get.
        roles: Their roles.
        token_env: The environment variable holding the token, or
        token_file: the file holding it (relative to the config file).
    """

    caller: str
    roles: tuple[str, ...] = ()
    token_env: str | None = None
    token_file: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class AuthConfig:
    """The ``[auth]`` table.

    Attributes:
        mode: ``"none"``, ``"token"`` or ``"proxy"``.
        tokens: ``token`` mode's tokens.
        session_ttl: Seconds a session cookie is valid.
        max_sessions: Sessions kept at once; the oldest goes first.
        proxy_secret_env: ``proxy`` mode: the variable holding the secret
            the proxy sends in ``proxy_secret_header``, or
        proxy_secret_file: the file holding it.
        proxy_secret_header: The header carrying that secret.
        trusted_proxies: ``proxy`` mode: peer addresses whose identity
            headers are believed without the secret.
    """

    mode: Literal["none", "token", "proxy"] = "none"
    tokens: tuple[TokenConfig, ...] = ()
    session_ttl: float = 12 * 3600.0
    max_sessions: int = 10_000
    proxy_secret_env: str | None = None
    proxy_secret_file: str | None = attrs.field(default=None, repr=False)
    proxy_secret_header: str = "X-Yoi-Proxy-Secret"
    trusted_proxies: tuple[str, ...] = ()


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


@attrs.define(eq=False)
class Authenticator:
    """Decides the caller of each request (see the module docstring).

    Build it with :meth:`none`, :meth:`with_tokens` or :meth:`behind_proxy`
    (or :meth:`from_config`). Headers are ``(name, value)`` pairs as
    received, names in any case.

    Attributes:
        mode: ``"none"``, ``"token"`` or ``"proxy"``.
    """

    mode: Literal["none", "token", "proxy"]
    _tokens: tuple[tuple[bytes, Caller], ...] = ()
    _proxy_secret: bytes | None = attrs.field(default=None, repr=False)
    _proxy_secret_header: str = "x-yoi-proxy-secret"
    _trusted_proxies: frozenset[str] = frozenset()
    caller_header: str = "X-Yoi-Caller"
    roles_header: str = "X-Yoi-Roles"
    session_ttl: float = 12 * 3600.0
    max_sessions: int = 10_000
    _sessions: dict[bytes, tuple[Caller, float]] = attrs.field(factory=dict)

    @classmethod
    def none(cls) -> Authenticator:
        """Every request is :data:`LOCAL` (loopback binds only)."""
        return cls("none")

    @classmethod
    def with_tokens(
        cls,
        tokens: dict[str, Caller],
        *,
        session_ttl: float = 12 * 3600.0,
        max_sessions: int = 10_000,
    ) -> Authenticator:
        """``token`` mode with these tokens (token -> caller)."""
        pairs = tuple((_digest(t), c) for t, c in tokens.items())
        return cls("token", pairs, session_ttl=session_ttl, max_sessions=max_sessions)

    @classmethod
    def behind_proxy(
        cls,
        *,
        secret: str | None = None,
        secret_header: str = "X-Yoi-Proxy-Secret",
        trusted_proxies: Sequence[str] = (),
        caller_header: str = "X-Yoi-Caller",
        roles_header: str = "X-Yoi-Roles",
    ) -> Authenticator:
        """``proxy`` mode: identity headers believed with ``secret`` in
        ``secret_header`` or from a ``trusted_proxies`` address."""
        return cls(
            "proxy",
            proxy_secret=None if secret is None else _digest(secret),
            proxy_secret_header=secret_header.lower(),
            trusted_proxies=frozenset(trusted_proxies),
            caller_header=caller_header,
            roles_header=roles_header,
        )

    @classmethod
    def from_config(
        cls,
        config: AuthConfig,
        resolve: dict[str, SecretRef],
        *,
        caller_header: str = "X-Yoi-Caller",
        roles_header: str = "X-Yoi-Roles",
        min_token_length: int = 0,
    ) -> Authenticator:
        """Build from the ``[auth]`` table, reading its secrets now.

        Args:
            config: The table.
            resolve: The secret reference of each token (by
                ``"tokens[i]"``) and of the proxy secret (``"proxy"``).
            caller_header: ``proxy`` mode's caller header.
            roles_header: ``proxy`` mode's roles header.
            min_token_length: Refuse shorter tokens and proxy secrets
                (characters; :data:`MIN_TOKEN_LENGTH` on a public bind).

        Raises:
            InvalidInputError: A secret cannot be read, is too short, or two
                entries share a token; ``path`` names the entry
                (``auth.tokens[0]``), the message never the value.
        """
        if config.mode == "none":
            return cls.none()
        if config.mode == "token":
            tokens: dict[str, Caller] = {}
            for index, entry in enumerate(config.tokens):
                key = f"tokens[{index}]"
                value = _read(resolve[key], key, min_token_length)
                if value in tokens:
                    raise InvalidInputError(
                        "two token entries share a token", path=f"auth.{key}"
                    )
                tokens[value] = Caller(entry.caller, frozenset(entry.roles))
            return cls.with_tokens(
                tokens,
                session_ttl=config.session_ttl,
                max_sessions=config.max_sessions,
            )
        secret = None
        if "proxy" in resolve:
            secret = _read(resolve["proxy"], "proxy_secret", min_token_length)
        return cls.behind_proxy(
            secret=secret,
            secret_header=config.proxy_secret_header,
            trusted_proxies=config.trusted_proxies,
            caller_header=caller_header,
            roles_header=roles_header,
        )

    # -- requests ---------------------------------------------------------------

    def authenticate(
        self,
        headers: Sequence[tuple[str, str]],
        cookies: dict[str, str],
        client_host: str | None,
    ) -> Caller:
        """The caller of one request.

        Args:
            headers: The request's headers.
            cookies: Its cookies (the session cookie is read in ``token``
                mode).
            client_host: The peer's address (``proxy`` mode).

        Raises:
            UnauthorizedError: No valid token or session (``token``), or
                a request not from the proxy (``proxy``; one from the proxy
                that names no caller is ``anonymous``).
            InvalidInputError: A repeated or malformed identity header.
        """
        if self.mode == "none":
            return LOCAL
        if self.mode == "token":
            caller = self._bearer(headers) or self._session(cookies)
            if caller is None:
                raise UnauthorizedError(
                    "sign in: send a bearer token or the session cookie"
                )
            return caller
        return self._proxied(headers, client_host)

    def open_session(self, headers: Sequence[tuple[str, str]]) -> tuple[str, Caller]:
        """Exchange the request's bearer token for a session id.

        Returns:
            The new session id (the cookie's value) and its caller.

        Raises:
            UnauthorizedError: Not ``token`` mode, or no valid bearer token.
        """
        caller = self._bearer(headers) if self.mode == "token" else None
        if caller is None:
            raise UnauthorizedError("a session needs a valid bearer token")
        while len(self._sessions) >= self.max_sessions:
            del self._sessions[next(iter(self._sessions))]
        session = secrets.token_urlsafe(32)
        expires = trio.current_time() + self.session_ttl
        self._sessions[_digest(session)] = (caller, expires)
        return session, caller

    def close_session(self, cookies: dict[str, str]) -> None:
        """Forget the request's session, if it has one."""
        value = cookies.get(SESSION_COOKIE)
        if value is not None:
            self._sessions.pop(_digest(value), None)

    def _bearer(self, headers: Sequence[tuple[str, str]]) -> Caller | None:
        given = [v for k, v in headers if k.lower() == "authorization"]
        if len(given) != 1 or not given[0].startswith("Bearer "):
            return None
        digest = _digest(given[0].removeprefix("Bearer ").strip())
        found = None
        for expected, caller in self._tokens:  # every entry: constant time
            if hmac.compare_digest(digest, expected):
                found = caller
        return found

    def _session(self, cookies: dict[str, str]) -> Caller | None:
        value = cookies.get(SESSION_COOKIE)
        if value is None:
            return None
        key = _digest(value)
        entry = self._sessions.get(key)
        if entry is None:
            return None
        caller, expires = entry
        if trio.current_time() >= expires:
            del self._sessions[key]
            return None
        return caller

    def _proxied(
        self, headers: Sequence[tuple[str, str]], client_host: str | None
    ) -> Caller:
        trusted = client_host is not None and client_host in self._trusted_proxies
        if not trusted and self._proxy_secret is not None:
            given = [v for k, v in headers if k.lower() == self._proxy_secret_header]
            trusted = len(given) == 1 and hmac.compare_digest(
                _digest(given[0]), self._proxy_secret
            )
        if not trusted:
            raise UnauthorizedError("the request did not come through the proxy")
        values = {}
        for name in (self.caller_header, self.roles_header):
            found = [v for k, v in headers if k.lower() == name.lower()]
            if len(found) > 1:
                raise InvalidInputError(f"repeated {name} header", path=name)
            value = found[0].strip() if found else ""
            if len(value) > _MAX_HEADER or not value.isprintable():
                raise InvalidInputError(f"malformed {name} header", path=name)
            values[name] = value
        caller_id = values[self.caller_header]
        if not caller_id:
            return ANONYMOUS
        roles = values[self.roles_header].split(",")
        return Caller(caller_id, frozenset(r.strip() for r in roles if r.strip()))


def _read(ref: SecretRef, key: str, min_length: int) -> str:
    try:
        value = ref.resolve()
    except InvalidInputError as exc:
        raise InvalidInputError(exc.message, path=f"auth.{key}") from None
    if len(value) < min_length:
        raise InvalidInputError(
            f"the secret is shorter than {min_length} characters", path=f"auth.{key}"
        )
    return value
