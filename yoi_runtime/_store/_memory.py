"""The memory store (``store="memory"``): nothing is written, nothing outlives
the Runtime, and an event is published the moment it is noted."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import trio

from .._errors import StoreWriteError
from .._events import Event, EventLog, event_bytes
from .._types import TranscriptEntry
from ._base import Diagnose, EntrySource, StoreStatistics, TurnSource, WorkerSource

__all__ = ["MemoryStore"]


class MemoryStore:
    """A :class:`~._base.Store` that keeps nothing beyond the Runtime's own
    memory: every wait returns at once and nothing ever fails."""

    durable = False

    def __init__(self) -> None:
        self.problem: StoreWriteError | None = None
        self.on_failure: Callable[[str], None] = lambda message: None
        self._runtime_log: EventLog | None = None

    def bind(self, runtime_log: EventLog, diagnose: Diagnose) -> None:
        """Publish events to ``runtime_log`` too (``diagnose`` is unused:
        nothing can go wrong here)."""
        self._runtime_log = runtime_log

    def set_runtime_id(self, runtime_id: str) -> None:
        """Nothing to record."""

    def note(
        self,
        event: Event,
        log: EventLog,
        worker: WorkerSource | None,
        turn: TurnSource | None,
        entry: EntrySource | None,
    ) -> None:
        """Publish ``event`` now, to ``log`` and the Runtime-wide log."""
        runtime_log = self._runtime_log
        assert runtime_log is not None, "bind() first"
        size = event_bytes(event)
        log.append(event, size)
        runtime_log.append(event, size)

    def note_entry(self, worker_id: str, entry: EntrySource) -> None:
        """Nothing to record: the Worker's transcript holds the entry."""

    def note_close(self, log: EventLog) -> None:
        """Close ``log`` now (every event noted is already published)."""
        log.close()

    def claim(self, scope: str, worker_id: str) -> None:
        """Nothing to record: the Runtime's registry holds the allocation."""

    def release(self, scope: str) -> None:
        """Nothing to record."""

    def wait_committed(self, worker_id: str | None = None) -> Coroutine[Any, Any, None]:
        """Return at once (a checkpoint that cannot be cancelled, as a
        commit cannot). Not a coroutine itself: it hands back Trio's, one
        frame less on every input."""
        return trio.lowlevel.cancel_shielded_checkpoint()  # noqa: ASYNC105

    async def read_transcript(
        self, worker_id: str, after: int, upto: int
    ) -> list[TranscriptEntry]:
        """Return nothing: memory keeps only what the transcript holds."""
        await trio.lowlevel.checkpoint()
        return []

    def open_writer(self) -> AbstractAsyncContextManager[None]:
        """Nothing runs in the background."""
        return _nothing()

    def statistics(self) -> StoreStatistics | None:
        """Return None: nothing is ever committed."""
        return None


@asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield
