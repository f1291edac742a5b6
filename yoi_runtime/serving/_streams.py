"""Pushing one event stream to one client (see ``docs/protocol.md``).

One notion of "what comes next" (:class:`StreamPump`) and two thin writers:
:func:`serve_event_stream` here (WebSocket frames) and
:func:`yoi_runtime.serving._sse.event_stream_response` (``text/event-stream``).
The pump hands out :class:`Items` (every ready item, up to
:data:`MAX_BATCH`), a :class:`Heartbeat` after ``heartbeat_interval``
seconds of silence, and finally one :class:`Closing`. The stream is a
cursor (a :class:`yoi_runtime.Subscription` into the Runtime's bounded log,
or the workspace backend's streams): nothing is buffered per connection,
and a slow reader blocks only its own connection's task.

What travels, the close codes and each decision of the pump are the
protocol's (:mod:`yoi_runtime._stream_protocol`, sans-IO); this module only
waits and sends. On a WebSocket a frame holds one item when the subscriber
keeps up, and a JSON array of every ready item when it has a backlog, so a
slow network gets fewer, larger frames instead of a growing queue. Close
codes: ``1000`` the stream ended; ``1001`` the app is shutting down (after
what was ready); ``1011`` the stream broke for good, the reason being the
error code (never for a ``Subscription``, which cannot break). Sends are
never cancelled part-way (that would leave half a frame on the wire); only
the wait for new items is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

import attrs
import trio

from .._errors import YoiRuntimeError
from .._events import Event, Gap, Subscription
from .._stream_protocol import (
    MAX_BATCH,
    CloseFrame,
    Closing,
    Heartbeat,
    Items,
    ServerState,
    ServerStream,
    websocket_message,
)

__all__ = [
    "EVENT_STREAM",
    "MAX_BATCH",
    "Closing",
    "EventSource",
    "Heartbeat",
    "Items",
    "Ready",
    "StreamControl",
    "StreamPump",
    "StreamSettings",
    "WebSocket",
    "ready_now",
    "ready_within",
    "serve_event_stream",
    "wants_event_stream",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

#: The media type of an SSE response (and of the ``Accept`` asking for one).
EVENT_STREAM = "text/event-stream"

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
    """The open event streams of one app (WebSocket and SSE), and their
    shutdown.

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

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        """Count one open stream while the block runs (:meth:`close_streams`
        waits for it to end)."""
        self._open += 1
        try:
            yield
        finally:
            self._open -= 1
            if self.closing and not self._open:
                self._all_closed.set()


@attrs.define(eq=False)
class StreamPump(Generic[T]):
    """What an entered stream sends next, whatever carries it.

    The I/O half of :class:`~yoi_runtime._stream_protocol.ServerStream`: it
    waits for the source (with the heartbeat deadline and the app's
    shutdown) and lets the protocol decide each step and close code.

    Attributes:
        stream: The stream (already entered; the caller closes it).
        control: The app's streams (heartbeat timing and shutdown).
        ready: The shutdown flush (:func:`ready_now`, :func:`ready_within`).
    """

    stream: EventSource[T]
    control: StreamControl
    ready: Ready[T]
    _protocol: ServerStream[T] = attrs.field(factory=ServerStream)

    async def next(self) -> Items[T] | Heartbeat | Closing:
        """Wait for what to send next.

        Returns:
            :class:`Items` when some are ready; :class:`Heartbeat` after
            ``heartbeat_interval`` seconds without any; once, at the end,
            :class:`Closing` (1000 when the stream ended, 1001 after the
            flush when the app drains, 1011 when the stream raised a
            :class:`YoiRuntimeError`).

        Raises:
            trio.EndOfChannel: Called again after :class:`Closing`.

        Cancellation:
            Safe: nothing is consumed by a cancelled call.
        """
        protocol = self._protocol
        if protocol.state is ServerState.CLOSED:
            raise trio.EndOfChannel
        if protocol.state is ServerState.OPEN:
            got = await self._receive()
            if got is not None:
                return got
            closing = protocol.source_ended(draining=self.control.draining)
            if closing is not None:
                return closing
        batch = await self.ready()
        if batch is not None:
            return protocol.items(batch)
        return protocol.flushed(self.control.shutdown_reason)

    async def _receive(self) -> Items[T] | Heartbeat | Closing | None:
        """The next live batch or heartbeat, or 1011; None: the stream ended
        or the app closes its streams (then :meth:`next` decides 1000 or
        1001)."""
        control = self.control
        if control.closing:
            return None
        with trio.CancelScope() as wait:
            wait.deadline = trio.current_time() + control.settings.heartbeat_interval
            control._waits.add(wait)
            try:
                items = await self.stream.receive_batch(MAX_BATCH)
            except trio.EndOfChannel:
                return None
            except YoiRuntimeError as exc:
                return self._protocol.source_broke(exc.code)
            finally:
                control._waits.discard(wait)
        if wait.cancelled_caught:
            if control.closing:
                return None
            return self._protocol.silence(self.stream.position)
        return self._protocol.items(items)


def wants_event_stream(accept: Iterable[str]) -> bool:
    """Whether ``Accept`` header values name ``text/event-stream``.

    Only an explicit ``text/event-stream`` with a non-zero quality counts;
    ``*/*`` (curl's and httpx's default) does not.
    """
    for header in accept:
        for media_range in header.split(","):
            media, *params = (part.strip() for part in media_range.split(";"))
            if media.lower() != EVENT_STREAM:
                continue
            quality = 1.0
            for param in params:
                key, _, value = param.partition("=")
                if key.strip().lower() == "q":
                    try:
                        quality = float(value)
                    except ValueError:
                        quality = 0.0
            if quality > 0:
                return True
    return False


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
    with control.counting():
        pump = StreamPump(stream, control, ready)
        while True:
            message = websocket_message(await pump.next(), encode)
            if isinstance(message, CloseFrame):
                with trio.move_on_after(control.settings.close_timeout, shield=True):
                    await socket.close(message.code, message.reason)
                return
            await socket.send(message.text)
