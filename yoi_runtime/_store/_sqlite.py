"""The durable store: one SQLite file in WAL mode (``--store sqlite:PATH``).

Every method here blocks: the Runtime calls them one at a time, in the
store's own thread (:class:`._thread.StoreThread`).

One process at a time: :meth:`SQLiteStore.open` takes an exclusive
``flock`` on the database file itself and on ``PATH.lock`` (holding the pid)
for as long as the store is open (:func:`._faults.lock_store`). The
kernel releases them when the process dies, however it dies, so a second
process pointed at the same file, under any name (a symlink, a hard link),
is refused with :class:`StoreError` while the first runs, and whatever a dead
process left behind (its allocations) is known to be stale when the next one
opens the file.

Faults (:mod:`._faults`): a damaged or empty file is a one-line
:class:`StoreError` at open; a row SQLite cannot bind is repaired or left
out (:meth:`SQLiteStore.write` reports it) instead of failing its batch; a
batch that fails as a whole (disk full, I/O error) is rolled back and raises
``sqlite3.Error``, so the caller can retry it.

Schema changes are numbered migrations (:mod:`._schema`); rows are built and
parsed in :mod:`._rows`.

A row that cannot be read (bad JSON, a value of the wrong type, ids that do
not agree) never stops the Runtime from starting: it becomes a
:class:`~yoi_runtime.Diagnostic` and is left out, and a Worker's log or
transcript restarts after the last row that could not be read.
"""

from __future__ import annotations

import datetime
import os
import sqlite3
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from .._engines._base import Usage
from .._errors import StoreError
from .._events import Event
from .._types import Diagnostic, TranscriptEntry
from .._wire import converter
from ._faults import (
    DATA_ERRORS,
    RowProblem,
    StoreLock,
    damaged,
    lock_store,
    repair_row,
)
from ._records import Batch, StoredWorker, StoreSnapshot, WorkerRecord
from ._rows import (
    ENTRY_COLUMNS,
    EVENT_COLUMNS,
    TURN_COLUMNS,
    contiguous,
    entry_rows,
    event_rows,
    insert_rows,
    parse,
    parse_entry,
    parse_event,
    parse_turn,
    timestamps,
    turn_row,
)
from ._schema import MIGRATIONS, SCHEMA_VERSION, migrate

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SQLiteStore"]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class SQLiteStore:
    """A Runtime's durable store in one SQLite file (see the module docstring).

    Open it with :meth:`open`; every method blocks.

    Attributes:
        path: The file as it was named (for messages).
        real_path: The file, symlinks resolved (where its disk is).
    """

    def __init__(self, path: Path, db: sqlite3.Connection, lock: StoreLock) -> None:
        self.path = path
        self.real_path = lock.path
        self._db = db
        self._lock = lock
        self._owner = f"pid {os.getpid()}"
        #: Per Worker, the oldest ``seq`` still in the events table.
        self._first_seq: dict[str, int] = {}
        self._retention = 0

    @classmethod
    def open(cls, path: Path, *, synchronous: str = "FULL") -> SQLiteStore:
        """Lock, open and migrate the store at ``path`` (created if missing).

        Args:
            path: The SQLite file (symlinks are resolved); ``PATH.lock`` is
                created beside it.
            synchronous: SQLite's ``synchronous`` setting: ``"FULL"`` (each
                commit reaches the disk: an acknowledged input survives a
                power cut) or ``"NORMAL"`` (it survives the process dying).

        Raises:
            StoreError: Another process has the store open (under any name),
                the file is empty, damaged or not a yoi-runtime store, or its
                schema is newer than this code.
        """
        path = Path(path)
        lock = lock_store(path)
        try:
            db = sqlite3.connect(
                lock.path, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            lock.release()
            raise StoreError(f"cannot open store {path}: {exc}") from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
            migrate(db, path)
        except sqlite3.DatabaseError as exc:
            db.close()
            lock.release()
            raise damaged(path, exc) from None
        except BaseException:
            db.close()
            lock.release()
            raise
        return cls(path, db, lock)

    def close(self) -> None:
        """Release this process's allocations, close the file, drop the lock.

        Never fails for a full disk: allocation rows left behind are
        reclaimed by the next process to open the store.
        """
        try:
            try:
                self._db.execute(
                    "DELETE FROM allocations WHERE owner = ?", (self._owner,)
                )
            except sqlite3.Error:
                pass
            self._db.close()
        finally:
            self._lock.release()

    # -- reading --------------------------------------------------------------

    def load(
        self,
        *,
        worker_event_retention: int,
        runtime_event_retention: int,
        transcript_retention: int,
        input_id_retention: int = 1_000,
    ) -> StoreSnapshot:
        """Read what a Runtime needs to start again (see :class:`StoreSnapshot`).

        Of the turns carrying an ``input_id`` only the newest
        ``input_id_retention`` per Worker are read (the idempotency window).

        Allocation rows are all a dead process's (this one holds the lock):
        they are returned and deleted.

        Raises:
            StoreError: The file is damaged (a page SQLite cannot read, a
                table missing): one line naming the file and what to do.
        """
        try:
            return self._load(
                worker_event_retention,
                runtime_event_retention,
                transcript_retention,
                input_id_retention,
            )
        except sqlite3.DatabaseError as exc:
            raise damaged(self.path, exc) from None

    def _load(
        self,
        worker_event_retention: int,
        runtime_event_retention: int,
        transcript_retention: int,
        input_id_retention: int,
    ) -> StoreSnapshot:
        self._retention = worker_event_retention
        diagnostics: list[Diagnostic] = []

        def problem(message: str, worker_id: str | None = None) -> None:
            diagnostics.append(
                Diagnostic(_now(), "error", "store_row_invalid", message, worker_id)
            )

        db = self._db
        row = db.execute("SELECT value FROM meta WHERE key = 'runtime_id'").fetchone()
        runtime_id = None if row is None else str(row[0])
        workers = []
        rows = db.execute(
            "SELECT worker_id, ordinal, record FROM workers ORDER BY ordinal"
        ).fetchall()
        for worker_id, ordinal, text in rows:
            record = parse(text, WorkerRecord)
            if (
                record is None
                or record.worker_id != worker_id
                or record.ordinal != ordinal
            ):
                problem(f"worker row {worker_id!r} is unreadable; left out", worker_id)
                continue
            workers.append(
                self._load_worker(
                    record,
                    runtime_id or "",
                    worker_event_retention,
                    transcript_retention,
                    input_id_retention,
                    problem,
                )
            )
        (last_cursor,) = db.execute(
            "SELECT COALESCE(MAX(cursor), 0) FROM events"
        ).fetchone()
        tail = db.execute(
            f"SELECT cursor, {EVENT_COLUMNS} FROM events ORDER BY cursor DESC LIMIT ?",
            (runtime_event_retention,),
        ).fetchall()
        # Rows missing here were trimmed with their Worker's log, and rows that
        # cannot be read were reported there: the runtime log starts after.
        runtime_events = contiguous(
            tail, last_cursor, partial(parse_event, runtime_id or ""), "cursor", None
        )
        allocations = [
            (str(scope), str(worker_id))
            for scope, worker_id in db.execute(
                "SELECT scope, worker_id FROM allocations ORDER BY acquired_at"
            )
        ]
        db.execute("DELETE FROM allocations")
        return StoreSnapshot(
            runtime_id=runtime_id,
            runtime_events=runtime_events,
            last_cursor=int(last_cursor),
            workers=workers,
            allocations=allocations,
            diagnostics=diagnostics,
        )

    def _load_worker(
        self,
        record: WorkerRecord,
        runtime_id: str,
        event_retention: int,
        transcript_retention: int,
        input_id_retention: int,
        problem: Callable[[str, str | None], None],
    ) -> StoredWorker:
        db, worker_id = self._db, record.worker_id
        first, last_seq = db.execute(
            "SELECT COALESCE(MIN(seq), 1), COALESCE(MAX(seq), 0) FROM events"
            " WHERE worker_id = ?",
            (worker_id,),
        ).fetchone()
        self._first_seq[worker_id] = first
        rows = db.execute(
            f"SELECT seq, {EVENT_COLUMNS} FROM events WHERE worker_id = ?"
            " ORDER BY seq DESC LIMIT ?",
            (worker_id, event_retention),
        ).fetchall()
        parse = partial(parse_event, runtime_id)
        events = contiguous(rows, last_seq, parse, "seq", worker_id, problem)
        count, input_tokens, output_tokens = db.execute(
            "SELECT COALESCE(MAX(turn_no), 0), TOTAL(input_tokens),"
            " TOTAL(output_tokens) FROM turns WHERE worker_id = ?",
            (worker_id,),
        ).fetchone()
        turns = []
        for row in db.execute(
            f"SELECT {TURN_COLUMNS} FROM turns WHERE worker_id = ?"
            " AND (status IN ('accepted', 'running')"
            " OR turn_no = (SELECT MAX(turn_no) FROM turns WHERE worker_id = ?)"
            " OR turn_no IN (SELECT turn_no FROM turns WHERE worker_id = ?"
            " AND input_id IS NOT NULL ORDER BY turn_no DESC LIMIT ?))"
            " ORDER BY turn_no",
            (worker_id, worker_id, worker_id, input_id_retention),
        ):
            turn = parse_turn(worker_id, row)
            if turn is None:
                problem(
                    f"turn t-{row[0]} of worker {worker_id} is unreadable", worker_id
                )
                continue
            turns.append(turn)
        (last_index,) = db.execute(
            "SELECT COALESCE(MAX(idx), 0) FROM transcript WHERE worker_id = ?",
            (worker_id,),
        ).fetchone()
        rows = db.execute(
            f"SELECT {ENTRY_COLUMNS} FROM transcript WHERE worker_id = ?"
            " ORDER BY idx DESC LIMIT ?",
            (worker_id, transcript_retention),
        ).fetchall()
        transcript = contiguous(
            rows, last_index, parse_entry, "index", worker_id, problem
        )
        return StoredWorker(
            record=record,
            events=events,
            last_seq=int(last_seq),
            turns=int(count),
            usage=Usage(int(input_tokens), int(output_tokens)),
            recent_turns=turns,
            transcript=transcript,
            transcript_last=int(last_index),
        )

    def read_transcript(
        self, worker_id: str, after: int, upto: int
    ) -> list[TranscriptEntry]:
        """Return the transcript entries with an index in ``(after, upto]``,
        oldest first (unreadable rows are left out)."""
        rows = self._db.execute(
            f"SELECT {ENTRY_COLUMNS} FROM transcript WHERE worker_id = ?"
            " AND idx > ? AND idx <= ? ORDER BY idx",
            (worker_id, after, upto),
        ).fetchall()
        entries = [parse_entry(row) for row in rows]
        return [entry for entry in entries if entry is not None]

    # -- writing --------------------------------------------------------------

    def write(self, batch: Batch) -> list[RowProblem]:
        """Commit one batch in one transaction (all of it or none of it).

        Also trims each Worker's events to its retention (with a quarter's
        slack, so trimming is rare).

        A row whose values SQLite cannot bind (a lone surrogate, an integer
        past 64 bits) does not fail the batch: the batch is written again
        row by row, that row repaired (:func:`._faults.repair_row`) or,
        if it still fails, left out.

        Returns:
            The rows written repaired or left out (usually none).

        Raises:
            sqlite3.Error: The write failed as a whole (disk full, I/O
                error); nothing of the batch is committed and it can be
                written again.
        """
        try:
            self._write(batch, None)
        except DATA_ERRORS:
            problems: list[RowProblem] = []
            self._write(batch, problems)
            return problems
        return []

    def _write(self, batch: Batch, problems: list[RowProblem] | None) -> None:
        """Write ``batch``: fast (multi-row statements,
        :func:`._rows.insert_rows`) when ``problems`` is None,
        else one row at a time, noting each row that needed help there."""
        db = self._db
        _rollback(db)
        db.execute("BEGIN IMMEDIATE")
        try:
            put = self._many if problems is None else partial(self._each, problems)
            if batch.runtime_id is not None:
                put(
                    "meta",
                    "INSERT OR REPLACE INTO meta VALUES ('runtime_id', ?)",
                    [(batch.runtime_id,)],
                )
            iso = timestamps()
            put(
                "events",
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                event_rows(batch.events, iso),
                1,
            )
            put(
                "workers",
                "INSERT OR REPLACE INTO workers VALUES (?, ?, ?)",
                [(w.worker_id, w.ordinal, converter.dumps(w)) for w in batch.workers],
            )
            put(
                "turns",
                "INSERT OR REPLACE INTO turns VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [turn_row(turn, iso) for turn in batch.turns],
            )
            put(
                "transcript",
                "INSERT OR REPLACE INTO transcript VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                entry_rows(batch.transcript, iso),
            )
            put(
                "allocations",
                "DELETE FROM allocations WHERE scope = ?",
                [(scope,) for scope in batch.releases],
            )
            if batch.claims:
                now = _now().isoformat()
                put(
                    "allocations",
                    "INSERT INTO allocations VALUES (?, ?, ?, ?)",
                    [(s, w, self._owner, now) for s, w in batch.claims],
                )
            trimmed = self._trim(batch.events)
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        self._first_seq.update(trimmed)

    def _many(
        self, table: str, sql: str, rows: list[tuple[Any, ...]], owner: int = 0
    ) -> None:
        insert_rows(self._db, sql, rows)

    def _each(
        self,
        problems: list[RowProblem],
        table: str,
        sql: str,
        rows: list[tuple[Any, ...]],
        owner: int = 0,
    ) -> None:
        db = self._db
        for row in rows:
            try:
                db.execute(sql, row)
                continue
            except DATA_ERRORS as exc:
                error = f"{type(exc).__name__}: {exc}"
            fixed = repair_row(row)
            repaired = fixed != row
            if repaired:
                try:
                    db.execute(sql, fixed)
                except DATA_ERRORS:
                    repaired = False
            problems.append(RowProblem(table, str(row[owner]), repaired, error))

    def _trim(self, events: Sequence[Event]) -> dict[str, int]:
        """Delete each Worker's events past its retention; return the new
        oldest ``seq`` of each Worker trimmed (to keep once committed)."""
        retention = self._retention
        trimmed: dict[str, int] = {}
        if not retention:
            return trimmed
        newest: dict[str, int] = {}
        for event in events:
            newest[event.worker_id] = event.seq
        for worker_id, seq in newest.items():
            first = self._first_seq.setdefault(worker_id, 1)
            if seq - first + 1 > retention + (retention >> 2):
                keep_from = seq - retention + 1
                self._db.execute(
                    "DELETE FROM events WHERE worker_id = ? AND seq < ?",
                    (worker_id, keep_from),
                )
                trimmed[worker_id] = keep_from
        return trimmed


def _rollback(db: sqlite3.Connection) -> None:
    """End an open transaction; a failing ROLLBACK (SQLite may have rolled
    back by itself, e.g. on a full disk) never hides the error that led
    here."""
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
