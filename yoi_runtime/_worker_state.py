"""A Worker's state, its events and its synchronous commands (the actor's
task body is in :mod:`._worker`).

Commands run to completion without a checkpoint, so admission is atomic
(see :mod:`._worker` for the state machine).
"""

from __future__ import annotations

import datetime
from collections.abc import Coroutine
from typing import Any

import attrs
import trio

from ._engines._base import (
    Engine,
    EngineInfo,
    Message,
    Usage,
)
from ._errors import (
    IdempotencyConflictError,
    WorkerBusyError,
    WorkerStoppedError,
)
from ._event_data import (
    EventData,
    TurnAcceptedData,
    TurnInterruptedData,
    WorkerCreatedData,
    WorkerStatusData,
)
from ._events import EventLog, EventType, new_event
from ._hub import Hub, now
from ._store._records import WorkerRecord
from ._transcript import Transcript, _Entry
from ._turn import Turn
from ._types import (
    TurnError,
    TurnStatus,
    TurnSummary,
    WorkerStatus,
    WorkerSummary,
)

__all__ = ["WorkerState"]

#: The events after which a durable store rewrites the Worker's record (its
#: turn count, usage and idle/running status are rebuilt from its turns).
_LIFECYCLE = frozenset(
    {EventType.WORKER_CREATED, EventType.WORKER_STOPPED, EventType.WORKER_FAILED}
)
_now = now

# Enum members read on every turn, bound once: on CPython 3.11 each read of
# an attribute of an enum class goes through ``EnumType.__getattr__``'s slow
# hook (~0.1 us; a dozen a turn).
_ACCEPTED = TurnStatus.ACCEPTED
_RUNNING = WorkerStatus.RUNNING
_ENDED = (WorkerStatus.STOPPED, WorkerStatus.FAILED)
_TURN_ACCEPTED = EventType.TURN_ACCEPTED
_WORKER_STATUS = EventType.WORKER_STATUS

#: The payload of every ``worker.status`` event, by (status, previous): the
#: payloads are frozen, so the events share them (no new object to build
#: and for the garbage collector to track, twice a turn).
_STATUS_DATA = {
    (status, previous): WorkerStatusData(status, previous)
    for status in WorkerStatus
    for previous in WorkerStatus
}


@attrs.define(eq=False)
class WorkerState:
    """One Worker's state, mailbox and commands; :class:`._worker.Worker`
    adds the actor that runs its turns."""

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
    # The mailbox: one slot (admission guarantees at most one accepted turn
    # in flight), the actor task parked on it, and whether it is closed.
    _next: Turn | None = None
    _waiter: trio.lowlevel.Task | None = None
    _mail_closed: bool = False
    _active: Turn | None = None
    _last: Turn | None = None
    _transcript: Transcript | None = None
    _history: list[Message] | None = None
    _stop_reason: str | None = None
    _closing: bool = False
    _finished: bool = False
    _ended: trio.Event | None = None
    #: The newest ``Limits.input_id_retention`` turns that had a
    #: caller-supplied ``input_id``, by it (idempotent input), oldest first.
    _inputs: dict[str, Turn] | None = None

    def __attrs_post_init__(self) -> None:
        self.engine_info = self.hub.engine_info(self.engine_name, self.engine)
        self._log = EventLog(self.hub.limits.worker_event_retention)

    def announce(self) -> None:
        """Emit ``worker.created`` (once, for a new Worker)."""
        self._emit(
            EventType.WORKER_CREATED,
            WorkerCreatedData(
                self.display_name, self.profile, self.engine_name, self.status
            ),
            self.created_at,
        )

    def resume(
        self,
        stop_reason: str | None,
        log: EventLog,
        transcript: Transcript,
        history: list[Message],
        turns: list[Turn],
        entries: list[_Entry],
    ) -> None:
        """Take back what a Worker read from a durable store had
        (:func:`._restore.restore_worker`): its log, transcript (``entries``
        as restored), history and recent turns, oldest first. Each turn with
        an ``input_id`` is remembered for idempotent input; one left
        accepted or running is :meth:`interrupt` ed. Call :meth:`run`
        afterwards unless the Worker is stopped or failed."""
        live = self.status not in (WorkerStatus.STOPPED, WorkerStatus.FAILED)
        self._stop_reason = stop_reason
        self._log = log
        self._transcript = transcript
        for turn in turns:
            if turn.input_id is not None:
                self._remember_input(turn)
            if not turn.status.is_final:
                if live:
                    self.status = WorkerStatus.RUNNING
                self.interrupt(turn, entries)
            self._last = turn
        self._history = history[-2 * self.hub.limits.history_turns :] or None
        if not live:
            self._close_mailbox()
            self._log.close()
            self._finished = True

    def interrupt(self, turn: Turn, entries: list[_Entry]) -> None:
        """Mark ``turn``, cut by a process that died, ``interrupted`` (with
        its event, its transcript ``entries`` marked so); the Worker is idle
        again if it is live."""
        now = _now()
        turn.status = TurnStatus.INTERRUPTED
        turn.ended_at = now
        turn.reason = "process_exited"
        self._emit(
            EventType.TURN_INTERRUPTED,
            TurnInterruptedData(turn.turn_id, turn.reason),
            now,
            turn,
        )
        store = self.hub.store
        for entry in entries:
            if entry.turn_id == turn.turn_id:
                entry.status = TurnStatus.INTERRUPTED
                store.note_entry(self.worker_id, entry)
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
        data: EventData,
        at: datetime.datetime,
        turn: Turn | None = None,
        entry: _Entry | None = None,
    ) -> None:
        """Number an event and note it in the store, which publishes it (at
        once in memory, once committed on SQLite), told which turn and
        transcript entry changed with it."""
        log, hub = self._log, self.hub
        hub_log = hub.log
        seq = log.next_position
        log.next_position = seq + 1
        cursor = hub_log.next_position
        hub_log.next_position = cursor + 1
        event = new_event(seq, cursor, type, hub.runtime_id, self.worker_id, at, data)
        hub.store.note(event, log, self if type in _LIFECYCLE else None, turn, entry)

    def _set_status(self, status: WorkerStatus, at: datetime.datetime) -> None:
        previous, self.status = self.status, status
        self._emit(_WORKER_STATUS, _STATUS_DATA[status, previous], at)

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
        turn = Turn(f"t-{self.turns}", text, input_id, now)
        self._active = turn
        if input_id is not None:
            self._remember_input(turn)
        entry = self.transcript.add("user", turn.turn_id, text, _ACCEPTED, now)
        self._emit(
            _TURN_ACCEPTED,
            TurnAcceptedData(turn.turn_id, text, input_id),
            now,
            turn,
            entry,
        )
        self._set_status(_RUNNING, now)
        self._next = turn
        self._wake()
        return turn.summary(self.worker_id)

    def _remember_input(self, turn: Turn) -> None:
        """Remember ``turn`` by its ``input_id``; forget the oldest input id
        past ``Limits.input_id_retention`` (the idempotency window)."""
        most = self.hub.limits.input_id_retention
        if most <= 0:
            return
        inputs = self._inputs
        if inputs is None:
            inputs = self._inputs = {}
        assert turn.input_id is not None
        inputs[turn.input_id] = turn
        if len(inputs) > most:
            del inputs[next(iter(inputs))]

    def check_live(self) -> None:
        """Raise :class:`WorkerStoppedError` unless the Worker takes input."""
        if self.status in _ENDED:
            raise WorkerStoppedError(
                f"worker {self.worker_id} is {self.status.value}",
                worker_id=self.worker_id,
                status=self.status.value,
            )

    def find_turn(self, turn_id: str | None) -> Turn | None:
        """Return the active turn, or the last one if ``turn_id`` names it."""
        if turn_id is None or (self._active and self._active.turn_id == turn_id):
            return self._active
        if self._last is not None and self._last.turn_id == turn_id:
            return self._last
        return None

    def cancel(self, turn: Turn, reason: str | None) -> None:
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
        self._close_mailbox()

    # -- the mailbox ------------------------------------------------------------

    def _wake(self) -> None:
        """Reschedule the actor if it is parked on the mailbox."""
        task = self._waiter
        if task is not None:
            self._waiter = None
            trio.lowlevel.reschedule(task)

    def _close_mailbox(self) -> None:
        """Take no more turns; the actor ends once the slot is empty."""
        self._mail_closed = True
        self._wake()

    def _abort_wait(self, _: object) -> trio.lowlevel.Abort:
        self._waiter = None
        return trio.lowlevel.Abort.SUCCEEDED

    def _wait_mail(self) -> Coroutine[Any, Any, object]:
        """Return what the actor awaits before :meth:`_take_mail`: parking
        until the mailbox holds a turn or is closed, or a checkpoint if it
        already does or is. (Not a coroutine itself: a parked idle Worker
        keeps one frame less.)"""
        if self._next is None and not self._mail_closed:
            self._waiter = trio.lowlevel.current_task()
            return trio.lowlevel.wait_task_rescheduled(self._abort_wait)  # noqa: ASYNC105
        return trio.lowlevel.checkpoint()  # noqa: ASYNC105

    def _take_mail(self) -> Turn | None:
        """Take the accepted turn out of the mailbox; None once it is
        closed and empty."""
        turn, self._next = self._next, None
        return turn

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
