"""The remote handle: a ``yoi-runtime`` process reached through its client.

:func:`open_remote_handle` gives a :class:`RemoteRuntimeHandle` built from
config-like data (:class:`RemoteRuntimeConfig`). Opening never touches the
network, so the backend starts even while a remote Runtime is down.

Connection lifecycle:

- **Lazy connect.** A call that finds no live client opens one
  (:func:`yoi_runtime.client.open_runtime_client`, then ``GET /v1/runtime``),
  the whole attempt bounded by ``connect_timeout`` seconds. Calls arriving
  while an attempt runs share it (its connection, or its error) rather than
  trying again one after another, so every call on an unreachable process
  fails within about ``connect_timeout`` seconds.
- **Discard on failure.** A call failing with ``RuntimeUnavailableError``
  (refused, reset, timed out, draining) or ``UnauthorizedError`` retires the
  client; it is closed once its last user is done, and the next call
  reconnects. So a process that comes back (even restarted on the same
  port, with a rotated token file) is used again without restarting the
  backend.
- **Identity.** The process must serve the Runtime ``config.runtime_id``
  names. A process reporting another id (checked on connect, by
  :meth:`~RemoteRuntimeHandle.describe` and on every Worker it returns) is
  treated as unavailable, with an error saying so: the handle never routes
  to the wrong Runtime.
- **Cache.** The last summary seen (on connect and by ``describe``) is kept;
  while the process is down ``describe`` returns ``status="unavailable"``
  with the cached version, capabilities and Worker counts.

Secrecy: the URL and the token never appear in a returned value, an
exception message, a ``repr`` or a log line. Errors are restated with the
URL scrubbed and without their cause chain (an ``httpx`` error's request
carries the URL).
"""

from __future__ import annotations

import contextlib
import datetime
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import attrs
import httpx
import trio

from yoi_runtime import (
    CancelResult,
    Diagnostic,
    Event,
    Gap,
    InternalError,
    InvalidInputError,
    OperationUnsupportedError,
    RuntimeSummary,
    RuntimeUnavailableError,
    TranscriptPage,
    TurnSummary,
    UnauthorizedError,
    WorkerSummary,
    YoiRuntimeError,
)
from yoi_runtime.client import RemoteSubscription, RuntimeClient, open_runtime_client

from ._handle import EventStream
from ._secrets import SecretRef
from ._views import RuntimeKind, RuntimeView, WorkerView, WorkerViewPage

__all__ = ["RemoteRuntimeConfig", "RemoteRuntimeHandle", "open_remote_handle"]

T = TypeVar("T")

#: Items a stream's ``receive_batch`` returns at most by default (as the
#: embedded :class:`yoi_runtime.Subscription`).
_DEFAULT_BATCH = 256

#: Errors restated with the handle's own message (their constructors take a
#: message only); the Worker errors pass through unchanged.
_RESTATED = (
    RuntimeUnavailableError,
    UnauthorizedError,
    InternalError,
    OperationUnsupportedError,
)


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
            process without one. Resolved on each connect.
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


@attrs.define(eq=False)
class _Connection:
    """One open client and who uses it.

    Attributes:
        client: The open client.
        stack: Closes the client.
        users: Calls and streams using it now.
        retired: No new user may take it; closed when ``users`` drops to 0.
        closed: Its stack was closed.
    """

    client: RuntimeClient
    stack: contextlib.AsyncExitStack
    users: int = 0
    retired: bool = False
    closed: bool = False


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
    it refuses the token; :class:`~yoi_runtime.InternalError` when it fails
    (HTTP 500) or answers something malformed. The Worker errors
    (``WorkerNotFoundError``, ``WorkerBusyError`` with its details, ...)
    pass through as the process raised them.
    """

    def __init__(self, config: RemoteRuntimeConfig) -> None:
        self._config = config
        self._connection: _Connection | None = None
        self._connect_lock = trio.Lock()
        #: Connect attempts that ended (with a connection or an error).
        self._finished_attempts = 0
        self._last_failure: YoiRuntimeError | None = None
        self._cache: RuntimeSummary | None = None
        self._closed = False
        netloc = httpx.URL(config.url).netloc.decode("ascii")
        self._hidden = tuple(text for text in (config.url.rstrip("/"), netloc) if text)

    def __repr__(self) -> str:
        return (
            f"RemoteRuntimeHandle(runtime_id={self.runtime_id!r}, "
            f"connected={self._connection is not None}, closed={self._closed})"
        )

    @property
    def runtime_id(self) -> str:
        return self._config.runtime_id

    @property
    def kind(self) -> RuntimeKind:
        return RuntimeKind.REMOTE

    # -- errors -------------------------------------------------------------

    def _scrub(self, message: str) -> str:
        for text in self._hidden:
            message = message.replace(text, "<runtime>")
        return message

    def _restate(self, exc: YoiRuntimeError) -> YoiRuntimeError:
        """Return ``exc`` as the handle raises it: URL scrubbed, id named."""
        if type(exc) is UnauthorizedError:
            return UnauthorizedError(
                f"runtime {self.runtime_id} refused the configured token"
            )
        if type(exc) in _RESTATED:
            return type(exc)(f"runtime {self.runtime_id}: {self._scrub(exc.message)}")
        return exc

    @contextlib.contextmanager
    def _errors_of(self, connection: _Connection) -> Iterator[None]:
        """Restate errors raised while using ``connection``; retire it when
        they mean it is broken (unreachable, draining, token refused)."""
        try:
            yield
        except (RuntimeUnavailableError, UnauthorizedError) as exc:
            self._retire(connection)
            raise self._restate(exc) from None
        except (InternalError, OperationUnsupportedError) as exc:
            raise self._restate(exc) from None

    def _closed_error(self) -> RuntimeUnavailableError:
        return RuntimeUnavailableError(
            f"runtime {self.runtime_id}: the handle is closed"
        )

    def _wrong_runtime(self, reported: str) -> RuntimeUnavailableError:
        return RuntimeUnavailableError(
            f"runtime {self.runtime_id}: the configured process serves runtime "
            f"{reported!r} instead; not routing to it"
        )

    # -- the connection -----------------------------------------------------

    async def _acquire(self) -> _Connection:
        """Return the live connection (opening one if needed), counted as used.

        Raises:
            YoiRuntimeError: The connect attempt failed (already restated).
        """
        if self._closed:
            raise self._closed_error()
        connection = self._connection
        if connection is None:
            connection = await self._connect()
        connection.users += 1
        return connection

    async def _connect(self) -> _Connection:
        """Open the connection, or share the outcome of an attempt in flight.

        A call arriving while another call's attempt runs waits for it and
        gets its connection or (a copy of) its error, so every call on a
        process that is down fails within about ``connect_timeout`` seconds.
        """
        finished = self._finished_attempts
        async with self._connect_lock:
            if self._closed:
                raise self._closed_error()
            if self._connection is not None:
                return self._connection
            failure = self._last_failure
            if self._finished_attempts != finished and failure is not None:
                raise type(failure)(failure.message)
            try:
                connection = await self._open()
            except YoiRuntimeError as exc:
                self._last_failure = exc
                self._finished_attempts += 1
                raise
            self._last_failure = None
            self._finished_attempts += 1
            if self._closed:
                await self._close(connection)
                raise self._closed_error()
            self._connection = connection
            return connection

    async def _open(self) -> _Connection:
        """Open a client and check whom it serves, within ``connect_timeout``.

        Raises:
            RuntimeUnavailableError: Unreachable, too slow, draining, another
                Runtime, or the token cannot be read.
            UnauthorizedError: The token was refused.
            InternalError: The process failed or answered nonsense.
        """
        config = self._config
        token = None
        if config.token is not None:
            try:
                token = await trio.to_thread.run_sync(config.token.resolve)
            except InvalidInputError as exc:
                raise RuntimeUnavailableError(
                    f"runtime {self.runtime_id}: cannot read its token: {exc.message}"
                ) from None
        async with contextlib.AsyncExitStack() as stack:
            try:
                with trio.fail_after(config.connect_timeout):
                    client = await stack.enter_async_context(
                        open_runtime_client(
                            config.url,
                            token=token,
                            connect_timeout=config.connect_timeout,
                            request_timeout=config.request_timeout,
                            reconnect_timeout=config.reconnect_timeout,
                        )
                    )
                    summary = await client.summary()
            except trio.TooSlowError:
                raise RuntimeUnavailableError(
                    f"runtime {self.runtime_id}: the process did not answer within "
                    f"{config.connect_timeout} s"
                ) from None
            except YoiRuntimeError as exc:
                raise self._restate(exc) from None
            if summary.runtime_id != self.runtime_id:
                raise self._wrong_runtime(summary.runtime_id)
            self._cache = summary
            return _Connection(client, stack.pop_all())

    def _retire(self, connection: _Connection) -> None:
        connection.retired = True
        if self._connection is connection:
            self._connection = None

    async def _release(self, connection: _Connection) -> None:
        connection.users -= 1
        if connection.retired and connection.users == 0:
            await self._close(connection)

    async def _close(self, connection: _Connection) -> None:
        if connection.closed:
            await trio.lowlevel.checkpoint()
            return
        connection.closed = True
        with trio.move_on_after(self._config.connect_timeout, shield=True):
            await connection.stack.aclose()

    async def _call(self, operation: Callable[[RuntimeClient], Awaitable[T]]) -> T:
        """Run one client operation on the live connection (see the class)."""
        connection = await self._acquire()
        try:
            with self._errors_of(connection):
                return await operation(connection.client)
        finally:
            await self._release(connection)

    def _check_runtime(self, reported: str) -> None:
        """Refuse an answer from another Runtime (a replaced process).

        Raises:
            RuntimeUnavailableError: ``reported`` is not this handle's id;
                the connection is retired so the next call reconnects (and
                checks again).
        """
        if reported != self.runtime_id:
            if self._connection is not None:
                self._retire(self._connection)
            raise self._wrong_runtime(reported)

    def _project(self, summary: WorkerSummary) -> WorkerView:
        self._check_runtime(summary.runtime_id)
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
            summary = await self._call(lambda client: client.summary())
            self._check_runtime(summary.runtime_id)
        except YoiRuntimeError as exc:
            return self._view(self._cache, "unavailable", exc.message)
        self._cache = summary
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
        return await self._call(lambda client: client.diagnostics())

    async def list_workers(
        self,
        *,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> WorkerViewPage:
        page = await self._call(
            lambda client: client.list_workers(
                status=status, limit=limit, cursor=cursor
            )
        )
        return WorkerViewPage(
            tuple(self._project(w) for w in page.workers), page.next_cursor
        )

    async def get_worker(self, worker_id: str) -> WorkerView:
        return self._project(
            await self._call(lambda client: client.get_worker(worker_id))
        )

    async def create_worker(
        self,
        profile: str = "companion",
        *,
        display_name: str | None = None,
        engine: str | None = None,
        system_prompt: str | None = None,
        worker_id: str | None = None,
    ) -> WorkerView:
        summary = await self._call(
            lambda client: client.create_worker(
                profile,
                display_name=display_name,
                engine=engine,
                system_prompt=system_prompt,
                worker_id=worker_id,
            )
        )
        return self._project(summary)

    async def send_input(
        self, worker_id: str, text: str, *, input_id: str | None = None
    ) -> TurnSummary:
        return await self._call(
            lambda client: client.send_input(worker_id, text, input_id=input_id)
        )

    async def cancel(
        self, worker_id: str, *, turn_id: str | None = None, reason: str | None = None
    ) -> CancelResult:
        return await self._call(
            lambda client: client.cancel(worker_id, turn_id=turn_id, reason=reason)
        )

    async def stop(self, worker_id: str, *, reason: str | None = None) -> WorkerView:
        return self._project(
            await self._call(lambda client: client.stop(worker_id, reason=reason))
        )

    async def transcript(
        self, worker_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> TranscriptPage:
        return await self._call(
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
        return _RemoteEventStream(self, worker_id, after)

    async def aclose(self) -> None:
        """Close the client (once streams using it are done); idempotent.

        Later calls raise ``RuntimeUnavailableError``; ``describe`` reports
        ``unavailable``.
        """
        self._closed = True
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.retired = True
            if connection.users == 0:
                await self._close(connection)
                return
        await trio.lowlevel.checkpoint()


class _RemoteEventStream:
    """An event stream of a remote handle: a
    :class:`~yoi_runtime.client.RemoteSubscription` whose errors are
    restated like the handle's, holding the handle's client while open."""

    def __init__(
        self, handle: RemoteRuntimeHandle, worker_id: str | None, after: int | None
    ) -> None:
        self._handle = handle
        self._worker_id = worker_id
        self._after = after
        self._connection: _Connection | None = None
        self._inner: RemoteSubscription | None = None
        self._entered = False

    def __repr__(self) -> str:
        return (
            f"<remote event stream of runtime {self._handle.runtime_id!r}, "
            f"worker {self._worker_id!r}>"
        )

    @property
    def position(self) -> int:
        """The cursor (or ``seq``) of the last item received."""
        if self._inner is None:
            raise RuntimeError("enter the subscription (async with) first")
        return self._inner.position

    async def __aenter__(self) -> _RemoteEventStream:
        if self._entered:
            raise RuntimeError("a subscription can be entered only once")
        self._entered = True
        connection = await self._handle._acquire()
        try:
            inner = connection.client.subscribe(self._worker_id, after=self._after)
            with self._handle._errors_of(connection):
                await inner.__aenter__()
        except BaseException:
            await self._handle._release(connection)
            raise
        self._connection, self._inner = connection, inner
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        inner = self._inner
        try:
            if inner is None:
                return None
            return await inner.__aexit__(*exc_info)
        finally:
            await self._let_go()

    def __aiter__(self) -> _RemoteEventStream:
        return self

    async def __anext__(self) -> Event | Gap:
        inner, connection = self._open_parts()
        with self._handle._errors_of(connection):
            return await inner.__anext__()

    async def receive(self) -> Event | Gap:
        """Wait for and return the next item (see ``RemoteSubscription``)."""
        inner, connection = self._open_parts()
        with self._handle._errors_of(connection):
            return await inner.receive()

    async def receive_batch(self, max_items: int = _DEFAULT_BATCH) -> list[Event | Gap]:
        """Wait for at least one item; return every ready one, up to a limit."""
        inner, connection = self._open_parts()
        with self._handle._errors_of(connection):
            return await inner.receive_batch(max_items)

    async def aclose(self) -> None:
        """Stop following the stream; idempotent."""
        if self._inner is not None:
            await self._inner.aclose()
        else:
            await trio.lowlevel.checkpoint()

    def _open_parts(self) -> tuple[RemoteSubscription, _Connection]:
        if self._inner is None or self._connection is None:
            raise RuntimeError("enter the subscription (async with) first")
        return self._inner, self._connection

    async def _let_go(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._handle._release(connection)


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
