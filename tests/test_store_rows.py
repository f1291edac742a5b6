"""How the SQLite store writes rows (``_store/_rows.py``): multi-row
statements write every row once, in order, for any count; a timestamp object
is formatted once a batch; event JSON is ``json.dumps``'s text."""

from __future__ import annotations

import datetime
import json
import sqlite3
from pathlib import Path

import pytest
from conformance.support import scripted_engines

from yoi_runtime import open_runtime
from yoi_runtime._store._rows import CHUNKS, insert_rows, multi_row, timestamps


@pytest.mark.parametrize("count", [0, 1, 2, 3, 4, 5, 17, 63, 64, 65, 150, 333])
def test_insert_rows_writes_every_row_once_in_order(count: int) -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE t (n INTEGER PRIMARY KEY AUTOINCREMENT, a, b)")
    rows = [(i, f"row {i}") for i in range(count)]
    insert_rows(db, "INSERT INTO t (a, b) VALUES (?, ?)", rows)
    assert db.execute("SELECT a, b FROM t ORDER BY n").fetchall() == rows


def test_insert_or_replace_keeps_the_last_row_of_a_key() -> None:
    # As executemany: a later row with the same key replaces an earlier one.
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    rows = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)]
    insert_rows(db, "INSERT OR REPLACE INTO t VALUES (?, ?)", rows)
    assert db.execute("SELECT k, v FROM t ORDER BY k").fetchall() == [
        ("a", 3),
        ("b", 5),
        ("c", 4),
    ]


def test_statements_other_than_insert_values_run_row_by_row() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    db.executemany("INSERT INTO t VALUES (?)", [("a",), ("b",), ("c",)])
    insert_rows(db, "DELETE FROM t WHERE k = ?", [("a",), ("c",)])
    assert db.execute("SELECT k FROM t").fetchall() == [("b",)]


def test_a_bad_value_in_a_multi_row_statement_fails_it() -> None:
    # The store then writes the batch again row by row (_faults.repair_row).
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE t (a)")
    with pytest.raises(UnicodeEncodeError):
        insert_rows(db, "INSERT INTO t VALUES (?)", [("ok",), ("\ud800",), ("ok",)])


def test_statement_shapes_are_bounded() -> None:
    assert multi_row("INSERT INTO t VALUES (?, ?)", 3) == (
        "INSERT INTO t VALUES (?, ?), (?, ?), (?, ?)"
    )
    assert CHUNKS[-1] == 1
    assert multi_row("INSERT INTO t VALUES (?)", 1) == "INSERT INTO t VALUES (?)"


def test_timestamps_format_each_object_once_and_as_isoformat() -> None:
    iso = timestamps()
    utc = datetime.UTC
    first = datetime.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=utc)
    equal = datetime.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=utc)
    other = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=utc)
    assert iso(first) == first.isoformat() == iso(first)
    assert iso(equal) == equal.isoformat()
    assert iso(other) == other.isoformat() == "2026-01-02T03:04:05+00:00"


async def test_stored_events_are_the_json_of_their_data(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with open_runtime(
        scripted_engines(), default_engine="echo", store=f"sqlite:{path}"
    ) as runtime:
        worker = await runtime.create_worker()
        await runtime.send_input(worker.worker_id, "h\u00e9llo \u2603")
    db = sqlite3.connect(path)
    rows = db.execute("SELECT type, data FROM events ORDER BY cursor").fetchall()
    db.close()
    assert "turn.accepted" in [kind for kind, _ in rows]
    for kind, text in rows:
        # json.dumps's defaults: ", " and ": ", non-ASCII escaped.
        assert json.dumps(json.loads(text)) == text, kind
    assert any("h\\u00e9llo \\u2603" in text for _, text in rows)
