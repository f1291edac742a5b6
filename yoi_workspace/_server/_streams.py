"""Pushing a registry stream down a browser's WebSocket.

The frame format and timing are the runtime process's
(``docs/protocol.md``; :mod:`yoi_runtime._server._streams`): a text frame
holds one item, or a JSON array of every ready item (up to ``MAX_BATCH``)
when the reader has a backlog; a ``stream.heartbeat`` item (with the
stream's ``position``) follows ``heartbeat_interval`` seconds of silence.
Only the item encoding differs between a Worker's stream (items as the
Runtime sends them) and the aggregate (each item carries its opaque
``position``).

Close codes: ``1000`` the stream ended (the Worker stopped or failed);
``1001`` the backend is shutting down (after what was ready); ``1011`` the
stream broke for good, the reason being the error code (a Worker that a
restarted Runtime no longer knows: ``worker_not_found``). A Runtime that
goes away does not close the stream: it resumes when the Runtime is back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import attrs
import trio

from yoi_runtime import YoiRuntimeError
from yoi_runtime._server._streams import MAX_BATCH, StreamSettings

__all__ = ["StreamControl", "serve_stream"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

#: Seconds the shutdown flush waits for each further batch.
FLUSH_GRACE = 0.1


class _Socket(Protocol):
    async def accept(self) -> None: ...
    async def send(self, data: str) -> None: ...
    async def close(self, code: int, reason: str = "") -> None: ...


class _Stream(Protocol, Generic[T_co]):
    @property
    def position(self) -> int | str: ...

    async def receive_batch(self, max_items: int = ...) -> Sequence[T_co]: ...


@attrs.define(eq=False)
class StreamControl:
    """The open WebSockets of one app, and their shutdown.

    Attributes:
        settings: Heartbeat and close timing (seconds).
        draining: Set by :meth:`begin_drain`: streams will close with 1001.
        closing: Set by :meth:`close_streams`: streams stop waiting.
    """

    settings: StreamSettings
    draining: bool = False
    closing: bool = False
    _waits: set[trio.CancelScope] = attrs.field(factory=set)
    _open: int = 0
    _all_closed: trio.Event = attrs.field(factory=trio.Event)

    def begin_drain(self) -> None:
        """Mark the backend draining (streams end with 1001)."""
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


async def serve_stream(
    socket: _Socket,
    stream: _Stream[T],
    encode: Callable[[T], dict[str, Any]],
    control: StreamControl,
) -> None:
    """Accept the WebSocket and push the (entered) ``stream`` down it.

    Args:
        socket: Quart's ``websocket``.
        stream: A registry stream, already entered (so refusals were HTTP
            errors before the upgrade).
        encode: One item's JSON object.
        control: The app's streams (for heartbeat timing and shutdown).
    """
    await socket.accept()
    control._opened()
    try:
        await _pump(socket, stream, encode, control)
    finally:
        control._closed()


async def _pump(
    socket: _Socket,
    stream: _Stream[T],
    encode: Callable[[T], dict[str, Any]],
    control: StreamControl,
) -> None:
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
        await _flush(socket, stream, encode)
        code, reason = 1001, "workspace shutting down"
    with trio.move_on_after(settings.close_timeout, shield=True):
        await socket.close(code, reason)


async def _flush(
    socket: _Socket, stream: _Stream[T], encode: Callable[[T], dict[str, Any]]
) -> None:
    """Send what arrives without a pause longer than :data:`FLUSH_GRACE`."""
    while True:
        items = None
        with trio.move_on_after(FLUSH_GRACE):
            try:
                items = await stream.receive_batch(MAX_BATCH)
            except (trio.EndOfChannel, YoiRuntimeError):
                return
        if items is None:
            return
        await socket.send(_frame(items, encode))


def _frame(items: Sequence[T], encode: Callable[[T], dict[str, Any]]) -> str:
    """One frame's text: the item itself, or an array of several."""
    if len(items) == 1:
        return json.dumps(encode(items[0]))
    return json.dumps([encode(item) for item in items])
