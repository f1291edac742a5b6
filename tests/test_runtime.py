"""The actor model: admission, cancel, stop, supervision, lifecycle."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import yoi_runtime._worker
from yoi_runtime import (
    CancelOutcome,
    EngineStatusError,
    Event,
    InvalidInputError,
    OperationUnsupportedError,
    RuntimeUnavailableError,
    ScriptedEngine,
    ScriptedReply,
    Subscription,
    TurnCancelledData,
    TurnCompletedData,
    TurnFailedData,
    TurnStatus,
    TurnTextDeltaData,
    Usage,
    WorkerBusyError,
    WorkerExistsError,
    WorkerFailedData,
    WorkerNotFoundError,
    WorkerStatus,
    WorkerStoppedData,
    WorkerStoppedError,
    open_runtime,
)


async def events_until(sub: Subscription, final: str) -> list[Event]:
    """Collect a subscription's events up to and including type ``final``."""
    seen: list[Event] = []
    with trio.fail_after(30):
        async for item in sub:
            assert isinstance(item, Event), item
            seen.append(item)
            if item.type == final:
                return seen
    raise AssertionError(f"stream ended before {final}: {[e.type for e in seen]}")


def types(events: list[Event]) -> list[str]:
    return [event.type.value for event in events]


async def test_turn_events_in_order_and_summary() -> None:
    async with open_runtime({"s": ScriptedEngine()}, runtime_id="rt-1") as runtime:
        worker = await runtime.create_worker(display_name="Ada")
        assert worker.status is WorkerStatus.IDLE
        assert worker.runtime_id == "rt-1"
        assert worker.tools == ()
        sub = runtime.subscribe(worker.worker_id, after=0)
        turn = await runtime.send_input(worker.worker_id, "hello there")
        assert turn.status is TurnStatus.ACCEPTED
        events = await events_until(sub, "turn.completed")
        assert types(events) == [
            "worker.created",
            "turn.accepted",
            "worker.status",
            "turn.started",
            "turn.text_delta",
            "turn.completed",
        ]
        assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
        assert {e.worker_id for e in events} == {worker.worker_id}
        assert {e.runtime_id for e in events} == {"rt-1"}
        assert all(e.at.tzinfo is not None for e in events)
        assert events[4].data == TurnTextDeltaData(turn.turn_id, "echo: hello there")
        completed = events[5].data
        assert isinstance(completed, TurnCompletedData)
        assert completed.usage == Usage(2, 1)
        await sub.receive()  # worker.status -> idle
        detail = await runtime.get_worker(worker.worker_id)
        assert detail.status is WorkerStatus.IDLE
        assert detail.last_turn is not None
        assert detail.last_turn.status is TurnStatus.COMPLETED
        assert detail.usage.output_tokens == 1
        summary = await runtime.summary()
        assert summary.workers == {"idle": 1, "running": 0, "stopped": 0, "failed": 0}
        assert summary.usage.input_tokens == 2
        assert summary.capabilities.placement == "embedded"
        assert summary.capabilities.tools == ()
        assert not summary.capabilities.filesystem
        assert not summary.capabilities.shell
        assert not summary.capabilities.git
        assert [e.name for e in summary.capabilities.engines] == ["s"]


@pytest.mark.parametrize("attempt", range(5))
async def test_busy_admission_is_atomic(autojump_clock: object, attempt: int) -> None:
    engine = ScriptedEngine([ScriptedReply(deltas=("slow",), delay=1.0)])
    async with open_runtime({"s": engine}) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        accepted = []
        busy: list[WorkerBusyError] = []

        async def send(i: int) -> None:
            try:
                accepted.append(await runtime.send_input(worker_id, f"input {i}"))
            except WorkerBusyError as exc:
                busy.append(exc)

        async with trio.open_nursery() as nursery:
            for i in range(1000):
                nursery.start_soon(send, i)
        assert len(accepted) == 1
        assert len(busy) == 999
        turn = accepted[0]
        assert {exc.turn_id for exc in busy} == {turn.turn_id}
        assert {exc.started_at for exc in busy} == {turn.accepted_at}
        assert {exc.worker_id for exc in busy} == {worker_id}
        assert busy[0].details()["turn_id"] == turn.turn_id
        assert len(engine.requests) <= 1


async def test_cancel_mid_stream_then_accepts_input(autojump_clock: object) -> None:
    engine = ScriptedEngine(
        [
            ScriptedReply(deltas=("partial ",), hang=True),
            ScriptedReply(deltas=("fresh",)),
        ]
    )
    async with open_runtime({"s": engine}) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        sub = runtime.subscribe(worker_id)
        turn = await runtime.send_input(worker_id, "go")
        await events_until(sub, "turn.text_delta")
        result = await runtime.cancel(worker_id, reason="user pressed stop")
        assert result.outcome is CancelOutcome.CANCELLED
        assert result.turn_id == turn.turn_id
        events = await events_until(sub, "turn.cancelled")
        assert events[-1].data == TurnCancelledData(turn.turn_id, "user pressed stop")
        detail = await runtime.get_worker(worker_id)
        assert detail.status is WorkerStatus.IDLE
        assert detail.active_turn is None
        assert detail.last_turn is not None
        assert detail.last_turn.status is TurnStatus.CANCELLED
        assert detail.last_turn.reason == "user pressed stop"
        await runtime.send_input(worker_id, "again")
        await events_until(sub, "turn.completed")
        page = await runtime.transcript(worker_id)
        assert [(e.kind, e.text, e.status) for e in page.items] == [
            ("user", "go", TurnStatus.ACCEPTED),
            ("assistant", "partial ", TurnStatus.CANCELLED),
            ("user", "again", TurnStatus.ACCEPTED),
            ("assistant", "fresh", TurnStatus.COMPLETED),
        ]
        # The cancelled exchange is not sent back to the model as history.
        assert [m.content for m in engine.requests[1].history] == []


async def test_cancel_idle_and_cancel_after_completion() -> None:
    async with open_runtime({"s": ScriptedEngine()}) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        result = await runtime.cancel(worker_id)
        assert result.outcome is CancelOutcome.NO_ACTIVE_TURN
        assert result.turn_id is None
        sub = runtime.subscribe(worker_id)
        turn = await runtime.send_input(worker_id, "quick")
        await events_until(sub, "turn.completed")
        late = await runtime.cancel(worker_id, turn_id=turn.turn_id, reason="late")
        assert late.outcome is CancelOutcome.ALREADY_COMPLETED
        assert late.turn_id == turn.turn_id
        unknown = await runtime.cancel(worker_id, turn_id="t-unknown")
        assert unknown.outcome is CancelOutcome.NO_ACTIVE_TURN


async def test_cancel_before_the_turn_starts(autojump_clock: object) -> None:
    engine = ScriptedEngine()
    async with open_runtime({"s": engine}) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        sub = runtime.subscribe(worker_id)
        # send_input lets the actor start at once, so reach the window between
        # accept and start through the Worker itself: no checkpoint between.
        worker = runtime._worker(worker_id)
        turn = worker.accept_input("never runs", None)
        active = worker.find_turn(None)
        assert active is not None
        worker.cancel(active, "changed my mind")
        events = await events_until(sub, "turn.cancelled")
        assert "turn.text_delta" not in types(events)
        assert events[-1].data == TurnCancelledData(turn.turn_id, "changed my mind")
        assert len(engine.requests) == 0
        assert (await runtime.get_worker(worker_id)).status is WorkerStatus.IDLE


async def test_stop_is_idempotent_and_final(autojump_clock: object) -> None:
    engine = ScriptedEngine([ScriptedReply(deltas=("x",), hang=True)])
    async with open_runtime({"s": engine}) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        sub = runtime.subscribe(worker_id)
        turn = await runtime.send_input(worker_id, "long job")
        await events_until(sub, "turn.text_delta")
        stopped = await runtime.stop(worker_id, reason="done for today")
        assert stopped.status is WorkerStatus.STOPPED
        again = await runtime.stop(worker_id, reason="twice")
        assert again.status is WorkerStatus.STOPPED
        rest = [item async for item in sub]
        assert all(isinstance(e, Event) for e in rest)
        assert types(rest) == ["turn.cancelled", "worker.stopped"]  # type: ignore[arg-type]
        assert rest[0].data == TurnCancelledData(turn.turn_id, "done for today")  # type: ignore[union-attr]
        assert rest[1].data == WorkerStoppedData("done for today")  # type: ignore[union-attr]
        with pytest.raises(WorkerStoppedError) as info:
            await runtime.send_input(worker_id, "hello?")
        assert info.value.status == "stopped"
        assert (await runtime.cancel(worker_id)).outcome is CancelOutcome.NO_ACTIVE_TURN
        summary = await runtime.summary()
        assert summary.workers["stopped"] == 1


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (
            EngineStatusError("model server said 500", status_code=500),
            "engine_http_error",
        ),
        (ValueError("engine bug"), "engine_crashed"),
    ],
)
async def test_engine_error_fails_turn_and_worker_stays_idle(
    error: Exception, code: str
) -> None:
    engine = ScriptedEngine(
        [ScriptedReply(deltas=("half",), error=error), ScriptedReply(deltas=("ok",))]
    )
    async with open_runtime({"s": engine}) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        sub = runtime.subscribe(worker_id)
        turn = await runtime.send_input(worker_id, "try")
        events = await events_until(sub, "turn.failed")
        failed = events[-1].data
        assert isinstance(failed, TurnFailedData)
        assert failed.turn_id == turn.turn_id
        assert failed.error.code == code
        detail = await runtime.get_worker(worker_id)
        assert detail.status is WorkerStatus.IDLE
        assert detail.last_turn is not None
        assert detail.last_turn.error is not None
        assert detail.last_turn.error.code == code
        await runtime.send_input(worker_id, "again")
        await events_until(sub, "turn.completed")
        entries = (await runtime.transcript(worker_id)).items
        assert [e.kind for e in entries] == [
            "user",
            "assistant",
            "error",
            "user",
            "assistant",
        ]


async def test_actor_crash_is_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_runtime({"s": ScriptedEngine()}) as runtime:
        victim = (await runtime.create_worker()).worker_id
        bystander = (await runtime.create_worker()).worker_id

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("bug in the actor")

        with monkeypatch.context() as patch:
            patch.setattr(yoi_runtime._worker.Worker, "_end_turn", broken)
            sub = runtime.subscribe(victim)
            await runtime.send_input(victim, "crash please")
            events = await events_until(sub, "worker.failed")
        assert types(events)[-2:] == ["turn.failed", "worker.failed"]
        crashed = events[-1].data
        assert isinstance(crashed, WorkerFailedData)
        assert crashed.error.code == "worker_crashed"
        detail = await runtime.get_worker(victim)
        assert detail.status is WorkerStatus.FAILED
        assert detail.error is not None
        assert "bug in the actor" in detail.error.message
        diagnostics = await runtime.diagnostics()
        assert [(d.code, d.worker_id) for d in diagnostics] == [
            ("worker_crashed", victim)
        ]
        with pytest.raises(WorkerStoppedError) as info:
            await runtime.send_input(victim, "still there?")
        assert info.value.status == "failed"
        # Everything else keeps working.
        sub = runtime.subscribe(bystander)
        await runtime.send_input(bystander, "hello")
        await events_until(sub, "turn.completed")
        summary = await runtime.summary()
        assert summary.status == "serving"
        assert summary.workers["failed"] == 1


async def test_closing_cancels_turns_with_reason_shutdown(
    autojump_clock: object,
) -> None:
    engine = ScriptedEngine([ScriptedReply(deltas=("x",), hang=True)])
    async with open_runtime({"s": engine}) as runtime:
        busy = (await runtime.create_worker()).worker_id
        idle = (await runtime.create_worker()).worker_id
        everything = runtime.subscribe(after=0)
        await runtime.send_input(busy, "forever")
        await trio.testing.wait_all_tasks_blocked()
    tail = [item async for item in everything]
    by_type = {(e.worker_id, e.type.value): e.data for e in tail}  # type: ignore[union-attr]
    cancelled = by_type[(busy, "turn.cancelled")]
    assert isinstance(cancelled, TurnCancelledData)
    assert cancelled.reason == "shutdown"
    assert by_type[(busy, "worker.stopped")] == WorkerStoppedData("shutdown")
    assert by_type[(idle, "worker.stopped")] == WorkerStoppedData("shutdown")
    summary = await runtime.summary()
    assert summary.status == "closed"
    assert summary.workers["stopped"] == 2
    with pytest.raises(RuntimeUnavailableError):
        await runtime.create_worker()


async def test_body_error_is_not_wrapped_in_a_group() -> None:
    async def body() -> None:
        async with open_runtime({"s": ScriptedEngine()}) as runtime:
            await runtime.create_worker()
            raise KeyError("from the body")

    with pytest.raises(KeyError):
        await body()


async def test_history_is_sent_to_the_engine() -> None:
    engine = ScriptedEngine()
    async with open_runtime({"s": engine}) as runtime:
        worker_id = (await runtime.create_worker(system_prompt="Be terse.")).worker_id
        sub = runtime.subscribe(worker_id)
        for text in ("first", "second"):
            await runtime.send_input(worker_id, text)
            await events_until(sub, "turn.completed")
        request = engine.requests[1]
        assert [(m.role, m.content) for m in request.messages()] == [
            ("system", "Be terse."),
            ("user", "first"),
            ("assistant", "echo: first"),
            ("user", "second"),
        ]


async def test_idempotent_create() -> None:
    async with open_runtime({"s": ScriptedEngine()}) as runtime:
        first = await runtime.create_worker(worker_id="my-worker", display_name="A")
        again = await runtime.create_worker(worker_id="my-worker", display_name="A")
        assert again.worker_id == first.worker_id == "my-worker"
        assert (await runtime.summary()).workers["idle"] == 1
        with pytest.raises(WorkerExistsError):
            await runtime.create_worker(worker_id="my-worker", display_name="B")


async def test_list_workers_pages_and_filters() -> None:
    async with open_runtime({"s": ScriptedEngine()}) as runtime:
        ids = [(await runtime.create_worker()).worker_id for _ in range(7)]
        await runtime.stop(ids[2])
        await runtime.stop(ids[5])
        seen, cursor = [], None
        while True:
            page = await runtime.list_workers(limit=3, cursor=cursor)
            seen += [w.worker_id for w in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == ids
        stopped = await runtime.list_workers(status="stopped", limit=1)
        assert [w.worker_id for w in stopped.items] == [ids[2]]
        rest = await runtime.list_workers(status="stopped", cursor=stopped.next_cursor)
        assert [w.worker_id for w in rest.items] == [ids[5]]
        assert rest.next_cursor is None
        idle = await runtime.list_workers(status=WorkerStatus.IDLE)
        assert len(idle.items) == 5


@pytest.mark.parametrize(
    ("call", "path"),
    [
        (lambda rt, w: rt.send_input(w, ""), "text"),
        (lambda rt, w: rt.send_input(w, "x" * 100_001), "text"),
        (lambda rt, w: rt.send_input(w, 42), "text"),
        (lambda rt, w: rt.send_input(w, "hi", input_id="bad id!"), "input_id"),
        (lambda rt, w: rt.create_worker("painter"), "profile"),
        (lambda rt, w: rt.create_worker(engine="gpt-9"), "engine"),
        (lambda rt, w: rt.create_worker(worker_id="../etc"), "worker_id"),
        (lambda rt, w: rt.list_workers(limit=0), "limit"),
        (lambda rt, w: rt.list_workers(limit=501), "limit"),
        (lambda rt, w: rt.list_workers(status="sleeping"), "status"),
        (lambda rt, w: rt.list_workers(cursor="abc"), "cursor"),
        (lambda rt, w: rt.transcript(w, limit=501), "limit"),
        (lambda rt, w: rt.transcript(w, cursor="-1"), "cursor"),
    ],
)
async def test_bad_input_is_a_typed_error(call: object, path: str) -> None:
    async with open_runtime({"s": ScriptedEngine()}) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        with pytest.raises(InvalidInputError) as info:
            await call(runtime, worker_id)  # type: ignore[operator]
        assert info.value.path == path
        assert info.value.code == "invalid_input"
        # Nothing was lost or changed by the bad call.
        detail = await runtime.get_worker(worker_id)
        assert detail.status is WorkerStatus.IDLE
        assert detail.turns == 0


async def test_unknown_worker_everywhere() -> None:
    async with open_runtime({"s": ScriptedEngine()}) as runtime:
        for call in (
            runtime.get_worker("w-nope"),
            runtime.send_input("w-nope", "hi"),
            runtime.cancel("w-nope"),
            runtime.stop("w-nope"),
            runtime.transcript("w-nope"),
        ):
            with pytest.raises(WorkerNotFoundError) as info:
                await call
            assert info.value.worker_id == "w-nope"
            assert info.value.code == "worker_not_found"
        with pytest.raises(WorkerNotFoundError):
            runtime.subscribe("w-nope")


async def test_drain_stops_workers_and_keeps_streams_readable(
    autojump_clock: object,
) -> None:
    engine = ScriptedEngine([ScriptedReply(deltas=("x",), hang=True)])
    async with open_runtime({"s": engine}) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        sub = runtime.subscribe(worker_id)
        await runtime.send_input(worker_id, "forever")
        await runtime.drain()
        rest = [item async for item in sub]
        assert [e.type.value for e in rest][-2:] == [  # type: ignore[union-attr]
            "turn.cancelled",
            "worker.stopped",
        ]
        assert rest[-1].data == WorkerStoppedData("shutdown")  # type: ignore[union-attr]
        assert (await runtime.summary()).status == "closing"
        with pytest.raises(RuntimeUnavailableError):
            await runtime.send_input(worker_id, "late")
        await runtime.drain()  # idempotent


async def test_tool_profiles_are_unsupported_on_a_companion_runtime() -> None:
    async with open_runtime({"s": ScriptedEngine()}) as runtime:
        with pytest.raises(OperationUnsupportedError) as info:
            await runtime.create_worker("coder")
        assert info.value.code == "operation_unsupported"
        assert (await runtime.summary()).workers["idle"] == 0
