"""Event streams behave the same on the embedded Runtime and over WebSocket."""

from __future__ import annotations

import pytest
import trio
from conformance.support import events_until, types

from yoi_runtime import (
    Event,
    Gap,
    RuntimeAPI,
    TurnAcceptedData,
    TurnCompletedData,
    TurnStartedData,
    TurnTextDeltaData,
    Usage,
    WorkerCreatedData,
    WorkerStatus,
    WorkerStatusData,
)

TURN = [
    "turn.accepted",
    "worker.status",
    "turn.started",
    "turn.text_delta",
    "turn.completed",
    "worker.status",
]


async def echo_turns(runtime: RuntimeAPI, worker_id: str, *texts: str) -> None:
    """Run turns one after another, each to its end (``worker.status`` idle)."""
    async with runtime.subscribe(worker_id) as events:
        for text in texts:
            await runtime.send_input(worker_id, text)
            await events_until(events, "turn.completed")
            assert (await events.receive()).type == "worker.status"


async def test_turn_events_in_order(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker = await runtime.create_worker(display_name="Ada")
        async with runtime.subscribe(worker.worker_id, after=0) as events:
            turn = await runtime.send_input(worker.worker_id, "hello there")
            seen = await events_until(events, "turn.completed")
            seen.append(await events.receive())
            assert events.position == 7
    assert types(seen) == ["worker.created", *TURN]
    assert [e.seq for e in seen] == [1, 2, 3, 4, 5, 6, 7]
    assert {e.worker_id for e in seen} == {worker.worker_id}
    assert {e.runtime_id for e in seen} == {runtime.runtime_id}
    assert all(e.at.tzinfo is not None for e in seen)
    assert [e.cursor for e in seen] == sorted(e.cursor for e in seen)
    assert seen[0].data == WorkerCreatedData(
        "Ada", "companion", "echo", WorkerStatus.IDLE
    )
    assert seen[1].data == TurnAcceptedData(turn.turn_id, "hello there", None)
    assert seen[2].data == WorkerStatusData(WorkerStatus.RUNNING, WorkerStatus.IDLE)
    assert seen[3].data == TurnStartedData(turn.turn_id, 0)
    assert seen[4].data == TurnTextDeltaData(turn.turn_id, "echo: hello there")
    assert seen[5].data == TurnCompletedData(turn.turn_id, Usage(2, 1), "stop", False)


async def test_streamed_deltas_arrive_in_order(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker = await runtime.create_worker(engine="slow")
        async with runtime.subscribe(worker.worker_id) as events:
            await runtime.send_input(worker.worker_id, "spell", input_id="in-1")
            seen = await events_until(events, "turn.completed")
    accepted = seen[0].data
    assert isinstance(accepted, TurnAcceptedData)
    assert accepted.input_id == "in-1"
    deltas = [e.data.text for e in seen if isinstance(e.data, TurnTextDeltaData)]
    assert deltas == ["a ", "b ", "c "]
    assert [e.seq for e in seen] == list(range(2, 2 + len(seen)))


async def test_subscribe_from_now(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker = await runtime.create_worker()
        await echo_turns(runtime, worker.worker_id, "before")
        async with runtime.subscribe(worker.worker_id) as events:
            assert events.position == 7
            await runtime.send_input(worker.worker_id, "after")
            first = await events.receive()
    assert isinstance(first, Event)
    assert first.type == "turn.accepted"
    assert first.seq == 8
    assert isinstance(first.data, TurnAcceptedData)
    assert first.data.input == "after"


async def test_replay_then_resume_from_a_cursor(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker = await runtime.create_worker()
        await echo_turns(runtime, worker.worker_id, "one", "two")
        async with runtime.subscribe(worker.worker_id, after=0) as events:
            replayed = [await events.receive() for _ in range(13)]
            assert events.position == 13
        assert [item.seq for item in replayed if isinstance(item, Event)] == list(
            range(1, 14)
        )
        async with runtime.subscribe(worker.worker_id, after=5) as events:
            assert events.position == 5
            head = [await events.receive() for _ in range(8)]
            # Live after the replay: no gap, no duplicate.
            await runtime.send_input(worker.worker_id, "three")
            live = await events_until(events, "turn.completed")
    assert head == replayed[5:]
    assert [e.seq for e in live] == list(range(14, 14 + len(live)))
    assert types(live) == TURN[:-1]


async def test_receive_batch(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker = await runtime.create_worker()
        await echo_turns(runtime, worker.worker_id, "one", "two")
        received: list[Event | Gap] = []
        async with runtime.subscribe(worker.worker_id, after=0) as events:
            while len(received) < 13:
                batch = await events.receive_batch(3)
                assert 1 <= len(batch) <= 3
                received.extend(batch)
                assert events.position == len(received)
        assert [item.seq for item in received if isinstance(item, Event)] == list(
            range(1, 14)
        )
        async with runtime.subscribe(worker.worker_id, after=0) as events:
            whole: list[Event | Gap] = []
            while len(whole) < 13:
                whole.extend(await events.receive_batch())
        assert whole == received


async def test_stream_ends_after_stop(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker = await runtime.create_worker()
        async with runtime.subscribe(worker.worker_id, after=0) as events:
            await runtime.stop(worker.worker_id, reason="done")
            seen = [item async for item in events]
            with pytest.raises(trio.EndOfChannel):
                await events.receive()
        assert types(seen) == ["worker.created", "worker.stopped"]
        # A stopped Worker's stream still replays, then ends.
        async with runtime.subscribe(worker.worker_id, after=1) as events:
            assert [item async for item in events] == seen[1:]


async def test_closed_subscription_refuses_receive(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker = await runtime.create_worker()
        async with runtime.subscribe(worker.worker_id, after=0) as events:
            await events.receive()
            await events.aclose()
            await events.aclose()
            with pytest.raises(trio.ClosedResourceError):
                await events.receive()


async def test_runtime_stream_of_two_workers(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        async with runtime.subscribe() as events:
            start = events.position
            a = await runtime.create_worker(engine="slow")
            b = await runtime.create_worker(engine="slow")
            await runtime.send_input(a.worker_id, "first")
            await runtime.send_input(b.worker_id, "second")
            seen: list[Event] = []
            completed = 0
            while completed < 2:
                item = await events.receive()
                assert isinstance(item, Event)
                seen.append(item)
                completed += item.type == "turn.completed"
        assert [e.cursor for e in seen] == list(range(start + 1, start + 1 + len(seen)))
        assert events.position == seen[-1].cursor
        for worker in (a, b):
            mine = [e for e in seen if e.worker_id == worker.worker_id]
            assert [e.seq for e in mine] == list(range(1, 1 + len(mine)))
            assert types(mine)[0] == "worker.created"
            assert "turn.completed" in types(mine)
        # Resuming the Runtime stream from a mid cursor: no gap, no duplicate.
        middle = seen[len(seen) // 2].cursor
        async with runtime.subscribe(after=middle) as events:
            resumed = [await events.receive() for _ in range(seen[-1].cursor - middle)]
        assert resumed == [e for e in seen if e.cursor > middle]
