"""Observation: gap-free sequences, resumable cursors, gaps, slow readers."""

from __future__ import annotations

import datetime
import inspect

import attrs
import pytest
import trio
import trio.testing

from yoi_runtime import (
    Event,
    EventData,
    EventType,
    Gap,
    InvalidInputError,
    Limits,
    ScriptedEngine,
    ScriptedReply,
    Subscription,
    TurnAcceptedData,
    TurnCancelledData,
    TurnTextDeltaData,
    open_runtime,
)
from yoi_runtime._events import EVENT_OVERHEAD, EventLog, event_bytes, new_event

WORDS = tuple(f"w{i} " for i in range(20))


async def drain(sub: Subscription) -> list[Event | Gap]:
    """Everything a subscription has ready now (waits 1 ms for more)."""
    items: list[Event | Gap] = []
    while True:
        with trio.move_on_after(0.001) as scope:
            items += await sub.receive_batch()
        if scope.cancelled_caught:
            return items


async def test_resume_from_any_cursor_without_gap_or_duplicate(
    autojump_clock: object,
) -> None:
    engine = ScriptedEngine([ScriptedReply(deltas=WORDS, delay=0.01)])
    async with open_runtime({"s": engine}) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        full = runtime.subscribe(worker_id, after=0)
        await runtime.send_input(worker_id, "stream")
        # A subscriber that disconnects in the middle and comes back later.
        first = runtime.subscribe(worker_id, after=0)
        got: list[int] = []
        while len(got) < 8:
            got += [e.seq for e in await first.receive_batch(3)]  # type: ignore[union-attr]
        cursor = first.position
        assert cursor == got[-1]
        await trio.sleep(0.05)  # events keep flowing while it is away
        second = runtime.subscribe(worker_id, after=cursor)
        with trio.fail_after(5):
            async for item in second:
                assert isinstance(item, Event)
                got.append(item.seq)
                if item.type == "turn.completed":
                    break
        assert got == list(range(1, got[-1] + 1))
        reference = []
        async for item in full:
            assert isinstance(item, Event)
            reference.append(item.seq)
            if item.type == "turn.completed":
                break
        assert reference == got


async def test_runtime_wide_stream_interleaves_workers_with_its_own_cursor() -> None:
    async with open_runtime({"s": ScriptedEngine()}) as runtime:
        everything = runtime.subscribe()
        a = (await runtime.create_worker()).worker_id
        b = (await runtime.create_worker()).worker_id
        await runtime.send_input(a, "to a")
        await runtime.send_input(b, "to b")
        await trio.testing.wait_all_tasks_blocked()
        items = await drain(everything)
        events = [e for e in items if isinstance(e, Event)]
        assert len(events) == len(items)
        assert [e.cursor for e in events] == list(range(1, len(events) + 1))
        for worker_id in (a, b):
            seqs = [e.seq for e in events if e.worker_id == worker_id]
            assert seqs == list(range(1, len(seqs) + 1))
        assert {e.type.value for e in events if e.worker_id == b} >= {
            "worker.created",
            "turn.completed",
        }
        # Resuming the runtime-wide stream from a cursor replays the rest.
        middle = events[4].cursor
        resumed = await drain(runtime.subscribe(after=middle))
        assert resumed == events[5:]


async def test_expired_cursor_gets_an_explicit_gap() -> None:
    limits = Limits(worker_event_retention=8, runtime_event_retention=8)
    engine = ScriptedEngine([ScriptedReply(deltas=WORDS)])
    async with open_runtime({"s": engine}, limits=limits) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        await runtime.send_input(worker_id, "many events")
        await trio.testing.wait_all_tasks_blocked()
        last = (await runtime.get_worker(worker_id)).last_seq
        assert last > 20
        items = await drain(runtime.subscribe(worker_id, after=1))
        gap = items[0]
        assert isinstance(gap, Gap)
        assert gap.after == 1
        assert gap.reason == "expired"
        rest = items[1:]
        assert all(isinstance(e, Event) for e in rest)
        seqs = [e.seq for e in rest]  # type: ignore[union-attr]
        assert seqs == list(range(gap.resume_after + 1, last + 1))
        assert gap.missed == gap.resume_after - 1
        assert 8 <= len(seqs) <= 10
        # The transcript stays complete although events were dropped.
        entries = (await runtime.transcript(worker_id)).items
        assert entries[-1].text == "".join(WORDS)


async def test_slow_subscriber_never_blocks_the_worker(autojump_clock: object) -> None:
    limits = Limits(worker_event_retention=50)
    engine = ScriptedEngine([ScriptedReply(deltas=WORDS)])
    async with open_runtime({"s": engine}, limits=limits) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        stalled = runtime.subscribe(worker_id)  # never read until the end
        lively = runtime.subscribe(worker_id)
        completed = 0
        with trio.fail_after(10):
            for i in range(10):
                await runtime.send_input(worker_id, f"turn {i}")
                async for item in lively:
                    assert isinstance(item, Event)
                    if item.type == "turn.completed":
                        completed += 1
                        break
        assert completed == 10
        assert trio.current_time() == 0  # nothing waited on the stalled reader
        items = await drain(stalled)
        assert isinstance(items[0], Gap)
        assert items[0].after == 1
        seqs = [e.seq for e in items[1:]]  # type: ignore[union-attr]
        assert seqs == list(range(items[0].resume_after + 1, seqs[-1] + 1))


async def test_worker_stream_ends_after_stop() -> None:
    async with open_runtime({"s": ScriptedEngine()}) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        sub = runtime.subscribe(worker_id, after=0)
        await runtime.stop(worker_id, reason="bye")
        items = [item async for item in sub]
        assert [e.type.value for e in items] == [  # type: ignore[union-attr]
            "worker.created",
            "worker.stopped",
        ]
        with pytest.raises(trio.EndOfChannel):
            await sub.receive()


@pytest.mark.parametrize("after", [-1, 99])
async def test_cursor_outside_the_stream_is_invalid(after: int) -> None:
    async with open_runtime({"s": ScriptedEngine()}) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        with pytest.raises(InvalidInputError) as info:
            runtime.subscribe(worker_id, after=after)
        assert info.value.path == "after"


async def test_transcript_pages_and_truncation() -> None:
    limits = Limits(transcript_retention=4)
    async with open_runtime({"s": ScriptedEngine()}, limits=limits) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        sub = runtime.subscribe(worker_id)
        for i in range(2):
            await runtime.send_input(worker_id, f"q{i}")
            async for item in sub:
                if isinstance(item, Event) and item.type == "turn.completed":
                    break
        page = await runtime.transcript(worker_id, limit=3)
        assert [e.index for e in page.items] == [1, 2, 3]
        assert not page.truncated
        assert page.next_cursor == "3"
        tail = await runtime.transcript(worker_id, cursor=page.next_cursor)
        assert [(e.index, e.text) for e in tail.items] == [(4, "echo: q1")]
        assert tail.next_cursor is None
        assert (await runtime.transcript(worker_id)).items[0].index == 1
        for i in range(2, 5):
            await runtime.send_input(worker_id, f"q{i}")
            async for item in sub:
                if isinstance(item, Event) and item.type == "turn.completed":
                    break
        trimmed = await runtime.transcript(worker_id, limit=500)
        assert trimmed.truncated
        indexes = [e.index for e in trimmed.items]
        assert indexes == list(range(indexes[0], 11))
        assert trimmed.items[-1].text == "echo: q4"


async def test_a_cancelled_receive_loses_nothing() -> None:
    async with open_runtime({"s": ScriptedEngine()}) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        sub = runtime.subscribe(worker_id, after=0)
        with trio.CancelScope() as scope:
            scope.cancel()
            await sub.receive_batch()
        assert scope.cancelled_caught
        assert sub.position == 0
        with pytest.raises(trio.WouldBlock):
            runtime.subscribe(worker_id).receive_batch_nowait()
        first = sub.receive_batch_nowait()
        assert [e.seq for e in first] == [1]  # type: ignore[union-attr]
        await sub.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await sub.receive()


async def test_a_batch_takes_what_arrived_during_its_schedule_point() -> None:
    # After send_input the actor and the caller are both runnable, in an
    # order Trio picks at random. Either way, the caller's next batch holds
    # the whole instant turn: events the actor appends while the receive
    # passes its schedule point are taken too (one scheduler pass less).
    expected = [
        "turn.accepted",
        "worker.status",
        "turn.started",
        "turn.text_delta",
        "turn.completed",
        "worker.status",
    ]
    with trio.fail_after(5):
        async with open_runtime({"s": ScriptedEngine()}) as runtime:
            worker_id = (await runtime.create_worker()).worker_id
            async with runtime.subscribe(worker_id) as sub:
                for _ in range(30):
                    await runtime.send_input(worker_id, "ping")
                    batch = await sub.receive_batch()
                    assert [item.type for item in batch] == expected  # type: ignore[union-attr]
                    assert sub.position == batch[-1].seq  # type: ignore[union-attr]
                # A limit still holds: the top-up stops at max_items.
                await runtime.send_input(worker_id, "ping")
                assert len(await sub.receive_batch(4)) == 4
                assert len(await sub.receive_batch()) == 2


def _delta(seq: int, text: str) -> Event:
    return Event(
        seq,
        seq,
        EventType.TURN_TEXT_DELTA,
        "rt",
        "w",
        datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        TurnTextDeltaData("t-1", text),
    )


def test_new_event_builds_the_same_frozen_event_as_event() -> None:
    # new_event takes every field of Event, in order, and nothing else.
    names = [field.name for field in attrs.fields(Event)]
    assert list(inspect.signature(new_event).parameters) == names
    at = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    values = (7, 70, EventType.TURN_TEXT_DELTA, "rt", "w", at, _delta(1, "x").data)
    event = new_event(*values)
    assert type(event) is Event
    assert event == Event(*values)
    assert [getattr(event, name) for name in names] == list(values)
    assert hash(event) == hash(Event(*values))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.seq = 8  # type: ignore[misc]


def test_event_bytes_counts_the_text_an_event_carries() -> None:
    at = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

    def of(type: EventType, data: EventData) -> int:
        return event_bytes(Event(1, 1, type, "rt", "w", at, data))

    assert of(EventType.TURN_TEXT_DELTA, TurnTextDeltaData("t-1", "x" * 300)) == (
        EVENT_OVERHEAD + 300
    )
    accepted = TurnAcceptedData("t-1", "y" * 70, "in-1")
    assert of(EventType.TURN_ACCEPTED, accepted) == EVENT_OVERHEAD + 70
    # Other payloads hold bounded small strings: the overhead covers them.
    assert of(EventType.TURN_CANCELLED, TurnCancelledData("t-1", "z" * 900)) == (
        EVENT_OVERHEAD
    )


def test_an_event_log_trims_to_its_byte_budget() -> None:
    # 100 events of 1,000 characters of text (1,512 bytes each by the estimate) into a
    # 10,000-byte budget: trimmed to at most three quarters of it when over;
    # an event larger than the whole budget still stays, alone.
    log = EventLog(1_000, max_bytes=10_000)
    for seq in range(1, 101):
        log.append(_delta(seq, "x" * 1_000))
        assert log.retained_bytes <= 10_000
    assert log.last == 100
    gap, events = log.read(0, 100)
    assert gap == Gap(after=0, resume_after=log.first - 1)
    assert [e.seq for e in events] == list(range(log.first, 101))
    assert log.retained_bytes == len(events) * (EVENT_OVERHEAD + 1_000)
    log.append(_delta(101, "y" * 20_000))
    assert (log.first, log.last) == (101, 101)
    log.set_max_bytes(None)
    for seq in range(102, 200):
        log.append(_delta(seq, "z"))
    assert log.first == 101
