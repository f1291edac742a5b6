"""Remote subscriptions: an event stream over WebSocket that survives drops.

A :class:`RemoteSubscription` is used like the embedded
:class:`~yoi_runtime.Subscription`. It holds at most one WebSocket at a time
and does its I/O inside the receive calls. When the connection breaks it
reconnects with ``after=`` the position of the last item it handed out, so
the caller sees neither a gap nor a duplicate.

Close codes (``docs/protocol.md``): ``1000`` ends the stream; ``4401`` is
:class:`UnauthorizedError`; anything else (``1001`` shutting down, ``4008``
too slow, ``1006`` a broken connection, ...) is retried with backoff for up
to ``reconnect_timeout`` seconds. A Worker's stream also ends after
``worker.stopped`` or ``worker.failed``, whatever close follows.
"""

from __future__ import annotations

import collections
import contextlib
import math
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import cattrs
import trio
import trio_websocket

from .._errors import (
    InternalError,
    RuntimeUnavailableError,
    UnauthorizedError,
)
from .._events import DEFAULT_BATCH, Event, EventType, Gap
from .._util import single_error
from .._wire import item_from_json
from ._translate import decode_json, map_websocket_errors

__all__ = ["RemoteSubscription", "StreamTarget"]

#: Close code of a stream that ended (the Worker stopped or failed).
_CLOSE_ENDED = 1000
#: Close code of a token refused after the upgrade.
_CLOSE_UNAUTHORIZED = 4401
#: The code trio-websocket reports for a connection lost without a close.
_CLOSE_ABNORMAL = 1006

#: The events after which a Worker's stream has ended.
_FINAL = frozenset({EventType.WORKER_STOPPED, EventType.WORKER_FAILED})

#: Seconds before the second reconnect attempt; doubled per attempt up to
#: :data:`_MAX_DELAY` (the first attempt is immediate).
_FIRST_DELAY = 0.1
_MAX_DELAY = 2.0


@attrs.frozen
class StreamTarget:
    """Where and how a subscription connects (built by the client).

    Attributes:
        host: The process's host name or address.
        port: Its TCP port.
        tls: Whether to speak TLS (``wss://``).
        path: The stream's path (``/v1/events``), without the query.
        headers: Headers of the upgrade request (the ``Authorization`` one).
        runtime_id: The Runtime the client opened; every event must carry it.
        worker_stream: True for one Worker's stream (positions are ``seq``),
            False for the Runtime-wide stream (positions are ``cursor``).
        current_position: Returns the stream's newest position (used to pin
            ``after=None`` to "now" before connecting).
        connect_timeout: Seconds allowed for one TCP + WebSocket handshake.
        reconnect_timeout: Seconds a broken stream keeps trying to reconnect.
    """

    host: str
    port: int
    tls: bool
    path: str
    headers: list[tuple[bytes, bytes]] = attrs.field(repr=False)
    runtime_id: str
    worker_stream: bool
    current_position: Callable[[], Awaitable[int]] = attrs.field(repr=False)
    connect_timeout: float
    reconnect_timeout: float

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the host, and the port unless the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The stream's URL without the query, for messages."""
        return f"{'wss' if self.tls else 'ws'}://{self.host_header}{self.path}"


async def _open_stream(
    target: StreamTarget,
) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    if target.tls:
        return await trio.open_ssl_over_tcp_stream(
            target.host,
            target.port,
            ssl_context=ssl.create_default_context(),
            https_compatible=True,
        )
    return await trio.open_tcp_stream(target.host, target.port)


@attrs.frozen
class _Connection:
    """One open WebSocket and the event that lets its holder task close it."""

    ws: trio_websocket.WebSocketConnection
    released: trio.Event


@attrs.define(eq=False)
class RemoteSubscription:
    """A cursor into a runtime process's event stream: replay, live, the end.

    Get one from :meth:`RuntimeClient.subscribe` and enter it with
    ``async with`` (which connects), then iterate it (``async for item in
    events``) or call :meth:`receive_batch`. Items are :class:`Event` or
    :class:`Gap`; heartbeats are consumed here. A Worker's stream ends after
    ``worker.stopped`` or ``worker.failed``.

    Reconnection: when the WebSocket breaks (any close but ``1000`` and
    ``4401``, or a network error) the next receive reconnects with ``after=``
    :attr:`position`, retrying with backoff (0.1 s doubling to 2 s) for up to
    the client's ``reconnect_timeout`` seconds, so the caller sees no gap and
    no duplicate.

    Errors: entering raises what the upgrade was refused with
    (:class:`WorkerNotFoundError`, :class:`InvalidInputError` for a bad
    ``after``, :class:`UnauthorizedError`) or :class:`RuntimeUnavailableError`;
    receives raise :class:`RuntimeUnavailableError` once reconnecting gave up,
    or the refusal a reconnect met (e.g. :class:`WorkerNotFoundError` from a
    restarted process that forgot the Worker).
    """

    _target: StreamTarget
    _after: int | None
    _position: int | None = None
    _stack: contextlib.AsyncExitStack | None = attrs.field(default=None, repr=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, repr=False)
    _connection: _Connection | None = attrs.field(default=None, repr=False)
    _pending: collections.deque[Event | Gap] = attrs.field(
        factory=collections.deque, repr=False
    )
    _ended: bool = False
    _closed: bool = False
    _broken_since: float | None = None
    _attempts: int = 0
    _connected_at: float = 0.0
    _delivered: bool = False

    @property
    def position(self) -> int:
        """The cursor of the last item received, to resume with ``after=``.

        An :class:`Event`'s ``seq`` on a Worker stream, its ``cursor`` on the
        Runtime stream, a :class:`Gap`'s ``resume_after``. Before the first
        item it is where the subscription started.

        Raises:
            RuntimeError: ``after=None`` and the subscription was not entered
                yet, so "now" is not pinned.
        """
        if self._position is None:
            raise RuntimeError("enter the subscription (async with) first")
        return self._position

    async def __aenter__(self) -> RemoteSubscription:
        if self._stack is not None or self._closed:
            raise RuntimeError("a subscription can be entered only once")
        async with contextlib.AsyncExitStack() as stack:
            stack.enter_context(single_error())
            self._nursery = await stack.enter_async_context(trio.open_nursery())
            stack.push_async_callback(self.aclose)
            if self._after is None:
                self._position = await self._target.current_position()
            else:
                self._position = self._after
            await self._connect()
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        stack, self._stack = self._stack, None
        if stack is None:
            return None
        return await stack.__aexit__(*exc_info)

    def __aiter__(self) -> RemoteSubscription:
        return self

    async def __anext__(self) -> Event | Gap:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def receive(self) -> Event | Gap:
        """Wait for and return the next item.

        Raises:
            trio.EndOfChannel: The stream ended and everything was received.
            trio.ClosedResourceError: The subscription was closed.
            RuntimeUnavailableError: The connection broke and could not be
                re-established within ``reconnect_timeout`` seconds.
        """
        return (await self.receive_batch(1))[0]

    async def receive_batch(self, max_items: int = DEFAULT_BATCH) -> list[Event | Gap]:
        """Wait for at least one item and return every ready one, up to a limit.

        Args:
            max_items: The most items to return (at least 1).

        Returns:
            A non-empty list of items in stream order; :attr:`position` is
            then the cursor of the last one.

        Raises:
            trio.EndOfChannel: The stream ended and everything was received.
            trio.ClosedResourceError: The subscription was closed.
            RuntimeUnavailableError: The connection broke and could not be
                re-established within ``reconnect_timeout`` seconds.

        Cancellation:
            Safe at any point: nothing is handed out or skipped unless this
            call returns it.
        """
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        while True:
            if self._closed:
                raise trio.ClosedResourceError("the subscription is closed")
            if self._nursery is None:
                raise RuntimeError("enter the subscription (async with) first")
            if self._pending:
                await trio.lowlevel.checkpoint()
                count = min(max_items, len(self._pending))
                batch = [self._pending.popleft() for _ in range(count)]
                self._position = self._position_of(batch[-1])
                return batch
            if self._ended:
                await trio.lowlevel.checkpoint()
                raise trio.EndOfChannel
            if self._connection is None:
                await self._reconnect()
            else:
                await self._read_frame(self._connection)

    async def aclose(self) -> None:
        """Stop following the stream and close its connection. Idempotent.

        Later receives raise :class:`trio.ClosedResourceError`.
        """
        self._closed = True
        self._pending.clear()
        connection, self._connection = self._connection, None
        if connection is None:
            await trio.lowlevel.checkpoint()
            return
        with trio.move_on_after(self._target.connect_timeout, shield=True):
            await connection.ws.aclose()
        connection.released.set()

    # -- the connection -------------------------------------------------------

    def _position_of(self, item: Event | Gap) -> int:
        if isinstance(item, Gap):
            return item.resume_after
        return item.seq if self._target.worker_stream else item.cursor

    async def _connect(self, deadline: float = math.inf) -> None:
        """Open the stream after :attr:`position`, giving up at ``deadline``."""
        assert self._nursery is not None
        with map_websocket_errors(self._target.url), trio.fail_at(deadline):
            self._connection = await self._nursery.start(self._hold)
        self._connected_at = trio.current_time()
        self._delivered = False

    async def _hold(self, *, task_status: trio.TaskStatus[_Connection]) -> None:
        """Own one TCP stream and its WebSocket until the subscription lets go.

        The stream is opened and closed here (trio-websocket's own
        ``open_websocket`` leaves it open when the server closes first).
        """
        target = self._target
        resource = f"{target.path}?after={self._position}"
        started = False
        with single_error():
            async with trio.open_nursery() as nursery:
                with trio.fail_after(target.connect_timeout):
                    stream = await _open_stream(target)
                async with stream:
                    try:
                        with trio.fail_after(target.connect_timeout):
                            ws = await trio_websocket.wrap_client_stream(
                                nursery,
                                stream,
                                target.host_header,
                                resource,
                                extra_headers=target.headers,
                            )
                        connection = _Connection(ws, trio.Event())
                        task_status.started(connection)
                        started = True
                        await connection.released.wait()
                        with trio.move_on_after(target.connect_timeout):
                            await ws.aclose()
                    finally:
                        nursery.cancel_scope.cancel()
        if not started:
            # trio-websocket can end the handshake quietly when the peer goes
            # away part-way (a process killed or restarting): a failed attempt.
            raise RuntimeUnavailableError(
                f"the event stream {target.url} closed during its handshake"
            )

    async def _reconnect(self) -> None:
        """Connect again after ``position``, with backoff, or give up."""
        if self._broken_since is None:
            self._note_break()
        assert self._broken_since is not None
        deadline = self._broken_since + self._target.reconnect_timeout
        while True:
            if self._attempts:
                delay = min(_FIRST_DELAY * 2 ** (self._attempts - 1), _MAX_DELAY)
                await trio.sleep(max(0.0, min(delay, deadline - trio.current_time())))
            self._attempts += 1
            try:
                await self._connect(deadline)
                return
            except RuntimeUnavailableError as exc:
                if trio.current_time() >= deadline:
                    raise RuntimeUnavailableError(
                        f"lost the event stream {self._target.url} and could not "
                        f"reconnect within {self._target.reconnect_timeout} s"
                    ) from exc

    def _note_break(self) -> None:
        """Start a new reconnect budget, unless the last reconnect never worked.

        A connection that delivered a frame (heartbeats count) or stayed up
        for :data:`_MAX_DELAY` seconds (or the whole budget, if shorter)
        worked; one that broke at once keeps the running budget, so a process
        that accepts and drops cannot keep a subscription retrying forever.
        """
        now = trio.current_time()
        healthy = min(_MAX_DELAY, self._target.reconnect_timeout)
        worked = self._delivered or now - self._connected_at >= healthy
        if worked or self._broken_since is None:
            self._broken_since = now
            self._attempts = 0

    def _release(self, connection: _Connection) -> None:
        if self._connection is connection:
            self._connection = None
        connection.released.set()

    async def _read_frame(self, connection: _Connection) -> None:
        """Read one frame into the pending items, or note why there was none."""
        try:
            message = await connection.ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            self._release(connection)
            code = _CLOSE_ABNORMAL if exc.reason is None else exc.reason.code
            if code == _CLOSE_ENDED:
                self._ended = True
            elif code == _CLOSE_UNAUTHORIZED:
                raise UnauthorizedError(
                    f"the runtime process refused the token for {self._target.url}"
                ) from None
            else:
                self._note_break()
            return
        self._delivered = True
        items = self._parse(message)
        self._pending.extend(items)
        if self._target.worker_stream and any(
            isinstance(item, Event) and item.type in _FINAL for item in items
        ):
            # A Worker's stream ends after these, whatever the close code says
            # (a process that is shutting down closes with 1001).
            self._ended = True

    def _parse(self, message: str | bytes) -> list[Event | Gap]:
        """Decode one frame (an item or a batch), dropping heartbeats."""
        what = f"a frame of {self._target.url}"
        frame = decode_json(message, what)
        values = frame if isinstance(frame, list) else [frame]
        items: list[Event | Gap] = []
        for value in values:
            if isinstance(value, dict) and value.get("type") == "stream.heartbeat":
                continue
            try:
                item = item_from_json(value)
            except (
                cattrs.BaseValidationError,
                AttributeError,
                KeyError,
                TypeError,
                ValueError,
            ) as exc:
                raise InternalError(f"{what}: malformed stream item") from exc
            if isinstance(item, Event) and item.runtime_id != self._target.runtime_id:
                raise RuntimeUnavailableError(
                    f"the runtime process at {self._target.url} was replaced: "
                    f"runtime {item.runtime_id}, not {self._target.runtime_id}"
                )
            items.append(item)
        return items
