"""The Worker actor: one Trio task, one mailbox, one turn at a time.

State machine (also drawn in ``docs/lifecycle.md``)::

    Worker: idle --accept--> running --turn ends--> idle
            idle|running --stop--> stopped        (final)
            any --actor crash--> failed           (final)
    Turn:   accepted --actor picks it up--> running
            accepted|running --> completed | failed | cancelled   (final)
            accepted|running --process died, durable store--> interrupted

Commands are synchronous methods that run to completion without a checkpoint,
so admission is atomic: of many concurrent inputs to an idle Worker exactly
one is accepted and the rest get :class:`WorkerBusyError`. Only accepted turns
travel through the mailbox; cancel, stop and detail act on the Worker's state
directly, so they never wait behind a running turn.
"""

from __future__ import annotations

import datetime
import logging
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ._engines._base import (
    MESSAGE_OVERHEAD_TOKENS,
    Completion,
    Engine,
    EngineInfo,
    Message,
    Retry,
    TurnRequest,
    Usage,
)
from ._errors import (
    ContextLengthExceededError,
    EngineConfigError,
    EngineError,
    IdempotencyConflictError,
    WorkerBusyError,
    WorkerStoppedError,
)
from ._events import Event, EventLog, EventType, event_bytes
from ._store._records import StoredWorker, WorkerRecord
from ._transcript import Transcript, _Entry
from ._types import (
    Diagnostic,
    TurnError,
    TurnStatus,
    TurnSummary,
    WorkerStatus,
    WorkerSummary,
)

if TYPE_CHECKING:
    from ._store._journal import Journal

__all__ = ["Hub", "Limits", "Worker"]

_utc = datetime.UTC

# A library logs only where the program configured logging (the processes do,
# in _server/_logs.py); without that, nothing reaches stderr.
logging.getLogger("yoi_runtime").addHandler(logging.NullHandler())
#: Failed turns and engine retries (never the turn's normal path).
_turn_log = logging.getLogger("yoi_runtime.turns")
#: Every diagnostic, as it is recorded.
_diagnostic_log = logging.getLogger("yoi_runtime.diagnostics")

#: Diagnostic levels as logging levels.
_LOG_LEVELS = {"error": logging.ERROR, "warning": logging.WARNING}


_NO_USAGE = Usage()

#: The events after which a durable store rewrites the Worker's record (its
#: turn count, usage and idle/running status are rebuilt from its turns).
_LIFECYCLE = frozenset(
    {EventType.WORKER_CREATED, EventType.WORKER_STOPPED, EventType.WORKER_FAILED}
)


def _now() -> datetime.datetime:
    return datetime.datetime.now(_utc)


@attrs.frozen
class Limits:
    """Bounds a Runtime keeps (``docs/runtime.md``, "Bounds").

    Attributes:
        worker_event_retention: Events each Worker's log retains (at least,
            unless ``worker_event_bytes`` is reached first).
        runtime_event_retention: Events the Runtime-wide log retains.
        transcript_retention: Transcript entries each Worker retains.
        history_turns: Completed exchanges a Worker keeps as history for the
            model. Each turn sends the newest of them that fit the engine's
            context (see ``docs/runtime.md``, "Context budget").
        max_input_chars: The longest input accepted, in characters.
        max_workers: The most Workers one Runtime holds (stopped and failed
            ones count: they keep their logs and transcripts).
        max_display_name_chars: The longest display name, in characters.
        max_system_prompt_chars: The longest system prompt, in characters.
        worker_event_bytes: Memory each Worker's event log may keep, in bytes
            (estimated: its events' text plus 512 per event); older events
            become a ``Gap`` in memory (a durable store keeps them on disk).
        runtime_event_bytes: The same for the Runtime-wide log, in bytes.
        max_diagnostics: Diagnostics kept (the newest; older ones dropped).
    """

    worker_event_retention: int = 10_000
    runtime_event_retention: int = 100_000
    transcript_retention: int = 1_000
    history_turns: int = 20
    max_input_chars: int = 100_000
    max_workers: int = 1_000
    max_display_name_chars: int = 200
    max_system_prompt_chars: int = 100_000
    worker_event_bytes: int = 1 << 20
    runtime_event_bytes: int = 16 << 20
    max_diagnostics: int = 1_000


@attrs.define(eq=False)
class Hub:
    """What every Worker of one Runtime shares: ids, the Runtime-wide log,
    usage totals, diagnostics, the allocation registry and the journal.

    Attributes:
        journal: The group commit to the durable store, None in memory.
        allocations: The allocation registry: each exclusive scope a live
            Worker claimed, and that Worker's id.
    """

    runtime_id: str
    limits: Limits
    log: EventLog
    usage: Usage = Usage()
    diagnostics: list[Diagnostic] = attrs.field(factory=list)
    journal: Journal | None = None
    allocations: dict[str, str] = attrs.field(factory=dict)
    #: Per engine name, the FIFO limit on turns running at once.
    limiters: dict[str, trio.CapacityLimiter] = attrs.field(factory=dict)

    def limiter(self, name: str, engine: Engine) -> trio.CapacityLimiter | None:
        """Return the limit on ``engine``'s concurrent turns, None if none.

        One :class:`trio.CapacityLimiter` per engine name, made on first use
        from ``engine.max_concurrent``; it wakes waiting turns in FIFO order.
        """
        limiter = self.limiters.get(name)
        if limiter is None:
            if engine.max_concurrent is None:
                return None
            limiter = self.limiters[name] = trio.CapacityLimiter(engine.max_concurrent)
        return limiter

    def diagnose(
        self, level: str, code: str, message: str, worker_id: str | None = None
    ) -> None:
        self.diagnostics.append(Diagnostic(_now(), level, code, message, worker_id))
        _diagnostic_log.log(
            _LOG_LEVELS.get(level, logging.INFO),
            "diagnostic %s: %s%s",
            code,
            message,
            "" if worker_id is None else f" worker={worker_id}",
            extra={
                "code": code,
                "worker": worker_id,
                "runtime_id": self.runtime_id,
                "request_id": None,  # not the request whose task spawned it
            },
        )

    def claim(self, scope: str, worker_id: str) -> None:
        """Allocate ``scope`` to ``worker_id`` (the caller checked it is free)."""
        self.allocations[scope] = worker_id
        if self.journal is not None:
            self.journal.claim(scope, worker_id)

    def release(self, worker: Worker) -> None:
        """Free every scope ``worker`` holds."""
        for scope in worker.scopes:
            if self.allocations.get(scope) == worker.worker_id:
                del self.allocations[scope]
                if self.journal is not None:
                    self.journal.release(scope)


class MissingEngine:
    """Stands in for an engine a restarted Runtime no longer has: every turn
    fails with ``engine_config_error``."""

    context_tokens: int | None = None
    max_tokens: int | None = None
    max_concurrent: int | None = None

    def __init__(self, info: EngineInfo) -> None:
        self.kind = info.kind
        self.model = info.model
        self._name = info.name

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        await trio.lowlevel.checkpoint()
        return [0 for _ in texts]

    async def run_turn(self, request: TurnRequest, listener: object) -> Completion:
        await trio.lowlevel.checkpoint()
        raise EngineConfigError(
            f"engine {self._name!r} is not configured in this runtime any more"
        )

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


@attrs.define(eq=False)
class _Turn:
    turn_id: str
    input: str
    input_id: str | None
    accepted_at: datetime.datetime
    status: TurnStatus = TurnStatus.ACCEPTED
    started_at: datetime.datetime | None = None
    ended_at: datetime.datetime | None = None
    usage: Usage = Usage()
    error: TurnError | None = None
    reason: str | None = None
    finish_reason: str | None = None
    history_omitted: int = 0
    answer: _Entry | None = None
    # Made when needed: the scope when the turn starts, the event when
    # someone waits for the end.
    scope: trio.CancelScope | None = None
    cancel_requested: bool = False
    _done: trio.Event | None = None

    def request_cancel(self, reason: str | None) -> None:
        if self.status.is_final or self.cancel_requested:
            return
        self.cancel_requested = True
        self.reason = reason
        if self.scope is not None:
            self.scope.cancel()

    async def wait_done(self) -> None:
        if self.status.is_final:
            await trio.lowlevel.checkpoint()
            return
        if self._done is None:
            self._done = trio.Event()
        await self._done.wait()

    def set_done(self) -> None:
        if self._done is not None:
            self._done.set()

    @classmethod
    def restore(cls, summary: TurnSummary) -> _Turn:
        return cls(
            summary.turn_id,
            summary.input,
            summary.input_id,
            summary.accepted_at,
            summary.status,
            summary.started_at,
            summary.ended_at,
            summary.usage,
            summary.error,
            summary.reason,
            summary.finish_reason,
            summary.history_omitted,
        )

    def summary(self, worker_id: str) -> TurnSummary:
        return TurnSummary(
            turn_id=self.turn_id,
            worker_id=worker_id,
            status=self.status,
            input=self.input,
            accepted_at=self.accepted_at,
            started_at=self.started_at,
            ended_at=self.ended_at,
            usage=self.usage,
            error=self.error,
            reason=self.reason,
            input_id=self.input_id,
            finish_reason=self.finish_reason,
            truncated=self.finish_reason == "length",
            history_omitted=self.history_omitted,
        )


@attrs.define(eq=False)
class Worker:
    """One Worker: its state, its mailbox and its actor task body.

    The Runtime creates Workers, starts :meth:`run` in its nursery, and calls
    the command methods; nothing else should touch a Worker directly.
    """

    hub: Hub
    worker_id: str
    ordinal: int
    profile: str
    system_prompt: str | None
    display_name: str | None
    engine_name: str
    engine: Engine
    tools: tuple[str, ...]
    scopes: tuple[str, ...] = ()
    created_at: datetime.datetime = attrs.field(factory=_now)
    status: WorkerStatus = WorkerStatus.IDLE
    error: TurnError | None = None
    turns: int = 0
    usage: Usage = Usage()
    engine_info: EngineInfo = attrs.field(init=False)
    _log: EventLog = attrs.field(init=False)
    _mailbox_send: trio.MemorySendChannel[_Turn] = attrs.field(init=False)
    _mailbox: trio.MemoryReceiveChannel[_Turn] = attrs.field(init=False)
    _active: _Turn | None = None
    _last: _Turn | None = None
    _transcript: Transcript | None = None
    _history: list[Message] | None = None
    _stop_reason: str | None = None
    _closing: bool = False
    _finished: bool = False
    _ended: trio.Event | None = None
    #: Turns by their caller-supplied ``input_id`` (idempotent input).
    _inputs: dict[str, _Turn] | None = None

    def __attrs_post_init__(self) -> None:
        self.engine_info = EngineInfo(
            self.engine_name, self.engine.kind, self.engine.model
        )
        self._log = EventLog(self.hub.limits.worker_event_retention)
        # One slot: admission guarantees at most one accepted turn in flight.
        # (Not open_memory_channel[_Turn]: the generic alias costs per call.)
        mailbox: tuple[
            trio.MemorySendChannel[_Turn], trio.MemoryReceiveChannel[_Turn]
        ] = trio.open_memory_channel(1)
        self._mailbox_send, self._mailbox = mailbox

    def announce(self) -> None:
        """Emit ``worker.created`` (once, for a new Worker)."""
        self._emit(
            EventType.WORKER_CREATED,
            {
                "display_name": self.display_name,
                "profile": self.profile,
                "engine": self.engine_name,
                "status": self.status.value,
            },
            self.created_at,
        )

    @classmethod
    def restore(cls, hub: Hub, stored: StoredWorker, engine: Engine) -> Worker:
        """Rebuild a Worker from its stored record, log, turns and transcript.

        A turn that was accepted or running when the process died becomes
        ``interrupted`` (with a ``turn.interrupted`` event, its transcript
        entries marked so) and the Worker is ``idle`` again. Call
        :meth:`run` afterwards unless the Worker is stopped or failed.
        """
        record = stored.record
        live = record.status not in (WorkerStatus.STOPPED, WorkerStatus.FAILED)
        worker = cls(
            hub,
            record.worker_id,
            record.ordinal,
            record.profile,
            record.system_prompt,
            record.display_name,
            record.engine.name,
            engine,
            record.tools,
            record.scopes,
            record.created_at,
            # Idle or running is not stored: a turn left active says running.
            WorkerStatus.IDLE if live else record.status,
            record.error,
            stored.turns,
            stored.usage,
        )
        worker.engine_info = record.engine
        worker._stop_reason = record.stop_reason
        retention = hub.limits.worker_event_retention
        first = stored.last_seq - len(stored.events) + 1
        worker._log = EventLog(retention, first=first, events=stored.events)
        limits = hub.limits
        transcript = Transcript(limits.transcript_retention)
        entries = transcript.restore(stored.transcript, stored.transcript_last)
        worker._transcript = transcript
        history: list[Message] = []
        for turn_summary in stored.recent_turns:
            turn = _Turn.restore(turn_summary)
            if turn.input_id is not None:
                worker._inputs = worker._inputs or {}
                worker._inputs[turn.input_id] = turn
            if not turn.status.is_final:
                if live:
                    worker.status = WorkerStatus.RUNNING
                worker._interrupt(turn, entries)
            worker._last = turn
        for user, answer in zip(entries, entries[1:], strict=False):
            if (
                user.kind == "user"
                and answer.kind == "assistant"
                and answer.turn_id == user.turn_id
                and answer.status is TurnStatus.COMPLETED
            ):
                history += (
                    Message("user", "".join(user.parts)),
                    Message("assistant", "".join(answer.parts)),
                )
        worker._history = history[-2 * limits.history_turns :] or None
        if worker.status in (WorkerStatus.STOPPED, WorkerStatus.FAILED):
            worker._mailbox_send.close()
            worker._log.close()
            worker._finished = True
        return worker

    def _interrupt(self, turn: _Turn, entries: list[_Entry]) -> None:
        now = _now()
        turn.status = TurnStatus.INTERRUPTED
        turn.ended_at = now
        turn.reason = "process_exited"
        self._emit(
            EventType.TURN_INTERRUPTED,
            {"turn_id": turn.turn_id, "reason": turn.reason},
            now,
            turn,
        )
        journal = self.hub.journal
        for entry in entries:
            if entry.turn_id == turn.turn_id:
                entry.status = TurnStatus.INTERRUPTED
                if journal is not None:
                    journal.note_entry(self.worker_id, entry)
        if self.status is WorkerStatus.RUNNING:
            self._set_status(WorkerStatus.IDLE, now)

    def record(self) -> WorkerRecord:
        """Return what a durable store keeps of this Worker."""
        return WorkerRecord(
            worker_id=self.worker_id,
            ordinal=self.ordinal,
            profile=self.profile,
            display_name=self.display_name,
            system_prompt=self.system_prompt,
            engine=self.engine_info,
            tools=self.tools,
            scopes=self.scopes,
            created_at=self.created_at,
            status=self.status,
            error=self.error,
            stop_reason=self._stop_reason,
        )

    # -- events ---------------------------------------------------------------

    @property
    def log(self) -> EventLog:
        return self._log

    def _emit(
        self,
        type: EventType,
        data: dict[str, Any],
        at: datetime.datetime,
        turn: _Turn | None = None,
        entry: _Entry | None = None,
    ) -> None:
        """Number an event and publish it, now (memory) or on commit (the
        journal, told which turn and transcript entry changed with it)."""
        log, hub = self._log, self.hub
        hub_log = hub.log
        seq = log.next_position
        log.next_position = seq + 1
        cursor = hub_log.next_position
        hub_log.next_position = cursor + 1
        event = Event(seq, cursor, type, hub.runtime_id, self.worker_id, at, data)
        journal = hub.journal
        if journal is None:
            size = event_bytes(event)
            log.append(event, size)
            hub_log.append(event, size)
        else:
            worker = self if type in _LIFECYCLE else None
            journal.note(event, log, worker, turn, entry)

    def _set_status(self, status: WorkerStatus, at: datetime.datetime) -> None:
        previous, self.status = self.status, status
        self._emit(
            EventType.WORKER_STATUS,
            {"status": status.value, "previous": previous.value},
            at,
        )

    @property
    def transcript(self) -> Transcript:
        if self._transcript is None:
            self._transcript = Transcript(self.hub.limits.transcript_retention)
        return self._transcript

    # -- commands (synchronous: each runs without a checkpoint) ---------------

    def accept_input(self, text: str, input_id: str | None) -> TurnSummary:
        """Admit one input as a new turn, or refuse it at once.

        An ``input_id`` seen before returns that turn's summary instead,
        whatever the Worker is doing now.

        Raises:
            IdempotencyConflictError: ``input_id`` was used with other text.
            WorkerStoppedError: The Worker is stopped or failed.
            WorkerBusyError: A turn is accepted or running.
        """
        if input_id is not None and self._inputs is not None:
            original = self._inputs.get(input_id)
            if original is not None:
                if original.input != text:
                    raise IdempotencyConflictError(
                        f"input_id {input_id!r} of worker {self.worker_id} was "
                        "used with other text",
                        worker_id=self.worker_id,
                        input_id=input_id,
                    )
                return original.summary(self.worker_id)
        self.check_live()
        active = self._active
        if active is not None:
            raise WorkerBusyError(
                f"worker {self.worker_id} is busy with turn {active.turn_id}",
                worker_id=self.worker_id,
                turn_id=active.turn_id,
                started_at=active.accepted_at,
            )
        self.turns += 1
        now = _now()
        turn = _Turn(f"t-{self.turns}", text, input_id, now)
        self._active = turn
        if input_id is not None:
            if self._inputs is None:
                self._inputs = {}
            self._inputs[input_id] = turn
        entry = self.transcript.add(
            "user", turn.turn_id, text, TurnStatus.ACCEPTED, now
        )
        self._emit(
            EventType.TURN_ACCEPTED,
            {"turn_id": turn.turn_id, "input": text, "input_id": input_id},
            now,
            turn,
            entry,
        )
        self._set_status(WorkerStatus.RUNNING, now)
        self._mailbox_send.send_nowait(turn)
        return turn.summary(self.worker_id)

    def check_live(self) -> None:
        """Raise :class:`WorkerStoppedError` unless the Worker takes input."""
        if self.status in (WorkerStatus.STOPPED, WorkerStatus.FAILED):
            raise WorkerStoppedError(
                f"worker {self.worker_id} is {self.status.value}",
                worker_id=self.worker_id,
                status=self.status.value,
            )

    def find_turn(self, turn_id: str | None) -> _Turn | None:
        """Return the active turn, or the last one if ``turn_id`` names it."""
        if turn_id is None or (self._active and self._active.turn_id == turn_id):
            return self._active
        if self._last is not None and self._last.turn_id == turn_id:
            return self._last
        return None

    def cancel(self, turn: _Turn, reason: str | None) -> None:
        """Ask the actor to end ``turn``; it records the outcome."""
        turn.request_cancel(reason)

    def stop(self, reason: str | None) -> None:
        """Refuse new input, cancel the active turn, and end the actor.

        Idempotent; the actor records ``worker.stopped`` once it has wound down.
        """
        if self.status in (WorkerStatus.STOPPED, WorkerStatus.FAILED):
            return
        self._stop_reason = reason
        self.status = WorkerStatus.STOPPED
        self._end_actor(reason)

    def close(self, reason: str) -> None:
        """End the actor for a closing durable Runtime: cancel the active
        turn but keep the Worker's status, so it comes back after a restart.
        """
        if self.status in (WorkerStatus.STOPPED, WorkerStatus.FAILED):
            return
        self._closing = True
        self._end_actor(reason)

    def _end_actor(self, reason: str | None) -> None:
        if self._active is not None:
            self.cancel(self._active, reason)
        self._mailbox_send.close()

    async def wait_ended(self) -> None:
        """Block until the actor has ended (stopped or failed)."""
        if self._finished:
            await trio.lowlevel.checkpoint()
            return
        if self._ended is None:
            self._ended = trio.Event()
        await self._ended.wait()

    # -- observation ----------------------------------------------------------

    def summary(self) -> WorkerSummary:
        active, last = self._active, self._last
        return WorkerSummary(
            worker_id=self.worker_id,
            runtime_id=self.hub.runtime_id,
            display_name=self.display_name,
            profile=self.profile,
            engine=self.engine_info,
            tools=self.tools,
            status=self.status,
            created_at=self.created_at,
            active_turn=None if active is None else active.summary(self.worker_id),
            last_turn=None if last is None else last.summary(self.worker_id),
            turns=self.turns,
            usage=self.usage,
            last_seq=self._log.last,
            error=self.error,
            scopes=self.scopes,
        )

    # -- the actor ------------------------------------------------------------

    async def run(self) -> None:
        """The actor task: run accepted turns one by one until stopped.

        Never raises an :class:`Exception`: a bug in here marks this Worker
        ``failed`` with a diagnostic and leaves every other Worker running.
        """
        try:
            async for turn in self._mailbox:
                await self._run_turn(turn)
        except Exception as exc:
            self._crash(exc)
        finally:
            # Also reached when the Runtime's nursery is cancelled.
            if self._closing and self.status is not WorkerStatus.FAILED:
                pass  # a durable Runtime closing: the Worker lives on
            elif self.status is not WorkerStatus.FAILED:
                self.stop(self._stop_reason or "shutdown")
                self._emit(
                    EventType.WORKER_STOPPED, {"reason": self._stop_reason}, _now()
                )
            if self.status in (WorkerStatus.STOPPED, WorkerStatus.FAILED):
                self.hub.release(self)
            if self.hub.journal is None:
                self._log.close()
            else:
                self.hub.journal.note_close(self._log)
            self._finished = True
            if self._ended is not None:
                self._ended.set()

    async def _run_turn(self, turn: _Turn) -> None:
        if turn.cancel_requested:  # cancelled before it started
            self._end_turn(turn, TurnStatus.CANCELLED)
            return
        engine = self.engine
        limiter = self.hub.limiter(self.engine_name, engine)
        details: dict[str, Any] | None = None
        try:
            with trio.CancelScope() as scope:
                turn.scope = scope
                try:
                    if limiter is not None:
                        # FIFO: the turn stays accepted until a slot frees.
                        await limiter.acquire_on_behalf_of(turn)
                    try:
                        history: list[Message] = self._history or []
                        fits = True
                        if engine.context_tokens is not None:
                            history, fits = await self._fit_history(turn, history)
                        request = self._start(turn, history, fits)
                        completion = await engine.run_turn(
                            request, _Listener(self, turn)
                        )
                    finally:
                        if limiter is not None:
                            limiter.release_on_behalf_of(turn)
                except EngineError as exc:
                    error = TurnError(exc.code, exc.message)
                    details = exc.details()
                    if (
                        isinstance(exc, ContextLengthExceededError)
                        and exc.status_code is not None
                    ):
                        # The server counted more tokens than the budget did.
                        self._shrink_history()
                except Exception as exc:
                    error = TurnError("engine_crashed", f"{type(exc).__name__}: {exc}")
                else:
                    self._end_turn(
                        turn,
                        TurnStatus.COMPLETED,
                        usage=completion.usage,
                        finish_reason=completion.finish_reason,
                    )
                    return
                self._end_turn(turn, TurnStatus.FAILED, error=error, details=details)
                return
            self._end_turn(turn, TurnStatus.CANCELLED)
        except BaseException:
            # Cancelled from outside (the Runtime is closing): still record it.
            if not turn.status.is_final:
                self._end_turn(turn, TurnStatus.CANCELLED)
            raise

    def _start(self, turn: _Turn, history: list[Message], fits: bool) -> TurnRequest:
        """Mark ``turn`` running (it holds an engine slot) and return what
        the engine gets, with ``history`` (what fits the context).

        Raises:
            ContextLengthExceededError: ``fits`` is false: the input alone
                does not fit.
        """
        turn.status = TurnStatus.RUNNING
        turn.started_at = now = _now()
        self._emit(
            EventType.TURN_STARTED,
            {"turn_id": turn.turn_id, "history_omitted": turn.history_omitted},
            now,
        )
        if not fits:
            engine = self.engine
            raise ContextLengthExceededError(
                f"the input does not fit the {engine.context_tokens}-token "
                "context of the engine"
                + ("" if engine.max_tokens is None else " with its max_tokens")
            )
        return TurnRequest(
            self.worker_id, turn.turn_id, self.system_prompt, tuple(history), turn.input
        )

    async def _fit_history(
        self, turn: _Turn, history: list[Message]
    ) -> tuple[list[Message], bool]:
        """Keep the newest whole exchanges that fit the engine's context.

        The prompt may use ``context_tokens`` minus the answer's reserve
        (``max_tokens``, or a quarter of the context up to 1,024 tokens when
        unset). Sets ``turn.history_omitted``.

        Returns:
            The history to send, and whether the system prompt and the input
            fit at all.
        """
        engine = self.engine
        context = engine.context_tokens
        assert context is not None
        reserve = engine.max_tokens
        if reserve is None:
            reserve = min(context // 4, 1024)
        budget = context - reserve
        head = (
            [turn.input]
            if self.system_prompt is None
            else [
                turn.input,
                self.system_prompt,
            ]
        )
        counts = await engine.count_tokens(head + [m.content for m in history])
        overhead = MESSAGE_OVERHEAD_TOKENS
        used = sum(counts[: len(head)]) + overhead * len(head)
        if used > budget:
            turn.history_omitted = len(history) // 2
            return [], False
        kept = len(history)
        # Whole exchanges (user, assistant), newest first.
        for start in range(len(history) - 2, -1, -2):
            pair = counts[len(head) + start] + counts[len(head) + start + 1]
            if used + pair + 2 * overhead > budget:
                break
            used += pair + 2 * overhead
            kept = start
        else:
            kept = 0
        turn.history_omitted = kept // 2
        return history[kept:], True

    def _shrink_history(self) -> None:
        """The model server found the prompt too long (its tokens counted
        more than the budget thought): drop the older half of the history."""
        history = self._history
        if history:
            del history[: (len(history) // 4) * 2 or len(history)]

    def _on_text(self, turn: _Turn, text: str) -> None:
        if not text:
            return
        now = _now()
        answer = turn.answer
        if answer is None:
            answer = turn.answer = self.transcript.add(
                "assistant", turn.turn_id, text, TurnStatus.RUNNING, now
            )
        else:
            answer.parts.append(text)
        self._emit(
            EventType.TURN_TEXT_DELTA,
            {"turn_id": turn.turn_id, "text": text},
            now,
            None,
            answer,
        )

    def _end_turn(
        self,
        turn: _Turn,
        status: TurnStatus,
        *,
        usage: Usage = _NO_USAGE,
        error: TurnError | None = None,
        details: dict[str, Any] | None = None,
        finish_reason: str | None = None,
    ) -> None:
        turn.status = status
        turn.ended_at = now = _now()
        turn.usage = usage
        turn.error = error
        turn.finish_reason = finish_reason
        if usage.input_tokens or usage.output_tokens:
            self.usage += usage
            self.hub.usage += usage
        turn_id = turn.turn_id
        if turn.answer is not None:
            turn.answer.status = status
            turn.answer.finish_reason = finish_reason
        if status is TurnStatus.COMPLETED:
            data: dict[str, Any] = {
                "turn_id": turn_id,
                "usage": {
                    "input_tokens": usage.input_tokens,
                    "output_tokens": usage.output_tokens,
                },
                "finish_reason": finish_reason,
                "truncated": finish_reason == "length",
            }
            self._emit(EventType.TURN_COMPLETED, data, now, turn, turn.answer)
            self._remember(turn)
        elif status is TurnStatus.FAILED:
            assert error is not None
            data = {
                "turn_id": turn_id,
                "error": {"code": error.code, "message": error.message},
            }
            if details:
                data["error"].update(details)
            entry = self.transcript.add("error", turn_id, error.message, status, now)
            self._emit(EventType.TURN_FAILED, data, now, turn, entry)
            self._log_failed(turn_id, error.code)
            if turn.answer is not None and self.hub.journal is not None:
                self.hub.journal.note_entry(self.worker_id, turn.answer)
        else:
            if turn.reason is None and self._stop_reason is not None:
                turn.reason = self._stop_reason
            self._emit(
                EventType.TURN_CANCELLED,
                {"turn_id": turn_id, "reason": turn.reason},
                now,
                turn,
                turn.answer,
            )
        self._active = None
        self._last = turn
        if self.status is WorkerStatus.RUNNING:
            self._set_status(WorkerStatus.IDLE, now)
        turn.set_done()

    def _remember(self, turn: _Turn) -> None:
        """Add a completed exchange to the history sent to the model."""
        if self._history is None:
            self._history = []
        answer = "" if turn.answer is None else "".join(turn.answer.parts)
        self._history += (Message("user", turn.input), Message("assistant", answer))
        excess = len(self._history) - 2 * self.hub.limits.history_turns
        if excess > 0:
            del self._history[:excess]

    def _log_failed(self, turn_id: str, code: str) -> None:
        _turn_log.warning(
            "turn failed: worker=%s turn=%s code=%s",
            self.worker_id,
            turn_id,
            code,
            extra={
                "worker": self.worker_id,
                "turn": turn_id,
                "code": code,
                "request_id": None,  # not the request whose task spawned it
            },
        )

    def on_retry(self, turn: _Turn, retry: Retry) -> None:
        """Publish ``turn.retrying`` before the engine waits to retry."""
        error = retry.error
        if isinstance(error, EngineError):
            info: dict[str, Any] = {"code": error.code, "message": error.message}
            info.update(error.details())
        else:
            info = {"code": "engine_error", "message": str(error)}
        _turn_log.warning(
            "engine retry: worker=%s turn=%s engine=%s attempt=%d delay=%.2fs code=%s",
            self.worker_id,
            turn.turn_id,
            self.engine_name,
            retry.attempt,
            retry.delay,
            info["code"],
            extra={
                "worker": self.worker_id,
                "turn": turn.turn_id,
                "engine": self.engine_name,
                "attempt": retry.attempt,
                "delay": retry.delay,
                "code": info["code"],
                "request_id": None,
            },
        )
        self._emit(
            EventType.TURN_RETRYING,
            {
                "turn_id": turn.turn_id,
                "attempt": retry.attempt,
                "delay": retry.delay,
                "error": info,
            },
            _now(),
        )

    def _crash(self, exc: Exception) -> None:
        """The actor itself broke: mark the Worker failed, never propagate."""
        summary = "".join(traceback.format_exception_only(exc)).strip()
        self.error = TurnError("worker_crashed", summary)
        self.status = WorkerStatus.FAILED
        self._mailbox_send.close()
        self.hub.diagnose(
            "error",
            "worker_crashed",
            f"worker actor crashed: {summary}",
            self.worker_id,
        )
        turn = self._active
        if turn is not None:
            turn.status = TurnStatus.FAILED
            turn.error = self.error
            turn.ended_at = now = _now()
            self._active, self._last = None, turn
            self._emit(
                EventType.TURN_FAILED,
                {
                    "turn_id": turn.turn_id,
                    "error": {"code": "worker_crashed", "message": summary},
                },
                now,
                turn,
            )
            self._log_failed(turn.turn_id, "worker_crashed")
            turn.set_done()
        self._emit(
            EventType.WORKER_FAILED,
            {"error": {"code": "worker_crashed", "message": summary}},
            _now(),
        )


class _Listener:
    """What the engine reports a turn's progress to (a ``TurnListener``)."""

    __slots__ = ("_turn", "_worker")

    def __init__(self, worker: Worker, turn: _Turn) -> None:
        self._worker = worker
        self._turn = turn

    def on_text(self, text: str) -> None:
        self._worker._on_text(self._turn, text)

    def on_retry(self, retry: Retry) -> None:
        self._worker.on_retry(self._turn, retry)
