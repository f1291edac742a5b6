"""Group commit between a Runtime's actors and its durable store: the SQLite
implementation of :class:`._base.Store`.

Actors never wait for the disk. Each change they make (an event, and the
Worker, turn and transcript entry it changed) is *noted* here, synchronously;
one writer task commits everything noted so far in one transaction, in a
thread (never on the event loop: an fsync may stall), then publishes the
batch's events to the logs, so a subscriber only ever sees committed events
and a sequence number it saw is never reused after a crash. While a batch is
being written the next one fills up, so the more Workers are busy, the more
each commit carries.

Commands that must not be acknowledged before they are durable (create,
input, cancel, stop) call :meth:`Journal.wait_committed` after their change.
The actor is known here only through :class:`._base.WorkerSource`,
:class:`._base.TurnSource` and :class:`._base.EntrySource`, read when a batch
is taken.

Store faults never take the Runtime down:

- A batch that fails as a whole (disk full, I/O error) is kept and written
  again, in order, after 0.05 s, then twice as long each time up to 2 s.
  Meanwhile :attr:`Journal.problem` says why (the Runtime is ``degraded``
  and refuses commands with it), waiters get it, and nothing of the batch is
  published. The first write that succeeds clears it: every change noted in
  the meantime is committed, then published, as usual.
- A row SQLite cannot bind is repaired or left out by the store
  (:meth:`SQLiteStore.write`); each becomes a diagnostic, and a command
  waiting on a change of that Worker whose row was left out gets a
  :class:`StoreError`.
- Anything else (a bug) still ends the Runtime through ``on_failure``.
"""

from __future__ import annotations

import bisect
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import trio

from .._errors import RuntimeUnavailableError, StoreError, StoreWriteError
from .._events import Event, EventLog, event_bytes
from .._types import TranscriptEntry
from .._util import single_error
from ._base import Diagnose, EntrySource, StoreStatistics, TurnSource, WorkerSource
from ._faults import RowProblem, write_error
from ._records import Batch
from ._sqlite import SQLiteStore
from ._thread import StoreThread

__all__ = [
    "BATCH_SIZE_BOUNDS",
    "COMMIT_SECONDS_BOUNDS",
    "Journal",
    "JournalStatistics",
]

#: Upper bounds of the commit-latency buckets, in seconds.
COMMIT_SECONDS_BOUNDS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
#: Upper bounds of the batch-size buckets, in changes (events and rows).
BATCH_SIZE_BOUNDS = (1, 2, 5, 10, 25, 50, 100, 250, 1000)


#: The old name of :class:`StoreStatistics`.
JournalStatistics = StoreStatistics


#: The most scheduler passes the writer lets other tasks add to a batch.
_MAX_GATHER_PASSES = 16
#: Passes in a row that add nothing after which the batch is taken.
_QUIET_PASSES = 2
#: Seconds before a failed batch is written again: the first wait, the most.
_RETRY_FIRST = 0.05
_RETRY_MOST = 2.0

#: A batch taken for writing: its generation, the batch, the events to
#: publish (with their Worker's log) and the logs to close afterwards.
_Pending = tuple[int, Batch, list[tuple[Event, EventLog]], list[EventLog]]


class Journal:
    """The SQLite :class:`~._base.Store`: collects changes and commits them
    in batches (see the module docstring).

    Args:
        store: The open store; every call to it runs in the store's own
            thread (:class:`._thread.StoreThread`), one at a time.
        runtime_log: The Runtime-wide log, appended to on commit (or given
            later to :meth:`bind`).
        diagnose: Records a diagnostic (a write failing and recovering, a row
            repaired or left out).

    Attributes:
        durable: True: what is committed outlives the Runtime.
        on_failure: Called with a message once if the writer breaks (a bug,
            not a store fault); the Runtime sets it, and stops taking
            commands when it is called.
        problem: Why writes are failing now (disk full, I/O error), or None.
    """

    def __init__(
        self,
        store: SQLiteStore,
        runtime_log: EventLog | None = None,
        diagnose: Diagnose = lambda level, code, message, worker_id: None,
    ) -> None:
        self.durable = True
        self._store = store
        self._runtime_log = runtime_log
        self._diagnose = diagnose
        self.on_failure: Callable[[str], None] = lambda message: None
        self.problem: StoreWriteError | None = None
        #: The batch that failed to write, kept to be written again.
        self._pending: _Pending | None = None
        #: Per Worker, the last generation in which a row of it was left out.
        self._rejected: dict[str, tuple[int, str]] = {}
        self._retry_wake = trio.lowlevel.ParkingLot()
        self._thread = StoreThread("yoi-store-writer")
        self._events: list[tuple[Event, EventLog]] = []
        self._closing: list[EventLog] = []
        self._workers: dict[str, WorkerSource] = {}
        self._turns: dict[TurnSource, str] = {}
        self._entries: dict[EntrySource, str] = {}
        #: Claims of this batch, by scope (the newest wins); written after
        #: the releases, so the batch leaves each scope as noted last.
        self._claims: dict[str, str] = {}
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
        self._commits = 0
        self._commit_seconds = [0] * (len(COMMIT_SECONDS_BOUNDS) + 1)
        self._commit_seconds_sum = 0.0
        self._batch_sizes = [0] * (len(BATCH_SIZE_BOUNDS) + 1)
        self._batch_size_sum = 0

    def bind(self, runtime_log: EventLog, diagnose: Diagnose) -> None:
        """Publish committed events to ``runtime_log`` too; report store
        faults to ``diagnose``."""
        self._runtime_log = runtime_log
        self._diagnose = diagnose

    def statistics(self) -> StoreStatistics:
        """Return a snapshot of the commits made so far."""
        return StoreStatistics(
            self._commits,
            tuple(self._commit_seconds),
            self._commit_seconds_sum,
            tuple(self._batch_sizes),
            self._batch_size_sum,
        )

    # -- noting changes (synchronous, never blocks) ---------------------------

    def note(
        self,
        event: Event,
        log: EventLog,
        worker: WorkerSource | None,
        turn: TurnSource | None,
        entry: EntrySource | None,
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

    def note_entry(self, worker_id: str, entry: EntrySource) -> None:
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
        self._claims[scope] = worker_id
        self._kick()

    def release(self, scope: str) -> None:
        """Record that ``scope`` is free again."""
        self._claims.pop(scope, None)
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

    async def wait_committed(self, worker_id: str | None = None) -> None:
        """Block until everything noted so far is committed.

        Args:
            worker_id: The Worker whose change the caller waits for: if a row
                of it was left out of the commit, this raises.

        Raises:
            StoreWriteError: Writes are failing (:attr:`problem`; a
                :class:`StorageFullError` for a full disk): the change is not
                acknowledged (it is written later if a write succeeds again).
            StoreError: A row of ``worker_id`` could not be stored.
            RuntimeUnavailableError: The writer broke, so it never will be.

        Cancellation:
            Cancelling the wait cancels nothing else: the changes still
            commit.
        """
        target = self._generation if self._has_work() else self._generation - 1
        while self._committed < target:
            if self._failure is not None:
                raise RuntimeUnavailableError(self._failure)
            if self.problem is not None:
                raise type(self.problem)(self.problem.message)
            await self._committed_lot.park()
        if worker_id is not None:
            rejected = self._rejected.get(worker_id)
            if rejected is not None and rejected[0] == target:
                raise StoreError(
                    f"the change to worker {worker_id} could not be stored: "
                    f"{rejected[1]}"
                )
        await trio.lowlevel.checkpoint()

    async def read_transcript(
        self, worker_id: str, after: int, upto: int
    ) -> list[TranscriptEntry]:
        """Read the committed transcript entries with an index in
        ``(after, upto]`` (in a thread); unreadable ones are left out."""
        return await self._thread.run_sync(
            self._store.read_transcript, worker_id, after, upto
        )

    # -- the writer -----------------------------------------------------------

    def open_writer(self) -> AbstractAsyncContextManager[None]:
        """Run the writer task (:meth:`run`) while the block runs; on exit
        it commits what was noted last, then ends."""
        return self._writing()

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        async with self._thread.open():
            with single_error():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.run, name="yoi-store-writer")
                    try:
                        yield
                    finally:
                        self.close()

    def close(self) -> None:
        """Let :meth:`run` return once what is noted is committed (or, while
        writes fail, after one more attempt)."""
        self._closed = True
        self._wake.unpark_all()
        self._retry_wake.unpark_all()

    async def run(self) -> None:
        """The writer task: commit batches until :meth:`close` and idle.

        Never raises for a failed write: a store fault sets :attr:`problem`
        and the batch is written again (see the module docstring); a bug is
        reported through ``on_failure``, and every later
        :meth:`wait_committed` raises.
        """
        delay = _RETRY_FIRST
        while self._failure is None:
            if self._pending is None:
                if not self._has_work():
                    if self._closed:
                        return
                    await self._wake.park()
                    continue
                await self._gather()
                self._pending = self._take()
            if await self._commit(self._pending):
                self._pending = None
                delay = _RETRY_FIRST
                continue
            if self._closed:
                # Nothing of it was acknowledged; end the streams anyway.
                for log in [*self._pending[3], *self._closing]:
                    log.close()
                return
            with trio.move_on_after(delay):
                await self._retry_wake.park()
            delay = min(delay * 2, _RETRY_MOST)

    async def _gather(self) -> None:
        """Let tasks that are ready add to the batch before it is taken.

        Yields while a scheduler pass still adds changes, at most
        :data:`_MAX_GATHER_PASSES` passes: a Worker that is about to emit
        its next events (a turn starting, streaming, ending) joins this
        commit instead of waiting for the next one. A pass that added
        nothing and left no task ready to run ends it at once: nothing can
        be noted before the next I/O or timer wakes a task.
        """
        quiet = 0
        statistics = trio.lowlevel.current_statistics
        for _ in range(_MAX_GATHER_PASSES):
            before = self._noted
            await trio.lowlevel.cancel_shielded_checkpoint()
            if self._noted != before:
                quiet = 0
                continue
            quiet += 1
            if quiet == _QUIET_PASSES or not statistics().tasks_runnable:
                return

    def _take(self) -> _Pending:
        """Take what is noted as the next batch (a new generation)."""
        generation = self._generation
        self._generation += 1
        events, self._events = self._events, []
        closing, self._closing = self._closing, []
        batch = Batch(
            events=[event for event, _ in events],
            workers=[worker.record() for worker in self._workers.values()],
            turns=[turn.summary(worker_id) for turn, worker_id in self._turns.items()],
            transcript=[(w, entry.snapshot()) for entry, w in self._entries.items()],
            claims=list(self._claims.items()),
            releases=self._releases,
            runtime_id=self._runtime_id,
        )
        self._workers, self._turns, self._entries = {}, {}, {}
        self._claims, self._releases, self._runtime_id = {}, [], None
        return generation, batch, events, closing

    async def _commit(self, pending: _Pending) -> bool:
        """Write one batch and publish it; False if the store failed."""
        generation, batch, events, closing = pending
        size = (
            len(batch.events)
            + len(batch.workers)
            + len(batch.turns)
            + len(batch.transcript)
            + len(batch.claims)
            + len(batch.releases)
        )
        started = time.perf_counter()
        try:
            problems = await self._thread.run_sync(self._write, batch)
        except Exception as exc:
            self._failure = f"the runtime's store writer failed: {exc!r}"
            for log in closing:
                log.close()
            self._committed_lot.unpark_all()
            self.on_failure(self._failure)
            return True
        seconds = time.perf_counter() - started
        if isinstance(problems, StoreWriteError):
            self._write_failed(problems)
            return False
        if self.problem is not None:
            self._diagnose(
                "info",
                "store_recovered",
                "the store is written again; commands are served",
                None,
            )
            self.problem = None
        for problem in problems:
            if problem.repaired:
                self._diagnose(
                    "warning",
                    "store_value_repaired",
                    f"a {problem.table} row had a value SQLite cannot store "
                    f"({problem.error}); it was stored with U+FFFD for each lone "
                    "surrogate",
                    problem.worker_id,
                )
            else:
                self._rejected[problem.worker_id] = (generation, problem.error)
                self._diagnose(
                    "error",
                    "store_row_rejected",
                    f"a {problem.table} row could not be stored and was left out "
                    f"({problem.error})",
                    problem.worker_id,
                )
        self._commits += 1
        self._commit_seconds[bisect.bisect_left(COMMIT_SECONDS_BOUNDS, seconds)] += 1
        self._commit_seconds_sum += seconds
        self._batch_sizes[bisect.bisect_left(BATCH_SIZE_BOUNDS, size)] += 1
        self._batch_size_sum += size
        runtime_log = self._runtime_log
        assert runtime_log is not None, "bind() first"
        for event, log in events:
            size = event_bytes(event)
            log.append(event, size)
            runtime_log.append(event, size)
        for log in closing:
            log.close()
        self._committed = generation
        self._committed_lot.unpark_all()
        return True

    def _write(self, batch: Batch) -> list[RowProblem] | StoreWriteError:
        """Write ``batch`` (in a thread); a failure of the whole batch is
        returned, with its cause found out there (it looks at the disk)."""
        try:
            return self._store.write(batch)
        except sqlite3.Error as exc:
            return write_error(exc, self._store.real_path)

    def _write_failed(self, problem: StoreWriteError) -> None:
        """A batch failed as a whole: be degraded until a write succeeds."""
        if self.problem is None or problem.code != self.problem.code:
            self._diagnose("error", problem.code, problem.message, None)
        self.problem = problem
        self._committed_lot.unpark_all()
