"""The local-pod compatibility source: Workers of the older model, read-only.

Before the Runtime, each Worker was its own process (a "pod"). A
:class:`LocalPodSource` projects those pods as Workers so they stay visible
during the migration. It is a compatibility source, not a Runtime
authority: it owns nothing, starts nothing and changes nothing. The on-disk
format, the id derivation, the status mapping and what is never shown are
documented in ``docs/compat-local-pod.md``; in short::

    PODS_DIR/<pod_name>/metadata.json   {"pod_name", "pid", "socket_path",
                                         "session_path", "profile",
                                         "display_name", "started_at",
                                         "status"}
    <session_path>                      JSON lines {"role", "text", "at"}

Every call rescans the directory (it is small) in a worker thread, so the
event loop never waits on the disk and the projection is never stale by
more than one call.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import attrs
import trio

from yoi_runtime import (
    CancelResult,
    Capabilities,
    Diagnostic,
    Event,
    Gap,
    InvalidInputError,
    OperationUnsupportedError,
    TranscriptEntry,
    TranscriptPage,
    TurnStatus,
    TurnSummary,
    Usage,
    WorkerNotFoundError,
    WorkerStatus,
)

from ._handle import EventStream
from ._views import RuntimeKind, RuntimeView, WorkerView, WorkerViewPage

__all__ = ["LocalPodSource", "pod_worker_id"]

#: Page size of listings and transcripts when the caller gives none, and the
#: largest (the Runtime's).
_DEFAULT_LIMIT = 50
_MAX_LIMIT = 500

#: The metadata fields, their JSON types and how a message names them.
_FIELDS: Mapping[str, tuple[tuple[type, ...], str]] = {
    "pod_name": ((str,), "a string"),
    "pid": ((int,), "an integer"),
    "socket_path": ((str,), "a string"),
    "session_path": ((str,), "a string"),
    "profile": ((str,), "a string"),
    "display_name": ((str, type(None)), "a string or null"),
    "started_at": ((str,), "an ISO 8601 time"),
    "status": ((str,), "a string"),
}

#: Statuses after which a pod's process is expected to be gone.
_FINAL = frozenset({WorkerStatus.STOPPED.value, WorkerStatus.FAILED.value})

#: A transcript entry's kind, by the session log's role; other roles
#: (``system``, ``tool``, ...) are not shown.
_KINDS = {"user": "user", "assistant": "assistant"}

#: A transcript entry's status, by kind, as the Runtime reports an ended
#: turn's entries: the input stays ``accepted`` (its status when it was
#: recorded), the answer has the turn's final status. A session log records
#: no turn status, so every answer is taken as ``completed``.
_STATUS_OF_KIND = {"user": TurnStatus.ACCEPTED, "assistant": TurnStatus.COMPLETED}

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


def pod_worker_id(pod_name: str) -> str:
    """Return the Worker id of a pod: ``pod-`` and 16 hex digits.

    The digits are the first 16 of the SHA-256 of the UTF-8 ``pod_name``, so
    the id is stable across scans, restarts and hosts, and reveals nothing
    of the pod's paths.
    """
    return "pod-" + hashlib.sha256(pod_name.encode()).hexdigest()[:16]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _parse_time(value: str) -> datetime.datetime:
    """Parse an ISO 8601 time; a time without offset is taken as UTC.

    Raises:
        ValueError: Not an ISO 8601 time.
    """
    at = datetime.datetime.fromisoformat(value)
    return at if at.tzinfo is not None else at.replace(tzinfo=datetime.UTC)


def _is_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (POSIX ``kill(pid, 0)``)."""
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True  # it exists, owned by someone else
    except (OSError, OverflowError):
        return False  # ProcessLookupError, or a pid no process can have
    return True


def _is_readable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.R_OK)


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
    if not isinstance(cursor, str) or not cursor.isdigit() or len(cursor) > 18:
        raise InvalidInputError(f"malformed {what}", path="cursor")
    return int(cursor)


@attrs.frozen
class _Pod:
    """A pod with valid metadata (paths and pid never leave this module)."""

    pod_name: str
    worker_id: str
    display_name: str | None
    profile: str
    status: str
    stale: bool
    started_at: datetime.datetime
    session: Path = attrs.field(repr=False)

    def view(self, runtime_id: str) -> WorkerView:
        return WorkerView(
            runtime_id=runtime_id,
            worker_id=self.worker_id,
            kind=RuntimeKind.COMPAT_LOCAL_POD,
            display_name=self.display_name,
            profile=self.profile,
            status=self.status,
            stale=self.stale,
            created_at=self.started_at,
            engine=None,
            tools=(),
            active_turn=None,
            last_turn=None,
            turns=0,
            usage=Usage(),
            last_seq=0,
        )


@attrs.frozen
class _Scan:
    """One look at the pods directory.

    Attributes:
        pods: Valid pods, oldest first (``started_at``, then ``pod_name``).
        diagnostics: Stale pods, invalid metadata, directory problems.
        problem: Why the directory itself cannot be listed, or None.
    """

    pods: tuple[_Pod, ...]
    diagnostics: tuple[Diagnostic, ...]
    problem: str | None = None

    def find(self, worker_id: str, runtime_id: str) -> _Pod:
        for pod in self.pods:
            if pod.worker_id == worker_id:
                return pod
        raise WorkerNotFoundError(
            f"no worker {worker_id!r} in runtime {runtime_id}",
            worker_id=str(worker_id),
        )


def _read_pod(directory: Path, name: str) -> _Pod | str:
    """Read one pod's metadata; a problem (naming no path or value) if bad."""
    try:
        raw = (directory / "metadata.json").read_bytes()
    except FileNotFoundError:
        return "metadata.json is missing"
    except OSError:
        return "metadata.json cannot be read"
    try:
        data: Any = json.loads(raw)
    except ValueError:
        return "metadata.json is not valid JSON"
    if not isinstance(data, dict):
        return "metadata.json is not a JSON object"
    problems = []
    for field, (types, expected) in _FIELDS.items():
        if field not in data:
            problems.append(f"{field} is missing")
        elif type(data[field]) not in types:
            problems.append(f"{field} must be {expected}")
    if problems:
        return "invalid metadata.json: " + "; ".join(problems)
    if data["pod_name"] != name:
        return "invalid metadata.json: pod_name does not match the directory"
    if data["pid"] <= 0:
        return "invalid metadata.json: pid must be positive"
    if not data["status"]:
        return "invalid metadata.json: status is empty"
    try:
        started_at = _parse_time(data["started_at"])
    except ValueError:
        return "invalid metadata.json: started_at must be an ISO 8601 time"
    status: str = data["status"]
    stale = status not in _FINAL and not _is_alive(data["pid"])
    return _Pod(
        pod_name=name,
        worker_id=pod_worker_id(name),
        display_name=data["display_name"],
        profile=data["profile"],
        status=WorkerStatus.STOPPED.value if stale else status,
        stale=stale,
        started_at=started_at,
        session=directory / data["session_path"],
    )


def _read_session(pod: _Pod) -> tuple[list[TranscriptEntry], str | None]:
    """Read a pod's session log as transcript entries.

    Returns:
        The entries (index from 1) and, when lines were skipped, a problem
        naming how many and the first (never a path or a value). A missing
        or unreadable log gives no entries and no problem: the scan of
        :meth:`LocalPodSource.diagnostics` reports it.
    """
    try:
        text = pod.session.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return [], None
    entries: list[TranscriptEntry] = []
    turns = 0
    bad: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            role, body = record["role"], record["text"]
            if not isinstance(role, str) or not isinstance(body, str):
                raise TypeError
            at = _parse_time(record["at"])
        except (ValueError, KeyError, TypeError):
            bad.append(number)
            continue
        kind = _KINDS.get(role)
        if kind is None:
            continue
        if kind == "user":
            turns += 1
        entries.append(
            TranscriptEntry(
                index=len(entries) + 1,
                kind=kind,
                turn_id=f"t-{turns}",
                text=body,
                status=_STATUS_OF_KIND[kind],
                at=at,
            )
        )
    if bad:
        return entries, (
            f"{len(bad)} malformed line(s) in its session log were skipped "
            f"(first: line {bad[0]})"
        )
    return entries, None


class LocalPodSource:
    """A read-only handle on the pods of the older one-process-per-Worker model.

    Kind ``compat-local-pod``; not a Runtime authority. ``list_workers``,
    ``get_worker``, ``transcript``, ``diagnostics`` and ``describe`` work
    (with the Runtime's paging and errors); ``create_worker``,
    ``send_input``, ``cancel``, ``stop`` and ``subscribe`` (on entering)
    raise :class:`~yoi_runtime.OperationUnsupportedError`.

    Each Worker's id is :func:`pod_worker_id` of its pod name; its status is
    the metadata's, except that a pod claiming to be live (any status but
    ``stopped`` and ``failed``) whose pid is not alive is shown ``stopped``
    and ``stale``, with a ``compat_pod_stale`` diagnostic. A pod whose
    metadata is unreadable or invalid is not a Worker, only a
    ``compat_pod_invalid`` diagnostic. Paths and pids are never projected.

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

    def _scan_sync(self, check_sessions: bool = False) -> _Scan:
        """List the pods directory (blocking: runs in a worker thread)."""
        now = _now()
        try:
            with os.scandir(self._pods_dir) as listing:
                names = sorted(entry.name for entry in listing if entry.is_dir())
        except FileNotFoundError:
            return self._dir_problem(now, "the pods directory does not exist")
        except OSError:
            return self._dir_problem(now, "the pods directory cannot be read")
        pods: list[_Pod] = []
        diagnostics: list[Diagnostic] = []
        for name in names:
            pod = _read_pod(self._pods_dir / name, name)
            if isinstance(pod, str):
                message = f"pod {name!r}: {pod}; not shown as a Worker"
                diagnostics.append(
                    Diagnostic(now, "error", "compat_pod_invalid", message)
                )
                continue
            pods.append(pod)
            if pod.stale:
                diagnostics.append(
                    Diagnostic(
                        now,
                        "warning",
                        "compat_pod_stale",
                        f"pod {name!r} claims to be live but its process is "
                        "gone; shown as stopped",
                        pod.worker_id,
                    )
                )
            if check_sessions and not _is_readable_file(pod.session):
                diagnostics.append(
                    Diagnostic(
                        now,
                        "warning",
                        "compat_session_missing",
                        f"pod {name!r}: its session log is missing or unreadable; "
                        "its transcript is empty",
                        pod.worker_id,
                    )
                )
        pods.sort(key=lambda pod: (pod.started_at, pod.pod_name))
        return _Scan(tuple(pods), tuple(diagnostics))

    def _dir_problem(self, now: datetime.datetime, problem: str) -> _Scan:
        code = "compat_pods_dir_unreadable"
        return _Scan((), (Diagnostic(now, "error", code, problem),), problem)

    async def _scan(self, *, check_sessions: bool = False) -> _Scan:
        return await trio.to_thread.run_sync(self._scan_sync, check_sessions)

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
            checked_at=_now(),
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
        entries, problem = await trio.to_thread.run_sync(_read_session, pod)
        if problem is None:
            self._notes.pop(worker_id, None)
        else:
            self._notes[worker_id] = Diagnostic(
                _now(),
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
