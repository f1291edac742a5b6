"""The store file's schema: numbered migrations (``PRAGMA user_version``).

An older file is migrated when opened; a newer one is refused.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .._errors import StoreError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

#: Schema migrations; applying the first ``n`` gives schema version ``n``.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: Workers, turns, the event log and transcripts. Only the Worker record
    # (written when it is created, stopped or fails) is JSON; the rows written
    # on every turn are plain columns, which are cheaper to write.
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE workers (worker_id TEXT PRIMARY KEY,"
        " ordinal INTEGER NOT NULL, record TEXT NOT NULL)",
        "CREATE TABLE turns (worker_id TEXT NOT NULL, turn_no INTEGER NOT NULL,"
        " status TEXT NOT NULL, input TEXT NOT NULL, accepted_at TEXT NOT NULL,"
        " started_at TEXT, ended_at TEXT, input_tokens INTEGER NOT NULL,"
        " output_tokens INTEGER NOT NULL, error_code TEXT, error_message TEXT,"
        " reason TEXT, input_id TEXT, PRIMARY KEY (worker_id, turn_no))",
        "CREATE INDEX turns_by_input ON turns (worker_id, input_id)"
        " WHERE input_id IS NOT NULL",
        "CREATE TABLE events (cursor INTEGER PRIMARY KEY, worker_id TEXT NOT NULL,"
        " seq INTEGER NOT NULL, type TEXT NOT NULL, at TEXT NOT NULL,"
        " data TEXT NOT NULL)",
        "CREATE INDEX events_by_worker ON events (worker_id, seq)",
        "CREATE TABLE transcript (worker_id TEXT NOT NULL, idx INTEGER NOT NULL,"
        " kind TEXT NOT NULL, turn_id TEXT NOT NULL, text TEXT NOT NULL,"
        " status TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (worker_id, idx))",
    ),
    # 2: The allocation registry.
    (
        "CREATE TABLE allocations (scope TEXT PRIMARY KEY,"
        " worker_id TEXT NOT NULL, owner TEXT NOT NULL, acquired_at TEXT NOT NULL)",
    ),
    # 3: Why the model stopped, per turn and per assistant entry, and how many
    # earlier turns a turn's prompt left out.
    (
        "ALTER TABLE turns ADD COLUMN finish_reason TEXT",
        "ALTER TABLE turns ADD COLUMN history_omitted INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE transcript ADD COLUMN finish_reason TEXT",
    ),
)

#: The schema version this code writes.
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the file to :data:`SCHEMA_VERSION`, one transaction per step.

    Raises:
        StoreError: The schema is newer than this code, or the file holds
            tables of something else.
    """
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"store {path} has schema version {version}; this yoi-runtime knows "
            f"up to {SCHEMA_VERSION}: upgrade yoi-runtime to open it"
        )
    if version == 0:
        (tables,) = db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        if tables:
            raise StoreError(f"{path} is a SQLite file but not a yoi-runtime store")
    for number in range(version, SCHEMA_VERSION):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[number]:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
