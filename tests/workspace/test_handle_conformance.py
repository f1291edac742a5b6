"""One conformance suite for every runtime handle.

Each test runs against the embedded handle, the remote handle (a real
``yoi-runtime`` process per test) and the local-pod compat source. Reading
(describe, list, detail, transcript) behaves alike on all three; commands and
events behave alike on the two Runtime authorities, and the compat source
refuses them with ``OperationUnsupportedError``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import attrs
import pytest
import trio
from conformance.support import events_until, scripted_engines, types
from workspace.handle_support import HandleCase, open_handle_case

from yoi_runtime import (
    PROTOCOL_VERSION,
    CancelOutcome,
    Event,
    InvalidInputError,
    OperationUnsupportedError,
    RuntimeAPI,
    RuntimeSummary,
    RuntimeUnavailableError,
    ScopeConflictError,
    TurnCancelledData,
    TurnStatus,
    TurnTextDeltaData,
    WorkerBusyError,
    WorkerNotFoundError,
    WorkerStoppedError,
    WorkerSummary,
    __version__,
    open_runtime,
)
from yoi_workspace import EmbeddedRuntimeHandle, RuntimeAdapter, RuntimeKind, WorkerView

UNKNOWN = "w-0000000000000000"

#: A handle operation, called only inside its ``pytest.raises`` block.
Call = Callable[[], Awaitable[Any]]


@pytest.fixture(params=["embedded", "remote", "compat"])
async def case(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[HandleCase]:
    async with open_handle_case(request.param, tmp_path) as opened:
        yield opened


def assert_read_only(caught: pytest.ExceptionInfo[OperationUnsupportedError]) -> None:
    assert caught.value.code == "operation_unsupported"
    assert "read-only compatibility source" in caught.value.message


async def test_describe_and_diagnostics(case: HandleCase) -> None:
    handle = case.handle
    with trio.fail_after(10):
        await case.seed("Ada", "hello")
        bo = await case.seed("Bo")
        await case.mark_stopped(bo)
        view = await handle.describe()
        assert await handle.diagnostics() == ()
    assert view.runtime_id == handle.runtime_id
    assert view.kind is handle.kind is case.kind
    assert view.workers == case.counts(idle=1, stopped=1)
    assert view.error is None
    assert view.checked_at.tzinfo is not None
    assert view.capabilities is not None
    if case.read_only:
        assert (view.status, view.authority) == ("read-only", False)
        assert (view.version, view.protocol_version) == (None, None)
        capabilities = view.capabilities
        assert not any(
            (
                capabilities.can_start_processes,
                capabilities.filesystem,
                capabilities.shell,
                capabilities.git,
                capabilities.worktree,
            )
        )
        assert capabilities.engines == ()
        assert capabilities.profiles == ()
        return
    assert (view.status, view.authority) == ("serving", True)
    assert (view.version, view.protocol_version) == (__version__, PROTOCOL_VERSION)
    engines = {engine.name for engine in view.capabilities.engines}
    assert engines == {"echo", "hang", "slow", "fail"}
    assert view.capabilities.profiles == ("companion",)


async def test_list_get_paging_and_status_filter(case: HandleCase) -> None:
    handle = case.handle
    with trio.fail_after(10):
        seeded = [await case.seed(name) for name in ("Ada", "Bo", "Cy")]
        ids = [worker.worker_id for worker in seeded]
        assert len(set(ids)) == 3

        everything = await handle.list_workers()
        assert [w.worker_id for w in everything.items] == ids
        assert [w.display_name for w in everything.items] == ["Ada", "Bo", "Cy"]
        assert everything.next_cursor is None
        for worker in everything.items:
            assert worker.kind is case.kind
            assert worker.runtime_id == handle.runtime_id
            assert (worker.status, worker.stale) == (case.idle, False)
            assert worker.profile == "companion"
            assert worker.created_at is not None
            assert worker.created_at.tzinfo is not None
            assert await handle.get_worker(worker.worker_id) == worker

        first = await handle.list_workers(limit=2)
        assert [w.worker_id for w in first.items] == ids[:2]
        assert first.next_cursor is not None
        rest = await handle.list_workers(limit=2, cursor=first.next_cursor)
        assert [w.worker_id for w in rest.items] == ids[2:]
        assert rest.next_cursor is None

        await case.mark_stopped(seeded[1])
        stopped = await handle.list_workers(status="stopped")
        assert [w.worker_id for w in stopped.items] == [ids[1]]
        assert stopped.items[0].status == "stopped"
        idle = await handle.list_workers(status=case.idle, limit=1)
        assert [w.worker_id for w in idle.items] == [ids[0]]
        assert idle.next_cursor is not None
        idle = await handle.list_workers(status=case.idle, cursor=idle.next_cursor)
        assert [w.worker_id for w in idle.items] == [ids[2]]
        assert idle.next_cursor is None

        for bad, path in [
            ({"status": "sleeping"}, "status"),
            ({"limit": 0}, "limit"),
            ({"limit": 501}, "limit"),
            ({"cursor": "not-a-cursor"}, "cursor"),
        ]:
            with pytest.raises(InvalidInputError) as caught:
                await handle.list_workers(**bad)  # type: ignore[arg-type]
            assert caught.value.path == path, bad


async def test_transcript_pages(case: HandleCase) -> None:
    handle = case.handle
    with trio.fail_after(10):
        worker = await case.seed("Ada", "hello", "again")
        page = await handle.transcript(worker.worker_id)
        first = await handle.transcript(worker.worker_id, limit=3)
        assert first.next_cursor is not None
        rest = await handle.transcript(worker.worker_id, cursor=first.next_cursor)
        for bad, path in [({"limit": 0}, "limit"), ({"cursor": "x"}, "cursor")]:
            with pytest.raises(InvalidInputError) as caught:
                await handle.transcript(worker.worker_id, **bad)  # type: ignore[arg-type]
            assert caught.value.path == path, bad
    entries = page.items
    assert [e.kind for e in entries] == ["user", "assistant", "user", "assistant"]
    assert [e.text for e in entries] == ["hello", "echo: hello", "again", "echo: again"]
    assert [e.index for e in entries] == [1, 2, 3, 4]
    # As the Runtime records an ended turn: the input as accepted, the answer
    # with the turn's final status.
    assert [e.status for e in entries] == [
        TurnStatus.ACCEPTED,
        TurnStatus.COMPLETED,
    ] * 2
    assert entries[0].turn_id == entries[1].turn_id != entries[2].turn_id
    assert entries[2].turn_id == entries[3].turn_id
    assert all(e.at.tzinfo is not None for e in entries)
    assert (page.next_cursor, page.truncated) == (None, False)
    assert first.items == entries[:3]
    assert (rest.items, rest.next_cursor) == (entries[3:], None)


async def test_unknown_worker(case: HandleCase) -> None:
    handle = case.handle
    with trio.fail_after(10):
        await case.seed("Ada")
        reads: list[Call] = [
            lambda: handle.get_worker(UNKNOWN),
            lambda: handle.transcript(UNKNOWN),
        ]
        for read in reads:
            with pytest.raises(WorkerNotFoundError) as missing:
                await read()
            assert (missing.value.code, missing.value.worker_id) == (
                "worker_not_found",
                UNKNOWN,
            )
        commands: list[Call] = [
            lambda: handle.send_input(UNKNOWN, "hi"),
            lambda: handle.cancel(UNKNOWN),
            lambda: handle.stop(UNKNOWN),
        ]
        for command in commands:
            if case.read_only:
                with pytest.raises(OperationUnsupportedError) as refused:
                    await command()
                assert_read_only(refused)
            else:
                with pytest.raises(WorkerNotFoundError) as missing:
                    await command()
                assert missing.value.worker_id == UNKNOWN
        expected = OperationUnsupportedError if case.read_only else WorkerNotFoundError
        with pytest.raises(expected):
            async with handle.subscribe(UNKNOWN):
                pass


async def test_create_input_events_and_stop(case: HandleCase) -> None:
    handle = case.handle
    if case.read_only:
        with trio.fail_after(10):
            existing = await case.seed("Ada", "hello")
            attempts: list[Call] = [
                lambda: handle.create_worker(display_name="Bo"),
                lambda: handle.send_input(existing.worker_id, "more"),
                lambda: handle.stop(existing.worker_id),
            ]
            for attempt in attempts:
                with pytest.raises(OperationUnsupportedError) as refused:
                    await attempt()
                assert_read_only(refused)
            for worker_id in (existing.worker_id, None):
                with pytest.raises(OperationUnsupportedError) as refused:
                    async with handle.subscribe(worker_id, after=0):
                        pass
                assert_read_only(refused)
            assert await handle.get_worker(existing.worker_id) == existing
        return
    with trio.fail_after(10):
        worker = await handle.create_worker(display_name="Ada", engine="slow")
        assert (worker.kind, worker.status, worker.stale) == (case.kind, "idle", False)
        assert worker.engine is not None
        assert worker.engine.name == "slow"
        async with handle.subscribe(worker.worker_id, after=0) as events:
            turn = await handle.send_input(worker.worker_id, "spell", input_id="in-1")
            assert (turn.status, turn.input_id) == (TurnStatus.ACCEPTED, "in-1")
            seen = await events_until(events, "turn.completed")
            assert events.position == seen[-1].seq
        assert types(seen) == [
            "worker.created",
            "turn.accepted",
            "worker.status",
            "turn.started",
            "turn.text_delta",
            "turn.text_delta",
            "turn.text_delta",
            "turn.completed",
        ]
        assert [e.data.text for e in seen if isinstance(e.data, TurnTextDeltaData)] == [
            "a ",
            "b ",
            "c ",
        ]
        async with handle.subscribe(after=0) as everything:
            batch = await everything.receive_batch()
            first = batch[0]
            assert isinstance(first, Event)
            assert (first.type, first.worker_id) == ("worker.created", worker.worker_id)
            assert {item.runtime_id for item in batch if isinstance(item, Event)} == {
                handle.runtime_id
            }
        stopped = await handle.stop(worker.worker_id, reason="closing the tab")
        assert (stopped.kind, stopped.status) == (case.kind, "stopped")
        assert stopped.last_turn is not None
        assert stopped.last_turn.turn_id == turn.turn_id
        with pytest.raises(WorkerStoppedError) as ended:
            await handle.send_input(worker.worker_id, "anyone?")
        assert ended.value.details() == {
            "worker_id": worker.worker_id,
            "status": "stopped",
        }


async def test_scopes_are_claimed_in_the_runtime(case: HandleCase) -> None:
    """``scopes`` is part of every handle's create: the Runtime authorities
    claim them (a second live claim is a typed ``scope_conflict`` naming the
    holder; stopping the holder frees them), the compat source refuses."""
    handle = case.handle
    scope = "workdir:/srv/repo"
    if case.read_only:
        with trio.fail_after(10), pytest.raises(OperationUnsupportedError) as refused:
            await handle.create_worker(scopes=[scope])
        assert_read_only(refused)
        return
    with trio.fail_after(10):
        holder = await handle.create_worker(scopes=[scope, "port:8080"])
        assert holder.scopes == (scope, "port:8080")
        assert (await handle.get_worker(holder.worker_id)).scopes == holder.scopes
        with pytest.raises(ScopeConflictError) as conflict:
            await handle.create_worker(display_name="Bo", scopes=["x", scope])
        assert conflict.value.code == "scope_conflict"
        assert conflict.value.details() == {
            "worker_id": holder.worker_id,
            "scope": scope,
        }
        unscoped = await handle.create_worker(display_name="Bo")
        await handle.stop(holder.worker_id)
        again = await handle.create_worker(scopes=[scope])
        assert unscoped.scopes == ()
        listed = await handle.list_workers()
        assert [w.worker_id for w in listed.items] == [
            holder.worker_id,
            unscoped.worker_id,
            again.worker_id,
        ]


async def test_busy_and_cancel(case: HandleCase) -> None:
    handle = case.handle
    if case.read_only:
        with trio.fail_after(10):
            existing = await case.seed("Ada", "hello")
            with pytest.raises(OperationUnsupportedError) as refused:
                await handle.cancel(existing.worker_id, reason="user pressed stop")
            assert_read_only(refused)
        return
    with trio.fail_after(10):
        worker = await handle.create_worker(engine="hang")
        async with handle.subscribe(worker.worker_id) as events:
            turn = await handle.send_input(worker.worker_id, "wait")
            with pytest.raises(WorkerBusyError) as busy:
                await handle.send_input(worker.worker_id, "again")
            assert busy.value.code == "worker_busy"
            assert busy.value.details() == {
                "worker_id": worker.worker_id,
                "turn_id": turn.turn_id,
                "started_at": turn.accepted_at.isoformat(),
            }
            running = await handle.get_worker(worker.worker_id)
            assert running.status == "running"
            assert running.active_turn is not None
            assert running.active_turn.turn_id == turn.turn_id
            await events_until(events, "turn.text_delta")
            result = await handle.cancel(
                worker.worker_id, turn_id=turn.turn_id, reason="user pressed stop"
            )
            assert (result.outcome, result.turn_id) == (
                CancelOutcome.CANCELLED,
                turn.turn_id,
            )
            seen = await events_until(events, "turn.cancelled")
            assert seen[-1].data == TurnCancelledData(turn.turn_id, "user pressed stop")
        again = await handle.cancel(worker.worker_id)
        assert again.outcome is CancelOutcome.NO_ACTIVE_TURN
        idle = await handle.get_worker(worker.worker_id)
        assert (idle.status, idle.active_turn) == ("idle", None)


@attrs.frozen
class _Unreachable:
    """Enough of a :class:`~yoi_runtime.RuntimeAPI` for ``describe`` and
    ``get_worker``: a Runtime whose summary cannot be read now."""

    runtime: RuntimeAPI

    @property
    def runtime_id(self) -> str:
        return self.runtime.runtime_id

    async def summary(self) -> RuntimeSummary:
        await trio.lowlevel.checkpoint()
        raise RuntimeUnavailableError("the process went away")

    async def get_worker(self, worker_id: str) -> WorkerSummary:
        return await self.runtime.get_worker(worker_id)


async def test_the_adapter_takes_any_runtime_api() -> None:
    """One adapter serves every Runtime: its kind, projection, memory of the
    last summary and closing are parameters."""
    closed: list[bool] = []

    async def on_close() -> None:
        await trio.lowlevel.checkpoint()
        closed.append(True)

    with trio.fail_after(10):
        async with open_runtime(scripted_engines(), default_engine="echo") as runtime:
            seen = await runtime.summary()
            worker = await runtime.create_worker(display_name="Ada")
            adapter = RuntimeAdapter(
                cast(RuntimeAPI, _Unreachable(runtime)),
                RuntimeKind.REMOTE,
                project=lambda summary: attrs.evolve(
                    WorkerView.from_summary(summary, RuntimeKind.REMOTE),
                    display_name="projected",
                ),
                remembered=lambda: seen,
                on_close=on_close,
            )
            view = await adapter.describe()
            assert (view.kind, view.status) == (RuntimeKind.REMOTE, "unavailable")
            assert view.error == "the process went away"
            assert view.capabilities == seen.capabilities
            assert view.version == seen.version
            detail = await adapter.get_worker(worker.worker_id)
            assert (detail.kind, detail.display_name) == (
                RuntimeKind.REMOTE,
                "projected",
            )
            await adapter.aclose()
            assert closed == [True]
            live = await EmbeddedRuntimeHandle(runtime).describe()
            assert (live.kind, live.status, live.error) == (
                RuntimeKind.EMBEDDED,
                "serving",
                None,
            )
