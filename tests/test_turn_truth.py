"""Turns that tell the truth: finish reasons, the context budget, and the
per-engine limit on concurrent turns (scripted engines, virtual clock)."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from yoi_runtime import (
    Event,
    Limits,
    ScriptedEngine,
    ScriptedReply,
    Subscription,
    TurnCompletedData,
    TurnFailedData,
    TurnStartedData,
    TurnStatus,
    WorkerStatus,
    open_runtime,
)
from yoi_runtime._engines._base import estimate_tokens


async def until(sub: Subscription, *final: str) -> list[Event]:
    """Collect events up to and including the first of type in ``final``."""
    seen: list[Event] = []
    with trio.fail_after(60):
        async for item in sub:
            assert isinstance(item, Event), item
            seen.append(item)
            if item.type in final:
                return seen
    raise AssertionError(f"stream ended before {final}")


async def test_completed_turn_carries_the_finish_reason() -> None:
    engine = ScriptedEngine(
        [ScriptedReply(deltas=("cut ", "off"), finish_reason="length")]
    )
    async with open_runtime({"s": engine}) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        sub = runtime.subscribe(worker_id)
        turn = await runtime.send_input(worker_id, "tell me everything")
        events = await until(sub, "turn.completed", "turn.failed")
        done = events[-1]
        assert done.type == "turn.completed"
        assert isinstance(done.data, TurnCompletedData)
        assert done.data.finish_reason == "length"
        assert done.data.truncated is True
        detail = await runtime.get_worker(worker_id)
        assert detail.last_turn is not None
        assert detail.last_turn.turn_id == turn.turn_id
        assert (detail.last_turn.finish_reason, detail.last_turn.truncated) == (
            "length",
            True,
        )
        page = await runtime.transcript(worker_id)
        answer = page.items[-1]
        assert (answer.kind, answer.text, answer.status) == (
            "assistant",
            "cut off",
            TurnStatus.COMPLETED,
        )
        assert (answer.finish_reason, answer.truncated) == ("length", True)
        user = page.items[0]
        assert (user.finish_reason, user.truncated) == (None, False)


async def test_stream_without_finish_reason_fails_and_keeps_partial_text() -> None:
    engine = ScriptedEngine(
        [
            ScriptedReply(deltas=("half an ",), finish_reason=None),
            ScriptedReply(deltas=("whole answer",)),
        ]
    )
    async with open_runtime({"s": engine}) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        sub = runtime.subscribe(worker_id)
        await runtime.send_input(worker_id, "first")
        failed = (await until(sub, "turn.completed", "turn.failed"))[-1]
        assert failed.type == "turn.failed"
        assert isinstance(failed.data, TurnFailedData)
        assert failed.data.error.code == "engine_stream_incomplete"
        detail = await runtime.get_worker(worker_id)
        assert detail.status is WorkerStatus.IDLE
        assert detail.last_turn is not None
        assert detail.last_turn.finish_reason is None
        assert detail.last_turn.error is not None
        assert detail.last_turn.error.code == "engine_stream_incomplete"
        entries = (await runtime.transcript(worker_id)).items
        assert [(e.kind, e.status, e.finish_reason) for e in entries] == [
            ("user", TurnStatus.ACCEPTED, None),
            ("assistant", TurnStatus.FAILED, None),
            ("error", TurnStatus.FAILED, None),
        ]
        assert entries[1].text == "half an "
        # An incomplete answer is not history: the next prompt leaves it out.
        await runtime.send_input(worker_id, "second")
        await until(sub, "turn.completed")
        assert engine.requests[-1].history == ()


async def test_durable_store_keeps_finish_reasons(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'rt.db'}"
    engine = ScriptedEngine([ScriptedReply(deltas=("x",), finish_reason="length")])
    async with open_runtime({"s": engine}, store=store) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        sub = runtime.subscribe(worker_id)
        await runtime.send_input(worker_id, "go")
        await until(sub, "turn.completed")
        await until(sub, "worker.status")
    async with open_runtime({"s": engine}, store=store) as runtime:
        detail = await runtime.get_worker(worker_id)
        assert detail.last_turn is not None
        assert (detail.last_turn.finish_reason, detail.last_turn.truncated) == (
            "length",
            True,
        )
        answer = (await runtime.transcript(worker_id)).items[-1]
        assert (answer.finish_reason, answer.truncated) == ("length", True)


def words(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


async def test_history_is_trimmed_to_the_newest_whole_turns_that_fit() -> None:
    # Each answer is about 200 estimated tokens; the context holds a few.
    answer = words(120, "a")
    engine = ScriptedEngine(
        lambda request: ScriptedReply(deltas=(answer,)),
        context_tokens=1200,
        max_tokens=200,
    )
    per_turn = estimate_tokens(answer) + estimate_tokens("question 00") + 16
    async with open_runtime({"s": engine}) as runtime:
        worker_id = (await runtime.create_worker(system_prompt="Be brief.")).worker_id
        sub = runtime.subscribe(worker_id)
        omitted = []
        for i in range(30):
            await runtime.send_input(worker_id, f"question {i:02}")
            events = await until(sub, "turn.completed", "turn.failed")
            assert events[-1].type == "turn.completed", events[-1].data
            [started] = [e for e in events if e.type == "turn.started"]
            assert isinstance(started.data, TurnStartedData)
            omitted.append(started.data.history_omitted)
        request = engine.requests[-1]
        sent_pairs = len(request.history) // 2
        assert len(request.history) % 2 == 0
        # The newest turns, whole, in order, ending just before this input.
        assert request.history[-2].content == "question 28"
        assert request.history[-1].content == answer
        # Left out of what the Worker keeps (Limits.history_turns).
        assert sent_pairs + omitted[-1] == Limits().history_turns
        head = estimate_tokens("question 29") + estimate_tokens("Be brief.") + 16
        assert head + sent_pairs * per_turn <= 1200 - 200
        assert head + (sent_pairs + 1) * per_turn > 1200 - 200
        assert omitted[0] == 0
        assert omitted[-1] > 0
        detail = await runtime.get_worker(worker_id)
        assert detail.last_turn is not None
        assert detail.last_turn.history_omitted == omitted[-1]
        # The transcript keeps everything.
        assert len((await runtime.transcript(worker_id, limit=500)).items) == 60


async def test_input_larger_than_the_context_fails_typed_then_next_turn_works() -> None:
    engine = ScriptedEngine(context_tokens=300, max_tokens=100)
    async with open_runtime({"s": engine}) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        sub = runtime.subscribe(worker_id)
        await runtime.send_input(worker_id, "x" * 3000)
        failed = (await until(sub, "turn.completed", "turn.failed"))[-1]
        assert failed.type == "turn.failed"
        assert isinstance(failed.data, TurnFailedData)
        assert failed.data.error.code == "context_length_exceeded"
        assert len(engine.requests) == 0  # never sent
        await runtime.send_input(worker_id, "short")
        done = (await until(sub, "turn.completed", "turn.failed"))[-1]
        assert done.type == "turn.completed"


async def test_engine_limit_queues_turns_in_fifo_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = ScriptedEngine(
        lambda request: ScriptedReply(deltas=(request.input,), delay=1.0),
        max_concurrent=1,
    )
    async with open_runtime({"s": engine}) as runtime:
        ids = [(await runtime.create_worker()).worker_id for _ in range(3)]
        subs = [runtime.subscribe(worker_id) for worker_id in ids]
        start = trio.current_time()
        for worker_id in ids:
            await runtime.send_input(worker_id, worker_id)
        # Only the first runs; the others stay accepted, still busy Workers.
        expected = ("running", "accepted", "accepted")
        for worker_id, status in zip(ids, expected, strict=True):
            detail = await runtime.get_worker(worker_id)
            assert detail.status is WorkerStatus.RUNNING
            assert detail.active_turn is not None
            assert detail.active_turn.status == status
        ends = []
        for s in subs:
            events = await until(s, "turn.completed")
            started = next(e for e in events if e.type == "turn.started")
            ends.append((started.at, events[-1].at))
        assert [e.input for e in engine.requests] == ids  # FIFO
        assert trio.current_time() - start == 3.0
        # Each started when the one before it ended.
        assert ends[1][0] >= ends[0][1]
        assert ends[2][0] >= ends[1][1]


async def test_cancel_and_stop_work_while_a_turn_waits_for_the_engine(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = ScriptedEngine(
        lambda request: ScriptedReply(deltas=("ok",), delay=5.0), max_concurrent=1
    )
    async with open_runtime({"s": engine}) as runtime:
        first, waiting, stopping = [
            (await runtime.create_worker()).worker_id for _ in range(3)
        ]
        subs = {w: runtime.subscribe(w) for w in (first, waiting, stopping)}
        for worker_id in (first, waiting, stopping):
            await runtime.send_input(worker_id, "hi")
        result = await runtime.cancel(waiting, reason="changed my mind")
        assert result.outcome.value == "cancelled"
        events = await until(subs[waiting], "turn.cancelled")
        assert "turn.started" not in [e.type for e in events]
        await runtime.stop(stopping)
        events = await until(subs[stopping], "worker.stopped")
        assert "turn.started" not in [e.type for e in events]
        done = await until(subs[first], "turn.completed")
        assert done[-1].type == "turn.completed"
        assert len(engine.requests) == 1
        # The freed slot serves the next input at once.
        await runtime.send_input(waiting, "again")
        await until(subs[waiting], "turn.completed")
        assert trio.current_time() == 10.0
