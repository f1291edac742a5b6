"""One conformance suite over both stores (the Store Protocol, ``_store/_base``).

Each test runs against the memory store and the SQLite store, talking to the
store directly (note, commit, wait, read back, transcript, claims and
releases, the snapshot a reopened store gives), then through a Runtime for
what both stores keep bounded: the idempotency window and the diagnostics.
Where the stores differ by design (memory keeps nothing over a reopen), the
test asserts each one's documented answer from ``store.durable``.
"""

from __future__ import annotations

import contextlib
import datetime
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from conformance.support import events_until, scripted_engines

from yoi_runtime import (
    Event,
    EventData,
    EventType,
    Limits,
    Runtime,
    TranscriptEntry,
    TurnAcceptedData,
    TurnStatus,
    TurnSummary,
    Usage,
    WorkerCreatedData,
    WorkerStatus,
    WorkerStatusData,
    WorkerStoppedData,
    open_runtime,
)
from yoi_runtime._engines._base import EngineInfo
from yoi_runtime._events import EventLog
from yoi_runtime._hub import Diagnostics
from yoi_runtime._runtime import RuntimeStatistics
from yoi_runtime._store._base import Store
from yoi_runtime._store._journal import Journal
from yoi_runtime._store._memory import MemoryStore
from yoi_runtime._store._open import open_store
from yoi_runtime._store._records import StoreSnapshot, WorkerRecord
from yoi_runtime._types import Diagnostic

#: Every store, by the name ``open_runtime(store=...)`` gives it.
KINDS = ["memory", "sqlite"]

_AT = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)

#: Mypy checks that both stores satisfy the Protocol.
_STORE_TYPES: tuple[type[Store], ...] = (MemoryStore, Journal)


class FakeWorker:
    """What the store knows of a Worker: its record."""

    def __init__(self, worker_id: str, status: WorkerStatus = WorkerStatus.IDLE):
        self.worker_id = worker_id
        self.status = status

    def record(self) -> WorkerRecord:
        return WorkerRecord(
            worker_id=self.worker_id,
            ordinal=0,
            profile="companion",
            display_name="Yoi",
            system_prompt=None,
            engine=EngineInfo("echo", "scripted", "echo"),
            tools=(),
            scopes=("s",),
            created_at=_AT,
            status=self.status,
            error=None,
            stop_reason=None,
        )


class FakeTurn:
    """What the store knows of a turn: its summary, read when written."""

    def __init__(self, number: int, input_id: str | None = None) -> None:
        self.number = number
        self.input_id = input_id
        self.status = TurnStatus.ACCEPTED

    def summary(self, worker_id: str) -> TurnSummary:
        return TurnSummary(
            turn_id=f"t-{self.number}",
            worker_id=worker_id,
            status=self.status,
            input=f"input {self.number}",
            accepted_at=_AT,
            usage=Usage(),
            input_id=self.input_id,
        )


class FakeEntry:
    """What the store knows of a transcript entry: its snapshot."""

    def __init__(self, index: int, text: str) -> None:
        self.index = index
        self.text = text

    def snapshot(self) -> TranscriptEntry:
        return TranscriptEntry(
            self.index, "user", "t-1", self.text, TurnStatus.ACCEPTED, _AT
        )


def store_path(kind: str, tmp_path: Path) -> Path | None:
    return tmp_path / "store.db" if kind == "sqlite" else None


@asynccontextmanager
async def opened(
    kind: str, tmp_path: Path, *, input_id_retention: int = 1_000
) -> AsyncIterator[tuple[Store, StoreSnapshot, EventLog]]:
    """Open a store as a Runtime does: bind a Runtime-wide log, run its
    writer."""
    async with open_store(
        store_path(kind, tmp_path),
        worker_event_retention=100,
        runtime_event_retention=100,
        transcript_retention=100,
        input_id_retention=input_id_retention,
    ) as (store, snapshot):
        runtime_log = EventLog(100)
        diagnostics: list[tuple[str, str]] = []
        store.bind(
            runtime_log, lambda level, code, m, w: diagnostics.append((level, code))
        )
        async with store.open_writer():
            yield store, snapshot, runtime_log
        assert diagnostics == []


def event(worker_id: str, seq: int, cursor: int, type: EventType) -> Event:
    return Event(seq, cursor, type, "rt-test", worker_id, _AT, _payload(type, seq))


def _payload(type: EventType, seq: int) -> EventData:
    """A payload of ``type`` that differs by ``seq``."""
    payloads: dict[EventType, EventData] = {
        EventType.WORKER_CREATED: WorkerCreatedData(
            f"w{seq}", "companion", "s", WorkerStatus.IDLE
        ),
        EventType.WORKER_STATUS: WorkerStatusData(
            WorkerStatus.RUNNING if seq % 2 else WorkerStatus.IDLE,
            WorkerStatus.IDLE if seq % 2 else WorkerStatus.RUNNING,
        ),
        EventType.WORKER_STOPPED: WorkerStoppedData(f"stop {seq}"),
        EventType.TURN_ACCEPTED: TurnAcceptedData(f"t-{seq}", f"input {seq}", None),
    }
    return payloads[type]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_new_store_is_empty_and_healthy(kind: str, tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with opened(kind, tmp_path) as (store, snapshot, _):
            assert snapshot.runtime_id is None
            assert snapshot.workers == []
            assert snapshot.last_cursor == 0
            assert store.problem is None
            assert store.durable is (kind == "sqlite")


async def test_noted_events_are_published_in_order_once_committed(
    kind: str, tmp_path: Path
) -> None:
    with trio.fail_after(10):
        async with opened(kind, tmp_path) as (store, _, runtime_log):
            log = EventLog(100)
            for n in (1, 2, 3):
                store.note(
                    event("w", n, n, EventType.WORKER_STATUS), log, None, None, None
                )
            await store.wait_committed("w")
            async with _read(log) as seen:
                assert [e.seq for e in seen] == [1, 2, 3]
            assert runtime_log.last == 3
            assert [e.cursor for e in runtime_log._events] == [1, 2, 3]


async def test_waiting_with_nothing_noted_returns(kind: str, tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with opened(kind, tmp_path) as (store, _, _):
            await store.wait_committed()
            await store.wait_committed("nobody")


async def test_a_log_closes_after_the_events_noted_before_it(
    kind: str, tmp_path: Path
) -> None:
    with trio.fail_after(10):
        async with opened(kind, tmp_path) as (store, _, _):
            log = EventLog(100)
            store.note(
                event("w", 1, 1, EventType.WORKER_STOPPED), log, None, None, None
            )
            store.note_close(log)
            await store.wait_committed()
            assert log.closed
            assert log.last == 1


async def test_what_was_committed_is_read_back_by_a_durable_store(
    kind: str, tmp_path: Path
) -> None:
    worker, turn, entry = FakeWorker("w"), FakeTurn(1, "key"), FakeEntry(1, "hi")
    with trio.fail_after(10):
        async with opened(kind, tmp_path) as (store, _, _):
            store.set_runtime_id("rt-test")
            log = EventLog(100)
            created = event("w", 1, 1, EventType.WORKER_CREATED)
            store.note(created, log, worker, None, None)
            store.note(
                event("w", 2, 2, EventType.TURN_ACCEPTED), log, None, turn, entry
            )
            # A change noted later is read when the batch is written.
            turn.status = TurnStatus.RUNNING
            entry.text = "hi there"
            store.note_entry("w", entry)
            store.claim("s", "w")
            await store.wait_committed("w")
            durable = store.durable
        async with opened(kind, tmp_path) as (store, snapshot, _):
            if not durable:
                assert snapshot.workers == []
                assert snapshot.runtime_id is None
                return
            assert snapshot.runtime_id == "rt-test"
            assert snapshot.last_cursor == 2
            (stored,) = snapshot.workers
            assert stored.record == worker.record()
            assert [e.type for e in stored.events] == [
                EventType.WORKER_CREATED,
                EventType.TURN_ACCEPTED,
            ]
            assert [(t.turn_id, t.status, t.input_id) for t in stored.recent_turns] == [
                ("t-1", TurnStatus.RUNNING, "key")
            ]
            assert [e.text for e in stored.transcript] == ["hi there"]
            # A clean close released the allocations this process held.
            assert snapshot.allocations == []


async def test_transcript_pages_come_from_the_durable_store(
    kind: str, tmp_path: Path
) -> None:
    with trio.fail_after(10):
        async with opened(kind, tmp_path) as (store, _, _):
            log = EventLog(100)
            for n in range(1, 6):
                entry = FakeEntry(n, f"entry {n}")
                store.note(
                    event("w", n, n, EventType.TURN_ACCEPTED), log, None, None, entry
                )
            await store.wait_committed()
            page = await store.read_transcript("w", 1, 3)
            if store.durable:
                assert [(e.index, e.text) for e in page] == [
                    (2, "entry 2"),
                    (3, "entry 3"),
                ]
            else:
                assert page == []
            assert await store.read_transcript("other", 0, 5) == []


async def test_claims_and_releases_are_kept_while_the_store_is_open(
    kind: str, tmp_path: Path
) -> None:
    with trio.fail_after(10):
        async with opened(kind, tmp_path) as (store, _, _):
            store.claim("a", "w")
            store.claim("b", "w")
            store.release("a")
            await store.wait_committed()
            path = store_path(kind, tmp_path)
            if path is not None:
                # What a process that died now would leave for the next one.
                with contextlib.closing(sqlite3.connect(path)) as db:
                    rows = db.execute("SELECT scope, worker_id FROM allocations")
                    assert rows.fetchall() == [("b", "w")]
        # A clean close releases them: nothing is handed back.
        async with opened(kind, tmp_path) as (_, snapshot, _):
            assert snapshot.allocations == []


async def test_a_reopened_store_reads_back_only_the_newest_input_ids(
    kind: str, tmp_path: Path
) -> None:
    with trio.fail_after(10):
        async with opened(kind, tmp_path) as (store, _, _):
            log = EventLog(100)
            store.note(
                event("w", 1, 1, EventType.WORKER_CREATED),
                log,
                FakeWorker("w"),
                None,
                None,
            )
            for n in range(1, 6):
                turn = FakeTurn(n, f"k{n}" if n < 5 else None)
                turn.status = TurnStatus.COMPLETED
                store.note(
                    event("w", n + 1, n + 1, EventType.TURN_ACCEPTED),
                    log,
                    None,
                    turn,
                    None,
                )
            await store.wait_committed()
        async with opened(kind, tmp_path, input_id_retention=2) as (_, snapshot, _):
            if not snapshot.workers:
                assert kind == "memory"
                return
            (stored,) = snapshot.workers
            # The newest two with an input id, and the newest turn.
            assert [t.turn_id for t in stored.recent_turns] == ["t-3", "t-4", "t-5"]


async def test_statistics_count_commits_of_a_store_that_writes(
    kind: str, tmp_path: Path
) -> None:
    with trio.fail_after(10):
        async with opened(kind, tmp_path) as (store, _, _):
            log = EventLog(100)
            store.note(event("w", 1, 1, EventType.WORKER_STATUS), log, None, None, None)
            await store.wait_committed()
            statistics = store.statistics()
            if store.durable:
                assert statistics is not None
                assert statistics.commits >= 1
                assert statistics.batch_size_sum >= 1
            else:
                assert statistics is None


@asynccontextmanager
async def _read(log: EventLog) -> AsyncIterator[list[Event]]:
    """The events a subscriber from the start reads now."""
    from yoi_runtime._events import Subscription

    seen: list[Event] = []
    async with Subscription(log, 0) as subscription:
        with trio.move_on_after(0.05):
            async for item in subscription:
                assert isinstance(item, Event)
                seen.append(item)
    yield seen


# -- through a Runtime: what both stores keep bounded ---------------------------


@asynccontextmanager
async def runtime_on(
    kind: str, tmp_path: Path, limits: Limits, engines: dict | None = None
) -> AsyncIterator[Runtime]:
    path = store_path(kind, tmp_path)
    async with open_runtime(
        engines or scripted_engines(),
        default_engine="echo",
        store="memory" if path is None else f"sqlite:{path}",
        limits=limits,
    ) as runtime:
        yield runtime


async def send_and_finish(
    runtime: Runtime, worker_id: str, text: str, input_id: str
) -> TurnSummary:
    async with runtime.subscribe(worker_id) as events:
        turn = await runtime.send_input(worker_id, text, input_id=input_id)
        await events_until(events, "turn.completed")
    return turn


async def test_input_ids_past_the_window_are_forgotten(
    kind: str, tmp_path: Path
) -> None:
    limits = Limits(input_id_retention=2)
    with trio.fail_after(20):
        async with runtime_on(kind, tmp_path, limits) as runtime:
            await runtime.create_worker(worker_id="w")
            first = await send_and_finish(runtime, "w", "one", "k1")
            await send_and_finish(runtime, "w", "two", "k2")
            third = await send_and_finish(runtime, "w", "three", "k3")
            # Inside the window: the same turn, not a new one.
            again = await runtime.send_input("w", "three", input_id="k3")
            assert again.turn_id == third.turn_id
            assert (await runtime.get_worker("w")).turns == 3
            # Past it (two newer input ids since): a new turn.
            retried = await send_and_finish(runtime, "w", "one", "k1")
            assert retried.turn_id != first.turn_id
            assert retried.turn_id == "t-4"
        if kind == "memory":
            return
        async with runtime_on(kind, tmp_path, limits) as runtime:
            # k1 (t-4) and k3 (t-3) are the newest two; k2 is forgotten.
            assert (
                await runtime.send_input("w", "one", input_id="k1")
            ).turn_id == "t-4"
            await runtime.cancel("w")
            assert (
                await runtime.send_input("w", "three", input_id="k3")
            ).turn_id == "t-3"
            fresh = await runtime.send_input("w", "two", input_id="k2")
            assert fresh.turn_id == "t-5"


async def test_input_ids_are_off_with_a_zero_window(kind: str, tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with runtime_on(kind, tmp_path, Limits(input_id_retention=0)) as runtime:
            await runtime.create_worker(worker_id="w")
            first = await send_and_finish(runtime, "w", "one", "k")
            second = await send_and_finish(runtime, "w", "one", "k")
            assert (first.turn_id, second.turn_id) == ("t-1", "t-2")


def test_diagnostics_keep_the_newest_and_count_the_dropped() -> None:
    diagnostics = Diagnostics(2)
    made = [Diagnostic(_AT, "warning", f"c{n}", "m", None) for n in range(5)]
    diagnostics.append(made[0])
    assert list(diagnostics) == made[:1]
    assert diagnostics.dropped == 0
    diagnostics.extend(made[1:])
    assert list(diagnostics) == made[3:]
    assert len(diagnostics) == 2
    assert diagnostics.dropped == 3


async def test_a_runtime_reports_dropped_diagnostics(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    engines = scripted_engines()
    with trio.fail_after(20):
        async with runtime_on("sqlite", tmp_path, Limits()) as runtime:
            for name in ("a", "b", "c"):
                await runtime.create_worker(worker_id=name, engine="slow")
            assert runtime.statistics().diagnostics_dropped == 0
        # Reopened without the "slow" engine: one diagnostic per Worker.
        del engines["slow"]
        async with open_runtime(
            engines, store=f"sqlite:{db}", limits=Limits(max_diagnostics=2)
        ) as runtime:
            found = await runtime.diagnostics()
            assert [d.code for d in found] == ["engine_missing"] * 2
            assert [d.worker_id for d in found] == ["b", "c"]
            statistics = runtime.statistics()
            assert isinstance(statistics, RuntimeStatistics)
            assert statistics.diagnostics_dropped == 1
            assert statistics.store is not None


async def test_runtime_statistics_show_each_engines_load(
    kind: str, tmp_path: Path
) -> None:
    with trio.fail_after(20):
        async with runtime_on(kind, tmp_path, Limits()) as runtime:
            await runtime.create_worker(worker_id="w", engine="hang")
            await runtime.send_input("w", "go")
            loads = {load.name: load for load in runtime.statistics().engines}
            assert set(loads) == {"echo", "hang", "slow", "fail"}
            assert (loads["hang"].running, loads["hang"].queued) == (1, 0)
            assert loads["echo"].running == 0
            assert (runtime.statistics().store is None) is (kind == "memory")
