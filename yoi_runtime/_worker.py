"""The Worker actor: one Trio task, one mailbox, one turn at a time.

State machine (also drawn in ``docs/lifecycle.md``)::

    Worker: idle --accept--> running --turn ends--> idle
            idle|running --stop--> stopped        (final)
            any --actor crash--> failed           (final)
    Turn:   accepted --actor picks it up--> running
            accepted|running --> completed | failed | cancelled   (final)
            accepted|running --process died, durable store--> interrupted

Commands (:mod:`._worker_state`) are synchronous methods that run to
completion without a checkpoint, so admission is atomic: of many concurrent
inputs to an idle Worker exactly one is accepted and the rest get
:class:`WorkerBusyError`. Only accepted turns travel through the mailbox;
cancel, stop and detail act on the Worker's state directly, so they never
wait behind a running turn.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import attrs
import trio

from ._context import fit_history, remember, shrink_history
from ._engines._base import Message, Retry, TurnRequest, Usage
from ._errors import ContextLengthExceededError, EngineError
from ._event_data import (
    EventError,
    TurnCancelledData,
    TurnCompletedData,
    TurnFailedData,
    TurnRetryingData,
    TurnStartedData,
    TurnTextDeltaData,
    WorkerFailedData,
    WorkerStoppedData,
)
from ._events import EventType
from ._hub import Hub, Limits, MissingEngine, now
from ._turn import Turn
from ._types import TurnError, TurnStatus, WorkerStatus
from ._worker_state import WorkerState

# Hub, Limits and MissingEngine lived here; they are re-exported for callers
# that import them from this module.
__all__ = ["Hub", "Limits", "MissingEngine", "Worker"]

#: Failed turns and engine retries (never the turn's normal path).
_turn_log = logging.getLogger("yoi_runtime.turns")

_NO_USAGE = Usage()
_now = now

# Enum members read on every turn, bound once (see ``_worker_state``).
_IDLE = WorkerStatus.IDLE
_RUNNING = WorkerStatus.RUNNING
_TURN_RUNNING = TurnStatus.RUNNING
_COMPLETED = TurnStatus.COMPLETED
_TURN_STARTED = EventType.TURN_STARTED
_TURN_TEXT_DELTA = EventType.TURN_TEXT_DELTA
_TURN_COMPLETED = EventType.TURN_COMPLETED


@attrs.define(eq=False)
class Worker(WorkerState):
    """One Worker: its state, its mailbox and its actor task body.

    The Runtime creates Workers, starts :meth:`run` in its nursery, and calls
    the command methods; nothing else should touch a Worker directly.
    """

    # -- the actor ------------------------------------------------------------

    async def run(self) -> None:
        """The actor task: run accepted turns one by one until stopped.

        Never raises an :class:`Exception`: a bug in here marks this Worker
        ``failed`` with a diagnostic and leaves every other Worker running.
        """
        try:
            await self._wait_mail()
            while (turn := self._take_mail()) is not None:
                # One cancel scope serves turn after turn (a scope per turn
                # was a tenth of a turn's cost; an idle Worker has none).
                # Cancelling the running turn cancels it; once it was
                # cancelled, the next turn gets a fresh one.
                with trio.CancelScope() as scope:
                    while turn is not None:
                        await self._run_turn(turn, scope)
                        await self._wait_mail()
                        turn = self._take_mail()
                if scope.cancel_called:
                    await self._wait_mail()
        except Exception as exc:
            self._crash(exc)
        finally:
            # Also reached when the Runtime's nursery is cancelled.
            if self._closing and self.status is not WorkerStatus.FAILED:
                pass  # a durable Runtime closing: the Worker lives on
            elif self.status is not WorkerStatus.FAILED:
                self.stop(self._stop_reason or "shutdown")
                self._emit(
                    EventType.WORKER_STOPPED,
                    WorkerStoppedData(self._stop_reason),
                    _now(),
                )
            if self.status in (WorkerStatus.STOPPED, WorkerStatus.FAILED):
                self.hub.release(self.worker_id, self.scopes)
            self.hub.store.note_close(self._log)
            self._finished = True
            if self._ended is not None:
                self._ended.set()

    async def _run_turn(self, turn: Turn, scope: trio.CancelScope) -> None:
        """Run ``turn`` under the actor's ``scope``, which cancelling the turn
        cancels; a turn cancelled by it ends ``cancelled`` before the
        :class:`trio.Cancelled` leaves this method (and the scope)."""
        if turn.cancel_requested:  # cancelled before it started
            self._end_turn(turn, TurnStatus.CANCELLED)
            return
        engine = self.engine
        limiter = None
        if engine.max_concurrent is not None:
            limiter = self.hub.limiter(self.engine_name, engine)
        details: dict[str, Any] | None = None
        try:
            turn.scope = scope
            try:
                if limiter is not None:
                    # FIFO: the turn stays accepted until a slot frees.
                    await limiter.acquire_on_behalf_of(turn)
                try:
                    history: list[Message] = self._history or []
                    fits = True
                    if engine.context_tokens is not None:
                        history, fits, turn.history_omitted = await fit_history(
                            engine, self.system_prompt, turn.input, history
                        )
                    request = self._start(turn, history, fits)
                    completion = await engine.run_turn(request, _Listener(self, turn))
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
                    shrink_history(self._history)
            except Exception as exc:
                error = TurnError("engine_crashed", f"{type(exc).__name__}: {exc}")
            else:
                self._end_turn(
                    turn,
                    _COMPLETED,
                    usage=completion.usage,
                    finish_reason=completion.finish_reason,
                )
                return
            self._end_turn(turn, TurnStatus.FAILED, error=error, details=details)
            return
        except BaseException:
            # Cancelled: by the turn's own cancel (the actor's scope absorbs
            # it) or from outside (the Runtime is closing): record it.
            if not turn.status.is_final:
                self._end_turn(turn, TurnStatus.CANCELLED)
            raise

    def _start(self, turn: Turn, history: list[Message], fits: bool) -> TurnRequest:
        """Mark ``turn`` running (it holds an engine slot) and return what
        the engine gets, with ``history`` (what fits the context).

        Raises:
            ContextLengthExceededError: ``fits`` is false: the input alone
                does not fit.
        """
        turn.status = _TURN_RUNNING
        turn.started_at = now = _now()
        self._emit(
            _TURN_STARTED,
            TurnStartedData(turn.turn_id, turn.history_omitted),
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

    def on_text(self, turn: Turn, text: str) -> None:
        if not text:
            return
        now = _now()
        answer = turn.answer
        if answer is None:
            answer = turn.answer = self.transcript.add(
                "assistant", turn.turn_id, text, _TURN_RUNNING, now
            )
        else:
            answer.add_text(text)
        self._emit(
            _TURN_TEXT_DELTA,
            TurnTextDeltaData(turn.turn_id, text),
            now,
            None,
            answer,
        )

    def _end_turn(
        self,
        turn: Turn,
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
        if status is _COMPLETED:
            data = TurnCompletedData(
                turn_id, usage, finish_reason, finish_reason == "length"
            )
            self._emit(_TURN_COMPLETED, data, now, turn, turn.answer)
            answer = "" if turn.answer is None else turn.answer.text
            self._history = remember(
                self._history, turn.input, answer, self.hub.limits.history_turns
            )
        elif status is TurnStatus.FAILED:
            assert error is not None
            failed = TurnFailedData(
                turn_id, EventError.from_details(error.code, error.message, details)
            )
            entry = self.transcript.add("error", turn_id, error.message, status, now)
            self._emit(EventType.TURN_FAILED, failed, now, turn, entry)
            self._log_failed(turn_id, error.code)
            if turn.answer is not None:
                self.hub.store.note_entry(self.worker_id, turn.answer)
        else:
            if turn.reason is None and self._stop_reason is not None:
                turn.reason = self._stop_reason
            self._emit(
                EventType.TURN_CANCELLED,
                TurnCancelledData(turn_id, turn.reason),
                now,
                turn,
                turn.answer,
            )
        self._active = None
        self._last = turn
        if self.status is _RUNNING:
            self._set_status(_IDLE, now)
        turn.set_done()

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

    def on_retry(self, turn: Turn, retry: Retry) -> None:
        """Publish ``turn.retrying`` before the engine waits to retry."""
        error = retry.error
        if isinstance(error, EngineError):
            info = EventError.from_details(error.code, error.message, error.details())
        else:
            info = EventError("engine_error", str(error))
        _turn_log.warning(
            "engine retry: worker=%s turn=%s engine=%s attempt=%d delay=%.2fs code=%s",
            self.worker_id,
            turn.turn_id,
            self.engine_name,
            retry.attempt,
            retry.delay,
            info.code,
            extra={
                "worker": self.worker_id,
                "turn": turn.turn_id,
                "engine": self.engine_name,
                "attempt": retry.attempt,
                "delay": retry.delay,
                "code": info.code,
                "request_id": None,
            },
        )
        self._emit(
            EventType.TURN_RETRYING,
            TurnRetryingData(turn.turn_id, retry.attempt, retry.delay, info),
            _now(),
        )

    def _crash(self, exc: Exception) -> None:
        """The actor itself broke: mark the Worker failed, never propagate."""
        summary = "".join(traceback.format_exception_only(exc)).strip()
        self.error = TurnError("worker_crashed", summary)
        self.status = WorkerStatus.FAILED
        self._close_mailbox()
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
                TurnFailedData(turn.turn_id, EventError("worker_crashed", summary)),
                now,
                turn,
            )
            self._log_failed(turn.turn_id, "worker_crashed")
            turn.set_done()
        self._emit(
            EventType.WORKER_FAILED,
            WorkerFailedData(TurnError("worker_crashed", summary)),
            _now(),
        )


class _Listener:
    """What the engine reports a turn's progress to (a ``TurnListener``)."""

    __slots__ = ("_turn", "_worker")

    def __init__(self, worker: Worker, turn: Turn) -> None:
        self._worker = worker
        self._turn = turn

    def on_text(self, text: str) -> None:
        self._worker.on_text(self._turn, text)

    def on_retry(self, retry: Retry) -> None:
        self._worker.on_retry(self._turn, retry)
