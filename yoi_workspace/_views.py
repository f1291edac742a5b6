"""What the registry shows of a Runtime and of a Worker: projections.

Handles build these from what their Runtime reports; the browser API sends
them as they are. None of them carries an endpoint, token, socket path,
session path, metadata path or pid.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping
from typing import TypeAlias

import attrs

from yoi_runtime import (
    Capabilities,
    EngineInfo,
    Page,
    RuntimeSummary,
    TurnError,
    TurnSummary,
    Usage,
    WorkerSummary,
)
from yoi_runtime.serving import register_page

__all__ = ["RuntimeKind", "RuntimeView", "WorkerView", "WorkerViewPage"]


class RuntimeKind(enum.StrEnum):
    """Which kind of handle reaches a Runtime.

    ``embedded`` and ``remote`` are Runtime authorities; ``compat-local-pod``
    is a read-only compatibility source for Workers of the older
    one-process-per-Worker model, not a Runtime.
    """

    EMBEDDED = "embedded"
    REMOTE = "remote"
    COMPAT_LOCAL_POD = "compat-local-pod"


@attrs.frozen
class RuntimeView:
    """The registry's projection of one Runtime (or compat source).

    Attributes:
        runtime_id: The id the registry routes by.
        kind: The handle kind.
        status: ``"serving"``, ``"closing"``, ``"closed"``, ``"unavailable"``
            (a remote process that cannot be reached now) or ``"read-only"``
            (a compat source).
        authority: False for a compat source: it owns no Worker.
        version: The Runtime's package version, None if never reached.
        protocol_version: Its protocol version, None if never reached.
        capabilities: What it can do, as last seen (a remote handle caches
            it); None if never reached. A compat source reports every flag
            false and no engines.
        workers: Worker counts by status, as last seen.
        checked_at: When the status was observed (UTC).
        error: Why it is unavailable (a message without URL or token), or None.
        usage: Tokens in and out summed over all its Workers (for a compat
            source: over the Pods' active segments), filled in by
            :meth:`~yoi_workspace.RuntimeRegistry.describe`; None when not
            counted (listings) or the Runtime is down.
    """

    runtime_id: str
    kind: RuntimeKind
    status: str
    authority: bool
    version: str | None
    protocol_version: int | None
    capabilities: Capabilities | None
    workers: Mapping[str, int]
    checked_at: datetime.datetime
    error: str | None = None
    usage: Usage | None = None

    @classmethod
    def of(
        cls,
        runtime_id: str,
        kind: RuntimeKind,
        status: str,
        summary: RuntimeSummary | None,
        error: str | None = None,
    ) -> RuntimeView:
        """Project a Runtime's summary (None: never reached), observed now.

        Args:
            runtime_id: The id the registry routes by.
            kind: The handle kind (``authority`` follows from it).
            status: The status to report (the summary's, or
                ``"unavailable"``).
            summary: What the Runtime last reported, or None.
            error: Why it is unavailable, or None.
        """
        return cls(
            runtime_id=runtime_id,
            kind=kind,
            status=status,
            authority=kind is not RuntimeKind.COMPAT_LOCAL_POD,
            version=None if summary is None else summary.version,
            protocol_version=None if summary is None else summary.protocol_version,
            capabilities=None if summary is None else summary.capabilities,
            workers={} if summary is None else dict(summary.workers),
            checked_at=datetime.datetime.now(datetime.UTC),
            error=error,
        )


@attrs.frozen
class WorkerView:
    """The registry's projection of one Worker.

    The fields of :class:`yoi_runtime.WorkerSummary`, plus ``kind`` and
    ``stale``; ``status`` is a plain string so a compat Worker can report
    the old model's status.

    Attributes:
        runtime_id: The Runtime (or compat source) it belongs to.
        worker_id: Opaque and runtime-scoped; with ``runtime_id`` its identity.
        kind: The kind of the handle that reaches it; ``compat-local-pod``
            marks a Worker of the older model, read-only.
        display_name: A label for people; never authority.
        profile: ``"companion"``, ``"coder"``, ...
        status: ``idle``, ``running``, ``stopped`` or ``failed``.
        stale: True when a compat pod's process is gone (see diagnostics).
        created_at: When it was created (UTC), if known.
        engine: Its engine (name, kind, model), None for a compat Worker.
        tools: The tools it was granted.
        active_turn: The accepted or running turn, or None.
        last_turn: The most recent ended turn, or None.
        turns: Turns accepted in total (0 when unknown).
        usage: Tokens used by its turns.
        last_seq: Sequence number of its newest event (0 when it has none).
        error: Why it failed, or None.
        scopes: The exclusive scopes it claimed when created (held while it
            is live); empty for a compat Worker.
    """

    runtime_id: str
    worker_id: str
    kind: RuntimeKind
    display_name: str | None
    profile: str
    status: str
    stale: bool
    created_at: datetime.datetime | None
    engine: EngineInfo | None
    tools: tuple[str, ...]
    active_turn: TurnSummary | None
    last_turn: TurnSummary | None
    turns: int
    usage: Usage
    last_seq: int
    error: TurnError | None = None
    scopes: tuple[str, ...] = ()

    @classmethod
    def from_summary(cls, summary: WorkerSummary, kind: RuntimeKind) -> WorkerView:
        """Project a Runtime's :class:`~yoi_runtime.WorkerSummary`."""
        return cls(
            runtime_id=summary.runtime_id,
            worker_id=summary.worker_id,
            kind=kind,
            display_name=summary.display_name,
            profile=summary.profile,
            status=summary.status.value,
            stale=False,
            created_at=summary.created_at,
            engine=summary.engine,
            tools=summary.tools,
            active_turn=summary.active_turn,
            last_turn=summary.last_turn,
            turns=summary.turns,
            usage=summary.usage,
            last_seq=summary.last_seq,
            error=summary.error,
            scopes=summary.scopes,
        )


#: One page of a Worker listing from one handle (up to ``limit`` Workers,
#: oldest first; see :class:`yoi_runtime.Page`). JSON: ``{"workers": [...],
#: "next_cursor"}``.
WorkerViewPage: TypeAlias = Page[WorkerView]

register_page(WorkerViewPage, "WorkerViewPage", "workers", truncated=False)
