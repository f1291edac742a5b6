"""The Store Protocol: what the actor core asks of wherever it keeps its state.

The Worker actors and the Runtime talk to one :class:`Store`; there are two:

- :class:`~._memory.MemoryStore` (``store="memory"``): an event is published
  the moment it is noted, nothing is written, and nothing outlives the
  Runtime;
- :class:`~._journal.Journal` over :class:`~._sqlite.SQLiteStore`
  (``store="sqlite:PATH"``): changes are noted, committed in batches by one
  writer task, and only then published.

The store knows the actor only through the three small Protocols below (a
Worker's record, a turn's summary, a transcript entry's snapshot): it asks
for them when it writes a batch, so many changes to one turn cost one row.
Nothing in :mod:`yoi_runtime._store` imports the actor modules.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import attrs

from .._errors import StoreWriteError
from .._events import Event, EventLog
from .._types import TranscriptEntry, TurnSummary
from ._records import WorkerRecord

__all__ = [
    "Diagnose",
    "EntrySource",
    "Store",
    "StoreStatistics",
    "TurnSource",
    "WorkerSource",
]

#: ``diagnose(level, code, message, worker_id)``: records a diagnostic.
Diagnose = Callable[[str, str, str, "str | None"], None]


class WorkerSource(Protocol):
    """A Worker, as a store sees it."""

    def record(self) -> WorkerRecord:
        """Return what a durable store keeps of the Worker (now)."""
        ...


class TurnSource(Protocol):
    """A turn, as a store sees it."""

    def summary(self, worker_id: str) -> TurnSummary:
        """Return the turn as it is now."""
        ...


class EntrySource(Protocol):
    """A transcript entry, as a store sees it (an answer grows while it
    streams)."""

    def snapshot(self) -> TranscriptEntry:
        """Return the entry as it is now."""
        ...


@attrs.frozen
class StoreStatistics:
    """What a store's group commit did so far (a snapshot).

    Attributes:
        commits: Batches written.
        commit_seconds: Per bucket of ``COMMIT_SECONDS_BOUNDS`` (then one for
            larger), how many commits took that long (wall seconds, the
            SQLite transaction in its thread).
        commit_seconds_sum: Their total, in seconds.
        batch_sizes: Per bucket of ``BATCH_SIZE_BOUNDS`` (then one for
            larger), how many batches held that many changes.
        batch_size_sum: Changes written in all (events, Worker records,
            turns, transcript entries, allocations).
    """

    commits: int
    commit_seconds: tuple[int, ...]
    commit_seconds_sum: float
    batch_sizes: tuple[int, ...]
    batch_size_sum: int


class Store(Protocol):
    """Where a Runtime's Workers, turns, transcripts and events are kept.

    Noting never blocks and never raises for the disk: a store that writes
    does so later, in batches, and publishes an event to its logs only once
    it is committed. Commands that must not be acknowledged before their
    change is durable (create, input, cancel, stop) await
    :meth:`wait_committed`.

    Attributes:
        durable: True if what is noted outlives the Runtime (Workers keep
            their status over a restart, transcripts are kept in full).
        problem: Why writes are failing now (disk full, I/O error), or None.
            While set the Runtime is ``degraded`` and refuses commands.
        on_failure: Called once with a message if the store breaks for good
            (a bug, not a store fault); the Runtime sets it.
    """

    durable: bool
    problem: StoreWriteError | None
    on_failure: Callable[[str], None]

    def bind(self, runtime_log: EventLog, diagnose: Diagnose) -> None:
        """Set the Runtime-wide log events are published to, and where
        diagnostics go. Called once, before anything is noted."""
        ...

    def set_runtime_id(self, runtime_id: str) -> None:
        """Record the id of a Runtime on a new store."""
        ...

    def note(
        self,
        event: Event,
        log: EventLog,
        worker: WorkerSource | None,
        turn: TurnSource | None,
        entry: EntrySource | None,
    ) -> None:
        """Record an event (published to ``log`` and the Runtime-wide log
        once committed) and what it changed: the Worker's record (given only
        when it was created, stopped or failed), a turn and a transcript
        entry."""
        ...

    def note_entry(self, worker_id: str, entry: EntrySource) -> None:
        """Record a transcript entry that changed without an event of its own."""
        ...

    def note_close(self, log: EventLog) -> None:
        """Close ``log`` once the events noted before it are published."""
        ...

    def claim(self, scope: str, worker_id: str) -> None:
        """Record an allocation of ``scope`` to ``worker_id``."""
        ...

    def release(self, scope: str) -> None:
        """Record that ``scope`` is free again."""
        ...

    async def wait_committed(self, worker_id: str | None = None) -> None:
        """Block until everything noted so far is committed.

        Args:
            worker_id: The Worker whose change the caller waits for: if a row
                of it was left out of the commit, this raises.

        Raises:
            StoreWriteError: Writes are failing (:attr:`problem`); the change
                is not acknowledged.
            StoreError: A row of ``worker_id`` could not be stored.
            RuntimeUnavailableError: The store broke for good.
        """
        ...

    async def read_transcript(
        self, worker_id: str, after: int, upto: int
    ) -> list[TranscriptEntry]:
        """Return the committed transcript entries with an index in
        ``(after, upto]``, oldest first (none in memory: it keeps only what
        the Worker's transcript holds)."""
        ...

    def open_writer(self) -> AbstractAsyncContextManager[None]:
        """Run whatever writes in the background while the block runs; on
        exit, commit what was noted last, then end."""
        ...

    def statistics(self) -> StoreStatistics | None:
        """Return a snapshot of the commits so far (None: it never commits)."""
        ...
