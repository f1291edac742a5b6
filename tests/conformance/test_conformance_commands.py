"""Commands behave the same on the embedded Runtime and over the network."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from conformance.support import events_until

from yoi_runtime import (
    CancelOutcome,
    IdempotencyConflictError,
    InvalidInputError,
    RuntimeAPI,
    ScopeConflictError,
    TurnCancelledData,
    TurnFailedData,
    TurnStatus,
    TurnTextDeltaData,
    WorkerBusyError,
    WorkerExistsError,
    WorkerNotFoundError,
    WorkerStatus,
    WorkerStatusData,
    WorkerStoppedData,
    WorkerStoppedError,
)

UNKNOWN = "w-0000000000000000"


async def test_create_get_and_list_with_paging_and_status(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        created = [
            await runtime.create_worker(display_name=name)
            for name in ("Ada", "Bo", "Cy")
        ]
        for worker in created:
            assert worker.status is WorkerStatus.IDLE
            assert worker.runtime_id == runtime.runtime_id
            assert worker.profile == "companion"
            assert worker.engine.name == "echo"
            assert worker.tools == ()
            assert worker.last_seq == 1
            assert await runtime.get_worker(worker.worker_id) == worker
        ids = [worker.worker_id for worker in created]

        everything = await runtime.list_workers()
        assert [w.worker_id for w in everything.items] == ids
        assert everything.next_cursor is None

        first = await runtime.list_workers(limit=2)
        assert [w.worker_id for w in first.items] == ids[:2]
        assert first.next_cursor is not None
        rest = await runtime.list_workers(limit=2, cursor=first.next_cursor)
        assert [w.worker_id for w in rest.items] == ids[2:]
        assert rest.next_cursor is None

        await runtime.stop(ids[1])
        stopped = await runtime.list_workers(status="stopped")
        assert [w.worker_id for w in stopped.items] == [ids[1]]
        idle = await runtime.list_workers(status=WorkerStatus.IDLE, limit=1)
        assert [w.worker_id for w in idle.items] == [ids[0]]
        assert idle.next_cursor is not None
        idle = await runtime.list_workers(status="idle", cursor=idle.next_cursor)
        assert [w.worker_id for w in idle.items] == [ids[2]]
        assert idle.next_cursor is None


async def test_create_with_engine_and_prompt(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker = await runtime.create_worker(
            "companion", engine="slow", system_prompt="Be terse.", display_name=None
        )
        assert worker.engine.name == "slow"
        assert worker.engine.kind == "scripted"
        assert worker.display_name is None


async def test_idempotent_create_with_worker_id(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        first = await runtime.create_worker(worker_id="tab-7:ada", display_name="Ada")
        assert first.worker_id == "tab-7:ada"
        again = await runtime.create_worker(worker_id="tab-7:ada", display_name="Ada")
        assert again.worker_id == first.worker_id
        assert again.created_at == first.created_at
        assert len((await runtime.list_workers()).items) == 1
        with pytest.raises(WorkerExistsError) as caught:
            await runtime.create_worker(worker_id="tab-7:ada", display_name="Bo")
        assert caught.value.code == "idempotency_conflict"
        assert caught.value.worker_id == "tab-7:ada"


async def test_summary_counts_usage_and_capabilities(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        a = await runtime.create_worker()
        b = await runtime.create_worker()
        async with runtime.subscribe(a.worker_id) as events:
            await runtime.send_input(a.worker_id, "three words here")
            await events_until(events, "turn.completed")
        await runtime.stop(b.worker_id)
        summary = await runtime.summary()
        assert summary.runtime_id == runtime.runtime_id
        assert summary.status == "serving"
        assert summary.workers == {"idle": 1, "running": 0, "stopped": 1, "failed": 0}
        assert summary.usage.input_tokens == 3
        assert summary.usage.output_tokens == 1
        assert await runtime.usage() == summary.usage
        assert summary.last_cursor >= 8
        engines = {engine.name: engine.kind for engine in summary.capabilities.engines}
        assert engines == dict.fromkeys(("echo", "hang", "slow", "fail"), "scripted")
        assert summary.capabilities.profiles == ("companion",)
        assert summary.capabilities.tools == ()
        assert not summary.capabilities.shell
        assert await runtime.diagnostics() == ()


async def test_concurrent_inputs_admit_exactly_one(
    runtime: RuntimeAPI, concurrent_inputs: int
) -> None:
    attempts = concurrent_inputs
    accepted = []
    refused: list[WorkerBusyError] = []
    with trio.fail_after(30):
        worker = await runtime.create_worker(engine="hang")

        async def attempt(index: int) -> None:
            try:
                accepted.append(await runtime.send_input(worker.worker_id, f"#{index}"))
            except WorkerBusyError as exc:
                refused.append(exc)

        async with trio.open_nursery() as nursery:
            for index in range(attempts):
                nursery.start_soon(attempt, index)
        assert len(accepted) == 1
        assert len(refused) == attempts - 1
        turn = accepted[0]
        assert turn.status is TurnStatus.ACCEPTED
        assert {exc.turn_id for exc in refused} == {turn.turn_id}
        assert {exc.worker_id for exc in refused} == {worker.worker_id}
        assert {exc.started_at for exc in refused} == {turn.accepted_at}
        assert (await runtime.get_worker(worker.worker_id)).turns == 1
        result = await runtime.cancel(worker.worker_id)
        assert result.outcome is CancelOutcome.CANCELLED


async def test_cancel_mid_stream(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker = await runtime.create_worker(engine="hang")
        async with runtime.subscribe(worker.worker_id) as events:
            turn = await runtime.send_input(worker.worker_id, "go on")
            seen = await events_until(events, "turn.text_delta")
            assert seen[-1].data == TurnTextDeltaData(turn.turn_id, "partial ")
            result = await runtime.cancel(worker.worker_id, reason="user pressed stop")
            assert result.outcome is CancelOutcome.CANCELLED
            assert result.worker_id == worker.worker_id
            assert result.turn_id == turn.turn_id
            cancelled = await events.receive()
            assert cancelled.type == "turn.cancelled"
            assert cancelled.data == TurnCancelledData(
                turn.turn_id, "user pressed stop"
            )
            idle = await events.receive()
            assert idle.type == "worker.status"
            assert idle.data == WorkerStatusData(
                WorkerStatus.IDLE, WorkerStatus.RUNNING
            )
        detail = await runtime.get_worker(worker.worker_id)
        assert detail.status is WorkerStatus.IDLE
        assert detail.active_turn is None
        assert detail.last_turn is not None
        assert detail.last_turn.status is TurnStatus.CANCELLED
        assert detail.last_turn.reason == "user pressed stop"
        again = await runtime.send_input(worker.worker_id, "once more")
        assert again.status is TurnStatus.ACCEPTED
        assert again.turn_id != turn.turn_id
        await runtime.stop(worker.worker_id)


async def test_cancel_idle_and_completed(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker = await runtime.create_worker()
        idle = await runtime.cancel(worker.worker_id)
        assert idle.outcome is CancelOutcome.NO_ACTIVE_TURN
        assert idle.turn_id is None
        async with runtime.subscribe(worker.worker_id) as events:
            turn = await runtime.send_input(worker.worker_id, "hi")
            await events_until(events, "turn.completed")
        late = await runtime.cancel(worker.worker_id, turn_id=turn.turn_id)
        assert late.outcome is CancelOutcome.ALREADY_COMPLETED
        assert late.turn_id == turn.turn_id


async def test_stop_is_idempotent_and_refuses_input(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker = await runtime.create_worker(engine="hang")
        async with runtime.subscribe(worker.worker_id) as events:
            turn = await runtime.send_input(worker.worker_id, "wait")
            stopped = await runtime.stop(worker.worker_id, reason="closing the tab")
            assert stopped.status is WorkerStatus.STOPPED
            tail = [item async for item in events]
        assert [e.type for e in tail][-2:] == ["turn.cancelled", "worker.stopped"]
        assert tail[-2].data == TurnCancelledData(turn.turn_id, "closing the tab")
        assert tail[-1].data == WorkerStoppedData("closing the tab")
        again = await runtime.stop(worker.worker_id)
        assert again.status is WorkerStatus.STOPPED
        with pytest.raises(WorkerStoppedError) as caught:
            await runtime.send_input(worker.worker_id, "hello?")
        assert caught.value.status == "stopped"
        assert caught.value.worker_id == worker.worker_id
        assert (await runtime.cancel(worker.worker_id)).outcome == "no_active_turn"


async def test_failing_engine_fails_the_turn_only(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker = await runtime.create_worker(engine="fail")
        async with runtime.subscribe(worker.worker_id) as events:
            turn = await runtime.send_input(worker.worker_id, "hi")
            seen = await events_until(events, "turn.failed")
            idle = await events.receive()
        assert seen[-2].data == TurnTextDeltaData(turn.turn_id, "x")
        failed = seen[-1].data
        assert isinstance(failed, TurnFailedData)
        assert failed.turn_id == turn.turn_id
        assert failed.error.code == "engine_http_error"
        assert "503" in failed.error.message
        assert idle.type == "worker.status"
        assert isinstance(idle.data, WorkerStatusData)
        assert idle.data.status == "idle"
        detail = await runtime.get_worker(worker.worker_id)
        assert detail.status is WorkerStatus.IDLE
        assert detail.last_turn is not None
        assert detail.last_turn.status is TurnStatus.FAILED
        assert detail.last_turn.error is not None
        assert detail.last_turn.error.code == "engine_http_error"


async def test_transcript_paging(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker = await runtime.create_worker()
        async with runtime.subscribe(worker.worker_id) as events:
            for text in ("one", "two", "three"):
                await runtime.send_input(worker.worker_id, text)
                await events_until(events, "turn.completed")
                await events.receive()  # worker.status idle
        page = await runtime.transcript(worker.worker_id, limit=4)
        assert [e.index for e in page.items] == [1, 2, 3, 4]
        assert page.next_cursor is not None
        assert page.truncated is False
        rest = await runtime.transcript(worker.worker_id, cursor=page.next_cursor)
        assert [e.index for e in rest.items] == [5, 6]
        assert rest.next_cursor is None
        entries = page.items + rest.items
        assert [e.kind for e in entries] == ["user", "assistant"] * 3
        assert [e.text for e in entries] == [
            "one", "echo: one", "two", "echo: two", "three", "echo: three",
        ]  # fmt: skip
        assistant = {e.status for e in entries if e.kind == "assistant"}
        assert assistant == {TurnStatus.COMPLETED}
        whole = await runtime.transcript(worker.worker_id)
        assert whole.items == entries


@pytest.mark.parametrize(
    "operation",
    [
        lambda r: r.get_worker(UNKNOWN),
        lambda r: r.send_input(UNKNOWN, "hi"),
        lambda r: r.cancel(UNKNOWN),
        lambda r: r.stop(UNKNOWN),
        lambda r: r.transcript(UNKNOWN),
    ],
    ids=["get_worker", "send_input", "cancel", "stop", "transcript"],
)
async def test_unknown_worker(
    runtime: RuntimeAPI, operation: Callable[[Any], Awaitable[object]]
) -> None:
    with trio.fail_after(10), pytest.raises(WorkerNotFoundError) as caught:
        await operation(runtime)
    assert caught.value.code == "worker_not_found"
    assert caught.value.worker_id == UNKNOWN


async def test_unknown_worker_subscribe(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10), pytest.raises(WorkerNotFoundError) as caught:
        async with runtime.subscribe(UNKNOWN, after=0):
            pass
    assert caught.value.worker_id == UNKNOWN


async def _worker(runtime: RuntimeAPI) -> str:
    return (await runtime.create_worker()).worker_id


#: (operation on a Runtime and an existing worker id, the path it names).
INVALID = {
    "empty-text": (lambda r, w: r.send_input(w, ""), "text"),
    "long-text": (lambda r, w: r.send_input(w, "x" * 100_001), "text"),
    "bad-input-id": (lambda r, w: r.send_input(w, "hi", input_id="a b"), "input_id"),
    "list-limit-0": (lambda r, w: r.list_workers(limit=0), "limit"),
    "list-limit-501": (lambda r, w: r.list_workers(limit=501), "limit"),
    "list-cursor": (lambda r, w: r.list_workers(cursor="abc"), "cursor"),
    "list-status": (lambda r, w: r.list_workers(status="asleep"), "status"),
    "transcript-limit": (lambda r, w: r.transcript(w, limit=0), "limit"),
    "transcript-cursor": (lambda r, w: r.transcript(w, cursor="x"), "cursor"),
    "unknown-engine": (lambda r, w: r.create_worker(engine="gpt-9"), "engine"),
    "unknown-profile": (lambda r, w: r.create_worker("wizard"), "profile"),
    "bad-worker-id": (lambda r, w: r.create_worker(worker_id="a/b"), "worker_id"),
}


@pytest.mark.parametrize("case", list(INVALID))
async def test_invalid_input(runtime: RuntimeAPI, case: str) -> None:
    operation, path = INVALID[case]
    with trio.fail_after(10):
        worker_id = await _worker(runtime)
        with pytest.raises(InvalidInputError) as caught:
            await operation(runtime, worker_id)
    assert caught.value.code == "invalid_input"
    assert caught.value.path == path


@pytest.mark.parametrize("after", [-1, 99])
async def test_invalid_subscription_cursor(runtime: RuntimeAPI, after: int) -> None:
    with trio.fail_after(10):
        worker_id = await _worker(runtime)
        for target in (worker_id, None):
            with pytest.raises(InvalidInputError) as caught:
                async with runtime.subscribe(target, after=after):
                    pass
            assert caught.value.path == "after"


async def test_running_worker_detail(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker = await runtime.create_worker(engine="hang")
        async with runtime.subscribe(worker.worker_id) as events:
            await runtime.send_input(worker.worker_id, "hold")
            await events_until(events, "turn.text_delta")
        detail = await runtime.get_worker(worker.worker_id)
        assert detail.active_turn is not None
        assert detail.active_turn.status is TurnStatus.RUNNING
        await runtime.stop(worker.worker_id)


async def test_capabilities_are_the_summarys(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        capabilities = runtime.capabilities()
        assert capabilities == (await runtime.summary()).capabilities
    assert {engine.name for engine in capabilities.engines} == {
        "echo",
        "hang",
        "slow",
        "fail",
    }
    assert capabilities.profiles == ("companion",)


async def test_an_input_id_makes_input_idempotent(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker_id = await _worker(runtime)
        async with runtime.subscribe(worker_id) as events:
            first = await runtime.send_input(worker_id, "once", input_id="in-1")
            await events_until(events, "turn.completed")
        again = await runtime.send_input(worker_id, "once", input_id="in-1")
        assert again.turn_id == first.turn_id
        assert again.status is TurnStatus.COMPLETED
        assert (await runtime.get_worker(worker_id)).turns == 1
        with pytest.raises(IdempotencyConflictError) as caught:
            await runtime.send_input(worker_id, "other text", input_id="in-1")
        assert caught.value.code == "idempotency_conflict"


async def test_scopes_are_claimed_while_live(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        holder = await runtime.create_worker(scopes=["workdir:/srv/a"])
        assert holder.scopes == ("workdir:/srv/a",)
        with pytest.raises(ScopeConflictError) as caught:
            await runtime.create_worker(scopes=["workdir:/srv/b", "workdir:/srv/a"])
        assert caught.value.worker_id == holder.worker_id
        await runtime.stop(holder.worker_id)
        taker = await runtime.create_worker(scopes=["workdir:/srv/a"])
        assert taker.scopes == ("workdir:/srv/a",)
