"""Scanning a yoi home: Pod metadata, the allocation table, liveness.

Blocking code, run by :class:`~yoi_workspace.LocalPodSource` in a worker
thread. The formats are upstream yoi's (HareK02/yoi at ``159704dc``), as
``shared/reference/yoi-local-pods.md`` documents them and
``docs/compat-local-pod.md`` summarises::

    {data_dir}/pods/<pod_name>/metadata.json      PodMetadata (section 3)
    {runtime_dir}/pods.json                       {"allocations": [...]} (4)
    {data_dir}/sessions/<session>/<segment>.jsonl the active segment log (7)

:func:`scan_pods` lists every Pod directory in byte order of its name (as
the original workspace server does), validates its metadata as strictly as
upstream's serde parse, scopes it to the workspace, classifies its liveness
from the allocation table (``live``, ``stale``, ``starting``, ``stopped``)
and turns every problem into a diagnostic: once as the original server
words it (:class:`LegacyDiagnostic`, for the legacy routes) and once as this
project's :class:`~yoi_runtime.Diagnostic`. Nothing it returns carries a
path, a pid, a socket or a session id.
"""

from __future__ import annotations

import datetime
import os
import unicodedata
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from yoi_runtime import Diagnostic, Usage, WorkerNotFoundError

from ._pod_allocations import Allocation, read_allocations
from ._pod_files import FileProblem, io_text, loads, read_capped
from ._pod_metadata import metadata_problem
from ._views import RuntimeKind, WorkerView
from ._yoi_home import YoiHome, bounded_backend_identifier

__all__ = [
    "LIVENESS",
    "LegacyDiagnostic",
    "Pod",
    "Scan",
    "pod_worker_id",
    "safe_display_hint",
    "scan_pods",
]

#: The statuses a Pod's Worker can have (``yoi-local-pods.md`` section 6).
LIVENESS = ("live", "stale", "starting", "stopped")

#: The largest ``metadata.json`` read, in bytes (real ones are a few KiB;
#: a resolved manifest snapshot can reach tens of KiB).
MAX_METADATA_BYTES = 1 << 20

#: The most Pod directories looked at in one scan.
MAX_PODS = 10_000

#: What the original server says about every local Worker.
ACTIONS_NOT_IMPLEMENTED = (
    "runtime overview is available; worker control and stream/proxy "
    "operations are not yet implemented"
)


def pod_worker_id(pod_name: str) -> str:
    """Return the Worker id of a Pod, as the original workspace server does.

    Args:
        pod_name: The Pod's directory name under ``{data_dir}/pods``.

    Returns:
        ``bounded_backend_identifier("local-pod-", pod_name)``, for example
        ``local-pod-alpha-8ed3f6ad685b959e``: stable across scans, restarts
        and hosts, at most 120 characters of ``[a-z0-9_-]``, no path.
    """
    return bounded_backend_identifier("local-pod-", pod_name)


def safe_display_hint(value: str) -> str:
    """The original server's label: control characters, ``/`` and ``\\``
    dropped, at most 80 characters."""
    kept = (ch for ch in value if ch not in "/\\" and unicodedata.category(ch) != "Cc")
    return "".join(kept)[:80]


@attrs.frozen
class LegacyDiagnostic:
    """A diagnostic as the original workspace server words it.

    Attributes:
        code: ``local_pod_metadata_invalid``, ... (``legacy-browser-api.md``
            section 7).
        severity: ``info``, ``warning`` or ``error``.
        message: Its exact message (OS and parser texts, never a path).
    """

    code: str
    severity: str
    message: str


@attrs.frozen
class Pod:
    """A Pod with usable metadata (paths never leave this module's callers).

    Attributes:
        pod_name: Its directory's name.
        worker_id: :func:`pod_worker_id` of ``pod_name``.
        label: ``safe_display_hint`` of the metadata's ``pod_name``.
        role: The manifest snapshot's role hint, or None.
        profile: The manifest snapshot's profile hint, or None.
        active: Whether the metadata has an ``active`` pointer.
        pending: ``active`` names a session but no segment yet.
        liveness: ``live``, ``stale``, ``starting`` or ``stopped``.
        created_at: When its session began (the UUIDv7's time), or None.
        delegated_from: The parent Pod's name, for a spawned child.
        log: The active segment log, or None (hidden from the ``repr``).
    """

    pod_name: str
    worker_id: str
    label: str
    role: str | None
    profile: str | None
    active: bool
    pending: bool
    liveness: str
    created_at: datetime.datetime | None
    delegated_from: str | None
    log: Path | None = attrs.field(repr=False)

    @property
    def legacy_state(self) -> str:
        """``active`` or ``metadata_only``, as the original server says."""
        return "active" if self.active else "metadata_only"

    @property
    def legacy_status(self) -> str:
        """``active:segment``, ``active:pending_segment`` or
        ``metadata_only``."""
        if not self.active:
            return "metadata_only"
        return "active:pending_segment" if self.pending else "active:segment"

    def view(
        self, runtime_id: str, *, turns: int = 0, usage: Usage | None = None
    ) -> WorkerView:
        """Return the Pod's Worker projection (kind ``compat-local-pod``)."""
        return WorkerView(
            runtime_id=runtime_id,
            worker_id=self.worker_id,
            kind=RuntimeKind.COMPAT_LOCAL_POD,
            display_name=self.label,
            profile=self.profile or self.role or "pod",
            status=self.liveness,
            stale=self.liveness == "stale",
            created_at=self.created_at,
            engine=None,
            tools=(),
            active_turn=None,
            last_turn=None,
            turns=turns,
            usage=Usage() if usage is None else usage,
            last_seq=0,
        )


@attrs.frozen
class Scan:
    """One look at a yoi home.

    Attributes:
        entries: Every Pod directory's outcome in byte order of its name:
            the Pod, or the original server's diagnostic for it (the legacy
            routes walk these).
        diagnostics: This project's diagnostics, in the same order.
        problem: Why the Pods cannot be listed at all, or None.
        legacy_problem: The same in the original server's words.
    """

    entries: tuple[Pod | LegacyDiagnostic, ...]
    diagnostics: tuple[Diagnostic, ...]
    problem: str | None = None
    legacy_problem: LegacyDiagnostic | None = None

    @property
    def pods(self) -> tuple[Pod, ...]:
        """The Pods listed as Workers, in byte order of their names."""
        return tuple(e for e in self.entries if isinstance(e, Pod))

    def find(self, worker_id: str, runtime_id: str) -> Pod:
        """Return the Pod whose Worker is ``worker_id``.

        Raises:
            WorkerNotFoundError: No listed Pod has this id.
        """
        for pod in self.pods:
            if pod.worker_id == worker_id:
                return pod
        raise WorkerNotFoundError(
            f"no worker {worker_id!r} in runtime {runtime_id}",
            worker_id=str(worker_id),
        )


def _normal_root(value: str) -> str:
    """The original server's lexical form of a workspace root."""
    return value.replace("\\", "/").rstrip("/")


def scan_pods(home: YoiHome, workspace_root: str | None) -> Scan:
    """Scan a yoi home (blocking: run it in a worker thread).

    Args:
        home: Where the Pods and the allocation table are.
        workspace_root: Only Pods whose ``workspace_root`` equals this
            (compared lexically, ``\\`` read as ``/``, trailing ``/``
            removed) are listed; others are an ``info`` diagnostic. None
            lists every Pod.

    Returns:
        What was found; a yoi home whose ``pods`` directory cannot be
        listed gives no Pods and a ``compat_pods_dir_unreadable`` error.
    """
    now = datetime.datetime.now(datetime.UTC)
    notes = _Notes(now)
    pods_dir = home.pods_dir
    if pods_dir is None:
        problem = "no yoi data directory is configured"
        legacy = LegacyDiagnostic(
            "local_pod_registry_unavailable",
            "warning",
            "local Pod data directory is not configured; worker discovery "
            "is unavailable",
        )
        notes.add("error", "compat_pods_dir_unreadable", problem)
        return Scan((), notes.items, problem, legacy)
    try:
        names = _pod_dirs(pods_dir)
    except OSError as exc:
        problem = "the Pods directory cannot be listed"
        legacy = LegacyDiagnostic(
            "local_pod_registry_unreadable",
            "warning",
            f"local Pod registry could not be read: {io_text(exc)}",
        )
        notes.add("error", "compat_pods_dir_unreadable", problem)
        return Scan((), notes.items, problem, legacy)
    allocations = read_allocations(
        home, lambda text: notes.add("warning", "compat_allocations_unreadable", text)
    )
    root = None if workspace_root is None else _normal_root(workspace_root)
    entries: list[Pod | LegacyDiagnostic] = []
    for name in names:
        try:
            entry = _read_pod(home, pods_dir / name, name, root, allocations, notes)
        except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:
            # Untrusted content this reader did not foresee: one Pod's
            # problem, never the scan's.
            notes.add(
                "error",
                "compat_pod_invalid",
                f"pod {safe_display_hint(name)!r} cannot be read "
                f"({type(exc).__name__}); not a Worker",
            )
            entry = LegacyDiagnostic(
                "local_pod_metadata_unreadable",
                "warning",
                "local Pod metadata could not be read: unexpected content",
            )
        entries.append(entry)
    return Scan(tuple(entries), notes.items)


def _pod_dirs(pods_dir: Path) -> list[str]:
    """Subdirectories with a UTF-8 name, in byte order, at most MAX_PODS."""
    names = []
    with os.scandir(pods_dir) as listing:
        for entry in listing:
            try:
                if not entry.is_dir():
                    continue
                entry.name.encode("utf-8")
            except (OSError, UnicodeEncodeError):
                continue  # a name that is not UTF-8 (surrogate-escaped)
            names.append(entry.name)
            if len(names) >= MAX_PODS:
                break
    return sorted(names, key=lambda name: name.encode("utf-8"))


@attrs.define
class _Notes:
    """This project's diagnostics, collected during one scan."""

    now: datetime.datetime
    found: list[Diagnostic] = attrs.field(factory=list)

    def add(
        self, level: str, code: str, message: str, worker: str | None = None
    ) -> None:
        self.found.append(Diagnostic(self.now, level, code, message, worker))

    @property
    def items(self) -> tuple[Diagnostic, ...]:
        return tuple(self.found)


def _read_pod(
    home: YoiHome,
    directory: Path,
    name: str,
    root: str | None,
    allocations: Mapping[str, Allocation] | None,
    notes: _Notes,
) -> Pod | LegacyDiagnostic:
    """One Pod directory: its Pod, or its legacy diagnostic."""
    hint = safe_display_hint(name)
    worker_id = pod_worker_id(name)
    try:
        data = loads(read_capped(directory / "metadata.json", MAX_METADATA_BYTES))
        problem = metadata_problem(data)
        if problem is not None:
            raise FileProblem(
                f"metadata.json does not match the Pod schema ({problem})",
                problem,
                parse=True,
            )
    except FileProblem as exc:
        notes.add(
            "error",
            "compat_pod_invalid",
            f"pod {hint!r}: metadata.json is unusable: {exc.message}; not a Worker",
        )
        if exc.parse:
            return LegacyDiagnostic(
                "local_pod_metadata_invalid",
                "warning",
                f"local Pod metadata could not be parsed: {exc.legacy}",
            )
        return LegacyDiagnostic(
            "local_pod_metadata_unreadable",
            "warning",
            f"local Pod metadata could not be read: {exc.legacy}",
        )
    if root is not None:
        pod_root = data.get("workspace_root")
        if pod_root is None:
            notes.add(
                "warning",
                "compat_pod_workspace_missing",
                f"pod {hint!r} names no workspace; not shown",
            )
            return LegacyDiagnostic(
                "local_pod_workspace_root_missing",
                "warning",
                "local Pod metadata did not include a workspace identity and "
                "was not included",
            )
        if _normal_root(pod_root) != root:
            notes.add(
                "info",
                "compat_pod_other_workspace",
                f"pod {hint!r} belongs to another workspace; not shown",
            )
            return LegacyDiagnostic(
                "local_pod_workspace_not_visible",
                "info",
                "local Pod metadata belongs to another workspace and was not included",
            )
    active = data.get("active")
    session = segment = None
    if isinstance(active, dict):
        session = uuid.UUID(active["session_id"])
        if active.get("segment_id") is not None:
            segment = uuid.UUID(active["segment_id"])
    log = None
    sessions = home.sessions_dir
    if session is not None and segment is not None and sessions is not None:
        log = sessions / str(session) / f"{segment}.jsonl"
        if not _is_file(log):
            notes.add(
                "warning",
                "compat_session_missing",
                f"pod {hint!r}: its active segment log is missing; its "
                "transcript is empty",
                worker_id,
            )
    allocation = None if allocations is None else allocations.get(name)
    if allocation is None:
        liveness = "stopped"
    elif not allocation.alive:
        liveness = "stale"
        notes.add(
            "warning",
            "compat_pod_stale",
            f"pod {hint!r} is allocated but its process is gone (it crashed); "
            "shown as stale",
            worker_id,
        )
    elif allocation.segment_id is None:
        liveness = "starting"
    else:
        liveness = "live"
    snapshot = data.get("resolved_manifest_snapshot")
    return Pod(
        pod_name=name,
        worker_id=worker_id,
        label=safe_display_hint(data["pod_name"]),
        role=_hint(snapshot, ("role", "role_claim")),
        profile=_hint(snapshot, ("profile_selector", "profile")),
        active=isinstance(active, dict),
        pending=isinstance(active, dict) and segment is None,
        liveness=liveness,
        created_at=_uuid7_time(session),
        delegated_from=None if allocation is None else allocation.delegated_from,
        log=log,
    )


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _hint(snapshot: Any, keys: tuple[str, str]) -> str | None:
    """A manifest hint the way the original server reads it
    (``workspace-server/src/hosts.rs:888-907``)."""
    if not isinstance(snapshot, dict):
        return None
    first, second = keys
    if first in snapshot:
        value = snapshot[first]
    elif second in snapshot:
        value = snapshot[second]
        if first == "role" and isinstance(value, dict):
            value = value.get("role")  # role_claim.role
    else:
        return None
    if isinstance(value, dict):
        value = value.get("name")
    if not isinstance(value, str):
        return None
    return safe_display_hint(value) or None


def _uuid7_time(value: uuid.UUID | None) -> datetime.datetime | None:
    if value is None or value.version != 7:
        return None
    millis = value.int >> 80
    return datetime.datetime.fromtimestamp(millis / 1000, datetime.UTC)
