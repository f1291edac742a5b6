"""Pushing one subscription down one WebSocket (see ``docs/protocol.md``).

A frame holds one item when the subscriber keeps up, and a JSON array of
every ready item (up to :data:`MAX_BATCH`) when it has a backlog, so a slow
network gets fewer, larger frames instead of a growing queue. The
subscription is a cursor into the Runtime's bounded log: nothing is buffered
per connection, a slow reader blocks only its own connection's task, and a
reader that falls behind retention gets a gap.

Sends are never cancelled part-way (that would leave half a frame on the
wire); only the wait for new events is.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Protocol

import attrs
import trio

from .._events import Event, Gap, Subscription
from .._wire import item_to_json

if TYPE_CHECKING:
    from ._app import ServerState

__all__ = ["MAX_BATCH", "StreamSettings", "serve_event_stream"]

#: The most items one frame carries.
MAX_BATCH = 256


class _Socket(Protocol):
    async def accept(self) -> None: ...
    async def send(self, data: str) -> None: ...
    async def close(self, code: int, reason: str = "") -> None: ...


@attrs.frozen
class StreamSettings:
    """Timing of event streams, in seconds.

    Attributes:
        heartbeat_interval: Silence after which a heartbeat item is sent.
        close_timeout: Longest wait for the close handshake.
    """

    heartbeat_interval: float = 15.0
    close_timeout: float = 5.0


async def serve_event_stream(
    socket: _Socket, subscription: Subscription, state: ServerState
) -> None:
    """Accept the WebSocket and push ``subscription`` down it until it ends.

    Closes with 1000 when the stream ended, 1001 when the process drains.
    """
    await socket.accept()
    state.stream_opened()
    try:
        await _pump(socket, subscription, state)
    finally:
        state.stream_closed()


async def _pump(
    socket: _Socket, subscription: Subscription, state: ServerState
) -> None:
    settings = state.streams
    code, reason = 1000, "stream ended"
    async with subscription:
        while not state.streams_closing:
            with trio.CancelScope() as wait:
                wait.deadline = trio.current_time() + settings.heartbeat_interval
                state.stream_scopes.add(wait)
                try:
                    items = await subscription.receive_batch(MAX_BATCH)
                except trio.EndOfChannel:
                    break
                finally:
                    state.stream_scopes.discard(wait)
            if wait.cancelled_caught:
                if state.streams_closing:
                    break
                frame = {"type": "stream.heartbeat", "position": subscription.position}
                text = json.dumps(frame)
            else:
                text = _frame(items)
            await socket.send(text)
        if state.draining:
            await _flush(socket, subscription)
            code, reason = 1001, "runtime shutting down"
    with trio.move_on_after(settings.close_timeout, shield=True):
        await socket.close(code, reason)


async def _flush(socket: _Socket, subscription: Subscription) -> None:
    """Send what the subscription has ready now, without waiting for more."""
    while True:
        try:
            items = subscription.receive_batch_nowait(MAX_BATCH)
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return
        await socket.send(_frame(items))


def _frame(items: list[Event | Gap]) -> str:
    """One frame's text: the item itself, or an array of several."""
    if len(items) == 1:
        return json.dumps(item_to_json(items[0]))
    return json.dumps([item_to_json(item) for item in items])
