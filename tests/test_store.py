"""The durable SQLite store, in process: restart, idempotency, allocations,
retention, damaged rows and schema versions.

The crash tests (SIGKILL of a real process) are in ``test_crash.py``.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from conformance.support import events_until, scripted_engines, types

from yoi_runtime import (
    Event,
    Gap,
    IdempotencyConflictError,
    InvalidInputError,
    Limits,
    Runtime,
    ScopeConflictError,
    StoreError,
    TurnCompletedData,
    TurnFailedData,
    TurnStartedData,
    TurnStatus,
    Usage,
    WorkerStatus,
    open_runtime,
    to_json,
)
from yoi_runtime._store._schema import MIGRATIONS, SCHEMA_VERSION

_AT = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)


@asynccontextmanager
async def open_durable(
    path: Path, *, limits: Limits | None = None, runtime_id: str | None = None
) -> AsyncIterator[Runtime]:
    async with open_runtime(
        scripted_engines(),
        default_engine="echo",
        store=f"sqlite:{path}",
        limits=limits or Limits(),
        runtime_id=runtime_id,
    ) as runtime:
        yield runtime


async def complete_turn(runtime: Runtime, worker_id: str, text: str) -> None:
    async with runtime.subscribe(worker_id) as events:
        await runtime.send_input(worker_id, text)
        await events_until(events, "turn.completed")


async def test_workers_turns_and_ids_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "runtime.db"
    async with open_durable(db) as runtime:
        runtime_id = runtime.runtime_id
        idle = await runtime.create_worker(display_name="idle", worker_id="w-idle")
        await complete_turn(runtime, "w-idle", "hello")
        await runtime.create_worker(worker_id="w-stopped")
        await runtime.stop("w-stopped", reason="done")
        before = await runtime.get_worker("w-idle")
        last_cursor = (await runtime.summary()).last_cursor
    async with open_durable(db) as runtime:
        assert runtime.runtime_id == runtime_id
        after = await runtime.get_worker("w-idle")
        assert after.status is WorkerStatus.IDLE
        assert after.created_at == idle.created_at
        assert after.last_turn == before.last_turn
        assert after.turns == 1
        assert after.usage == before.usage
        assert after.last_seq == before.last_seq
        stopped = await runtime.get_worker("w-stopped")
        assert stopped.status is WorkerStatus.STOPPED
        assert (await runtime.summary()).last_cursor == last_cursor
        page = await runtime.transcript("w-idle")
        assert [(e.kind, e.text) for e in page.items] == [
            ("user", "hello"),
            ("assistant", "echo: hello"),
        ]
        # The conversation goes on where it stopped: turn ids and history.
        async with runtime.subscribe("w-idle") as events:
            turn = await runtime.send_input("w-idle", "again")
            seen = await events_until(events, "turn.completed")
        assert turn.turn_id == "t-2"
        assert seen[0].seq == before.last_seq + 1
        assert seen[0].cursor == last_cursor + 1


async def test_a_cursor_taken_before_a_restart_resumes_without_gap(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runtime.db"
    async with open_durable(db) as runtime:
        await runtime.create_worker(worker_id="w")
        await complete_turn(runtime, "w", "one")
        async with runtime.subscribe("w", after=0) as events:
            first = await events.receive_batch(3)
        async with runtime.subscribe(after=0) as everything:
            first_all = await everything.receive_batch(2)
    async with open_durable(db) as runtime:
        await complete_turn(runtime, "w", "two")
        async with runtime.subscribe("w", after=first[-1].seq) as events:
            rest = await events.receive_batch()
        async with runtime.subscribe(after=first_all[-1].cursor) as everything:
            rest_all = await everything.receive_batch()
    items = first + rest
    assert all(isinstance(item, Event) for item in items)
    assert [item.seq for item in items] == list(range(1, len(items) + 1))  # type: ignore[union-attr]
    assert types(items)[-1] == "worker.status"  # type: ignore[arg-type]
    assert types(items).count("turn.completed") == 2  # type: ignore[arg-type]
    cursors = [item.cursor for item in first_all + rest_all]  # type: ignore[union-attr]
    assert cursors == list(range(1, len(cursors) + 1))


async def test_a_graceful_close_cancels_turns_and_keeps_workers(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runtime.db"
    async with open_durable(db) as runtime:
        await runtime.create_worker(engine="hang", worker_id="w")
        async with runtime.subscribe("w") as events:
            await runtime.send_input("w", "hang on")
            await events_until(events, "turn.text_delta")
    async with open_durable(db) as runtime:
        worker = await runtime.get_worker("w")
        assert worker.status is WorkerStatus.IDLE
        assert worker.last_turn is not None
        assert worker.last_turn.status is TurnStatus.CANCELLED
        assert worker.last_turn.reason == "shutdown"
        async with runtime.subscribe("w", after=0) as events:
            replay = types(await events.receive_batch())  # type: ignore[arg-type]
        assert "worker.stopped" not in replay
        assert replay[-2:] == ["turn.cancelled", "worker.status"]
        (answer,) = [
            e for e in (await runtime.transcript("w")).items if e.kind == "assistant"
        ]
        assert (answer.text, answer.status) == ("partial ", TurnStatus.CANCELLED)


async def test_idempotent_create_and_input_across_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "runtime.db"
    async with open_durable(db) as runtime:
        created = await runtime.create_worker(worker_id="w", display_name="Yoi")
        turn = await runtime.send_input("w", "hi", input_id="in-1")
    async with open_durable(db) as runtime:
        again = await runtime.create_worker(worker_id="w", display_name="Yoi")
        assert again.created_at == created.created_at
        retried = await runtime.send_input("w", "hi", input_id="in-1")
        assert retried.turn_id == turn.turn_id
        assert retried.accepted_at == turn.accepted_at
        assert (await runtime.get_worker("w")).turns == 1
        with pytest.raises(IdempotencyConflictError) as caught:
            await runtime.send_input("w", "something else", input_id="in-1")
        assert caught.value.details() == {"worker_id": "w", "input_id": "in-1"}


async def test_an_input_id_retried_while_its_turn_runs_is_not_busy(
    tmp_path: Path,
) -> None:
    async with open_durable(tmp_path / "db") as runtime:
        await runtime.create_worker(engine="hang", worker_id="w")
        first = await runtime.send_input("w", "go", input_id="k")
        second = await runtime.send_input("w", "go", input_id="k")
        assert second.turn_id == first.turn_id
        assert second.status is TurnStatus.RUNNING


async def test_scopes_are_exclusive_while_their_worker_lives(tmp_path: Path) -> None:
    db = tmp_path / "runtime.db"
    async with open_durable(db) as runtime:
        await runtime.create_worker(worker_id="a", scopes=["workdir:/srv/repo"])
        with pytest.raises(ScopeConflictError) as caught:
            await runtime.create_worker(worker_id="b", scopes=["workdir:/srv/repo"])
        assert caught.value.details() == {
            "worker_id": "a",
            "scope": "workdir:/srv/repo",
        }
        with pytest.raises(InvalidInputError):
            await runtime.create_worker(scopes=["bad\x00scope"])
    # A restarted Runtime holds the scope for the Worker again...
    async with open_durable(db) as runtime:
        with pytest.raises(ScopeConflictError):
            await runtime.create_worker(worker_id="b", scopes=["workdir:/srv/repo"])
        # ...until it stops.
        await runtime.stop("a")
        b = await runtime.create_worker(worker_id="b", scopes=["workdir:/srv/repo"])
        assert b.scopes == ("workdir:/srv/repo",)
        assert await runtime.diagnostics() == ()
    with sqlite3.connect(db) as check:
        rows = check.execute("SELECT scope, worker_id FROM allocations").fetchall()
    assert rows == []  # a graceful close releases this process's rows


async def test_allocations_a_dead_process_left_are_reclaimed(tmp_path: Path) -> None:
    db = tmp_path / "runtime.db"
    async with open_durable(db) as runtime:
        await runtime.create_worker(worker_id="live", scopes=["s1"])
        await runtime.create_worker(worker_id="gone", scopes=["s2"])
        await runtime.stop("gone")
    # What a process killed between claiming and releasing leaves behind (the
    # SIGKILL version of this test is in test_crash.py).
    with sqlite3.connect(db) as damage:
        damage.executemany(
            "INSERT INTO allocations VALUES (?, ?, 'pid 1', '2026-01-01T00:00:00')",
            [("s1", "live"), ("s2", "gone")],
        )
    async with open_durable(db) as runtime:
        found = await runtime.diagnostics()
        assert [(d.code, d.worker_id) for d in found] == [
            ("allocation_reclaimed", "live"),
            ("allocation_reclaimed", "gone"),
        ]
        assert "claimed again" in found[0].message
        assert "released" in found[1].message
        await runtime.create_worker(worker_id="new", scopes=["s2"])
        with pytest.raises(ScopeConflictError):
            await runtime.create_worker(scopes=["s1"])


async def test_a_second_runtime_on_one_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "runtime.db"
    async with open_durable(db) as runtime:
        await runtime.create_worker(worker_id="w")
        with pytest.raises(StoreError, match="in use by another yoi-runtime process"):
            async with open_durable(db):
                pass  # pragma: no cover
        assert (await runtime.get_worker("w")).status is WorkerStatus.IDLE
    async with open_durable(db) as runtime:  # free again once closed
        assert (await runtime.get_worker("w")).worker_id == "w"


async def test_a_store_belongs_to_one_runtime_id(tmp_path: Path) -> None:
    db = tmp_path / "runtime.db"
    async with open_durable(db, runtime_id="rt-a"):
        pass
    with pytest.raises(StoreError, match="belongs to runtime rt-a"):
        async with open_durable(db, runtime_id="rt-b"):
            pass  # pragma: no cover
    async with open_durable(db) as runtime:
        assert runtime.runtime_id == "rt-a"


async def test_damaged_rows_become_diagnostics(tmp_path: Path) -> None:
    db = tmp_path / "runtime.db"
    async with open_durable(db) as runtime:
        for worker_id in ("good", "bad-record", "bad-event"):
            await runtime.create_worker(worker_id=worker_id)
            await complete_turn(runtime, worker_id, "hi")
    with sqlite3.connect(db) as damage:
        damage.execute(
            "UPDATE workers SET record = '{oops' WHERE worker_id = ?", ("bad-record",)
        )
        damage.execute(
            "UPDATE events SET data = '[]' WHERE worker_id = 'bad-event' AND seq = 3"
        )
        damage.execute(
            "UPDATE transcript SET status = 'bogus'"
            " WHERE worker_id = 'good' AND idx = 1"
        )
    async with open_durable(db) as runtime:
        found = {(d.code, d.worker_id) for d in await runtime.diagnostics()}
        assert found == {
            ("store_row_invalid", "bad-record"),
            ("store_row_invalid", "bad-event"),
            ("store_row_invalid", "good"),
        }
        listed = [w.worker_id for w in (await runtime.list_workers()).items]
        assert listed == ["good", "bad-event"]
        # The damaged event is gone: a reader from the start gets a gap.
        async with runtime.subscribe("bad-event", after=0) as events:
            first = await events.receive()
        assert first == Gap(after=0, resume_after=3)
        # Both Workers still work.
        await complete_turn(runtime, "bad-event", "still there?")
        # The damaged transcript entry is left out, the page goes on.
        page = await runtime.transcript("good", limit=1)
        assert (page.items, page.next_cursor) == ((), "1")
        page = await runtime.transcript("good", cursor="1")
        assert [e.text for e in page.items] == ["echo: hi"]


async def test_event_retention_reports_a_gap_and_the_transcript_stays_whole(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runtime.db"
    limits = Limits(worker_event_retention=8, transcript_retention=4)
    async with open_durable(db, limits=limits) as runtime:
        await runtime.create_worker(worker_id="w")
        for n in range(6):
            await complete_turn(runtime, "w", f"input {n}")
        last_seq = (await runtime.get_worker("w")).last_seq
    with sqlite3.connect(db) as check:
        (kept,) = check.execute("SELECT COUNT(*) FROM events").fetchone()
    assert 8 <= kept <= 10  # retention plus its quarter of slack
    async with open_durable(db, limits=limits) as runtime:
        async with runtime.subscribe("w", after=0) as events:
            gap = await events.receive()
        assert isinstance(gap, Gap)
        assert gap.after == 0
        assert gap.resume_after == last_seq - 8
        texts = []
        cursor = None
        while True:
            page = await runtime.transcript("w", limit=3, cursor=cursor)
            assert page.truncated is False
            texts += [entry.text for entry in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert texts == [
            text for n in range(6) for text in (f"input {n}", f"echo: input {n}")
        ]


async def test_an_older_schema_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "runtime.db"
    async with open_durable(db) as runtime:
        await runtime.create_worker(worker_id="w", engine="hang")
        await runtime.send_input("w", "hi", input_id="k")
    # Turn the file back into a version-1 store, as the first release wrote it.
    with sqlite3.connect(db) as old:
        old.execute("DROP TABLE allocations")
        old.execute("ALTER TABLE turns DROP COLUMN finish_reason")
        old.execute("ALTER TABLE turns DROP COLUMN history_omitted")
        old.execute("ALTER TABLE transcript DROP COLUMN finish_reason")
        old.execute("PRAGMA user_version = 1")
    # This test knows versions 1 to 3; a version 4 needs its own step here.
    assert SCHEMA_VERSION == len(MIGRATIONS) == 3
    async with open_durable(db) as runtime:
        retried = await runtime.send_input("w", "hi", input_id="k")
        assert retried.turn_id == "t-1"
        # Version 2 added the allocation registry.
        await runtime.create_worker(worker_id="holder", scopes=["s"])
        with pytest.raises(ScopeConflictError):
            await runtime.create_worker(scopes=["s"])
    with sqlite3.connect(db) as check:
        assert check.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


async def test_events_stored_before_version_3_still_read(tmp_path: Path) -> None:
    db = tmp_path / "runtime.db"
    async with open_durable(db) as runtime:
        await runtime.create_worker(worker_id="w")
        await complete_turn(runtime, "w", "hi")
        await runtime.create_worker(worker_id="bad")
        await complete_turn(runtime, "bad", "hi")
    # The payloads as the store wrote them before version 3 (10ba2ec): no
    # history_omitted, finish_reason or truncated.
    with sqlite3.connect(db) as old:
        old.execute(
            "UPDATE events SET data = json_remove(data, '$.history_omitted')"
            " WHERE type = 'turn.started'"
        )
        old.execute(
            "UPDATE events SET data ="
            " json_remove(data, '$.finish_reason', '$.truncated')"
            " WHERE type = 'turn.completed'"
        )
        # A payload that does not fit its type's class is a damaged row.
        old.execute(
            "UPDATE events SET data = json_remove(data, '$.text')"
            " WHERE type = 'turn.text_delta' AND worker_id = 'bad'"
        )
        (stored,) = old.execute(
            "SELECT data FROM events WHERE type = 'turn.completed' AND worker_id = 'w'"
        ).fetchone()
    assert json.loads(stored) == {
        "turn_id": "t-1",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    async with open_durable(db) as runtime:
        assert [(d.code, d.worker_id) for d in await runtime.diagnostics()] == [
            ("store_row_invalid", "bad")
        ]
        async with runtime.subscribe("w", after=0) as events:
            seen = await events_until(events, "turn.completed")
        async with runtime.subscribe("bad", after=0) as events:
            first = await events.receive()
    started = next(e for e in seen if e.type == "turn.started")
    assert started.data == TurnStartedData("t-1", 0)
    completed = seen[-1]
    assert completed.data == TurnCompletedData("t-1", Usage(1, 1), None, False)
    # Read back, the JSON has the keys it was stored with, and truncated.
    assert to_json(completed)["data"] == {
        "turn_id": "t-1",
        "usage": {"input_tokens": 1, "output_tokens": 1},
        "truncated": False,
    }
    # The damaged delta (seq 5) and all before it are left out.
    assert first == Gap(after=0, resume_after=5)


async def test_a_newer_schema_or_a_foreign_file_is_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    async with open_durable(newer):
        pass
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="upgrade yoi-runtime"):
        async with open_durable(newer):
            pass  # pragma: no cover
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE people (name TEXT)")
    with pytest.raises(StoreError, match="not a yoi-runtime store"):
        async with open_durable(foreign):
            pass  # pragma: no cover
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="not a yoi-runtime store"):
        async with open_durable(garbage):
            pass  # pragma: no cover


async def test_a_missing_engine_fails_turns_not_the_start(tmp_path: Path) -> None:
    db = tmp_path / "runtime.db"
    async with open_durable(db) as runtime:
        await runtime.create_worker(engine="slow", worker_id="w")
    engines = scripted_engines()
    del engines["slow"]
    async with open_runtime(engines, store=f"sqlite:{db}") as runtime:
        (found,) = await runtime.diagnostics()
        assert (found.code, found.worker_id) == ("engine_missing", "w")
        async with runtime.subscribe("w") as events:
            await runtime.send_input("w", "hi")
            failed = (await events_until(events, "turn.failed"))[-1]
        assert isinstance(failed.data, TurnFailedData)
        assert failed.data.error.code == "engine_config_error"


async def test_unknown_store_names_are_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="sqlite:PATH"):
        async with open_runtime(scripted_engines(), store="postgres://x"):
            pass  # pragma: no cover


async def test_concurrent_inputs_are_committed_before_acknowledged(
    tmp_path: Path,
) -> None:
    # Group commit: 50 Workers given input at once are all acknowledged, and
    # every acknowledged turn is in the file.
    db = tmp_path / "runtime.db"
    async with open_durable(db) as runtime:
        ids = [f"w{n}" for n in range(50)]
        for worker_id in ids:
            await runtime.create_worker(worker_id=worker_id, engine="hang")
        accepted: list[str] = []

        async def give(worker_id: str) -> None:
            turn = await runtime.send_input(worker_id, "go")
            accepted.append(f"{worker_id}/{turn.turn_id}")

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for worker_id in ids:
                    nursery.start_soon(give, worker_id)
        with sqlite3.connect(db) as check:
            rows = check.execute("SELECT worker_id, turn_no FROM turns").fetchall()
        assert sorted(f"{w}/t-{n}" for w, n in rows) == sorted(accepted)
        assert len(accepted) == 50
