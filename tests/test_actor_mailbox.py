"""The actor's mailbox slot, its shared cancel scope, and the collector
around a bulk restore (issue 13, item 6: fast turns and idle Workers)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

import yoi_runtime._restore
from yoi_runtime import (
    CancelOutcome,
    Completion,
    Event,
    ScriptedEngine,
    Subscription,
    TurnListener,
    TurnRequest,
    TurnStatus,
    Usage,
    WorkerStatus,
    open_runtime,
)


async def events_until(sub: Subscription, final: str, turn_id: str) -> list[Event]:
    """Collect events up to and including ``final`` of turn ``turn_id``."""
    seen: list[Event] = []
    with trio.fail_after(30):
        async for item in sub:
            assert isinstance(item, Event), item
            seen.append(item)
            if item.type == final and _turn_id(item) == turn_id:
                return seen
    raise AssertionError(f"stream ended before {final}: {seen}")


def _turn_id(event: Event) -> object:
    data: object = event.data
    if isinstance(data, dict):  # payloads before the typed event classes
        return data.get("turn_id")
    return getattr(data, "turn_id", None)


class StubbornEngine(ScriptedEngine):
    """Its first turn cannot be cancelled (the work is shielded, and it
    returns without another checkpoint); later turns sleep a second."""

    async def run_turn(
        self, request: TurnRequest, listener: TurnListener
    ) -> Completion:
        self.requests.append(request)
        if len(self.requests) == 1:
            with trio.CancelScope(shield=True):
                await trio.sleep(1)
        else:
            await trio.sleep(1)
        listener.on_text("done")
        return Completion("stop", Usage(1, 1))


async def test_a_cancel_that_comes_too_late_leaves_the_next_turns_alone(
    autojump_clock: object,
) -> None:
    # The actor's cancel scope serves turn after turn: a cancel of a turn
    # that then completes anyway must not leak into the turns after it, and
    # the scope made afresh afterwards must still cancel a turn.
    engine = StubbornEngine()
    async with open_runtime({"s": engine}) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        sub = runtime.subscribe(worker_id)
        first = await runtime.send_input(worker_id, "one")
        await events_until(sub, "turn.started", first.turn_id)
        late = await runtime.cancel(worker_id, reason="too late")
        assert late.outcome is CancelOutcome.ALREADY_COMPLETED
        await events_until(sub, "turn.completed", first.turn_id)

        second = await runtime.send_input(worker_id, "two")
        events = await events_until(sub, "turn.completed", second.turn_id)
        assert "turn.cancelled" not in [event.type.value for event in events]
        turn = (await runtime.get_worker(worker_id)).last_turn
        assert turn is not None
        assert turn.turn_id == second.turn_id
        assert turn.status is TurnStatus.COMPLETED

        third = await runtime.send_input(worker_id, "three")
        await events_until(sub, "turn.started", third.turn_id)
        cancelled = await runtime.cancel(worker_id, reason="now")
        assert cancelled.outcome is CancelOutcome.CANCELLED
        turn = (await runtime.get_worker(worker_id)).last_turn
        assert turn is not None
        assert turn.turn_id == third.turn_id
        assert turn.status is TurnStatus.CANCELLED
        assert turn.reason == "now"

        fourth = await runtime.send_input(worker_id, "four")
        await events_until(sub, "turn.completed", fourth.turn_id)
        assert len(engine.requests) == 4


async def test_stop_with_a_turn_still_in_the_mailbox() -> None:
    # accept_input puts the turn in the slot; stop() closes the mailbox before
    # the actor ran: the actor still takes the turn, ends it cancelled, then
    # ends itself.
    engine = ScriptedEngine()
    async with open_runtime({"s": engine}) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        sub = runtime.subscribe(worker_id)
        worker = runtime._worker(worker_id)
        accepted = worker.accept_input("never runs", None)
        # The Worker's own command: Runtime.stop would checkpoint first and
        # let the actor run the turn.
        worker.stop("bye")
        with trio.fail_after(5):
            await worker.wait_ended()
        summary = await runtime.get_worker(worker_id)
        assert summary.status is WorkerStatus.STOPPED
        events = await events_until(sub, "turn.cancelled", accepted.turn_id)
        assert "turn.started" not in [event.type.value for event in events]
        turn = summary.last_turn
        assert turn is not None
        assert turn.turn_id == accepted.turn_id
        assert turn.status is TurnStatus.CANCELLED
        assert turn.reason == "bye"
        assert len(engine.requests) == 0


async def test_idle_workers_wake_only_for_their_own_turns() -> None:
    async with open_runtime({"s": ScriptedEngine()}) as runtime:
        ids = [(await runtime.create_worker()).worker_id for _ in range(3)]
        await trio.testing.wait_all_tasks_blocked()
        sub = runtime.subscribe(ids[1])
        turn = await runtime.send_input(ids[1], "hi")
        await events_until(sub, "turn.completed", turn.turn_id)
        summaries = [await runtime.get_worker(worker_id) for worker_id in ids]
        assert [summary.turns for summary in summaries] == [0, 1, 0]
        assert {summary.status for summary in summaries} == {WorkerStatus.IDLE}


async def test_an_instant_scripted_reply_is_still_a_cancel_point() -> None:
    engine = ScriptedEngine()
    texts: list[str] = []

    class Listener:
        def on_text(self, text: str) -> None:
            texts.append(text)

        def on_retry(self, retry: object) -> None:
            raise AssertionError("no retries")

    request = TurnRequest("w-1", "t-1", None, (), "ping")
    with trio.CancelScope() as scope:
        scope.cancel()
        await engine.run_turn(request, Listener())
    assert scope.cancelled_caught
    assert texts == []
    completion = await engine.run_turn(request, Listener())
    assert completion.finish_reason == "stop"
    assert texts == ["echo: ping"]


@pytest.fixture
def frozen_objects_released() -> Iterator[None]:
    """Undo any ``gc.freeze()`` a test caused, and keep the GC's state."""
    enabled = gc.isenabled()
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()
        else:
            gc.disable()


async def _store_with_workers(path: Path, count: int) -> None:
    async with open_runtime({"s": ScriptedEngine()}, store=f"sqlite:{path}") as rt:
        for _ in range(count):
            await rt.create_worker()


@pytest.mark.usefixtures("frozen_objects_released")
async def test_a_bulk_restore_freezes_and_gives_the_collector_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.db"
    await _store_with_workers(path, 3)
    monkeypatch.setattr(yoi_runtime._restore, "FREEZE_AFTER", 3)
    gc.unfreeze()
    assert gc.isenabled()
    async with open_runtime({"s": ScriptedEngine()}, store=f"sqlite:{path}") as rt:
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0
        assert (await rt.summary()).workers["idle"] == 3


@pytest.mark.usefixtures("frozen_objects_released")
async def test_a_small_restore_leaves_the_collector_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.db"
    await _store_with_workers(path, 2)
    monkeypatch.setattr(yoi_runtime._restore, "FREEZE_AFTER", 3)
    gc.unfreeze()
    gc.disable()
    async with open_runtime({"s": ScriptedEngine()}, store=f"sqlite:{path}") as rt:
        assert not gc.isenabled()  # the caller's choice is kept
        assert gc.get_freeze_count() == 0
        assert (await rt.summary()).workers["idle"] == 2
