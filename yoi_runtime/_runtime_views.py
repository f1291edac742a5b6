"""The Runtime's state and everything that reads it: Worker details and
listings, transcripts, event subscriptions, summaries and statistics (the
commands are in :mod:`._runtime_commands`)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping

import attrs
import trio

from ._checks import check_limit
from ._engines._base import Engine, EngineInfo, Usage
from ._errors import InvalidInputError, WorkerNotFoundError
from ._events import Subscription
from ._hub import Hub
from ._profiles import Profile
from ._store._base import StoreStatistics
from ._transcript import DEFAULT_PAGE
from ._types import (
    Capabilities,
    Diagnostic,
    Page,
    RuntimeSummary,
    TranscriptPage,
    WorkerPage,
    WorkerStatus,
    WorkerSummary,
)
from ._util import parse_count
from ._version import PROTOCOL_VERSION, __version__
from ._worker import Worker

__all__ = ["EngineLoad", "RuntimeStatistics", "RuntimeViews"]


@attrs.frozen
class EngineLoad:
    """One engine's turns now.

    Attributes:
        name: The engine's name (from :attr:`Capabilities.engines`).
        kind: Its kind.
        running: Turns running on it (holding a slot of ``max_concurrent``,
            or, without that limit, its Workers that are ``running``).
        queued: Turns waiting for a slot (0 without ``max_concurrent``).
    """

    name: str
    kind: str
    running: int
    queued: int


@attrs.frozen
class RuntimeStatistics:
    """A snapshot of what a Runtime is doing, for metrics.

    Attributes:
        engines: Per engine, its load, in :attr:`Capabilities.engines` order.
        store: The durable store's commits so far; None in memory.
        diagnostics_dropped: Diagnostics dropped so far to keep the newest
            ``Limits.max_diagnostics``.
    """

    engines: tuple[EngineLoad, ...]
    store: StoreStatistics | None
    diagnostics_dropped: int


@attrs.define(eq=False)
class RuntimeViews:
    """A Runtime's state and its observation methods (the base of
    :class:`~._runtime_commands.Runtime`)."""

    _hub: Hub
    _nursery: trio.Nursery
    _engines: Mapping[str, Engine]
    _default_engine: str
    _profiles: Mapping[str, Profile]
    _placement: str
    started_at: datetime.datetime = attrs.field(
        factory=lambda: datetime.datetime.now(datetime.UTC)
    )
    _workers: dict[str, Worker] = attrs.field(factory=dict)
    _ordered: list[Worker] = attrs.field(factory=list)
    _status: str = "serving"
    _next_ordinal: int = 0

    @property
    def runtime_id(self) -> str:
        """The Runtime's id, given to :func:`open_runtime` or generated."""
        return self._hub.runtime_id

    @property
    def status(self) -> str:
        """``"serving"``; ``"degraded"`` while the durable store cannot be
        written (commands are refused, reads work; :attr:`status_reason`
        says why; it serves again by itself once a write succeeds);
        ``"closing"`` or ``"closed"``."""
        if self._status == "serving" and self.status_reason is not None:
            return "degraded"
        return self._status

    @property
    def status_reason(self) -> str | None:
        """Why the Runtime is degraded (the real cause, such as a full disk),
        or None."""
        problem = self._hub.store.problem
        return None if problem is None else problem.message

    def _worker(self, worker_id: str) -> Worker:
        try:
            return self._workers[worker_id]
        except (KeyError, TypeError):
            raise WorkerNotFoundError(
                f"no worker {worker_id!r} in runtime {self.runtime_id}",
                worker_id=str(worker_id),
            ) from None

    # -- observation ------------------------------------------------------------

    async def get_worker(self, worker_id: str) -> WorkerSummary:
        """See :meth:`RuntimeAPI.get_worker`."""
        await trio.lowlevel.checkpoint()
        return self._worker(worker_id).summary()

    async def list_workers(
        self,
        *,
        status: WorkerStatus | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> WorkerPage:
        """See :meth:`RuntimeAPI.list_workers`."""
        await trio.lowlevel.checkpoint()
        limit = check_limit(limit)
        wanted = None
        if status is not None:
            try:
                wanted = WorkerStatus(status)
            except ValueError:
                raise InvalidInputError(
                    f"unknown status {status!r}", path="status"
                ) from None
        start = 0
        if cursor is not None:
            parsed = parse_count(cursor)
            if parsed is None:
                raise InvalidInputError("malformed cursor", path="cursor")
            start = parsed + 1
        page: list[WorkerSummary] = []
        ordered = self._ordered
        index = start
        while index < len(ordered) and len(page) < limit:
            worker = ordered[index]
            if wanted is None or worker.status is wanted:
                page.append(worker.summary())
            index += 1
        more = (
            any(wanted is None or w.status is wanted for w in ordered[index:])
            if index < len(ordered)
            else False
        )
        return Page(tuple(page), str(index - 1) if more else None)

    async def transcript(
        self, worker_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> TranscriptPage:
        """See :meth:`RuntimeAPI.transcript`."""
        await trio.lowlevel.checkpoint()
        worker = self._worker(worker_id)
        transcript, store = worker.transcript, self._hub.store
        page = transcript.page(limit=limit, cursor=cursor)
        if not store.durable:
            return page
        after = 0 if cursor is None else int(cursor)
        if after >= transcript.first - 1:
            return attrs.evolve(page, truncated=False)
        # Older than what memory keeps: the durable store has every entry.
        upto = min(
            after + (DEFAULT_PAGE if limit is None else limit), transcript.first - 1
        )
        stored = await store.read_transcript(worker_id, after, upto)
        next_cursor = str(upto) if upto < transcript.last else None
        return Page(tuple(stored), next_cursor, truncated=False)

    def subscribe(
        self, worker_id: str | None = None, *, after: int | None = None
    ) -> Subscription:
        """See :meth:`RuntimeAPI.subscribe`."""
        log = self._hub.log if worker_id is None else self._worker(worker_id).log
        return Subscription(log, log.check_cursor(after))

    async def summary(self) -> RuntimeSummary:
        """See :meth:`RuntimeAPI.summary`."""
        await trio.lowlevel.checkpoint()
        counts = dict.fromkeys((s.value for s in WorkerStatus), 0)
        for worker in self._ordered:
            counts[worker.status.value] += 1
        return RuntimeSummary(
            runtime_id=self.runtime_id,
            version=__version__,
            protocol_version=PROTOCOL_VERSION,
            status=self.status,
            started_at=self.started_at,
            workers=counts,
            usage=self._hub.usage,
            capabilities=self.capabilities(),
            last_cursor=self._hub.log.last,
        )

    def capabilities(self) -> Capabilities:
        """See :meth:`RuntimeAPI.capabilities`."""
        tools = sorted({tool for p in self._profiles.values() for tool in p.tools})
        return Capabilities(
            placement=self._placement,
            can_start_processes=False,
            filesystem=False,
            shell=False,
            git=False,
            worktree=False,
            engines=tuple(
                EngineInfo(name, engine.kind, engine.model)
                for name, engine in self._engines.items()
            ),
            profiles=tuple(self._profiles),
            tools=tuple(tools),
        )

    async def diagnostics(self) -> tuple[Diagnostic, ...]:
        """See :meth:`RuntimeAPI.diagnostics`."""
        await trio.lowlevel.checkpoint()
        return tuple(self._hub.diagnostics)

    async def usage(self) -> Usage:
        """See :meth:`RuntimeAPI.usage`."""
        await trio.lowlevel.checkpoint()
        return self._hub.usage

    def statistics(self) -> RuntimeStatistics:
        """Return a snapshot of the engines' load, the store's commits and
        the diagnostics dropped (for metrics; never blocks)."""
        hub = self._hub
        running: dict[str, int] = {}
        for worker in self._ordered:
            if worker.status is WorkerStatus.RUNNING:
                running[worker.engine_name] = running.get(worker.engine_name, 0) + 1
        loads = []
        for name, engine in self._engines.items():
            limiter = hub.limiters.get(name)
            if limiter is None:
                busy, waiting = running.get(name, 0), 0
            else:
                statistics = limiter.statistics()
                busy, waiting = statistics.borrowed_tokens, statistics.tasks_waiting
            loads.append(EngineLoad(name, engine.kind, busy, waiting))
        return RuntimeStatistics(
            tuple(loads), hub.store.statistics(), hub.diagnostics.dropped
        )
