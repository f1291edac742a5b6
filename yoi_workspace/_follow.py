"""Following one handle's event stream across breaks, and one Worker's stream.

A :class:`Follower` runs in a task of its own. It owns at most one upstream
subscription at a time (entering and leaving it in that task, as trio
requires of a subscription holding a connection) and forwards what it reads
as :class:`Batch` values into a memory channel of size 0, so it reads ahead
by at most one batch and a slow reader slows only its own follower. When the
upstream breaks (``RuntimeUnavailableError``: the remote client's own
reconnecting gave up, or the process is down) it reopens it after the last
position it forwarded, with backoff (0.1 s doubling to 5 s), for as long as
the reader keeps reading.

:class:`WorkerEventStream` is one Worker's stream built on one follower.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import attrs
import trio

from yoi_runtime import (
    Event,
    Gap,
    InvalidInputError,
    RuntimeUnavailableError,
    YoiRuntimeError,
)
from yoi_runtime.serving import position_of, single_error

from ._handle import EventStream, RuntimeHandle
from ._views import RuntimeKind

__all__ = ["MAX_BATCH", "Batch", "Feed", "Followed", "Follower", "WorkerEventStream"]

#: The most items one upstream read returns.
MAX_BATCH = 256
#: Seconds before the second attempt to reopen a stream; doubled per attempt
#: up to :data:`MAX_RETRY_DELAY` (the first reopen is immediate).
FIRST_RETRY_DELAY = 0.1
MAX_RETRY_DELAY = 5.0

#: Filters a batch (visibility); may raise ``RuntimeUnavailableError``.
Selector = Callable[[list[Event | Gap]], Awaitable[list[Event | Gap]]]


@attrs.frozen
class Batch:
    """What a follower forwards: items read from one upstream stream.

    Attributes:
        runtime_id: The Runtime the items come from.
        items: Events and gaps in stream order (possibly none, when the
            stream was just opened or every item was filtered out).
        position: The upstream position after these items (a ``seq`` on a
            Worker's stream, a ``cursor`` on a Runtime-wide one).
        reset: The upstream stream restarted from its beginning (the Runtime
            refused the old position: a process restarted with the same id).
    """

    runtime_id: str
    items: tuple[Event | Gap, ...]
    position: int
    reset: bool = False


def _retry_delay(attempt: int) -> float:
    """Seconds to wait before reopen attempt ``attempt`` (1, 2, ...)."""
    if attempt <= 1:
        return 0.0
    return min(FIRST_RETRY_DELAY * 2.0 ** (attempt - 2), MAX_RETRY_DELAY)


@attrs.define(eq=False)
class Follower:
    """Follows one stream of one handle (see the module docstring).

    Attributes:
        handle: The Runtime.
        worker_id: The Worker, or None for the Runtime-wide stream.
        position: The position after the last forwarded batch; None until
            the stream was first opened "from now".
        select: Filters each batch before it is forwarded, or None.
    """

    handle: RuntimeHandle
    worker_id: str | None
    position: int | None
    select: Selector | None = None

    async def run(
        self,
        send: trio.MemorySendChannel[Batch | YoiRuntimeError],
        *,
        persistent: bool,
        task_status: trio.TaskStatus[int | YoiRuntimeError | None],
    ) -> None:
        """Forward batches into ``send`` until the stream ends; closes ``send``.

        ``task_status.started`` receives the first position once the first
        attempt entered the stream, or else the error it failed with (None
        when ``persistent``: it keeps trying in the background).

        Args:
            send: Where batches go; an error that ends the stream (a Worker
                that no longer exists, a refused token) is sent last.
            persistent: Never give up (a Runtime-wide stream of the
                aggregate): errors are retried, a refused position restarts
                the stream from its beginning (a reset batch), a stream
                that could not be opened "from now" is read from its
                beginning once it opens, and a remote Runtime's stream that
                ends is reopened. Otherwise only
                ``RuntimeUnavailableError`` after the first attempt is
                retried.
        """
        started = False
        attempt = 0
        async with send:
            while True:
                attempt += 1
                await trio.sleep(_retry_delay(attempt))
                try:
                    async with self._subscribe() as stream:
                        self.position = stream.position
                        if not started:
                            started = True
                            task_status.started(self.position)
                        elif persistent:
                            await send.send(self._batch(()))
                        while True:
                            items = await stream.receive_batch(MAX_BATCH)
                            if self.select is not None:
                                items = await self.select(items)
                            position = stream.position
                            await send.send(self._batch(items, position))
                            self.position = position
                            attempt = 0
                except trio.EndOfChannel:
                    if not (persistent and self.handle.kind is RuntimeKind.REMOTE):
                        return
                except YoiRuntimeError as exc:
                    if isinstance(exc, RuntimeUnavailableError) and started:
                        continue
                    if not persistent:
                        if started:
                            await send.send(exc)
                        else:
                            task_status.started(exc)
                        return
                    if not started:
                        started = True
                        task_status.started(None)
                    if self.position is None:
                        # Never reached: once it is, read all it retains, so
                        # nothing it did after this stream began is missed.
                        self.position = 0
                    elif isinstance(exc, InvalidInputError) and self.position:
                        self.position = 0
                        await send.send(self._batch((), reset=True))
                        attempt = 0

    def _subscribe(self) -> EventStream:
        # An embedded handle raises here, a remote one when entered.
        return self.handle.subscribe(self.worker_id, after=self.position)

    def _batch(
        self,
        items: Sequence[Event | Gap],
        position: int | None = None,
        *,
        reset: bool = False,
    ) -> Batch:
        """A batch of ``items``, at ``position`` (default: where it is)."""
        at = self.position if position is None else position
        assert at is not None
        return Batch(self.handle.runtime_id, tuple(items), at, reset)


#: The channel between follower tasks and their reader.
Feed = trio.MemorySendChannel[Batch | YoiRuntimeError]


@attrs.define(eq=False)
class Followed:
    """Base of the registry's streams: follower tasks feeding one reader.

    A subclass's ``__aenter__`` calls :meth:`_open`, its ``receive_batch``
    calls :meth:`_next`. The followers run in a nursery this object holds
    open between ``__aenter__`` and :meth:`aclose`, in the entering task.
    """

    _receive: trio.MemoryReceiveChannel[Batch | YoiRuntimeError] | None = attrs.field(
        default=None, init=False
    )
    _stack: contextlib.AsyncExitStack | None = attrs.field(default=None, init=False)

    async def _open(
        self, start: Callable[[trio.Nursery, Feed], Awaitable[None]]
    ) -> None:
        """Open the followers' nursery and channel; ``start`` starts them
        (giving each ``send.clone()``, or the one follower ``send``)."""
        send, receive = trio.open_memory_channel[Batch | YoiRuntimeError](0)
        async with contextlib.AsyncExitStack() as stack:
            stack.enter_context(single_error())
            nursery = await stack.enter_async_context(trio.open_nursery())
            stack.enter_context(receive)
            stack.callback(nursery.cancel_scope.cancel)
            async with send:
                await start(nursery, send)
            self._receive = receive
            self._stack = stack.pop_all()

    async def _next(self) -> Batch:
        """The next batch.

        Raises:
            trio.EndOfChannel: Every follower ended.
            YoiRuntimeError: The error a follower ended its stream with.
        """
        if self._receive is None:
            raise trio.ClosedResourceError("enter the stream first")
        got = await self._receive.receive()
        if isinstance(got, YoiRuntimeError):
            raise got
        return got

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop following; idempotent."""
        stack, self._stack = self._stack, None
        if stack is None:
            await trio.lowlevel.checkpoint()
            return
        await stack.aclose()


@attrs.define(eq=False)
class WorkerEventStream(Followed):
    """One Worker's events through the registry, resuming across breaks.

    Enter it (``async with``): that opens the upstream stream once and raises
    what it was refused with (``WorkerNotFoundError``, ``InvalidInputError``
    for a bad ``after``, ``RuntimeUnavailableError``,
    ``OperationUnsupportedError`` on a compat source). Then
    :meth:`receive_batch` returns events and gaps as the Runtime numbers
    them (:attr:`position` is a ``seq``), and keeps going when the Runtime
    goes away and comes back.

    Errors from :meth:`receive_batch`: ``trio.EndOfChannel`` after
    ``worker.stopped`` / ``worker.failed``; the error that ended the stream
    on a reopen (``WorkerNotFoundError`` from a process restarted without
    the Worker).
    """

    _follower: Follower
    _check: Callable[[], Awaitable[None]]
    _pending: deque[Event | Gap] = attrs.field(factory=deque)
    _position: int = 0

    @property
    def position(self) -> int:
        """The ``seq`` of the last item received (pass it as ``after``)."""
        return self._position

    async def __aenter__(self) -> WorkerEventStream:
        await self._check()

        async def start(nursery: trio.Nursery, send: Feed) -> None:
            run = partial(self._follower.run, send.clone(), persistent=False)
            started = await nursery.start(run)
            if isinstance(started, YoiRuntimeError):
                raise started
            assert started is not None
            self._position = started

        await self._open(start)
        return self

    async def receive_batch(self, max_items: int = MAX_BATCH) -> list[Event | Gap]:
        """Wait for at least one item; return every ready one, up to a limit.

        Cancellation: safe; nothing is lost by a cancelled call.
        """
        while not self._pending:
            self._pending.extend((await self._next()).items)
        count = min(max_items, len(self._pending))
        batch = [self._pending.popleft() for _ in range(count)]
        self._position = position_of(batch[-1], worker_stream=True)
        return batch
