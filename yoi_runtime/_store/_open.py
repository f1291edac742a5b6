"""Opening a Runtime's store by name (``"memory"`` or ``"sqlite:PATH"``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import trio

from ._base import Store
from ._journal import Journal
from ._memory import MemoryStore
from ._records import StoreSnapshot
from ._sqlite import SQLiteStore

__all__ = ["empty_snapshot", "open_store"]


def empty_snapshot() -> StoreSnapshot:
    """What a new store holds: nothing (fresh lists: a Runtime takes them over)."""
    return StoreSnapshot(
        runtime_id=None,
        runtime_events=[],
        last_cursor=0,
        workers=[],
        allocations=[],
        diagnostics=[],
    )


@asynccontextmanager
async def open_store(
    path: Path | None,
    *,
    worker_event_retention: int,
    runtime_event_retention: int,
    transcript_retention: int,
    input_id_retention: int,
) -> AsyncIterator[tuple[Store, StoreSnapshot]]:
    """Open a store and read what a Runtime needs to start on it.

    Args:
        path: The SQLite file (``parse_store_spec``); None for memory.
        worker_event_retention: Events read back per Worker.
        runtime_event_retention: Events read back for the Runtime-wide log.
        transcript_retention: Transcript entries read back per Worker.
        input_id_retention: Turns with an ``input_id`` read back per Worker
            (the newest), for idempotent retries.

    Returns:
        An async context manager yielding the store (call its ``bind``
        before noting anything) and its snapshot (empty for memory and for
        a new file). The file is closed on exit.

    Raises:
        StoreError: The file is in use by another process, damaged, not a
            yoi-runtime store, or has a newer schema.
    """
    if path is None:
        await trio.lowlevel.checkpoint()
        yield MemoryStore(), empty_snapshot()
        return
    sqlite = await trio.to_thread.run_sync(SQLiteStore.open, path)
    try:
        snapshot = await trio.to_thread.run_sync(
            partial(
                sqlite.load,
                worker_event_retention=worker_event_retention,
                runtime_event_retention=runtime_event_retention,
                transcript_retention=transcript_retention,
                input_id_retention=input_id_retention,
            )
        )
        yield Journal(sqlite), snapshot
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(sqlite.close)
