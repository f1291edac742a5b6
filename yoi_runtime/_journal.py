"""Group commit between a Runtime's actors and its durable store.

Actors never wait for the disk. Each change they make (an event, and the
Worker, turn and transcript entry it changed) is *noted* here, synchronously;
one writer task commits everything noted so far in one transaction, in a
thread, then publishes the batch's events to the logs, so a subscriber only
ever sees committed events and a sequence number it saw is never reused after
a crash. While a batch is being written the next one fills up, so the more
Workers are busy, the more each commit carries.

Commands that must not be acknowledged before they are durable (create,
input, cancel, stop) call :meth:`Journal.wait_committed` after their change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ._errors import RuntimeUnavailableError
from ._events import Event, EventLog
from ._sqlite_store import SQLiteStore
from ._store import Batch
from ._types import TranscriptEntry

if TYPE_CHECKING:
    from ._transcript import _Entry
    from ._worker import Worker, _Turn

__all__ = ["Journal"]

#: The most scheduler passes the writer lets other tasks add to a batch.
_MAX_GATHER_PASSES = 16
#: Passes in a row that add nothing after which the batch is taken.
_QUIET_PASSES = 2


class Journal:
    """Collects changes and commits them in batches (see the module docstring).

    Args:
        store: The open store; every call to it runs in a thread, one at a time.
        runtime_log: The Runtime-wide log, appended to on commit.

    Attributes:
        on_failure: Called with a message once if a write fails; the Runtime
            sets it, and stops taking commands when it is called.
    """

    def __init__(self, store: SQLiteStore, runtime_log: EventLog) -> None:
        self._store = store
        self._runtime_log = runtime_log
        self.on_failure: Callable[[str], None] = lambda message: None
        self._limiter = trio.CapacityLimiter(1)
        self._events: list[tuple[Event, EventLog]] = []
        self._closing: list[EventLog] = []
        self._workers: dict[str, Worker] = {}
        self._turns: dict[_Turn, str] = {}
        self._entries: dict[_Entry, str] = {}
        self._claims: list[tuple[str, str]] = []
        self._releases: list[str] = []
        self._runtime_id: str | None = None
        self._wake = trio.lowlevel.ParkingLot()
        self._committed_lot = trio.lowlevel.ParkingLot()
        #: The number of the batch being filled; batches commit in order.
        self._generation = 1
        self._committed = 0
        self._failure: str | None = None
        self._closed = False
        #: Changes noted so far (tells the writer whether a batch still grows).
        self._noted = 0

    # -- noting changes (synchronous, never blocks) ---------------------------

    def note(
        self,
        event: Event,
        log: EventLog,
        worker: Worker | None,
        turn: _Turn | None,
        entry: _Entry | None,
    ) -> None:
        """Record an event (published to ``log`` and the Runtime-wide log on
        commit) and what it changed: the Worker's record (only when it was
        created, stopped or failed), a turn and a transcript entry."""
        self._events.append((event, log))
        worker_id = event.worker_id
        if worker is not None:
            self._workers[worker_id] = worker
        if turn is not None:
            self._turns[turn] = worker_id
        if entry is not None:
            self._entries[entry] = worker_id
        self._noted += 1
        if self._wake:
            self._wake.unpark_all()

    def note_entry(self, worker_id: str, entry: _Entry) -> None:
        """Record a transcript entry that changed without an event of its own."""
        self._entries[entry] = worker_id
        self._kick()

    def note_close(self, log: EventLog) -> None:
        """Close ``log`` once the events noted before are published."""
        if self._failure is not None:
            log.close()  # nothing more will be published
            return
        self._closing.append(log)
        self._kick()

    def claim(self, scope: str, worker_id: str) -> None:
        """Record an allocation of ``scope`` to ``worker_id``."""
        self._claims.append((scope, worker_id))
        self._kick()

    def release(self, scope: str) -> None:
        """Record that ``scope`` is free again."""
        self._releases.append(scope)
        self._kick()

    def set_runtime_id(self, runtime_id: str) -> None:
        """Record the id of a Runtime on a new store."""
        self._runtime_id = runtime_id
        self._kick()

    def _kick(self) -> None:
        self._noted += 1
        if self._wake:
            self._wake.unpark_all()

    def _has_work(self) -> bool:
        return bool(
            self._events
            or self._workers
            or self._turns
            or self._entries
            or self._claims
            or self._releases
            or self._closing
            or self._runtime_id is not None
        )

    # -- waiting --------------------------------------------------------------

    async def wait_committed(self) -> None:
        """Block until everything noted so far is committed.

        Raises:
            RuntimeUnavailableError: A write failed, so it never will be.

        Cancellation:
            Cancelling the wait cancels nothing else: the changes still
            commit.
        """
        target = self._generation if self._has_work() else self._generation - 1
        while self._committed < target:
            if self._failure is not None:
                raise RuntimeUnavailableError(self._failure)
            await self._committed_lot.park()
        await trio.lowlevel.checkpoint()

    async def read_transcript(
        self, worker_id: str, after: int, upto: int
    ) -> list[TranscriptEntry]:
        """Read the committed transcript entries with an index in
        ``(after, upto]`` (in a thread); unreadable ones are left out."""
        return await trio.to_thread.run_sync(
            self._store.read_transcript, worker_id, after, upto, limiter=self._limiter
        )

    # -- the writer -----------------------------------------------------------

    def close(self) -> None:
        """Let :meth:`run` return once what is noted is committed."""
        self._closed = True
        self._wake.unpark_all()

    async def run(self) -> None:
        """The writer task: commit batches until :meth:`close` and idle.

        Never raises for a failed write: that is reported through
        ``on_failure``, and every later :meth:`wait_committed` raises.
        """
        while self._failure is None:
            if not self._has_work():
                if self._closed:
                    return
                await self._wake.park()
                continue
            await self._gather()
            await self._commit()

    async def _gather(self) -> None:
        """Let tasks that are ready add to the batch before it is taken.

        Yields while a scheduler pass still adds changes, at most
        :data:`_MAX_GATHER_PASSES` passes: a Worker that is about to emit
        its next events (a turn starting, streaming, ending) joins this
        commit instead of waiting for the next one.
        """
        quiet = 0
        for _ in range(_MAX_GATHER_PASSES):
            before = self._noted
            await trio.lowlevel.cancel_shielded_checkpoint()
            quiet = quiet + 1 if self._noted == before else 0
            if quiet == _QUIET_PASSES:
                return

    async def _commit(self) -> None:
        generation = self._generation
        self._generation += 1
        events, self._events = self._events, []
        closing, self._closing = self._closing, []
        batch = Batch(
            events=[event for event, _ in events],
            workers=[worker.record() for worker in self._workers.values()],
            turns=[turn.summary(worker_id) for turn, worker_id in self._turns.items()],
            transcript=[(w, entry.snapshot()) for entry, w in self._entries.items()],
            claims=self._claims,
            releases=self._releases,
            runtime_id=self._runtime_id,
        )
        self._workers, self._turns, self._entries = {}, {}, {}
        self._claims, self._releases, self._runtime_id = [], [], None
        try:
            await trio.to_thread.run_sync(
                self._store.write, batch, limiter=self._limiter
            )
        except Exception as exc:
            self._failure = f"the runtime's store failed to write: {exc}"
            for log in closing:
                log.close()
            self._committed_lot.unpark_all()
            self.on_failure(self._failure)
            return
        runtime_log = self._runtime_log
        for event, log in events:
            log.append(event)
            runtime_log.append(event)
        for log in closing:
            log.close()
        self._committed = generation
        self._committed_lot.unpark_all()
