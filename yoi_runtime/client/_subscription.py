"""Remote subscriptions: an event stream over WebSocket that survives drops.

A :class:`RemoteSubscription` is used like the embedded
:class:`~yoi_runtime.Subscription`. It holds at most one WebSocket at a time
and does its I/O inside the receive calls. When the connection breaks it
reconnects with ``after=`` the position of the last item it handed out, so
the caller sees neither a gap nor a duplicate.

What each close code means, the positions, the reconnect budget and the
end of a Worker's stream are decided by the sans-IO protocol
(:class:`yoi_runtime._stream_protocol.ClientStream`, its table in
``docs/protocol.md``): ``1000`` ends the stream, ``1011`` raises the error
its reason names, and anything else (``1001`` shutting down, ``1006`` a
broken connection, ...) is retried with backoff for up to
``reconnect_timeout`` seconds. This module does only the I/O.
"""

from __future__ import annotations

import contextlib
import json
import math
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio
import trio_websocket

from .._errors import RuntimeUnavailableError, YoiRuntimeError
from .._events import DEFAULT_BATCH, Event, Gap
from .._stream_protocol import (
    LOST,
    ClientState,
    ClientStream,
    CloseFrame,
    Next,
    TextFrame,
)
from .._util import single_error
from ._translate import error_from_response, map_websocket_errors

__all__ = ["RemoteSubscription", "StreamTarget"]


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
    ``1011``, or a network error) the next receive reconnects with
    ``after=`` the position of the last item received, retrying with backoff
    (0.1 s doubling to 2 s) for up to the client's ``reconnect_timeout``
    seconds, so the caller sees no gap and no duplicate. The rules are the
    protocol's (:class:`yoi_runtime._stream_protocol.ClientStream`,
    ``docs/protocol.md``).

    Errors: entering raises what the upgrade was refused with
    (:class:`WorkerNotFoundError`, :class:`InvalidInputError` for a bad
    ``after``, :class:`UnauthorizedError`) or :class:`RuntimeUnavailableError`;
    receives raise, once the items received before were handed out and then
    on every later call, :class:`RuntimeUnavailableError` once reconnecting
    gave up, the refusal a reconnect met (e.g. :class:`WorkerNotFoundError`
    from a restarted process that forgot the Worker), the error a ``1011``
    close names (its reason is the error code), or
    :class:`InternalError` for a frame without the documented shape.
    """

    _target: StreamTarget
    _after: int | None
    _protocol: ClientStream | None = attrs.field(default=None, repr=False)
    _stack: contextlib.AsyncExitStack | None = attrs.field(default=None, repr=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, repr=False)
    _connection: _Connection | None = attrs.field(default=None, repr=False)
    _closed: bool = False

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
        if self._protocol is not None:
            return self._protocol.position
        if self._after is None:
            raise RuntimeError("enter the subscription (async with) first")
        return self._after

    async def __aenter__(self) -> RemoteSubscription:
        if self._stack is not None or self._closed:
            raise RuntimeError("a subscription can be entered only once")
        async with contextlib.AsyncExitStack() as stack:
            stack.enter_context(single_error())
            self._nursery = await stack.enter_async_context(trio.open_nursery())
            stack.push_async_callback(self.aclose)
            target = self._target
            if self._after is None:
                start = await target.current_position()
            else:
                start = self._after
            self._protocol = ClientStream(
                url=target.url,
                runtime_id=target.runtime_id,
                worker_stream=target.worker_stream,
                position=start,
                reconnect_timeout=target.reconnect_timeout,
                errors=self._broken_for_good,
            )
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
            YoiRuntimeError: The stream broke for good (see the class).
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
            YoiRuntimeError: The stream broke for good (see the class).

        Cancellation:
            Safe at any point: nothing is handed out or skipped unless this
            call returns it.
        """
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        while True:
            if self._closed:
                raise trio.ClosedResourceError("the subscription is closed")
            protocol = self._protocol
            if protocol is None or self._nursery is None:
                raise RuntimeError("enter the subscription (async with) first")
            await trio.lowlevel.checkpoint_if_cancelled()
            step = protocol.next_batch(max_items)
            if isinstance(step, list):
                await trio.lowlevel.cancel_shielded_checkpoint()
                return step
            if step is Next.READ:
                assert self._connection is not None
                await self._read_frame(self._connection, protocol)
            elif step is Next.RECONNECT:
                await self._reconnect(protocol)
            elif step is Next.END:
                await trio.lowlevel.cancel_shielded_checkpoint()
                raise trio.EndOfChannel
            elif step is Next.FAIL:
                assert protocol.error is not None
                await trio.lowlevel.cancel_shielded_checkpoint()
                raise protocol.error
            else:
                raise trio.ClosedResourceError("the subscription is closed")

    async def aclose(self) -> None:
        """Stop following the stream and close its connection. Idempotent.

        Later receives raise :class:`trio.ClosedResourceError`.
        """
        self._closed = True
        protocol = self._protocol
        if protocol is not None and protocol.state is not ClientState.CLOSED:
            protocol.close()
        connection, self._connection = self._connection, None
        if connection is None:
            await trio.lowlevel.checkpoint()
            return
        with trio.move_on_after(self._target.connect_timeout, shield=True):
            await connection.ws.aclose()
        connection.released.set()

    # -- the connection -------------------------------------------------------

    def _broken_for_good(self, code: str, message: str) -> YoiRuntimeError:
        """The error a ``1011`` close with reason ``code`` stands for, made
        by the client's one error table (as an HTTP error envelope would be)."""
        details = {}
        if self._target.worker_stream:
            details["worker_id"] = self._target.path.rstrip("/").rsplit("/", 2)[-2]
        error = {"code": code or "internal_error", "message": message}
        envelope = {"error": {**error, "details": details}}
        return error_from_response(500, json.dumps(envelope).encode())

    async def _connect(self, deadline: float = math.inf) -> None:
        """Open the stream after the last item received, giving up at
        ``deadline``."""
        assert self._nursery is not None
        assert self._protocol is not None
        with map_websocket_errors(self._target.url), trio.fail_at(deadline):
            self._connection = await self._nursery.start(
                self._hold, self._protocol.resume_after()
            )
        self._protocol.connected(trio.current_time())

    async def _hold(
        self, after: int, *, task_status: trio.TaskStatus[_Connection]
    ) -> None:
        """Own one TCP stream and its WebSocket until the subscription lets go.

        The stream is opened and closed here (trio-websocket's own
        ``open_websocket`` leaves it open when the server closes first).
        """
        target = self._target
        resource = f"{target.path}?after={after}"
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

    async def _reconnect(self, protocol: ClientStream) -> None:
        """One reconnect attempt after the protocol's delay; the protocol
        notes a failure (and gives up past its deadline) or a refusal."""
        await trio.sleep(protocol.reconnect_delay(trio.current_time()))
        try:
            await self._connect(protocol.deadline)
        except RuntimeUnavailableError as exc:
            protocol.attempt_failed(trio.current_time())
            if protocol.error is not None:
                protocol.error.__cause__ = exc
        except YoiRuntimeError as exc:
            protocol.refused(exc)

    def _release(self, connection: _Connection) -> None:
        if self._connection is connection:
            self._connection = None
        connection.released.set()

    async def _read_frame(
        self, connection: _Connection, protocol: ClientStream
    ) -> None:
        """Hand one message of the connection to the protocol."""
        try:
            message = await connection.ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            self._release(connection)
            if exc.reason is None:
                close = CloseFrame(LOST)
            else:
                close = CloseFrame(exc.reason.code, exc.reason.reason or "")
            protocol.receive_message(close, trio.current_time())
            return
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        protocol.receive_message(TextFrame(message), trio.current_time())
