"""Listing every Worker of several Runtimes at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import attrs
import trio

from yoi_runtime import Usage, YoiRuntimeError

from ._handle import RuntimeHandle
from ._views import WorkerView

__all__ = ["WorkerListing", "gather", "list_every_page", "total_usage"]

R = TypeVar("R")

#: Page size asked for while walking every page of a Runtime (its largest).
PAGE_LIMIT = 500


@attrs.frozen
class WorkerListing:
    """Every visible Worker of some Runtimes.

    Attributes:
        workers: Worker projections, Runtime by Runtime (in the order the
            Runtimes were given), oldest first within each.
        unavailable: Ids of the Runtimes that could not be listed now.
    """

    workers: tuple[WorkerView, ...]
    unavailable: tuple[str, ...]


async def gather(
    function: Callable[[RuntimeHandle], Awaitable[R]], handles: Sequence[RuntimeHandle]
) -> list[R]:
    """Call ``function`` on every handle concurrently; results in order."""
    results: dict[int, R] = {}

    async def one(index: int) -> None:
        results[index] = await function(handles[index])

    async with trio.open_nursery() as nursery:
        for index in range(len(handles)):
            nursery.start_soon(one, index)
    return [results[index] for index in range(len(handles))]


async def list_every_page(
    handles: Sequence[RuntimeHandle],
    sees: Callable[[WorkerView], bool],
    status: str | None = None,
) -> WorkerListing:
    """Walk every page of every handle concurrently, keeping what ``sees``.

    Args:
        handles: The Runtimes (and compat sources) to list.
        sees: Whether a Worker is shown (the caller's visibility).
        status: Only Workers with this status.

    Returns:
        The Workers; a handle whose listing failed with any
        :class:`~yoi_runtime.YoiRuntimeError` (down, refusing, a bad
        ``status``) is named in ``unavailable`` instead.
    """

    async def walk(handle: RuntimeHandle) -> list[WorkerView] | None:
        workers: list[WorkerView] = []
        cursor = None
        try:
            while True:
                page = await handle.list_workers(
                    status=status, limit=PAGE_LIMIT, cursor=cursor
                )
                workers += filter(sees, page.items)
                if (cursor := page.next_cursor) is None:
                    return workers
        except YoiRuntimeError:
            return None

    found = await gather(walk, handles)
    return WorkerListing(
        tuple(w for workers in found if workers is not None for w in workers),
        tuple(h.runtime_id for h, w in zip(handles, found, strict=True) if w is None),
    )


async def total_usage(handle: RuntimeHandle) -> Usage | None:
    """Return the tokens of all of ``handle``'s Workers, walking every page
    of its listing; None when it cannot be listed now."""
    listing = await list_every_page([handle], lambda worker: True)
    if listing.unavailable:
        return None
    return sum((worker.usage for worker in listing.workers), Usage())
