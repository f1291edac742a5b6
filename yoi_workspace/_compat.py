"""The local-pod compatibility source: yoi's Pods as read-only Workers.

Before the Runtime, each Worker was its own process (a yoi "Pod"). A
:class:`LocalPodSource` projects the Pods of a yoi installation as Workers
so they stay visible during the migration. It is a compatibility source,
not a Runtime authority: it owns nothing, starts nothing, locks nothing
exclusively and writes nothing. The on-disk formats are upstream yoi's
(``shared/reference/yoi-local-pods.md``; summarised in
``docs/compat-local-pod.md``): scanning a yoi home is
``yoi_workspace._pods`` (with ``_pod_metadata`` and ``_pod_allocations``),
reading a segment log ``yoi_workspace._session_log``, defensive file
reading ``yoi_workspace._pod_files``.

Every call rescans the yoi home in a worker thread, so the event loop never
waits on the disk and the projection is never stale by more than one call.
"""

from __future__ import annotations

import datetime
import os
from functools import partial
from typing import NoReturn, Unpack

import trio

from yoi_runtime import (
    CancelResult,
    Capabilities,
    Diagnostic,
    Event,
    Gap,
    InvalidInputError,
    OperationUnsupportedError,
    Page,
    TranscriptPage,
    TurnSummary,
    WorkerOptions,
    WorkerStatus,
)
from yoi_runtime.serving import check_limit, parse_count

from ._handle import EventStream
from ._pods import LIVENESS, Pod, Scan, scan_pods
from ._session_log import read_session
from ._views import RuntimeKind, RuntimeView, WorkerView, WorkerViewPage
from ._yoi_home import YoiHome, resolve_yoi_home

__all__ = ["LocalPodSource"]

#: What a compat source can do: nothing.
_CAPABILITIES = Capabilities(
    placement="compat-local-pod",
    can_start_processes=False,
    filesystem=False,
    shell=False,
    git=False,
    worktree=False,
    engines=(),
    profiles=(),
    tools=(),
)


def _check_cursor(cursor: str | None, what: str) -> int:
    """Return the position a cursor stands for (-1 when None)."""
    if cursor is None:
        return -1
    position = parse_count(cursor)
    if position is None:
        raise InvalidInputError(f"malformed {what}", path="cursor")
    return position


class LocalPodSource:
    """A read-only handle on the Pods of a yoi installation (the older
    one-process-per-Pod model).

    Kind ``compat-local-pod``; not a Runtime authority. ``list_workers``,
    ``get_worker``, ``transcript``, ``diagnostics`` and ``describe`` work
    (with the Runtime's paging and errors); ``create_worker``,
    ``send_input``, ``cancel``, ``stop`` and ``subscribe`` (on entering)
    raise :class:`~yoi_runtime.OperationUnsupportedError`.

    Each Pod with usable metadata in the workspace is a Worker whose id is
    :func:`~yoi_workspace.pod_worker_id` of its name and whose status is its
    liveness: ``live`` (allocated, process alive), ``stale`` (allocated,
    process gone: a crash; with a ``compat_pod_stale`` diagnostic),
    ``starting`` (allocated by a spawner, not adopted yet) or ``stopped``
    (not allocated). A Pod whose metadata is unreadable or invalid, or that
    belongs to another workspace, is only a diagnostic. Paths, pids,
    sockets and session ids are never projected (``docs/compat-local-pod.md``).

    Args:
        runtime_id: The id the registry routes by (the original server's
            is ``local-pod-runtime``).
        home: The yoi installation: a :class:`~yoi_workspace.YoiHome`, a
            ``YOI_HOME`` directory, or None to resolve it from the
            environment as yoi does (hidden from the ``repr``).
        workspace_root: List only the Pods of this workspace (their
            metadata's ``workspace_root``, compared as the original server
            does); None lists every Pod.
    """

    def __init__(
        self,
        runtime_id: str = "local-pod-runtime",
        home: YoiHome | str | os.PathLike[str] | None = None,
        *,
        workspace_root: str | None = None,
    ) -> None:
        self._runtime_id = runtime_id
        if home is None:
            home = resolve_yoi_home()
        elif not isinstance(home, YoiHome):
            home = YoiHome.at(home)
        self._home = home
        self._workspace_root = workspace_root
        #: Session-log problems noticed by the last transcript read of each
        #: Worker (pruned to the Pods that still exist).
        self._notes: dict[str, Diagnostic] = {}

    def __repr__(self) -> str:
        return f"LocalPodSource(runtime_id={self._runtime_id!r})"

    @property
    def runtime_id(self) -> str:
        return self._runtime_id

    @property
    def kind(self) -> RuntimeKind:
        return RuntimeKind.COMPAT_LOCAL_POD

    @property
    def configured(self) -> bool:
        """Whether a data directory is known (the original server's "data
        dir configured")."""
        return self._home.data_dir is not None

    # -- reading ------------------------------------------------------------

    async def scan(self) -> Scan:
        """Scan the yoi home now, in a worker thread (see
        :func:`~yoi_workspace._pods.scan_pods`)."""
        return await trio.to_thread.run_sync(
            partial(scan_pods, self._home, self._workspace_root)
        )

    async def _view(self, pod: Pod) -> WorkerView:
        read = await trio.to_thread.run_sync(
            partial(read_session, pod.log, live=pod.liveness == "live")
        )
        return pod.view(self._runtime_id, turns=read.turns, usage=read.usage)

    # -- the handle interface ----------------------------------------------

    async def describe(self) -> RuntimeView:
        """Return the source's projection: ``read-only``, not an authority.

        ``capabilities`` has every flag false, no engines, profiles or tools;
        ``workers`` counts the Workers by status (every Runtime status and
        every liveness word is present); ``error`` says why the Pods cannot
        be listed, or is None.
        """
        scan = await self.scan()
        words = (*(status.value for status in WorkerStatus), *LIVENESS)
        counts = dict.fromkeys(words, 0)
        for pod in scan.pods:
            counts[pod.liveness] += 1
        return RuntimeView(
            runtime_id=self._runtime_id,
            kind=RuntimeKind.COMPAT_LOCAL_POD,
            status="read-only",
            authority=False,
            version=None,
            protocol_version=None,
            capabilities=_CAPABILITIES,
            workers=counts,
            checked_at=datetime.datetime.now(datetime.UTC),
            error=scan.problem,
        )

    async def diagnostics(self) -> tuple[Diagnostic, ...]:
        """Return what a scan now notices, in Pod-name order, then the
        session-log problems the latest transcript read of each Worker
        found (``compat_session_invalid``).

        Codes: ``compat_pods_dir_unreadable``, ``compat_allocations_unreadable``,
        ``compat_pod_invalid``, ``compat_pod_workspace_missing``,
        ``compat_pod_other_workspace`` (info), ``compat_session_missing``,
        ``compat_pod_stale``. ``at`` is when the scan happened; messages
        name a Pod by its (display-safe) name, never a path or pid.
        """
        scan = await self.scan()
        live = {pod.worker_id for pod in scan.pods}
        for worker_id in list(self._notes):
            if worker_id not in live:
                del self._notes[worker_id]
        return scan.diagnostics + tuple(self._notes.values())

    async def list_workers(
        self,
        *,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> WorkerViewPage:
        """List the Pods' Workers in byte order of their names.

        Args:
            status: Only Workers with this status: a liveness word (``live``,
                ``stale``, ``starting``, ``stopped``) or one of the Runtime's
                (``idle``, ``running``, ``failed`` match no Pod).
            limit: Page size, 1 to 500; None means 50.
            cursor: ``next_cursor`` of the previous page; None starts over.

        Raises:
            InvalidInputError: Unknown status, bad limit or malformed cursor.
        """
        limit = check_limit(limit)
        known = (*(s.value for s in WorkerStatus), *LIVENESS)
        if status is not None and status not in known:
            raise InvalidInputError(f"unknown status {status!r}", path="status")
        start = _check_cursor(cursor, "cursor") + 1
        pods = (await self.scan()).pods
        page: list[Pod] = []
        index = start
        while index < len(pods) and len(page) < limit:
            if status is None or pods[index].liveness == status:
                page.append(pods[index])
            index += 1
        more = any(status is None or pod.liveness == status for pod in pods[index:])
        views = [await self._view(pod) for pod in page]
        return Page(tuple(views), str(index - 1) if more else None)

    async def get_worker(self, worker_id: str) -> WorkerView:
        """Return one Pod's Worker (with its active segment's turns and
        usage).

        Raises:
            WorkerNotFoundError: No listed Pod has this id.
        """
        scan = await self.scan()
        return await self._view(scan.find(worker_id, self._runtime_id))

    async def transcript(
        self, worker_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> TranscriptPage:
        """Return a page of a Pod's active segment as a transcript.

        The projection (seed history first, then the log's entries; kinds
        ``user``, ``assistant``, ``system``, ``tool_call``, ``tool_result``,
        ``reasoning``, ``attachment``) is described in
        ``yoi_workspace._session_log``. A Pod without an active segment (pending)
        or whose log is missing has an empty transcript; unusable lines are
        skipped and noted as a ``compat_session_invalid`` diagnostic.

        Args:
            worker_id: The Worker.
            limit: Entries per page, 1 to 500; None means 50.
            cursor: ``next_cursor`` of the previous page; None starts at 1.

        Raises:
            WorkerNotFoundError: No listed Pod has this id.
            InvalidInputError: Bad limit or malformed cursor.
        """
        scan = await self.scan()
        pod = scan.find(worker_id, self._runtime_id)
        limit = check_limit(limit)
        after = max(_check_cursor(cursor, "transcript cursor"), 0)
        read = await trio.to_thread.run_sync(
            partial(read_session, pod.log, live=pod.liveness == "live")
        )
        if read.problem is None or read.missing:
            self._notes.pop(worker_id, None)
        else:
            self._notes[worker_id] = Diagnostic(
                datetime.datetime.now(datetime.UTC),
                "warning",
                "compat_session_invalid",
                f"pod {pod.label!r}: {read.problem}",
                worker_id,
            )
        entries = read.entries
        chunk = entries[after : after + limit]
        more = bool(chunk) and chunk[-1].index < len(entries)
        return Page(tuple(chunk), str(chunk[-1].index) if more else None)

    def _unsupported(self, operation: str) -> NoReturn:
        raise OperationUnsupportedError(
            f"runtime {self._runtime_id} is a read-only compatibility source "
            f"(compat-local-pod): it cannot {operation}"
        )

    async def create_worker(
        self, profile: str = "companion", **options: Unpack[WorkerOptions]
    ) -> WorkerView:
        """Raises :class:`~yoi_runtime.OperationUnsupportedError`."""
        await trio.lowlevel.checkpoint()
        self._unsupported("create Workers")

    async def send_input(
        self, worker_id: str, text: str, *, input_id: str | None = None
    ) -> TurnSummary:
        """Raises :class:`~yoi_runtime.OperationUnsupportedError`."""
        await trio.lowlevel.checkpoint()
        self._unsupported("take input")

    async def cancel(
        self, worker_id: str, *, turn_id: str | None = None, reason: str | None = None
    ) -> CancelResult:
        """Raises :class:`~yoi_runtime.OperationUnsupportedError`."""
        await trio.lowlevel.checkpoint()
        self._unsupported("cancel turns")

    async def stop(self, worker_id: str, *, reason: str | None = None) -> WorkerView:
        """Raises :class:`~yoi_runtime.OperationUnsupportedError`."""
        await trio.lowlevel.checkpoint()
        self._unsupported("stop Workers")

    def subscribe(
        self, worker_id: str | None = None, *, after: int | None = None
    ) -> EventStream:
        """Return a stream that raises
        :class:`~yoi_runtime.OperationUnsupportedError` when entered (a pod's
        events were never recorded)."""
        return _UnsupportedStream(self)

    async def aclose(self) -> None:
        """Nothing to release (files are opened per call)."""
        await trio.lowlevel.checkpoint()


class _UnsupportedStream:
    """An event stream of a compat source: entering it raises."""

    def __init__(self, source: LocalPodSource) -> None:
        self._source = source

    @property
    def position(self) -> int:
        raise RuntimeError("a compat source has no event stream")

    async def __aenter__(self) -> _UnsupportedStream:
        await trio.lowlevel.checkpoint()
        self._source._unsupported("stream events")

    async def __aexit__(self, *exc_info: object) -> None:
        await trio.lowlevel.checkpoint()

    def __aiter__(self) -> _UnsupportedStream:
        return self

    async def __anext__(self) -> Event | Gap:
        await trio.lowlevel.checkpoint()
        self._source._unsupported("stream events")

    async def receive(self) -> Event | Gap:
        await trio.lowlevel.checkpoint()
        self._source._unsupported("stream events")

    async def receive_batch(self, max_items: int = 256) -> list[Event | Gap]:
        await trio.lowlevel.checkpoint()
        self._source._unsupported("stream events")

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
