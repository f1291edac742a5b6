"""The remote handle: a ``yoi-runtime`` process reached through its client.

:func:`open_remote_handle` gives a :class:`RemoteRuntimeHandle` built from
config-like data (:class:`RemoteRuntimeConfig`): the one handle adapter
(``yoi_workspace._handle.RuntimeAdapter``) over a :class:`ReconnectingRuntime`,
a :class:`yoi_runtime.RuntimeAPI` wrapping the process's
:class:`~yoi_runtime.client.RuntimeClient` in the lifecycle below. Opening
never touches the network, so the backend starts even while a remote
Runtime is down.

Connection lifecycle (``yoi_workspace._remote_connection`` has the details):

- **Lazy connect.** The first call opens the client and checks the process
  (``GET /v1/runtime``) within ``connect_timeout`` seconds; concurrent calls
  share one attempt, so every call on an unreachable process fails within
  about ``connect_timeout`` seconds.
- **Discard on failure.** A call failing with ``RuntimeUnavailableError``
  or ``UnauthorizedError`` retires the client and the next call reconnects,
  so a process that comes back is used again without restarting the
  backend.
- **Token rotation.** A call (or stream opening) whose token is refused
  runs once more on a new connection, with the token read again: a process
  restarted with a rotated token is used by the very next call. Only a
  second refusal raises ``UnauthorizedError``.
- **Identity.** The process must serve the Runtime ``config.runtime_id``
  names. A process reporting another id (checked on connect, on every
  summary, so by ``describe``, and on every Worker it returns) is treated
  as unavailable, with an error saying so: the handle never routes to the
  wrong Runtime.
- **Cache.** The last summary seen (on connect and by ``describe``) is kept;
  while the process is down ``describe`` returns ``status="unavailable"``
  with the cached version, capabilities and Worker counts, and
  ``capabilities()`` answers from it.

Event streams are ``yoi_workspace._remote_stream``.

Secrecy: the URL and the token never appear in a returned value, an
exception message, a ``repr`` or a log line. Errors are restated with the
URL scrubbed and without their cause chain (an ``httpx`` error's request
carries the URL).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import attrs
import httpx

import yoi_runtime
from yoi_runtime import (
    Capabilities,
    InvalidInputError,
    RuntimeAPI,
    RuntimeSummary,
    RuntimeUnavailableError,
    WorkerPage,
    WorkerSummary,
)
from yoi_runtime.client import RuntimeClient

from ._handle import RuntimeAdapter
from ._remote_connection import Connector
from ._remote_stream import RemoteEventStream
from ._secrets import SecretRef
from ._views import RuntimeKind

__all__ = [
    "ReconnectingRuntime",
    "RemoteRuntimeConfig",
    "RemoteRuntimeHandle",
    "open_remote_handle",
]

P = ParamSpec("P")
R = TypeVar("R")


def _check_url(config: RemoteRuntimeConfig, attribute: object, url: str) -> None:
    try:
        parsed: httpx.URL | None = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        # Never echo the value: it is the URL.
        raise InvalidInputError("url must look like http://HOST:PORT", path="url")


def _check_seconds(config: RemoteRuntimeConfig, attribute: Any, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(
            f"{attribute.name} must be a number", path=attribute.name
        )
    if not (value > 0 and math.isfinite(value)):
        raise InvalidInputError(
            f"{attribute.name} must be a positive number of seconds",
            path=attribute.name,
        )


@attrs.frozen
class RemoteRuntimeConfig:
    """How to reach one ``yoi-runtime`` process (config-like data).

    Attributes:
        runtime_id: The id the registry routes by; the process must report
            the same id (its config's ``runtime_id`` or ``--runtime-id``).
        url: The process's root URL, ``http(s)://HOST:PORT``. Never shown
            (hidden from the ``repr``, scrubbed from messages).
        token: Where the bearer token is read from, or None for a loopback
            process without one. Resolved on each connect (so also before
            the retry of a call whose token was refused).
        connect_timeout: Seconds one connect attempt (TCP connect plus the
            ``GET /v1/runtime`` probe) may take; also the time an operation
            on a process that is down takes to fail.
        request_timeout: Seconds a command on a live connection may wait
            for its response (``cancel`` and ``stop`` wait for the turn to
            end).
        reconnect_timeout: Seconds a broken event stream keeps reconnecting
            before raising ``RuntimeUnavailableError``.

    Raises:
        InvalidInputError: (when built) ``url`` is not an ``http(s)`` URL, or
            a timeout is not a positive number; the message never holds the
            URL.
    """

    runtime_id: str
    url: str = attrs.field(repr=False, validator=_check_url)
    token: SecretRef | None = None
    connect_timeout: float = attrs.field(default=2.0, validator=_check_seconds)
    request_timeout: float = attrs.field(default=30.0, validator=_check_seconds)
    reconnect_timeout: float = attrs.field(default=10.0, validator=_check_seconds)


def _through(
    operation: Callable[Concatenate[RuntimeClient, P], Coroutine[Any, Any, R]],
    check: Callable[[Connector, R], None] | None = None,
) -> Callable[Concatenate[ReconnectingRuntime, P], Coroutine[Any, Any, R]]:
    """A method running ``operation`` on the live client (module docstring:
    lazy connect, discard on failure, token rotation, scrubbed errors),
    then ``check`` on what it returned."""

    async def through(
        self: ReconnectingRuntime, /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        connector = self._connector
        result = await connector.call(lambda client: operation(client, *args, **kwargs))
        if check is not None:
            check(connector, result)
        return result

    through.__signature__ = inspect.signature(operation)  # type: ignore[attr-defined]
    through.__name__ = through.__qualname__ = operation.__name__
    through.__doc__ = f"See :meth:`yoi_runtime.RuntimeAPI.{operation.__name__}`."
    return through


def _its_worker(connector: Connector, worker: WorkerSummary) -> None:
    """Refuse a Worker of another Runtime (a replaced process)."""
    connector.check_runtime(worker.runtime_id)


def _its_workers(connector: Connector, page: WorkerPage) -> None:
    for worker in page.items:
        connector.check_runtime(worker.runtime_id)


def _its_summary(connector: Connector, summary: RuntimeSummary) -> None:
    """Refuse another Runtime's summary; keep this one's for ``describe``."""
    connector.check_runtime(summary.runtime_id)
    connector.last_summary = summary


class ReconnectingRuntime:
    """A :class:`yoi_runtime.RuntimeAPI` over a ``yoi-runtime`` process that
    reconnects: a :class:`~yoi_runtime.client.RuntimeClient` opened lazily,
    retired when it breaks, reopened with the token read again, and checked
    to serve ``config.runtime_id`` (see the module docstring).

    Errors: every ``async`` method raises
    :class:`~yoi_runtime.RuntimeUnavailableError` when the process cannot
    be reached within ``connect_timeout`` seconds (or a live connection
    within ``request_timeout``), is draining, serves another Runtime, or
    the token cannot be read; :class:`~yoi_runtime.UnauthorizedError` when
    it refuses the token (twice: a refused call is retried once with the
    token read again); :class:`~yoi_runtime.InternalError` when it fails
    (HTTP 500) or answers something malformed. The Worker errors
    (``WorkerNotFoundError``, ``WorkerBusyError`` with its details, ...)
    pass through as the process raised them.

    Args:
        config: Where the process is and how to authenticate.
    """

    def __init__(self, config: RemoteRuntimeConfig) -> None:
        self._connector = Connector(config)

    def __repr__(self) -> str:
        return (
            f"ReconnectingRuntime(runtime_id={self.runtime_id!r}, "
            f"connected={self._connector.connected}, "
            f"closed={self._connector.closed})"
        )

    @property
    def runtime_id(self) -> str:
        """``config.runtime_id``: the id the process must report."""
        return self._connector.runtime_id

    @property
    def last_summary(self) -> RuntimeSummary | None:
        """The last summary seen (on connect, or by :meth:`summary`); None
        if the process was never reached."""
        return self._connector.last_summary

    create_worker = _through(RuntimeClient.create_worker, _its_worker)
    send_input = _through(RuntimeClient.send_input)
    cancel = _through(RuntimeClient.cancel)
    stop = _through(RuntimeClient.stop, _its_worker)
    ask = yoi_runtime.ask
    open_turn = yoi_runtime.open_turn
    get_worker = _through(RuntimeClient.get_worker, _its_worker)
    list_workers = _through(RuntimeClient.list_workers, _its_workers)
    transcript = _through(RuntimeClient.transcript)
    summary = _through(RuntimeClient.summary, _its_summary)
    diagnostics = _through(RuntimeClient.diagnostics)
    usage = _through(RuntimeClient.usage)

    def capabilities(self) -> Capabilities:
        """See :meth:`yoi_runtime.RuntimeAPI.capabilities`: as the process
        reported them last (on connect, or in :meth:`summary`).

        Raises:
            RuntimeUnavailableError: The process was never reached.
        """
        summary = self._connector.last_summary
        if summary is None:
            raise RuntimeUnavailableError(
                f"runtime {self.runtime_id}: not reached yet, capabilities unknown"
            )
        return summary.capabilities

    def subscribe(
        self, worker_id: str | None = None, *, after: int | None = None
    ) -> RemoteEventStream:
        """See :meth:`yoi_runtime.RuntimeAPI.subscribe`.

        Nothing happens until the stream is entered; entering connects (as
        any call does) and raises ``RuntimeUnavailableError`` when the
        process is down. Once open, the stream reconnects by itself for
        ``reconnect_timeout`` seconds (see
        :class:`yoi_runtime.client.RemoteSubscription`).
        """
        return RemoteEventStream(self._connector, worker_id, after)

    async def aclose(self) -> None:
        """Close the client (once streams using it are done); idempotent.

        Later calls raise ``RuntimeUnavailableError``.
        """
        await self._connector.aclose()


class RemoteRuntimeHandle(RuntimeAdapter):
    """The adapter on a :class:`ReconnectingRuntime`: a Runtime in a
    ``yoi-runtime`` process.

    Get one from :func:`open_remote_handle`; see the module docstring for how
    it connects, reconnects and caches, and :class:`ReconnectingRuntime` for
    its errors. Worker projections have kind ``remote``; ``describe``
    reports a process that is down as ``status="unavailable"`` with the
    cached version, capabilities and Worker counts, and ``error`` saying
    why (unreachable, refused token, another Runtime, ...), without URL or
    token. :meth:`aclose` closes the client (once streams using it are
    done); later calls raise ``RuntimeUnavailableError``.

    Args:
        config: Where the process is and how to authenticate.
    """

    def __init__(self, config: RemoteRuntimeConfig) -> None:
        api = ReconnectingRuntime(config)
        super().__init__(
            api,
            RuntimeKind.REMOTE,
            remembered=lambda: api.last_summary,
            on_close=api.aclose,
        )

    def __repr__(self) -> str:
        return repr(self.api).replace("ReconnectingRuntime", "RemoteRuntimeHandle", 1)


@asynccontextmanager
async def open_remote_handle(
    config: RemoteRuntimeConfig,
) -> AsyncIterator[RemoteRuntimeHandle]:
    """Open a handle on a ``yoi-runtime`` process, without connecting yet.

    Never fails because the process is down: the first call connects (see
    the module docstring).

    Args:
        config: Where the process is and how to authenticate.

    Yields:
        The :class:`RemoteRuntimeHandle`; its client is closed on exit.
    """
    handle = RemoteRuntimeHandle(config)
    try:
        yield handle
    finally:
        await handle.aclose()


if TYPE_CHECKING:

    def _reconnecting_is_api(api: ReconnectingRuntime) -> RuntimeAPI:
        """mypy proves the reconnecting client implements the API."""
        return api
