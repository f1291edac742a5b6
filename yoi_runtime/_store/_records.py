"""What a durable store keeps, and how a Runtime names its store.

A Runtime runs on one of two stores (``open_runtime(store=...)``, the
process's ``--store``):

- ``"memory"``: nothing outlives the Runtime (the default for embedding and
  tests);
- ``"sqlite:PATH"``: a SQLite file in WAL mode (:mod:`._sqlite`).
  Workers, turns, transcripts, the event log and the runtime id survive a
  restart, and so does an input the moment it was acknowledged.

The records here are what a durable store writes and reads back; the
Runtime's group commit (:mod:`._journal`) builds :class:`Batch` es of them.
Both stores implement :class:`._base.Store`; :func:`._open.open_store`
opens one by name.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import attrs

from .._engines._base import EngineInfo, Usage
from .._errors import InvalidInputError
from .._events import Event
from .._types import Diagnostic, TranscriptEntry, TurnError, TurnSummary, WorkerStatus

__all__ = [
    "Batch",
    "StoreSnapshot",
    "StoredWorker",
    "WorkerRecord",
    "parse_store_spec",
]


def parse_store_spec(spec: str) -> Path | None:
    """Parse a store name: None for ``"memory"``, the file for ``"sqlite:PATH"``.

    Raises:
        InvalidInputError: Anything else (``path="store"``).
    """
    if spec == "memory":
        return None
    kind, _, path = spec.partition(":")
    if kind != "sqlite" or not path:
        raise InvalidInputError(
            f"unknown store {spec!r}: use 'memory' or 'sqlite:PATH'", path="store"
        )
    return Path(path)


@attrs.frozen
class WorkerRecord:
    """A Worker as the store keeps it (everything but its turns and events).

    Attributes:
        worker_id: Its id.
        ordinal: Its position in creation order (listings are by ordinal).
        profile: The profile it was created with.
        display_name: Its label, or None.
        system_prompt: The system prompt it was created with.
        engine: The engine it was created on: name, kind and model (never a
            URL or key), so a restarted Runtime can tell when it changed.
        tools: The tools it was granted.
        scopes: The exclusive scopes it claimed.
        created_at: When it was created (UTC).
        status: ``idle`` (live), ``stopped`` or ``failed``. The record is
            written when the Worker is created, stopped or fails; whether a
            live Worker was running is told by its turns.
        error: Why it failed, or None.
        stop_reason: The reason it was stopped with, or None.
    """

    worker_id: str
    ordinal: int
    profile: str
    display_name: str | None
    system_prompt: str | None
    engine: EngineInfo
    tools: tuple[str, ...]
    scopes: tuple[str, ...]
    created_at: datetime.datetime
    status: WorkerStatus
    error: TurnError | None
    stop_reason: str | None


@attrs.frozen
class StoredWorker:
    """One Worker read back from a store.

    Attributes:
        record: Its record.
        events: The retained tail of its event log, oldest first, gap-free.
        last_seq: The ``seq`` of its newest event (0 if it has none).
        turns: How many turns it accepted.
        usage: The tokens all its turns used.
        recent_turns: The turns a restart needs, oldest first: the newest,
            any not final, and the newest ``Limits.input_id_retention``
            carrying an ``input_id`` (for idempotent retries).
        transcript: The newest transcript entries, oldest first, gap-free.
        transcript_last: The index of its newest transcript entry (0 if none).
    """

    record: WorkerRecord
    events: list[Event]
    last_seq: int
    turns: int
    usage: Usage
    recent_turns: list[TurnSummary]
    transcript: list[TranscriptEntry]
    transcript_last: int


@attrs.frozen
class StoreSnapshot:
    """Everything a Runtime reads from its store when it opens.

    Attributes:
        runtime_id: The id the store was created for, None for a new store.
        runtime_events: The retained tail of the Runtime-wide log, gap-free.
        last_cursor: The ``cursor`` of the newest event (0 if none).
        workers: The Workers, in creation order.
        allocations: ``(scope, worker_id)`` rows a dead process left behind.
        diagnostics: Rows that could not be read, and what was done instead.
    """

    runtime_id: str | None
    runtime_events: list[Event]
    last_cursor: int
    workers: list[StoredWorker]
    allocations: list[tuple[str, str]]
    diagnostics: list[Diagnostic]


@attrs.define
class Batch:
    """Changes committed together, in one transaction.

    Attributes:
        events: New events, in ``cursor`` order.
        workers: Worker records to insert or replace.
        turns: Turns to insert or replace.
        transcript: ``(worker_id, entry)`` pairs to insert or replace.
        claims: ``(scope, worker_id)`` allocations to add (written after
            the releases).
        releases: Scopes to release.
        runtime_id: Set on the first commit of a new store.
    """

    events: list[Event] = attrs.Factory(list)
    workers: list[WorkerRecord] = attrs.Factory(list)
    turns: list[TurnSummary] = attrs.Factory(list)
    transcript: list[tuple[str, TranscriptEntry]] = attrs.Factory(list)
    claims: list[tuple[str, str]] = attrs.Factory(list)
    releases: list[str] = attrs.Factory(list)
    runtime_id: str | None = None
