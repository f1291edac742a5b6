"""Frozen value types a Runtime hands out: summaries, pages, outcomes.

These are snapshots: holding one never keeps a Worker alive and never changes
under you. None of them carries a file path, socket, URL or secret.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping
from typing import Generic, TypeAlias, TypeVar

import attrs

from ._engines._base import EngineInfo, Usage

__all__ = [
    "CancelOutcome",
    "CancelResult",
    "Capabilities",
    "Diagnostic",
    "Page",
    "RuntimeSummary",
    "TranscriptEntry",
    "TranscriptPage",
    "TurnError",
    "TurnStatus",
    "TurnSummary",
    "WorkerPage",
    "WorkerStatus",
    "WorkerSummary",
]


class WorkerStatus(enum.StrEnum):
    """Where a Worker is in its life (see ``docs/lifecycle.md``).

    ``idle`` -> ``running`` when input is accepted, back to ``idle`` when the
    turn ends however it ends; ``stopped`` after stop (final); ``failed`` when
    the Worker's actor itself crashed (final).
    """

    IDLE = "idle"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"


class TurnStatus(enum.StrEnum):
    """Where a turn is: ``accepted`` -> ``running`` -> one final status.

    ``interrupted`` is the final status of a turn that was accepted or running
    when the process running it died; a Runtime on a durable store records it
    when it starts again.
    """

    ACCEPTED = "accepted"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def is_final(self) -> bool:
        """Whether the turn has ended (completed, failed or cancelled)."""
        return self not in (TurnStatus.ACCEPTED, TurnStatus.RUNNING)


class CancelOutcome(enum.StrEnum):
    """What a cancel did."""

    CANCELLED = "cancelled"
    NO_ACTIVE_TURN = "no_active_turn"
    ALREADY_COMPLETED = "already_completed"


@attrs.frozen
class TurnError:
    """Why a turn failed.

    Attributes:
        code: The stable error code (``"engine_http_error"``, ...).
        message: A human-readable description; never holds a secret.
    """

    code: str
    message: str


@attrs.frozen
class TurnSummary:
    """A snapshot of one turn.

    Attributes:
        turn_id: Runtime-generated id, unique within the Worker.
        worker_id: The Worker the turn belongs to.
        status: The turn's status at the time of the snapshot.
        input: The user input of the turn.
        accepted_at: When the input was accepted (UTC).
        started_at: When the engine started (UTC), or None if not yet.
        ended_at: When the turn reached a final status (UTC), or None.
        usage: Tokens used, as the engine reported them (zeros until the end).
        error: Why it failed, when ``status`` is ``failed``.
        reason: The reason given to cancel or stop, when ``cancelled``.
        input_id: The caller's idempotency key for the input, or None.
        finish_reason: Why the model stopped, exactly as the model server
            said (``"stop"``, ``"length"``, ``"content_filter"``, ...), when
            ``completed``; None otherwise (a stream that ended without one
            fails the turn with ``engine_stream_incomplete``).
        truncated: True when the answer was cut by the token limit
            (``finish_reason == "length"``).
        history_omitted: Earlier completed turns left out of the prompt so it
            fit the engine's context (0 when the whole history was sent).
    """

    turn_id: str
    worker_id: str
    status: TurnStatus
    input: str
    accepted_at: datetime.datetime
    started_at: datetime.datetime | None = None
    ended_at: datetime.datetime | None = None
    usage: Usage = Usage()
    error: TurnError | None = None
    reason: str | None = None
    input_id: str | None = None
    finish_reason: str | None = None
    truncated: bool = False
    history_omitted: int = 0


@attrs.frozen
class WorkerSummary:
    """A snapshot of one Worker (what list and detail return).

    Attributes:
        worker_id: Opaque, runtime-scoped id; with ``runtime_id`` it is the
            Worker's identity. The display name is never authority.
        runtime_id: The Runtime that runs the Worker.
        display_name: A label for people, or None.
        profile: The profile the Worker was created with (``"companion"``).
        engine: The engine the Worker's turns run on (name, kind, model).
        tools: The tools granted to the Worker; empty for a Companion.
        status: The Worker's status at the time of the snapshot.
        created_at: When the Worker was created (UTC).
        active_turn: The accepted or running turn, or None.
        last_turn: The most recent ended turn, or None.
        turns: How many turns were accepted in total.
        usage: Tokens used by all its turns.
        last_seq: The sequence number of the Worker's latest event.
        error: Why the actor failed, when ``status`` is ``failed``.
        scopes: The exclusive scopes the Worker claimed at creation (held
            while it is live, released when it stops or fails).
    """

    worker_id: str
    runtime_id: str
    display_name: str | None
    profile: str
    engine: EngineInfo
    tools: tuple[str, ...]
    status: WorkerStatus
    created_at: datetime.datetime
    active_turn: TurnSummary | None
    last_turn: TurnSummary | None
    turns: int
    usage: Usage
    last_seq: int
    error: TurnError | None = None
    scopes: tuple[str, ...] = ()


@attrs.frozen
class CancelResult:
    """What a cancel did.

    Attributes:
        outcome: ``cancelled``, ``no_active_turn``, or ``already_completed``
            when the turn had ended (completed or failed) before the cancel.
        worker_id: The Worker addressed.
        turn_id: The turn concerned, or None for ``no_active_turn``.
    """

    outcome: CancelOutcome
    worker_id: str
    turn_id: str | None = None


@attrs.frozen
class TranscriptEntry:
    """One entry of a transcript: a projection of a Worker's events.

    Attributes:
        index: Position in the Worker's transcript, 1, 2, 3, ... (gap-free).
        kind: ``"user"`` (an input), ``"assistant"`` (streamed text) or
            ``"error"`` (a failed turn).
        turn_id: The turn the entry belongs to.
        text: The text; for an assistant entry, all text streamed so far.
        status: The turn's status when the entry last changed. An assistant
            entry of a ``failed`` turn holds the partial text the model sent
            before it broke off (incomplete: ``finish_reason`` is None).
        at: When the entry was created (UTC).
        finish_reason: For the assistant entry of a ``completed`` turn, why
            the model stopped (as in :attr:`TurnSummary.finish_reason`).
        truncated: True when that answer was cut by the token limit.
    """

    index: int
    kind: str
    turn_id: str
    text: str
    status: TurnStatus
    at: datetime.datetime
    finish_reason: str | None = None
    truncated: bool = False


#: The type of the items of a :class:`Page`.
T = TypeVar("T")


@attrs.frozen
class Page(Generic[T]):
    """One page of a listing: Workers, transcript entries, ...

    Every paged call returns one (:meth:`RuntimeAPI.list_workers` a
    :data:`WorkerPage`, :meth:`RuntimeAPI.transcript` a
    :data:`TranscriptPage`); read on by passing ``next_cursor`` back as the
    call's ``cursor`` until it is None.

    A page does not know its item type at run time, so its JSON form is
    that of its alias (``converter.unstructure(page,
    unstructure_as=WorkerPage)``): the items go under ``"workers"`` or
    ``"entries"`` as in ``docs/protocol.md``.

    Attributes:
        items: Up to ``limit`` items, oldest first (Workers in creation
            order, transcript entries by index).
        next_cursor: An opaque string to pass as ``cursor`` for the next
            page; None on the last page (nothing follows yet).
        truncated: True when older items were dropped by retention, so the
            listing no longer starts at its first item (a transcript that
            no longer starts at index 1). Always False for Workers.
    """

    items: tuple[T, ...]
    next_cursor: str | None
    truncated: bool = False


@attrs.frozen
class Capabilities:
    """What a Runtime can do, as data a backend can plan with.

    Attributes:
        placement: ``"embedded"`` (inside a backend process) or ``"process"``
            (a standalone ``yoi-runtime`` process, possibly on another host).
        can_start_processes: Whether Workers may start local processes.
        filesystem: Whether Workers get filesystem tools.
        shell: Whether Workers get a shell.
        git: Whether Workers get git operations.
        worktree: Whether Workers get their own git worktree.
        engines: The engines Workers may be created on.
        profiles: The profile names this Runtime accepts.
        tools: Every tool this Runtime can grant; empty for Companion-only.
    """

    placement: str
    can_start_processes: bool
    filesystem: bool
    shell: bool
    git: bool
    worktree: bool
    engines: tuple[EngineInfo, ...]
    profiles: tuple[str, ...]
    tools: tuple[str, ...]


@attrs.frozen
class Diagnostic:
    """Something the Runtime noticed that a person may need to know.

    Attributes:
        at: When it was recorded (UTC).
        level: ``"warning"`` or ``"error"``.
        code: A stable code (``"worker_crashed"``, ...).
        message: What happened.
        worker_id: The Worker concerned, or None.
    """

    at: datetime.datetime
    level: str
    code: str
    message: str
    worker_id: str | None = None


@attrs.frozen
class RuntimeSummary:
    """A snapshot of a Runtime.

    Attributes:
        runtime_id: The Runtime's id.
        version: The ``yoi-runtime`` package version.
        protocol_version: The event/wire protocol version (an integer).
        status: ``"serving"``, ``"closing"`` or ``"closed"``.
        started_at: When the Runtime was opened (UTC).
        workers: Worker counts by status; every status is present.
        usage: Tokens used by every turn of every Worker.
        capabilities: What the Runtime can do.
        last_cursor: Cursor of the newest event on the runtime-wide stream.
    """

    runtime_id: str
    version: str
    protocol_version: int
    status: str
    started_at: datetime.datetime
    workers: Mapping[str, int]
    usage: Usage
    capabilities: Capabilities
    last_cursor: int


#: A page of Workers (:meth:`RuntimeAPI.list_workers`). JSON:
#: ``{"workers": [...], "next_cursor"}``.
WorkerPage: TypeAlias = Page[WorkerSummary]

#: A page of a transcript (:meth:`RuntimeAPI.transcript`). JSON:
#: ``{"entries": [...], "next_cursor", "truncated"}``.
TranscriptPage: TypeAlias = Page[TranscriptEntry]
