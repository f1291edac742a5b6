"""The remote handle: a ``yoi-runtime`` process reached through its client.

:func:`open_remote_handle` gives a :class:`RemoteRuntimeHandle` built from
config-like data (:class:`RemoteRuntimeConfig`). Opening never touches the
network, so the backend starts even while a remote Runtime is down.

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
  names. A process reporting another id (checked on connect, by
  :meth:`~RemoteRuntimeHandle.describe` and on every Worker it returns) is
  treated as unavailable, with an error saying so: the handle never routes
  to the wrong Runtime.
- **Cache.** The last summary seen (on connect and by ``describe``) is kept;
  while the process is down ``describe`` returns ``status="unavailable"``
  with the cached version, capabilities and Worker counts.

Event streams are ``yoi_workspace._remote_stream``.

Secrecy: the URL and the token never appear in a returned value, an
exception message, a ``repr`` or a log line. Errors are restated with the
URL scrubbed and without their cause chain (an ``httpx`` error's request
carries the URL).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx

from yoi_runtime import (
    CancelResult,
    Diagnostic,
    InvalidInputError,
    RuntimeSummary,
    TranscriptPage,
    TurnSummary,
    WorkerSummary,
    YoiRuntimeError,
)

from ._handle import EventStream
from ._remote_connection import Connector
from ._remote_stream import RemoteEventStream
from ._secrets import SecretRef
from ._views import RuntimeKind, RuntimeView, WorkerView, WorkerViewPage

__all__ = ["RemoteRuntimeConfig", "RemoteRuntimeHandle", "open_remote_handle"]


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


class RemoteRuntimeHandle:
    """A handle on a Runtime in a ``yoi-runtime`` process.

    Get one from :func:`open_remote_handle`; see the module docstring for how
    it connects, reconnects and caches. Worker projections have kind
    ``remote``.

    Errors: every ``async`` method but :meth:`describe` raises
    :class:`~yoi_runtime.RuntimeUnavailableError` when the process cannot
    be reached within ``connect_timeout`` seconds (or a live connection
    within ``request_timeout``), is draining, serves another Runtime, or
    the token cannot be read; :class:`~yoi_runtime.UnauthorizedError` when
    it refuses the token (twice: a refused call is retried once with the
    token read again); :class:`~yoi_runtime.InternalError` when it fails
    (HTTP 500) or answers something malformed. The Worker errors
    (``WorkerNotFoundError``, ``WorkerBusyError`` with its details, ...)
    pass through as the process raised them.
    """

    def __init__(self, config: RemoteRuntimeConfig) -> None:
        self._connector = Connector(config)

    def __repr__(self) -> str:
        return (
            f"RemoteRuntimeHandle(runtime_id={self.runtime_id!r}, "
            f"connected={self._connector.connected}, "
            f"closed={self._connector.closed})"
        )

    @property
    def runtime_id(self) -> str:
        return self._connector.runtime_id

    @property
    def kind(self) -> RuntimeKind:
        return RuntimeKind.REMOTE

    def _project(self, summary: WorkerSummary) -> WorkerView:
        self._connector.check_runtime(summary.runtime_id)
        return WorkerView.from_summary(summary, RuntimeKind.REMOTE)

    # -- the handle interface ----------------------------------------------

    async def describe(self) -> RuntimeView:
        """Return the Runtime's projection; never raises for a process that
        is down.

        Returns:
            The live summary's projection, or ``status="unavailable"`` with
            the cached version, capabilities and Worker counts (None and
            empty if never reached) and ``error`` saying why (unreachable,
            refused token, another Runtime, ...), without URL or token.
        """
        try:
            summary = await self._connector.call(lambda client: client.summary())
            self._connector.check_runtime(summary.runtime_id)
        except YoiRuntimeError as exc:
            cache = self._connector.last_summary
            return self._view(cache, "unavailable", exc.message)
        self._connector.last_summary = summary
        return self._view(summary, summary.status, None)

    def _view(
        self, summary: RuntimeSummary | None, status: str, error: str | None
    ) -> RuntimeView:
        return RuntimeView(
            runtime_id=self.runtime_id,
            kind=RuntimeKind.REMOTE,
            status=status,
            authority=True,
            version=None if summary is None else summary.version,
            protocol_version=None if summary is None else summary.protocol_version,
            capabilities=None if summary is None else summary.capabilities,
            workers={} if summary is None else dict(summary.workers),
            checked_at=datetime.datetime.now(datetime.UTC),
            error=error,
        )

    async def diagnostics(self) -> tuple[Diagnostic, ...]:
        return await self._connector.call(lambda client: client.diagnostics())

    async def list_workers(
        self,
        *,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> WorkerViewPage:
        page = await self._connector.call(
            lambda client: client.list_workers(
                status=status, limit=limit, cursor=cursor
            )
        )
        return WorkerViewPage(
            tuple(self._project(w) for w in page.workers), page.next_cursor
        )

    async def get_worker(self, worker_id: str) -> WorkerView:
        return self._project(
            await self._connector.call(lambda client: client.get_worker(worker_id))
        )

    async def create_worker(
        self,
        profile: str = "companion",
        *,
        display_name: str | None = None,
        engine: str | None = None,
        system_prompt: str | None = None,
        worker_id: str | None = None,
        scopes: Sequence[str] | None = None,
    ) -> WorkerView:
        """Create a Worker in the process (``POST /v1/workers``), passing
        every argument on, ``scopes`` included.

        Raises:
            ScopeConflictError: A live Worker of that process holds one of
                ``scopes``.
        """
        summary = await self._connector.call(
            lambda client: client.create_worker(
                profile,
                display_name=display_name,
                engine=engine,
                system_prompt=system_prompt,
                worker_id=worker_id,
                scopes=scopes,
            )
        )
        return self._project(summary)

    async def send_input(
        self, worker_id: str, text: str, *, input_id: str | None = None
    ) -> TurnSummary:
        return await self._connector.call(
            lambda client: client.send_input(worker_id, text, input_id=input_id)
        )

    async def cancel(
        self, worker_id: str, *, turn_id: str | None = None, reason: str | None = None
    ) -> CancelResult:
        return await self._connector.call(
            lambda client: client.cancel(worker_id, turn_id=turn_id, reason=reason)
        )

    async def stop(self, worker_id: str, *, reason: str | None = None) -> WorkerView:
        return self._project(
            await self._connector.call(
                lambda client: client.stop(worker_id, reason=reason)
            )
        )

    async def transcript(
        self, worker_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> TranscriptPage:
        return await self._connector.call(
            lambda client: client.transcript(worker_id, limit=limit, cursor=cursor)
        )

    def subscribe(
        self, worker_id: str | None = None, *, after: int | None = None
    ) -> EventStream:
        """Follow one Worker's events, or the Runtime-wide stream.

        Nothing happens until the stream is entered; entering connects (as
        any call does) and raises ``RuntimeUnavailableError`` when the
        process is down. Once open, the stream reconnects by itself for
        ``reconnect_timeout`` seconds (see
        :class:`yoi_runtime.client.RemoteSubscription`).
        """
        return RemoteEventStream(self._connector, worker_id, after)

    async def aclose(self) -> None:
        """Close the client (once streams using it are done); idempotent.

        Later calls raise ``RuntimeUnavailableError``; ``describe`` reports
        ``unavailable``.
        """
        await self._connector.aclose()


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
