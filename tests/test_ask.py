"""What the conformance suite cannot set up: ``ask`` and ``open_turn`` on an
embedded Runtime whose event retention is tiny, so their subscription falls
behind and gets a gap."""

from __future__ import annotations

import pytest
import trio

from yoi_runtime import (
    Limits,
    ScriptedEngine,
    ScriptedReply,
    TurnNotCompletedError,
    Usage,
    open_runtime,
)

#: Retains 8 events per Worker (trimmed at 10): less than one turn of DELTAS.
TINY = Limits(worker_event_retention=8)
DELTAS = tuple(f"{n} " for n in range(40))


async def test_ask_after_a_gap_returns_the_whole_text() -> None:
    engine = ScriptedEngine([ScriptedReply(deltas=DELTAS)])
    with trio.fail_after(10):
        async with open_runtime({"e": engine}, limits=TINY) as runtime:
            worker_id = (await runtime.create_worker()).worker_id
            async with runtime.open_turn(worker_id, "count") as turn:
                # Every delta is published before the caller reads one.
                await trio.testing.wait_all_tasks_blocked()
                streamed = [delta async for delta in turn]
            result = turn.result
    assert len(streamed) < len(DELTAS)  # the gap dropped some
    assert result.text == "".join(DELTAS)  # the transcript has them all
    assert result.usage == Usage(1, len(DELTAS))


async def test_a_gap_that_dropped_the_end_asks_the_worker() -> None:
    engine = ScriptedEngine([ScriptedReply(deltas=DELTAS)])
    # Retains only the newest event: the turn's end is gone behind
    # ``worker.status`` by the time the caller reads.
    limits = Limits(worker_event_retention=1)
    with trio.fail_after(10):
        async with open_runtime({"e": engine}, limits=limits) as runtime:
            worker_id = (await runtime.create_worker()).worker_id
            async with runtime.open_turn(worker_id, "count") as turn:
                await trio.testing.wait_all_tasks_blocked()
                result = await turn.wait_result()
    assert result.text == "".join(DELTAS)
    assert result.turn_id == turn.turn_id
    assert result.usage == Usage(1, len(DELTAS))  # from the Worker's summary


async def test_when_later_turns_ran_the_transcript_tells_the_end() -> None:
    engine = ScriptedEngine([ScriptedReply(deltas=DELTAS)])
    with trio.fail_after(10):
        async with open_runtime({"e": engine}, limits=TINY) as runtime:
            worker_id = (await runtime.create_worker()).worker_id
            async with runtime.open_turn(worker_id, "count") as turn:
                await trio.testing.wait_all_tasks_blocked()
                await runtime.ask(worker_id, "again")
                result = await turn.wait_result()
    assert result.text == "".join(DELTAS)
    assert result.usage == Usage()  # only the dropped events carried it


async def test_a_dropped_end_of_a_cancelled_turn_still_raises() -> None:
    engine = ScriptedEngine(
        [ScriptedReply(deltas=DELTAS, hang=True), ScriptedReply(deltas=DELTAS)]
    )
    with trio.fail_after(10):
        async with open_runtime({"e": engine}, limits=TINY) as runtime:
            worker_id = (await runtime.create_worker()).worker_id
            async with runtime.open_turn(worker_id, "hang") as turn:
                await trio.testing.wait_all_tasks_blocked()
                await runtime.cancel(worker_id, reason="enough")
                await runtime.ask(worker_id, "again")
                with pytest.raises(TurnNotCompletedError) as caught:
                    await turn.wait_result()
    assert caught.value.turn_id == turn.turn_id
    assert caught.value.text == "".join(DELTAS)
