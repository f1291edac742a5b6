"""The client of a ``yoi-runtime`` process: the Runtime API over HTTP.

:func:`open_runtime_client` opens a :class:`RuntimeClient`, which has the
embedded :class:`~yoi_runtime.Runtime`'s async operations and result types
(``docs/runtime.md``) and speaks ``docs/protocol.md``: commands over one
``httpx.AsyncClient``, subscriptions over WebSocket
(:class:`~yoi_runtime.client.RemoteSubscription`).
"""

from __future__ import annotations

import enum
import inspect
import string
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import quote

import attrs
import httpx

from .. import _ask
from .._api import EventStream, RuntimeAPI
from .._engines._base import Usage
from .._errors import InvalidInputError
from .._types import (
    CancelResult,
    Capabilities,
    Diagnostic,
    RuntimeSummary,
    TranscriptPage,
    TurnSummary,
    WorkerPage,
    WorkerSummary,
)
from ._subscription import RemoteSubscription, StreamTarget
from ._translate import decode_json, error_from_response, map_http_errors, structure

__all__ = ["RuntimeClient", "open_runtime_client"]

P = ParamSpec("P")
R = TypeVar("R")

#: The route of one Worker.
_WORKER = "/v1/workers/{worker_id}"


def _worker_path(worker_id: str, *rest: str) -> str:
    return "/".join(("/v1/workers", quote(str(worker_id), safe=""), *rest))


def _field(value: Any, key: str | None) -> Any:
    """Return ``value[key]`` of a response body (None when it is missing)."""
    if key is None:
        return value
    return value.get(key) if isinstance(value, dict) else None


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _json(value: object) -> object:
    """A value as ``httpx`` sends it (a sequence as a list, an enum as its
    value)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return value


def _route(
    operation: Callable[Concatenate[RuntimeAPI, P], Coroutine[Any, Any, R]],
    method: str,
    path: str,
    cls: type[R],
    key: str | None = None,
) -> Callable[Concatenate[RuntimeClient, P], Coroutine[Any, Any, R]]:
    """A client method sending ``operation`` as one HTTP request.

    The method has the operation's signature, so every argument of
    :class:`~yoi_runtime.RuntimeAPI` reaches the wire: the ones named in
    ``path`` (``{worker_id}``) go there, the others into the JSON body of a
    ``POST`` or the query of a ``GET`` (None left out).

    Args:
        operation: The API's operation (its name and signature are used).
        method: ``"GET"`` or ``"POST"``.
        path: The route, with ``{name}`` for arguments in the path.
        cls: What the answer (or its ``key``) is structured as.
        key: The member of the answer holding the result; None: all of it.
    """
    signature = inspect.signature(operation)
    extra = next(
        (p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD),
        None,
    )
    in_path = [name for _, name, _, _ in string.Formatter().parse(path) if name]

    async def request(self: RuntimeClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        del arguments["self"]
        if extra is not None:  # ``**options``: each key is an argument
            arguments.update(arguments.pop(extra, {}))
        values = {name: _json(value) for name, value in arguments.items()}
        where = path.format_map(
            {name: quote(str(values.pop(name)), safe="") for name in in_path}
        )
        if method == "GET":
            answer = await self._call(method, where, params=values)
        else:
            answer = await self._call(method, where, body=values)
        return structure(_field(answer, key), cls, f"{method} {where}")

    request.__signature__ = signature  # type: ignore[attr-defined]
    request.__name__ = request.__qualname__ = operation.__name__
    request.__doc__ = (
        f"See :meth:`RuntimeAPI.{operation.__name__}`; ``{method} {path}``."
    )
    return request


@attrs.define(eq=False)
class RuntimeClient:
    """A Runtime in a ``yoi-runtime`` process: a :class:`~yoi_runtime.RuntimeAPI`.

    Open one with :func:`open_runtime_client`. Every operation has the same
    name, arguments, result type and errors as on
    :class:`~yoi_runtime.Runtime` (mypy checks both against
    :class:`~yoi_runtime.RuntimeAPI`, which documents them), so code (and the
    conformance suite) runs against either.

    Errors: every method may raise :class:`RuntimeUnavailableError` (the
    process is unreachable, broke the connection, did not answer within
    ``request_timeout`` seconds, or is shutting down),
    :class:`UnauthorizedError` (the token was refused) and
    :class:`InternalError` (the process failed or answered something this
    client does not understand); the ones taking a ``worker_id`` raise
    :class:`WorkerNotFoundError` for an unknown one. The token never appears
    in a ``repr``, a message or a log line.

    Attributes:
        base_url: The process's root URL (``http://127.0.0.1:8765``).
    """

    base_url: str
    _http: httpx.AsyncClient = attrs.field(repr=False)
    _ws_headers: list[tuple[bytes, bytes]] = attrs.field(repr=False)
    _connect_timeout: float = attrs.field(repr=False)
    _reconnect_timeout: float = attrs.field(repr=False)
    _runtime_id: str = ""
    _capabilities: Capabilities | None = attrs.field(default=None, repr=False)

    @property
    def runtime_id(self) -> str:
        """See :attr:`RuntimeAPI.runtime_id`; read from the process when opened."""
        return self._runtime_id

    # -- transport ----------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send one command and return its decoded JSON body.

        Raises:
            YoiRuntimeError: The process answered an error (mapped by
                :func:`error_from_response`) or could not be reached.
        """
        what = f"{method} {path}"
        with map_http_errors(what):
            response = await self._http.request(
                method,
                path,
                params=None if params is None else _without_none(params),
                json=None if body is None else _without_none(body),
            )
        if not response.is_success:
            raise error_from_response(response.status_code, response.content)
        return decode_json(response.content, what)

    # -- the API's operations, each one HTTP route ------------------------------

    create_worker = _route(
        RuntimeAPI.create_worker, "POST", "/v1/workers", WorkerSummary, "worker"
    )
    send_input = _route(
        RuntimeAPI.send_input,
        "POST",
        _WORKER + "/input",
        TurnSummary,
        "turn",
    )
    cancel = _route(
        RuntimeAPI.cancel,
        "POST",
        _WORKER + "/cancel",
        CancelResult,
        "result",
    )
    stop = _route(RuntimeAPI.stop, "POST", _WORKER + "/stop", WorkerSummary, "worker")

    #: See :meth:`RuntimeAPI.ask`; the one implementation, over WebSocket here.
    ask = _ask.ask

    #: See :meth:`RuntimeAPI.open_turn`; the one implementation.
    open_turn = _ask.open_turn

    get_worker = _route(RuntimeAPI.get_worker, "GET", _WORKER, WorkerSummary, "worker")
    list_workers = _route(RuntimeAPI.list_workers, "GET", "/v1/workers", WorkerPage)
    transcript = _route(
        RuntimeAPI.transcript,
        "GET",
        _WORKER + "/transcript",
        TranscriptPage,
    )
    summary = _route(RuntimeAPI.summary, "GET", "/v1/runtime", RuntimeSummary)
    diagnostics = _route(
        RuntimeAPI.diagnostics,
        "GET",
        "/v1/diagnostics",
        tuple[Diagnostic, ...],
        "diagnostics",
    )

    def subscribe(
        self, worker_id: str | None = None, *, after: int | None = None
    ) -> RemoteSubscription:
        """See :meth:`RuntimeAPI.subscribe`; over WebSocket.

        Nothing is sent until the subscription is entered (``async with``);
        with ``after=None`` the position is read then.

        Returns:
            A :class:`RemoteSubscription` (replay, then live, without gap or
            duplicate, across reconnects for ``reconnect_timeout`` seconds).
        """
        path = "/v1/events" if worker_id is None else _worker_path(worker_id, "events")
        base = httpx.URL(self.base_url)
        tls = base.scheme == "https"

        async def current_position() -> int:
            if worker_id is None:
                return (await self.summary()).last_cursor
            return (await self.get_worker(worker_id)).last_seq

        target = StreamTarget(
            host=base.host,
            port=base.port or (443 if tls else 80),
            tls=tls,
            path=base.path.rstrip("/") + path,
            headers=self._ws_headers,
            runtime_id=self._runtime_id,
            worker_stream=worker_id is not None,
            current_position=current_position,
            connect_timeout=self._connect_timeout,
            reconnect_timeout=self._reconnect_timeout,
        )
        return RemoteSubscription(target, after)

    def capabilities(self) -> Capabilities:
        """See :meth:`RuntimeAPI.capabilities`.

        Returns:
            What the process reported in ``GET /v1/runtime`` when the client
            was opened (a Runtime's capabilities are fixed for its lifetime;
            a process restarted with another config is another client's
            business: reopen it). Never blocks.
        """
        if self._capabilities is None:  # pragma: no cover - set on opening
            raise RuntimeError("open the client with open_runtime_client")
        return self._capabilities

    async def usage(self) -> Usage:
        """See :meth:`RuntimeAPI.usage`; read from ``GET /v1/runtime``."""
        return (await self.summary()).usage


@asynccontextmanager
async def open_runtime_client(
    base_url: str,
    *,
    token: str | None = None,
    connect_timeout: float = 10.0,
    request_timeout: float = 30.0,
    reconnect_timeout: float = 30.0,
) -> AsyncIterator[RuntimeClient]:
    """Connect to a ``yoi-runtime`` process and check that it answers.

    Reads ``GET /v1/runtime`` before yielding, so an unreachable process or a
    refused token fails here rather than at the first command.

    Args:
        base_url: The process's root URL, ``http://HOST:PORT`` (or
            ``https://``), as its ``yoi-runtime listening on ...`` line says.
        token: The bearer token the process was started with, or None for a
            loopback process without one. Never shown in a repr or message.
        connect_timeout: Seconds allowed to open a TCP connection (and, for
            subscriptions, to complete the WebSocket handshake).
        request_timeout: Seconds a command may wait for the response's bytes.
            ``cancel`` and ``stop`` wait until the turn has ended, so keep it
            above the longest engine shutdown you expect.
        reconnect_timeout: Seconds a subscription whose connection broke keeps
            trying to reconnect before raising
            :class:`RuntimeUnavailableError`.

    Yields:
        A :class:`RuntimeClient`; its connections close on exit.

    Raises:
        InvalidInputError: ``base_url`` is not an ``http(s)://`` URL.
        RuntimeUnavailableError: The process cannot be reached or is shutting
            down.
        UnauthorizedError: The process refused the token (or needs one).
    """
    try:
        parsed = httpx.URL(base_url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInputError(
            "base_url must look like http://HOST:PORT", path="base_url"
        )
    base_url = base_url.rstrip("/")
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    timeout = httpx.Timeout(request_timeout, connect=connect_timeout)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=timeout
    ) as http:
        probe = RuntimeClient(
            base_url,
            http,
            [(name.encode(), value.encode()) for name, value in headers.items()],
            connect_timeout,
            reconnect_timeout,
        )
        summary = await probe.summary()
        yield attrs.evolve(
            probe,
            runtime_id=summary.runtime_id,
            capabilities=summary.capabilities,
        )


if TYPE_CHECKING:

    def _client_is_api(client: RuntimeClient) -> RuntimeAPI:
        """mypy proves the client implements the Runtime API."""
        return client

    def _subscription_is_stream(subscription: RemoteSubscription) -> EventStream:
        return subscription
