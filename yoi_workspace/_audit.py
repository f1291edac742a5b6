"""The audit trail: one record per command the registry routes.

Every ``create``, ``input``, ``stop`` and ``cancel`` produces exactly one
:class:`AuditRecord`, whether it succeeded, was refused by policy, named a
hidden Worker, or failed in the Runtime; ``outcome`` is ``"ok"`` or the error
code (``"worker_busy"``, ``"command_refused"``, ``"worker_not_visible"``,
``"runtime_unavailable"``, ``"cancelled"`` when the request went away, ...).
"""

from __future__ import annotations

import datetime
import json
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import attrs
import trio

from yoi_runtime import YoiRuntimeError

from ._errors import CommandRefusedError, WorkerNotVisibleError

__all__ = [
    "AUDIT_TIMEOUT",
    "AuditRecord",
    "AuditSink",
    "JSONLinesAuditSink",
    "MemoryAuditSink",
    "audited",
]

#: Seconds an audit record may take to store once its command has ended
#: (shielded: the record is stored even when the request went away).
AUDIT_TIMEOUT = 5.0


@attrs.frozen
class AuditRecord:
    """One command and how it ended.

    Attributes:
        at: When the command ended (UTC).
        caller: The caller's id.
        runtime_id: The Runtime addressed.
        worker_id: The Worker addressed; for ``create``, the new Worker's id
            when it was created, else the requested id or None.
        operation: ``"create"``, ``"input"``, ``"stop"`` or ``"cancel"``.
        outcome: ``"ok"``, or the error code the command ended with.
        reason: Why a policy hid the Worker or refused the command, else None.
        turn_id: The turn concerned: the one an input started, a cancel
            addressed or a stop ended; None when there was none (or the
            command failed before one was known).
        profile: The Worker's profile (for a create, the one asked for);
            None when the Worker could not be looked up.
        request_id: The browser request's id (its ``X-Request-Id``, or one
            the API made up), None for a call made in Python.
    """

    at: datetime.datetime
    caller: str
    runtime_id: str
    worker_id: str | None
    operation: str
    outcome: str
    reason: str | None = None
    turn_id: str | None = None
    profile: str | None = None
    request_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as one JSON object (``at`` in ISO 8601; ``turn_id``,
        ``profile`` and ``request_id`` always, null when unknown; ``reason``
        only when there is one)."""
        value: dict[str, Any] = {
            "at": self.at.isoformat(),
            "caller": self.caller,
            "runtime_id": self.runtime_id,
            "worker_id": self.worker_id,
            "operation": self.operation,
            "outcome": self.outcome,
            "turn_id": self.turn_id,
            "profile": self.profile,
            "request_id": self.request_id,
        }
        if self.reason is not None:
            value["reason"] = self.reason
        return value


class AuditSink(Protocol):
    """Where the registry sends audit records."""

    async def record(self, entry: AuditRecord) -> None:
        """Store one record; records arrive in the order commands ended.

        Raises:
            OSError: The record could not be stored (the registry notes it
                as a diagnostic; the command's own result stands).
        """
        ...


@attrs.define(eq=False)
class MemoryAuditSink:
    """Keeps the newest records in memory (for tests and for showing them).

    Args:
        retention: How many records are kept; older ones are dropped.

    Attributes:
        records: The kept records, oldest first.
    """

    retention: int = 10_000
    records: deque[AuditRecord] = attrs.field(init=False)

    @records.default
    def _records(self) -> deque[AuditRecord]:
        return deque(maxlen=self.retention)

    async def record(self, entry: AuditRecord) -> None:
        self.records.append(entry)
        await trio.lowlevel.checkpoint()


@attrs.define(eq=False)
class JSONLinesAuditSink:
    """Appends one JSON object per line to a file.

    Each record opens the file in append mode, writes one line with
    unbuffered ``os.write`` calls and closes it, in a worker thread so the
    event loop never waits on the disk. Records are written one at a time,
    in order; a write that has started always finishes, even when the
    caller is cancelled. Nothing stays open between records, so the file
    can be rotated at any time (its size is bounded by rotating it, e.g.
    with logrotate; the sink itself keeps nothing in memory).

    Attributes:
        path: The file; created (mode 0600) when missing.
    """

    path: Path = attrs.field(converter=Path)
    _lock: trio.Lock = attrs.field(factory=trio.Lock, init=False, repr=False)

    async def record(self, entry: AuditRecord) -> None:
        line = json.dumps(entry.to_json(), ensure_ascii=False) + "\n"
        async with self._lock:
            await trio.to_thread.run_sync(self._append, line.encode())

    def _append(self, data: bytes) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        descriptor = os.open(self.path, flags, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
        finally:
            os.close(descriptor)


@attrs.define
class AuditEntry:
    """What a command body may still tell its audit record.

    Attributes:
        worker_id: The Worker concerned (set it once a create knows the id).
        turn_id: The turn concerned, once known.
        profile: The Worker's profile, once known.
    """

    worker_id: str | None
    turn_id: str | None = None
    profile: str | None = None


@asynccontextmanager
async def audited(
    sink: AuditSink | None,
    caller: str,
    operation: str,
    runtime_id: str,
    worker_id: str | None,
    *,
    on_failure: Callable[[str], None],
    request_id: str | None = None,
) -> AsyncIterator[AuditEntry]:
    """Record one command's outcome when its body ends, however it ends.

    The outcome is ``"ok"``, the code of a :class:`YoiRuntimeError` the body
    raised (with the policy's reason for ``worker_not_visible`` and
    ``command_refused``), ``"cancelled"``, or ``"internal_error"``. The
    record is stored shielded from cancellation, for at most
    :data:`AUDIT_TIMEOUT` seconds; the body's own result or error stands.

    Args:
        sink: Where the record goes; None records nothing.
        on_failure: Called with a message when the record could not be
            stored (an ``OSError`` from the sink, or too slow).
        request_id: The browser request's id, recorded as it is.
    """
    entry = AuditEntry(worker_id)
    outcome, reason = "cancelled", None
    try:
        yield entry
        outcome = "ok"
    except YoiRuntimeError as exc:
        outcome = exc.code
        if isinstance(exc, WorkerNotVisibleError):
            reason = exc.reason
        elif isinstance(exc, CommandRefusedError):
            reason = exc.message
        raise
    except Exception:
        outcome = "internal_error"
        raise
    finally:
        if sink is not None:
            record = AuditRecord(
                at=datetime.datetime.now(datetime.UTC),
                caller=caller,
                runtime_id=runtime_id,
                worker_id=entry.worker_id,
                operation=operation,
                outcome=outcome,
                reason=reason,
                turn_id=entry.turn_id,
                profile=entry.profile,
                request_id=request_id,
            )
            with trio.move_on_after(AUDIT_TIMEOUT, shield=True) as waited:
                try:
                    await sink.record(record)
                except OSError as exc:
                    on_failure(f"{operation}: the audit record was lost: {exc}")
            if waited.cancelled_caught:
                on_failure(f"{operation}: storing the audit record took too long")
