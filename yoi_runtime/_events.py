"""Typed events, the bounded logs that retain them, and subscriptions.

Every Worker has one log whose events are numbered 1, 2, 3, ... without gaps
(``Event.seq``); the Runtime has one more log holding every event of every
Worker, numbered by ``Event.cursor``. A :class:`Subscription` is a cursor into
one log: it replays what the log retains after the cursor, then waits for new
events. Writers never wait for subscribers, so a slow subscriber cannot block
a Worker or another subscriber. A subscriber whose cursor falls behind what
the log retains receives a :class:`Gap` naming the cursor it resumes from,
never a silent jump.
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Callable
from typing import Literal, cast

import attrs
import trio

from ._errors import InvalidInputError
from ._event_data import EventData, EventType, TurnAcceptedData, TurnTextDeltaData

__all__ = ["Event", "EventType", "Gap", "Subscription"]

#: The maximum number of items one :meth:`Subscription.receive_batch` returns.
DEFAULT_BATCH = 256

#: Bytes counted for an event besides its text (the objects holding it).
EVENT_OVERHEAD = 512


@attrs.frozen
class Event:
    """One thing that happened to a Worker.

    Attributes:
        seq: Position in the Worker's own stream: 1, 2, 3, ... without gaps.
        cursor: Position in the Runtime-wide stream, also gap-free.
        type: What happened.
        runtime_id: The Runtime the Worker lives in.
        worker_id: The Worker it happened to.
        at: When it happened (UTC).
        data: The type's payload, an instance of the class
            ``EVENT_DATA[type]`` (:class:`TurnTextDeltaData` for
            ``turn.text_delta``, ...): read it by attribute, narrowing by
            class (``isinstance`` or ``match``). Its JSON is the ``data``
            object of ``docs/events.md``.
    """

    seq: int
    cursor: int
    type: EventType
    runtime_id: str
    worker_id: str
    at: datetime.datetime
    data: EventData


def _slot_setter(name: str) -> Callable[[Event, object], None]:
    """The descriptor's own setter of ``Event``'s slot ``name``."""
    setter: Callable[[Event, object], None] = Event.__dict__[name].__set__
    return setter


_set_seq = _slot_setter("seq")
_set_cursor = _slot_setter("cursor")
_set_type = _slot_setter("type")
_set_runtime_id = _slot_setter("runtime_id")
_set_worker_id = _slot_setter("worker_id")
_set_at = _slot_setter("at")
_set_data = _slot_setter("data")
_new_object = object.__new__


def new_event(
    seq: int,
    cursor: int,
    type: EventType,
    runtime_id: str,
    worker_id: str,
    at: datetime.datetime,
    data: EventData,
) -> Event:
    """Return ``Event(seq, cursor, type, runtime_id, worker_id, at, data)``
    at about half the cost, for the Worker's turn path (six a turn).

    The same frozen instance: each slot is set through its own descriptor
    instead of attrs' ``__init__``, which sets every field through a bound
    ``object.__setattr__`` that looks the name up again. ``Event`` has no
    defaults, validators or converters to apply; ``tests/test_events.py``
    checks that the two agree field for field.
    """
    event = _new_object(Event)
    _set_seq(event, seq)
    _set_cursor(event, cursor)
    _set_type(event, type)
    _set_runtime_id(event, runtime_id)
    _set_worker_id(event, worker_id)
    _set_at(event, at)
    _set_data(event, data)
    return event


@attrs.frozen
class Gap:
    """Marks events a subscriber can no longer receive.

    Events after ``after`` up to and including ``resume_after`` were dropped by
    retention before the subscriber read them. The next item it receives is
    the one after ``resume_after``; a client that needs them must rebuild its
    state (for example from the transcript).

    Attributes:
        after: The cursor (or ``seq``) the subscriber had reached.
        resume_after: The cursor (or ``seq``) it continues after.
        reason: ``"expired"``: the events fell out of the retained history.
    """

    after: int
    resume_after: int
    reason: Literal["expired"] = "expired"

    @property
    def missed(self) -> int:
        """How many events were skipped."""
        return self.resume_after - self.after


def event_bytes(event: Event) -> int:
    """Estimate the memory ``event`` holds, in bytes: the text it carries
    (``text`` of a delta, ``input`` of an accepted turn, one byte a
    character) plus :data:`EVENT_OVERHEAD`.

    Every other string an event carries is bounded small (ids, statuses,
    a display name of at most ``Limits.max_display_name_chars``, a reason
    of at most 1,000 characters, error messages cut to a few hundred), so
    the overhead covers it. Runs once per event on the turn path.
    """
    data = event.data
    if isinstance(data, TurnTextDeltaData):
        return EVENT_OVERHEAD + len(data.text)
    if isinstance(data, TurnAcceptedData):
        return EVENT_OVERHEAD + len(data.input)
    return EVENT_OVERHEAD


class EventLog:
    """A bounded, append-only list of events numbered from 1 without gaps.

    It retains at least ``retention`` of the newest events and trims in bulk
    when it holds a quarter more, so appending stays O(1) amortised. With a
    byte budget (``max_bytes``, :func:`event_bytes`) it also trims, down to
    three quarters of the budget, when its events hold more; the newest
    event always stays. Readers behind what it retains get a :class:`Gap`.

    Numbering and publishing are separate steps: a writer takes
    :attr:`next_position` for a new event at once, and :meth:`append` makes
    it visible to readers, in order, possibly later (a durable Runtime
    appends only once the event is committed).
    """

    __slots__ = (
        "_bytes",
        "_closed",
        "_events",
        "_first",
        "_lot",
        "_max_bytes",
        "_over_bytes",
        "_over_count",
        "_parked",
        "_retention",
        "_sizes",
        "next_position",
    )

    def __init__(
        self,
        retention: int,
        *,
        first: int = 1,
        events: list[Event] | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self._events: list[Event] = [] if events is None else list(events)
        self._first = first
        self._retention = retention
        # append() trims when it holds a quarter more events than retained,
        # or more bytes than the budget (none: never).
        self._over_count = retention + (retention >> 2)
        self._max_bytes = max_bytes
        self._over_bytes = sys.maxsize if max_bytes is None else max_bytes
        #: :func:`event_bytes` of each retained event, computed once.
        self._sizes = [event_bytes(event) for event in self._events] if events else []
        self._bytes = sum(self._sizes)
        self._lot: trio.lowlevel.ParkingLot | None = None
        #: Readers parked in :meth:`wait_beyond` and not yet woken (an int
        #: check on every append, not a call into the parking lot).
        self._parked = 0
        self._closed = False
        #: The position the next new event will carry.
        self.next_position = first + len(self._events)
        self._trim_if_over()

    @property
    def first(self) -> int:
        """The position of the oldest retained event (:attr:`last` + 1 when
        none is retained)."""
        return self._first

    @property
    def retained_bytes(self) -> int:
        """The estimated memory of the retained events, in bytes."""
        return self._bytes

    def set_max_bytes(self, max_bytes: int | None) -> None:
        """Set the byte budget (None: none) and trim to it now.

        Args:
            max_bytes: The most the retained events may hold, in bytes
                (:func:`event_bytes`).
        """
        self._max_bytes = max_bytes
        self._over_bytes = sys.maxsize if max_bytes is None else max_bytes
        self._trim_if_over()

    @property
    def last(self) -> int:
        """The position of the newest appended event (0 when there is none)."""
        return self._first + len(self._events) - 1

    @property
    def closed(self) -> bool:
        return self._closed

    def append(self, event: Event, size: int | None = None) -> None:
        """Publish the event after :attr:`last` and wake waiting readers.

        Args:
            event: The event numbered :attr:`last` + 1.
            size: Its :func:`event_bytes`, when the caller has it already
                (one event goes into two logs).
        """
        events = self._events
        events.append(event)
        if size is None:
            size = event_bytes(event)
        self._sizes.append(size)
        self._bytes += size
        if len(events) > self._over_count or self._bytes > self._over_bytes:
            self._trim()
        if self._parked and self._lot is not None:
            self._parked = 0
            self._lot.unpark_all()

    def _trim_if_over(self) -> None:
        """Trim when past the count or the byte budget (as :meth:`append`)."""
        if len(self._events) > self._over_count or self._bytes > self._over_bytes:
            self._trim()

    def _trim(self) -> None:
        """Drop the oldest events past the count or the byte budget."""
        events = self._events
        drop = 0
        if len(events) > self._retention + (self._retention >> 2):
            drop = len(events) - self._retention
        sizes = self._sizes
        freed = sum(sizes[:drop])
        budget = self._max_bytes
        if budget is not None and self._bytes - freed > budget:
            target = budget - (budget >> 2)
            excess = self._bytes - freed - target  # still to free
            last = len(events) - 1
            while drop < last and excess > 0:
                excess -= sizes[drop]
                drop += 1
            freed = self._bytes - target - excess
        if drop:
            del events[:drop]
            del sizes[:drop]
            self._first += drop
            self._bytes -= freed

    def close(self) -> None:
        """Mark the log finished: subscribers drain it, then end."""
        self._closed = True
        if self._lot is not None:
            self._parked = 0
            self._lot.unpark_all()

    def check_cursor(self, after: int | None) -> int:
        """Validate a subscriber's cursor and return it (None means now).

        Raises:
            InvalidInputError: ``after`` is negative or ahead of the log.
        """
        if after is None:
            return self.last
        if after < 0 or after > self.last:
            raise InvalidInputError(
                f"cursor {after} is outside this stream (0..{self.last})",
                path="after",
            )
        return after

    def read(self, after: int, limit: int) -> tuple[Gap | None, list[Event]]:
        """Return up to ``limit`` events after position ``after``.

        Returns:
            ``(gap, events)``: a :class:`Gap` when events after ``after`` were
            trimmed already, then the retained events that follow.
        """
        gap = None
        if after < self._first - 1:
            gap = Gap(after=after, resume_after=self._first - 1)
            after = self._first - 1
        start = after - self._first + 1
        return gap, self._events[start : start + limit]

    async def wait_beyond(self, after: int) -> None:
        """Block until the log has an event after ``after`` or is closed."""
        if self.last > after or self._closed:
            await trio.lowlevel.checkpoint()
            return
        lot = self._lot
        if lot is None:
            lot = self._lot = trio.lowlevel.ParkingLot()
        self._parked += 1
        try:
            await lot.park()
        except BaseException:
            # Not woken (a wake-up zeroes the count): cancelled while parked.
            self._parked -= 1
            raise


@attrs.define(eq=False)
class Subscription:
    """A cursor into one event stream: replay, then live, then the end.

    Use it as ``async with runtime.subscribe(...) as events:`` (the same shape
    as the network client's subscriptions, which hold a connection), then
    iterate it (``async for item in events``) or call :meth:`receive_batch`.
    Items are :class:`Event` or :class:`Gap`. A Worker's stream ends after
    ``worker.stopped`` or ``worker.failed``; the Runtime-wide stream ends when
    the Runtime closes.

    Attributes:
        position: The cursor of the last item received (an :class:`Event`'s
            ``seq`` on a Worker stream, its ``cursor`` on the Runtime stream).
            Pass it as ``after`` to resume without gap or duplicate.
    """

    _log: EventLog
    position: int
    _closed: bool = False

    def receive_batch_nowait(self, max_items: int = DEFAULT_BATCH) -> list[Event | Gap]:
        """Return every ready item, up to ``max_items``, without waiting.

        Raises:
            trio.WouldBlock: Nothing is ready yet.
            trio.EndOfChannel: The stream ended and everything was received.
            trio.ClosedResourceError: :meth:`aclose` was called.
        """
        if self._closed:
            raise trio.ClosedResourceError("the subscription is closed")
        events = self._take(max_items)
        if events is not None:  # no gap: the common case
            if events:
                return cast("list[Event | Gap]", events)
            if self._log._closed:
                raise trio.EndOfChannel
            raise trio.WouldBlock
        # Behind what the log retains: a gap, then the oldest retained events.
        log, after = self._log, self.position
        resume_after = log._first - 1
        batch: list[Event | Gap] = [Gap(after=after, resume_after=resume_after)]
        batch += log._events[: max_items - 1]
        self.position = resume_after + len(batch) - 1
        return batch

    def _take(self, limit: int) -> list[Event] | None:
        """Take up to ``limit`` of the events after :attr:`position`, read in
        place (possibly none); None when the log trimmed past the cursor
        (a :class:`Gap` is due)."""
        log, after = self._log, self.position
        start = after - log._first + 1
        if start < 0:
            return None
        events = log._events[start : start + limit]
        self.position = after + len(events)
        return events

    async def receive_batch(self, max_items: int = DEFAULT_BATCH) -> list[Event | Gap]:
        """Wait for at least one item and return every ready one, up to a limit.

        Args:
            max_items: The most items to return (at least 1).

        Returns:
            A non-empty list of items in stream order (with those appended
            while the call passed its schedule point); :attr:`position` is
            then the cursor of the last one.

        Raises:
            trio.EndOfChannel: The stream ended and everything was received.
            trio.ClosedResourceError: :meth:`aclose` was called.

        Cancellation:
            Nothing is consumed by a cancelled call: it is cancelled before it
            takes items, never after.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            batch = self.receive_batch_nowait(max_items)
        except trio.WouldBlock:
            pass
        except (trio.EndOfChannel, trio.ClosedResourceError):
            await trio.lowlevel.cancel_shielded_checkpoint()
            raise
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            # Events appended while this call yielded (say, by the task it
            # woke) are ready too: take them now rather than after one more
            # scheduler pass. Nothing was consumed before the cancel point.
            if len(batch) < max_items and not self._closed:
                # None (trimmed past meanwhile): the next call reports the Gap.
                batch += self._take(max_items - len(batch)) or []
            return batch
        # Nothing ready: parking is this call's schedule point (as in Trio's
        # own channels), so items read right after waking are returned
        # without another pass through the scheduler.
        log = self._log
        while True:
            await log.wait_beyond(self.position)
            try:
                return self.receive_batch_nowait(max_items)
            except trio.WouldBlock:
                continue

    async def receive(self) -> Event | Gap:
        """Wait for and return the next item.

        Raises:
            trio.EndOfChannel: The stream ended and everything was received.
        """
        return (await self.receive_batch(1))[0]

    def __aiter__(self) -> Subscription:
        return self

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop following the stream; later receives raise
        :class:`trio.ClosedResourceError`. Idempotent."""
        self._closed = True
        await trio.lowlevel.checkpoint()

    async def __anext__(self) -> Event | Gap:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
