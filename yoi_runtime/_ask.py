"""One call for the common case: give a Worker input and get its answer.

Every embedder would otherwise write the same loop: subscribe to the Worker,
send the input, keep the text deltas of that turn, stop at its end, and turn
a failure into an exception. :func:`open_turn` (streaming) and :func:`ask`
(the whole answer) do it once, over anything with the Runtime's
``subscribe`` / ``send_input`` / ``cancel`` / ``get_worker`` / ``transcript``
operations (:class:`~yoi_runtime._api.TurnHost`, part of
:class:`~yoi_runtime.RuntimeAPI`): every implementation of the API (the
embedded :class:`~yoi_runtime.Runtime`, :class:`~yoi_runtime.client.RuntimeClient`,
the workspace's reconnecting client) exposes them as ``runtime.ask(...)`` and
``runtime.open_turn(...)`` by calling these.

The subscription is opened before the input is sent, so no event of the turn
can be missed; a turn is cancelled when its caller stops following it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from ._api import DEFAULT_CANCEL_TIMEOUT, TurnEvents, TurnHost
from ._engines._base import Usage
from ._errors import (
    RuntimeUnavailableError,
    TurnCancelledError,
    TurnFailedError,
    TurnInterruptedError,
    TurnNotCompletedError,
)
from ._event_data import (
    TurnCancelledData,
    TurnCompletedData,
    TurnFailedData,
    TurnInterruptedData,
    TurnTextDeltaData,
)
from ._events import Event, Gap
from ._types import (
    TranscriptEntry,
    TurnError,
    TurnStatus,
    TurnSummary,
)

__all__ = [
    "ABANDONED",
    "DEFAULT_CANCEL_TIMEOUT",
    "EventStream",
    "TurnHost",
    "TurnResult",
    "TurnStream",
    "ask",
    "open_turn",
]

#: The events a turn reads (the name the ``yoi`` command's chat imports).
EventStream = TurnEvents

#: The ``reason`` of the cancel sent when a caller leaves a turn early.
ABANDONED = "abandoned by the caller"

#: Transcript entries read per page when a gap forces reading the answer there.
_TRANSCRIPT_PAGE = 500


@attrs.frozen
class TurnResult:
    """The answer of a turn that completed.

    Attributes:
        turn_id: The turn.
        worker_id: The Worker that answered.
        text: The whole answer (every text delta, in order).
        finish_reason: Why the model stopped, as the model server said
            (``"stop"``, ``"length"``, ``"content_filter"``, ...); None when
            the Runtime reported none.
        truncated: True when the token limit cut the answer
            (``finish_reason == "length"``).
        usage: Tokens used, as the model server reported them.
    """

    turn_id: str
    worker_id: str
    text: str
    finish_reason: str | None
    truncated: bool
    usage: Usage


@attrs.define(eq=False)
class TurnStream:
    """One turn being answered: its text deltas, then its result.

    Get one from ``runtime.open_turn(worker_id, text)``. Iterate it (``async
    for delta in turn``) for the answer's text deltas (non-empty ``str``, in
    order); the iteration ends when the turn completes and raises the turn's
    :class:`~yoi_runtime.TurnNotCompletedError` when it failed, was
    cancelled or was interrupted. Then :attr:`result` holds the answer.

    Gaps: if the subscription falls behind the Worker's retained events (a
    :class:`~yoi_runtime.Gap`), the deltas it lost are not yielded, and the
    result's text is read from the transcript instead, so it stays whole; if
    the turn's end was lost too, the Worker's summary tells it (or, when later
    turns already ran, the transcript: the result's usage is then zeros, and
    a turn that did not complete raises the base
    :class:`~yoi_runtime.TurnNotCompletedError`).

    Attributes:
        turn: The turn as it was accepted (``turn_id``, ``input``, ...).
    """

    turn: TurnSummary
    _host: TurnHost = attrs.field(repr=False)
    _events: TurnEvents = attrs.field(repr=False)
    _parts: list[str] = attrs.field(factory=list, repr=False)
    _missed: bool = False
    _outcome: TurnResult | TurnNotCompletedError | None = None

    @property
    def turn_id(self) -> str:
        """The turn's id."""
        return self.turn.turn_id

    @property
    def worker_id(self) -> str:
        """The Worker answering."""
        return self.turn.worker_id

    @property
    def ended(self) -> bool:
        """Whether the turn's end (completed, failed, ...) was received."""
        return self._outcome is not None

    @property
    def result(self) -> TurnResult:
        """The answer, once the iteration ended.

        Raises:
            TurnNotCompletedError: The turn did not complete (the same error
                the iteration raised).
            RuntimeError: The turn's end was not received yet.
        """
        outcome = self._outcome
        if outcome is None:
            raise RuntimeError("the turn has not ended: iterate it to the end first")
        if isinstance(outcome, TurnNotCompletedError):
            raise outcome
        return outcome

    def __aiter__(self) -> TurnStream:
        return self

    async def __anext__(self) -> str:
        if self._outcome is not None:
            await trio.lowlevel.checkpoint()
        while self._outcome is None:
            try:
                item = await self._events.receive()
            except trio.EndOfChannel:
                raise RuntimeUnavailableError(
                    f"the event stream of worker {self.worker_id} ended before "
                    f"turn {self.turn_id} did"
                ) from None
            delta = await self._take(item)
            if delta is not None:
                return delta
        if isinstance(self._outcome, TurnNotCompletedError):
            raise self._outcome
        raise StopAsyncIteration

    async def wait_result(self) -> TurnResult:
        """Receive the rest of the turn and return its result.

        Returns:
            The completed turn's :class:`TurnResult`.

        Raises:
            TurnFailedError: The turn failed (``error.code`` says why).
            TurnCancelledError: The turn was cancelled (cancel, stop,
                shutdown).
            TurnInterruptedError: The process running it died.
            RuntimeUnavailableError: The event stream ended first (the
                Runtime closed) or, for a client, could not be reconnected.
        """
        async for _ in self:
            pass
        return self.result

    async def _take(self, item: Event | Gap) -> str | None:
        """Note one stream item; return the text of a delta of this turn."""
        if isinstance(item, Gap):
            self._missed = True
            await self._check_ended()
            return None
        data = item.data
        if getattr(data, "turn_id", None) != self.turn_id:
            return None
        if isinstance(data, TurnTextDeltaData):
            self._parts.append(data.text)
            return data.text
        if isinstance(data, TurnCompletedData):
            self._outcome = TurnResult(
                turn_id=self.turn_id,
                worker_id=self.worker_id,
                text=await self._text(),
                finish_reason=data.finish_reason,
                truncated=data.truncated,
                usage=data.usage,
            )
        elif isinstance(data, TurnFailedData):
            self._fail(
                TurnStatus.FAILED,
                await self._text(),
                TurnError(data.error.code, data.error.message),
                None,
            )
        elif isinstance(data, TurnCancelledData | TurnInterruptedData):
            status = (
                TurnStatus.CANCELLED
                if isinstance(data, TurnCancelledData)
                else TurnStatus.INTERRUPTED
            )
            self._fail(status, await self._text(), None, data.reason)
        return None

    def _fail(
        self,
        status: TurnStatus,
        text: str,
        error: TurnError | None,
        reason: str | None,
    ) -> None:
        ids = {"worker_id": self.worker_id, "turn_id": self.turn_id, "text": text}
        if status is TurnStatus.FAILED:
            error = error or TurnError("turn_failed", "the turn failed")
            self._outcome = TurnFailedError(
                f"turn {self.turn_id} failed: {error.code}: {error.message}",
                error=error,
                **ids,
            )
        elif status is TurnStatus.CANCELLED:
            self._outcome = TurnCancelledError(
                f"turn {self.turn_id} was cancelled"
                + ("" if reason is None else f": {reason}"),
                reason=reason,
                **ids,
            )
        else:
            self._outcome = TurnInterruptedError(
                f"turn {self.turn_id} was interrupted: its process exited",
                reason=reason,
                **ids,
            )

    async def _check_ended(self) -> None:
        """After a gap: the turn's end may be among the lost events, so ask the
        Worker's summary whether it ended, and finish from it if so."""
        worker = await self._host.get_worker(self.worker_id)
        active, turn = worker.active_turn, worker.last_turn
        if active is not None and active.turn_id == self.turn_id:
            return
        if turn is not None and turn.turn_id == self.turn_id:
            text = await self._text()
            if turn.status is TurnStatus.COMPLETED:
                self._outcome = TurnResult(
                    turn_id=self.turn_id,
                    worker_id=self.worker_id,
                    text=text,
                    finish_reason=turn.finish_reason,
                    truncated=turn.truncated,
                    usage=turn.usage,
                )
            else:
                self._fail(turn.status, text, turn.error, turn.reason)
            return
        # Later turns ran since: only the transcript still tells how it ended.
        answer = await self._answer()
        if answer is not None and answer.status is TurnStatus.COMPLETED:
            self._outcome = TurnResult(
                turn_id=self.turn_id,
                worker_id=self.worker_id,
                text=answer.text,
                finish_reason=answer.finish_reason,
                truncated=answer.truncated,
                usage=Usage(),  # only its events carried it
            )
        else:
            self._outcome = TurnNotCompletedError(
                f"turn {self.turn_id} did not complete; how it ended was dropped "
                "from the event log while this stream lagged",
                worker_id=self.worker_id,
                turn_id=self.turn_id,
                text="" if answer is None else answer.text,
            )

    async def _text(self) -> str:
        """The answer's text: the deltas, or the transcript's after a gap."""
        if not self._missed:
            return "".join(self._parts)
        answer = await self._answer()
        return "" if answer is None else answer.text

    async def _answer(self) -> TranscriptEntry | None:
        """The turn's assistant entry in the transcript (None: no text)."""
        cursor = None
        while True:
            page = await self._host.transcript(
                self.worker_id, limit=_TRANSCRIPT_PAGE, cursor=cursor
            )
            for entry in page.items:
                if entry.kind == "assistant" and entry.turn_id == self.turn_id:
                    return entry
            if page.next_cursor is None:
                return None
            cursor = page.next_cursor


@asynccontextmanager
async def open_turn(
    host: TurnHost,
    worker_id: str,
    text: str,
    *,
    cancel_timeout: float = DEFAULT_CANCEL_TIMEOUT,
) -> AsyncIterator[TurnStream]:
    """Give a Worker input and follow that turn until it ends.

    Subscribes to the Worker, then sends ``text`` (so no event of the turn is
    missed) and yields a :class:`TurnStream` of the answer's text deltas.

    Args:
        host: A :class:`~yoi_runtime.Runtime` or
            :class:`~yoi_runtime.client.RuntimeClient`.
        worker_id: The Worker.
        text: The input, as for ``send_input``.
        cancel_timeout: Seconds allowed, on leaving early, for the cancel of
            the turn (which waits until the turn ended).

    Yields:
        The :class:`TurnStream`.

    Raises:
        WorkerBusyError: A turn is already accepted or running.
        WorkerStoppedError: The Worker is stopped or failed.
        WorkerNotFoundError: No such Worker.
        InvalidInputError: ``text`` is empty or too long.

    Cancellation:
        Leaving the block before the turn ended (``break``, an exception, or
        a cancelled scope around it, e.g. an HTTP client that went away)
        cancels the turn with reason :data:`ABANDONED`, shielded, for up to
        ``cancel_timeout`` seconds. A cancel that arrives while the input is
        being sent takes effect once the send returns (for a client: at most
        its ``request_timeout``), so an accepted turn is never left running.
    """
    events = host.subscribe(worker_id)
    async with events:
        await trio.lowlevel.checkpoint_if_cancelled()
        # Once sent, the input may be accepted even if the reply is lost to a
        # cancel; shielded, the turn id comes back and the cancel goes to it.
        with trio.CancelScope(shield=True):
            turn = await host.send_input(worker_id, text)
        stream = TurnStream(turn, host, events)
        try:
            yield stream
        finally:
            if not stream.ended:
                with trio.move_on_after(cancel_timeout, shield=True):
                    await host.cancel(worker_id, turn_id=turn.turn_id, reason=ABANDONED)


async def ask(
    host: TurnHost,
    worker_id: str,
    text: str,
    *,
    cancel_timeout: float = DEFAULT_CANCEL_TIMEOUT,
) -> TurnResult:
    """Give a Worker input and return its whole answer.

    Args:
        host: A :class:`~yoi_runtime.Runtime` or
            :class:`~yoi_runtime.client.RuntimeClient`.
        worker_id: The Worker.
        text: The input, as for ``send_input``.
        cancel_timeout: Seconds allowed for cancelling the turn when this call
            is cancelled.

    Returns:
        The completed turn's :class:`TurnResult`.

    Raises:
        TurnFailedError: The turn failed (``error.code`` says why).
        TurnCancelledError: The turn was cancelled by someone else (cancel,
            stop, shutdown).
        TurnInterruptedError: The process running the turn died.
        WorkerBusyError, WorkerStoppedError, WorkerNotFoundError,
        InvalidInputError: As ``send_input``: no turn was started.

    Cancellation:
        Cancelling the call cancels the turn (see :func:`open_turn`).
    """
    async with open_turn(host, worker_id, text, cancel_timeout=cancel_timeout) as turn:
        return await turn.wait_result()
