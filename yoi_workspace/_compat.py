"""The local-pod compatibility source: Workers of the older model, read-only.

Before the Runtime, each Worker was its own process (a "pod"). A
:class:`LocalPodSource` projects those pods as Workers so they stay visible
during the migration. It is a compatibility source, not a Runtime
authority: it owns nothing, starts nothing and changes nothing. The on-disk
format, the id derivation, the status mapping and what is never shown are
documented in ``docs/compat-local-pod.md``; reading the pods directory
(metadata, pid liveness, session logs) is ``yoi_workspace._pods``.

Every call rescans the directory (it is small) in a worker thread, so the
event loop never waits on the disk and the projection is never stale by
more than one call.
"""

from __future__ import annotations

import datetime
import os
from functools import partial
from pathlib import Path
from typing import NoReturn

import trio

from yoi_runtime import (
    CancelResult,
    Capabilities,
    Diagnostic,
    Event,
    Gap,
    InvalidInputError,
    OperationUnsupportedError,
    TranscriptPage,
    TurnSummary,
    WorkerStatus,
)
from yoi_runtime._util import parse_count

from ._handle import EventStream
from ._pods import Scan, read_session, scan_pods
from ._views import RuntimeKind, RuntimeView, WorkerView, WorkerViewPage

__all__ = ["LocalPodSource"]

#: Page size of listings and transcripts when the caller gives none, and the
#: largest (the Runtime's).
_DEFAULT_LIMIT = 50
_MAX_LIMIT = 500

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


def _check_limit(limit: int | None) -> int:
    if limit is None:
        return _DEFAULT_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidInputError("limit must be an integer", path="limit")
    if not 1 <= limit <= _MAX_LIMIT:
        raise InvalidInputError(
            f"limit must be between 1 and {_MAX_LIMIT}", path="limit"
        )
    return limit


def _check_cursor(cursor: str | None, what: str) -> int:
    """Return the position a cursor stands for (-1 when None)."""
    if cursor is None:
        return -1
    position = parse_count(cursor)
    if position is None:
        raise InvalidInputError(f"malformed {what}", path="cursor")
    return position


class LocalPodSource:
    """A read-only handle on the pods of the older one-process-per-Worker model.

    Kind ``compat-local-pod``; not a Runtime authority. ``list_workers``,
    ``get_worker``, ``transcript``, ``diagnostics`` and ``describe`` work
    (with the Runtime's paging and errors); ``create_worker``,
    ``send_input``, ``cancel``, ``stop`` and ``subscribe`` (on entering)
    raise :class:`~yoi_runtime.OperationUnsupportedError`.

    Each Worker's id is :func:`~yoi_workspace.pod_worker_id` of its pod
    name; its status is the metadata's, except that a pod claiming to be
    live (any status but ``stopped`` and ``failed``) whose pid is not alive
    is shown ``stopped`` and ``stale``, with a ``compat_pod_stale``
    diagnostic. A pod whose metadata is unreadable or invalid is not a
    Worker, only a ``compat_pod_invalid`` diagnostic. Paths and pids are
    never projected.

    Args:
        runtime_id: The id the registry routes by.
        pods_dir: The ``PODS_DIR`` holding one directory per pod (hidden
            from the ``repr``). A missing directory is no error: it lists
            nothing, with a diagnostic.
    """

    def __init__(self, runtime_id: str, pods_dir: str | os.PathLike[str]) -> None:
        self._runtime_id = runtime_id
        self._pods_dir = Path(pods_dir)
        #: Session-log problems noticed by the last transcript read of each
        #: Worker (pruned to the pods that still exist).
        self._notes: dict[str, Diagnostic] = {}

    def __repr__(self) -> str:
        return f"LocalPodSource(runtime_id={self._runtime_id!r})"

    @property
    def runtime_id(self) -> str:
        return self._runtime_id

    @property
    def kind(self) -> RuntimeKind:
        return RuntimeKind.COMPAT_LOCAL_POD

    # -- reading ------------------------------------------------------------

    async def _scan(self, *, check_sessions: bool = False) -> Scan:
        return await trio.to_thread.run_sync(
            partial(scan_pods, self._pods_dir, check_sessions=check_sessions)
        )

    # -- the handle interface ----------------------------------------------

    async def describe(self) -> RuntimeView:
        """Return the source's projection: ``read-only``, not an authority.

        ``capabilities`` has every flag false, no engines, profiles or tools;
        ``workers`` counts the Workers by status (every Runtime status is
        present; an older model's own status words get their own key);
        ``error`` says why the pods directory cannot be listed, or is None.
        """
        scan = await self._scan()
        counts = dict.fromkeys((status.value for status in WorkerStatus), 0)
        for pod in scan.pods:
            counts[pod.status] = counts.get(pod.status, 0) + 1
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
        """Return what the last scan noticed, in pod-name order.

        Stale pods (``compat_pod_stale``), invalid metadata
        (``compat_pod_invalid``), missing or unreadable session logs
        (``compat_session_missing``), a pods directory that cannot be listed
        (``compat_pods_dir_unreadable``), then malformed session lines found
        by the latest transcript read of each Worker
        (``compat_session_invalid``). ``at`` is when the scan happened.
        """
        scan = await self._scan(check_sessions=True)
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
        """List the pods' Workers, oldest first (the Runtime's paging).

        Args:
            status: Only Workers with this status (one of the Runtime's
                ``idle``, ``running``, ``stopped``, ``failed``).
            limit: Page size, 1 to 500; None means 50.
            cursor: ``next_cursor`` of the previous page (a position in the
                oldest-first order); None starts over.

        Raises:
            InvalidInputError: Unknown status, bad limit or malformed cursor.
        """
        limit = _check_limit(limit)
        if status is not None:
            try:
                status = WorkerStatus(status).value
            except ValueError:
                raise InvalidInputError(
                    f"unknown status {status!r}", path="status"
                ) from None
        start = _check_cursor(cursor, "cursor") + 1
        pods = (await self._scan()).pods
        page: list[WorkerView] = []
        index = start
        while index < len(pods) and len(page) < limit:
            if status is None or pods[index].status == status:
                page.append(pods[index].view(self._runtime_id))
            index += 1
        more = any(status is None or pod.status == status for pod in pods[index:])
        return WorkerViewPage(tuple(page), str(index - 1) if more else None)

    async def get_worker(self, worker_id: str) -> WorkerView:
        """Return one pod's Worker.

        Raises:
            WorkerNotFoundError: No valid pod has this id.
        """
        scan = await self._scan()
        return scan.find(worker_id, self._runtime_id).view(self._runtime_id)

    async def transcript(
        self, worker_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> TranscriptPage:
        """Return a page of a pod's session log as a transcript.

        Entries are numbered from 1 in log order; ``user`` and ``assistant``
        roles become those kinds (other roles are skipped); ``turn_id`` is
        ``t-N``, N counting the user messages so far (``t-0`` before the
        first), like the Runtime's turn ids; ``status`` is ``accepted`` for
        a user entry and ``completed`` for an assistant entry, as the
        Runtime reports an ended turn (the log records no turn status). A
        missing or unreadable log gives an empty transcript (and a
        ``compat_session_missing`` diagnostic); malformed lines are skipped
        (and noted as ``compat_session_invalid``).

        Args:
            worker_id: The Worker.
            limit: Entries per page, 1 to 500; None means 50.
            cursor: ``next_cursor`` of the previous page; None starts at 1.

        Raises:
            WorkerNotFoundError: No valid pod has this id.
            InvalidInputError: Bad limit or malformed cursor.
        """
        scan = await self._scan()
        pod = scan.find(worker_id, self._runtime_id)
        limit = _check_limit(limit)
        after = max(_check_cursor(cursor, "transcript cursor"), 0)
        entries, problem = await trio.to_thread.run_sync(read_session, pod)
        if problem is None:
            self._notes.pop(worker_id, None)
        else:
            self._notes[worker_id] = Diagnostic(
                datetime.datetime.now(datetime.UTC),
                "warning",
                "compat_session_invalid",
                f"pod {pod.pod_name!r}: {problem}",
                worker_id,
            )
        chunk = entries[after : after + limit]
        more = bool(chunk) and chunk[-1].index < len(entries)
        return TranscriptPage(
            entries=tuple(chunk),
            next_cursor=str(chunk[-1].index) if more else None,
            truncated=False,
        )

    def _unsupported(self, operation: str) -> NoReturn:
        raise OperationUnsupportedError(
            f"runtime {self._runtime_id} is a read-only compatibility source "
            f"(compat-local-pod): it cannot {operation}"
        )

    async def create_worker(
        self,
        profile: str = "companion",
        *,
        display_name: str | None = None,
        engine: str | None = None,
        system_prompt: str | None = None,
        worker_id: str | None = None,
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

    async def receive_batch(self, max_items: int = 256) -> list[Event | Gap]:
        await trio.lowlevel.checkpoint()
        self._source._unsupported("stream events")

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
