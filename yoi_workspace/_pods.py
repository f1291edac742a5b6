"""Reading a pods directory: the older model's pods, their metadata and logs.

Blocking code, run by :class:`~yoi_workspace.LocalPodSource` in a worker
thread. The format (documented in ``docs/compat-local-pod.md``)::

    PODS_DIR/<pod_name>/metadata.json   {"pod_name", "pid", "socket_path",
                                         "session_path", "profile",
                                         "display_name", "started_at",
                                         "status"}
    <session_path>                      JSON lines {"role", "text", "at"}

:func:`scan_pods` validates every pod's metadata, checks whether the pods
that claim to be live still have a process, and turns what it finds wrong
into diagnostics; :func:`read_session` reads one pod's session log as
transcript entries. Neither puts a path, a pid or a metadata value in what
it returns: a :class:`Pod` keeps its session log's path to itself.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from yoi_runtime import (
    Diagnostic,
    TranscriptEntry,
    TurnStatus,
    Usage,
    WorkerNotFoundError,
    WorkerStatus,
)

from ._views import RuntimeKind, WorkerView

__all__ = ["Pod", "Scan", "pod_worker_id", "read_session", "scan_pods"]

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


def pod_worker_id(pod_name: str) -> str:
    """Return the Worker id of a pod: ``pod-`` and 16 hex digits.

    The digits are the first 16 of the SHA-256 of the UTF-8 ``pod_name``, so
    the id is stable across scans, restarts and hosts, and reveals nothing
    of the pod's paths.

    Args:
        pod_name: The pod's name (its directory's name in ``PODS_DIR``).

    Returns:
        The id :class:`~yoi_workspace.LocalPodSource` gives the pod's Worker.
    """
    return "pod-" + hashlib.sha256(pod_name.encode()).hexdigest()[:16]


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


@attrs.frozen
class Pod:
    """A pod with valid metadata (paths and pid never leave this module).

    Attributes:
        pod_name: Its directory's name.
        worker_id: :func:`pod_worker_id` of ``pod_name``.
        display_name: The metadata's label, or None.
        profile: The metadata's profile.
        status: The metadata's status, or ``stopped`` when ``stale``.
        stale: It claims to be live but its process is gone.
        started_at: When it started (UTC when the metadata has no offset).
        session: Its session log (hidden from the ``repr``).
    """

    pod_name: str
    worker_id: str
    display_name: str | None
    profile: str
    status: str
    stale: bool
    started_at: datetime.datetime
    session: Path = attrs.field(repr=False)

    def view(self, runtime_id: str) -> WorkerView:
        """Return the pod's Worker projection (kind ``compat-local-pod``)."""
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
class Scan:
    """One look at the pods directory.

    Attributes:
        pods: Valid pods, oldest first (``started_at``, then ``pod_name``).
        diagnostics: Stale pods, invalid metadata, directory problems.
        problem: Why the directory itself cannot be listed, or None.
    """

    pods: tuple[Pod, ...]
    diagnostics: tuple[Diagnostic, ...]
    problem: str | None = None

    def find(self, worker_id: str, runtime_id: str) -> Pod:
        """Return the pod whose Worker is ``worker_id``.

        Raises:
            WorkerNotFoundError: No valid pod has this id (the message names
                ``runtime_id``).
        """
        for pod in self.pods:
            if pod.worker_id == worker_id:
                return pod
        raise WorkerNotFoundError(
            f"no worker {worker_id!r} in runtime {runtime_id}",
            worker_id=str(worker_id),
        )


def scan_pods(pods_dir: Path, *, check_sessions: bool = False) -> Scan:
    """List the pods directory (blocking: run it in a worker thread).

    Args:
        pods_dir: The ``PODS_DIR`` holding one directory per pod.
        check_sessions: Also report pods whose session log is missing or
            unreadable (``compat_session_missing``).

    Returns:
        The valid pods, and a diagnostic (all stamped with the time of the
        scan) per stale pod (``compat_pod_stale``), invalid pod
        (``compat_pod_invalid``) and, when asked, missing session log, in
        pod-name order; or no pods and a ``compat_pods_dir_unreadable``
        diagnostic when the directory cannot be listed.
    """
    now = datetime.datetime.now(datetime.UTC)
    try:
        with os.scandir(pods_dir) as listing:
            names = sorted(entry.name for entry in listing if entry.is_dir())
    except FileNotFoundError:
        return _dir_problem(now, "the pods directory does not exist")
    except OSError:
        return _dir_problem(now, "the pods directory cannot be read")
    pods: list[Pod] = []
    diagnostics: list[Diagnostic] = []
    for name in names:
        pod = _read_pod(pods_dir / name, name)
        if isinstance(pod, str):
            message = f"pod {name!r}: {pod}; not shown as a Worker"
            diagnostics.append(Diagnostic(now, "error", "compat_pod_invalid", message))
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
    return Scan(tuple(pods), tuple(diagnostics))


def _dir_problem(now: datetime.datetime, problem: str) -> Scan:
    code = "compat_pods_dir_unreadable"
    return Scan((), (Diagnostic(now, "error", code, problem),), problem)


def _read_pod(directory: Path, name: str) -> Pod | str:
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
    return Pod(
        pod_name=name,
        worker_id=pod_worker_id(name),
        display_name=data["display_name"],
        profile=data["profile"],
        status=WorkerStatus.STOPPED.value if stale else status,
        stale=stale,
        started_at=started_at,
        session=directory / data["session_path"],
    )


def read_session(pod: Pod) -> tuple[list[TranscriptEntry], str | None]:
    """Read a pod's session log as transcript entries (blocking).

    Returns:
        The entries (index from 1) and, when lines were skipped, a problem
        naming how many and the first (never a path or a value). A missing
        or unreadable log gives no entries and no problem: a scan with
        ``check_sessions`` reports it.
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
