"""Pushing one event stream down one WebSocket (see ``docs/protocol.md``).

A frame holds one item when the subscriber keeps up, and a JSON array of
every ready item (up to :data:`MAX_BATCH`) when it has a backlog, so a slow
network gets fewer, larger frames instead of a growing queue. A
``stream.heartbeat`` item (with the stream's ``position``) follows
``heartbeat_interval`` seconds of silence. The stream is a cursor (a
:class:`yoi_runtime.Subscription` into the Runtime's bounded log, or the
workspace backend's streams): nothing is buffered per connection, and a slow
reader blocks only its own connection's task.

Close codes: ``1000`` the stream ended; ``1001`` the app is shutting down
(after what was ready); ``1011`` the stream broke for good, the reason being
the error code (never for a ``Subscription``, which cannot break). Sends
are never cancelled part-way (that would leave half a frame on the wire);
only the wait for new items is.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import attrs
import trio

from .._errors import YoiRuntimeError
from .._events import Event, Gap, Subscription

__all__ = [
    "MAX_BATCH",
    "EventSource",
    "Ready",
    "StreamControl",
    "StreamSettings",
    "WebSocket",
    "ready_now",
    "ready_within",
    "serve_event_stream",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

#: The most items one frame carries.
MAX_BATCH = 256

#: Reads the next batch while a stream closes for shutdown; None: no more.
Ready = Callable[[], Awaitable[Sequence[T] | None]]


class WebSocket(Protocol):
    """The part of Quart's ``websocket`` the pump uses."""

    async def accept(self) -> None: ...
    async def send(self, data: str) -> None: ...
    async def close(self, code: int, reason: str = "") -> None: ...


class EventSource(Protocol, Generic[T_co]):
    """A stream of items with a cursor (``Subscription`` and the like)."""

    @property
    def position(self) -> int | str:
        """The cursor of the last item received (sent in heartbeats)."""
        ...

    async def receive_batch(self, max_items: int = ...) -> Sequence[T_co]:
        """Wait for at least one item; raise ``trio.EndOfChannel`` at the end."""
        ...


@attrs.frozen
class StreamSettings:
    """Timing of event streams, in seconds.

    Attributes:
        heartbeat_interval: Silence after which a heartbeat item is sent.
        close_timeout: Longest wait for the close handshake.
    """

    heartbeat_interval: float = 15.0
    close_timeout: float = 5.0


@attrs.define(eq=False)
class StreamControl:
    """The open WebSockets of one app, and their shutdown.

    Attributes:
        settings: Heartbeat and close timing (seconds).
        shutdown_reason: The close reason sent with 1001.
        draining: Set by :meth:`begin_drain`: streams will close with 1001.
        closing: Set by :meth:`close_streams`: streams stop waiting.
    """

    settings: StreamSettings
    shutdown_reason: str = "shutting down"
    draining: bool = False
    closing: bool = False
    _waits: set[trio.CancelScope] = attrs.field(factory=set)
    _open: int = 0
    _all_closed: trio.Event = attrs.field(factory=trio.Event)

    def begin_drain(self) -> None:
        """Mark the app draining: streams will end with 1001."""
        self.draining = True

    async def close_streams(self) -> None:
        """Make every stream flush what is ready and close; wait for all."""
        self.closing = True
        for scope in list(self._waits):
            scope.cancel()
        if self._open:
            await self._all_closed.wait()

    def _opened(self) -> None:
        self._open += 1

    def _closed(self) -> None:
        self._open -= 1
        if self.closing and not self._open:
            self._all_closed.set()


def ready_now(subscription: Subscription) -> Ready[Event | Gap]:
    """A shutdown flush of what ``subscription`` has ready, without waiting."""

    async def ready() -> list[Event | Gap] | None:
        try:
            return subscription.receive_batch_nowait(MAX_BATCH)
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return None

    return ready


def ready_within(stream: EventSource[T], grace: float) -> Ready[T]:
    """A shutdown flush of what ``stream`` yields without a pause longer than
    ``grace`` seconds (for streams fed over the network)."""

    async def ready() -> Sequence[T] | None:
        with trio.move_on_after(grace):
            try:
                return await stream.receive_batch(MAX_BATCH)
            except (trio.EndOfChannel, YoiRuntimeError):
                return None
        return None

    return ready


async def serve_event_stream(
    socket: WebSocket,
    stream: EventSource[T],
    control: StreamControl,
    *,
    encode: Callable[[T], Any],
    ready: Ready[T],
) -> None:
    """Accept the WebSocket and push the (entered) ``stream`` down it.

    Args:
        socket: Quart's ``websocket``.
        stream: The stream, already entered (so refusals were HTTP errors
            before the upgrade); the caller closes it.
        control: The app's streams (heartbeat timing and shutdown).
        encode: One item's JSON value.
        ready: The shutdown flush (:func:`ready_now`, :func:`ready_within`).

    Closes with 1000 when the stream ended, 1001 (after what ``ready``
    yields) when the app drains, 1011 when the stream raised a
    :class:`YoiRuntimeError` (its code as the reason).
    """
    await socket.accept()
    control._opened()
    try:
        settings = control.settings
        code, reason = 1000, "stream ended"
        while not control.closing:
            with trio.CancelScope() as wait:
                wait.deadline = trio.current_time() + settings.heartbeat_interval
                control._waits.add(wait)
                try:
                    items = await stream.receive_batch(MAX_BATCH)
                except trio.EndOfChannel:
                    break
                except YoiRuntimeError as exc:
                    code, reason = 1011, exc.code
                    break
                finally:
                    control._waits.discard(wait)
            if wait.cancelled_caught:
                if control.closing:
                    break
                heartbeat = {"type": "stream.heartbeat", "position": stream.position}
                await socket.send(json.dumps(heartbeat))
            else:
                await socket.send(_frame(items, encode))
        if control.draining and code == 1000:
            while (batch := await ready()) is not None:
                await socket.send(_frame(batch, encode))
            code, reason = 1001, control.shutdown_reason
        with trio.move_on_after(settings.close_timeout, shield=True):
            await socket.close(code, reason)
    finally:
        control._closed()


def _frame(items: Sequence[T], encode: Callable[[T], Any]) -> str:
    """One frame's text: the item itself, or an array of several."""
    if len(items) == 1:
        return json.dumps(encode(items[0]))
    return json.dumps([encode(item) for item in items])
