"""Event streams as ``text/event-stream`` (Server-Sent Events).

Every WebSocket event route also answers a plain ``GET`` whose ``Accept``
names ``text/event-stream`` (:func:`wants_event_stream`), so ``curl -N`` and
a browser's ``EventSource`` can follow it. It is the WebSocket stream's
second writer: the same :class:`~._streams.StreamPump` decides what comes
next, and only the framing differs (``docs/protocol.md``; the text is made
by :func:`yoi_runtime._stream_protocol.sse_text`):

- each item is one SSE event, ``id:`` its cursor (resume after it) and
  ``data:`` the item's JSON, exactly as a WebSocket frame carries it
  (events, ``stream.gap``, ``stream.reset``);
- a heartbeat is a comment line, ``: heartbeat position=N``;
- the end is a last event without ``id:``, ``{"type": "stream.end",
  "code", "reason"}`` with the WebSocket close code and reason;
- a client resumes with ``Last-Event-ID`` (which ``EventSource`` sends by
  itself when it reconnects) or ``?after=``; the header wins.

Quart sends the body from the request's task once the handler returned, so
the stream is read by its own task in the app's nursery
(:func:`event_stream_response`), entered there before the response exists
(refusals are HTTP errors), and hands its text to the body through a
channel of size 0. A client that goes away closes the body, which ends that
task and the subscription.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import trio
from quart import Response, request

from .._errors import InvalidInputError
from .._events import Event, Gap
from .._stream_protocol import (
    SSE_PREAMBLE,
    Closing,
    position_of,
    sse_comment,
    sse_event,
    sse_text,
)
from .._util import parse_count
from ._http import WebSocketRequiredError
from ._streams import (
    EVENT_STREAM,
    EventSource,
    Ready,
    StreamControl,
    StreamPump,
    wants_event_stream,
)

__all__ = [
    "EnterableSource",
    "event_stream_response",
    "item_cursor",
    "sse_comment",
    "sse_event",
    "sse_resume",
    "sse_resume_count",
    "sse_text",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
S = TypeVar("S", bound="EnterableSource[Any]")

_log = logging.getLogger("yoi_runtime.server")


class EnterableSource(EventSource[T_co], Protocol):
    """An event stream that is entered (``async with``) before it is read;
    entering raises the refusals (unknown Worker, bad cursor, ...)."""

    async def __aenter__(self) -> Any: ...
    async def __aexit__(self, *exc_info: Any) -> Any: ...


def item_cursor(item: Event | Gap, *, worker_stream: bool) -> str:
    """The cursor to resume after ``item``: its ``seq`` on a Worker's
    stream, its ``cursor`` on a Runtime's, a gap's ``resume_after``
    (:func:`~yoi_runtime._stream_protocol.position_of`)."""
    return str(position_of(item, worker_stream=worker_stream))


class _Body:
    """The response body: text from the stream's task, until it ends.

    Closing it (Quart does when the client goes away) closes the channel,
    which ends the stream's task.
    """

    def __init__(
        self, receive: trio.MemoryReceiveChannel[bytes], task: trio.CancelScope
    ) -> None:
        self._receive = receive
        self._task = task

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self._receive.close()
        self._task.cancel()


async def event_stream_response(
    nursery: trio.Nursery,
    stream: S,
    control: StreamControl,
    *,
    encode: Callable[[Any], Any],
    item_id: Callable[[Any], str],
    ready: Callable[[S], Ready[Any]],
    wrap: Callable[[S], EventSource[Any]] | None = None,
) -> Response:
    """Enter ``stream`` and answer with it as ``text/event-stream``.

    Args:
        nursery: Where the stream's task runs (the app's, ``app.nursery``).
        stream: The stream, not yet entered; its task enters and closes it.
        control: The app's streams (heartbeat timing and shutdown).
        encode: One item's JSON value.
        item_id: One item's ``id:`` (the cursor to resume after it).
        ready: Makes the shutdown flush for the entered stream
            (:func:`~._streams.ready_now`, :func:`~._streams.ready_within`).
        wrap: What to read the entered stream through (metrics counting);
            None reads it directly.

    Returns:
        The streaming response (no response timeout).

    Raises:
        Whatever entering ``stream`` raises (the handler's error answer).
    """
    headers = {"X-Accel-Buffering": "no"}
    content_type = f"{EVENT_STREAM}; charset=utf-8"
    if request.method == "HEAD":
        return Response(b"", content_type=content_type, headers=headers)
    send, receive = trio.open_memory_channel[bytes](0)
    client_left = trio.CancelScope()
    try:
        await nursery.start(
            _pump, stream, control, send, client_left, encode, item_id, ready, wrap
        )
    except BaseException:
        receive.close()
        raise
    response = Response(
        _Body(receive, client_left),
        content_type=content_type,
        headers=headers,
    )
    response.timeout = None
    return response


async def _pump(
    stream: S,
    control: StreamControl,
    send: trio.MemorySendChannel[bytes],
    client_left: trio.CancelScope,
    encode: Callable[[Any], Any],
    item_id: Callable[[Any], str],
    ready: Callable[[S], Ready[Any]],
    wrap: Callable[[S], EventSource[Any]] | None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The stream's task: enter it, then write its steps until it closes or
    the client goes away (the body cancels ``client_left``)."""
    started = False
    async with send:
        try:
            async with stream:
                task_status.started()
                started = True
                with client_left, control.counting():
                    await send.send(SSE_PREAMBLE.encode())
                    source = stream if wrap is None else wrap(stream)
                    pump = StreamPump(source, control, ready(stream))
                    while True:
                        step = await pump.next()
                        await send.send(sse_text(step, encode, item_id).encode())
                        if isinstance(step, Closing):
                            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the client went away
        except Exception:
            if not started:
                raise  # a refusal: the handler answers it
            # Past the start nobody can answer it: end this response only,
            # never the app's nursery.
            _log.exception("event stream failed")


def sse_resume() -> str | None:
    """Where an SSE request resumes: ``Last-Event-ID``, else ``?after=``.

    Returns:
        The cursor as given, or None (from now).

    Raises:
        WebSocketRequiredError: ``Accept`` does not ask for
            ``text/event-stream`` (a plain request to an event route).
    """
    if not wants_event_stream(request.headers.getlist("Accept")):
        raise WebSocketRequiredError(
            f"{request.path} streams over WebSocket, or as {EVENT_STREAM} "
            f"with Accept: {EVENT_STREAM}"
        )
    last = request.headers.get("Last-Event-ID", "").strip()
    return last or request.args.get("after")


def sse_resume_count() -> int | None:
    """:func:`sse_resume` as a count (a ``seq`` or a Runtime ``cursor``).

    Raises:
        WebSocketRequiredError: See :func:`sse_resume`.
        InvalidInputError: Not a non-negative integer; ``path`` is the
            header or ``after``.
    """
    raw = sse_resume()
    if raw is None:
        return None
    value = parse_count(raw)
    if value is None:
        name = "Last-Event-ID" if request.headers.get("Last-Event-ID") else "after"
        raise InvalidInputError(f"{name} must be a non-negative integer", path=name)
    return value
