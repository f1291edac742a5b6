"""One turn's state.

Turn states (also drawn in ``docs/lifecycle.md``)::

    accepted --actor picks it up--> running
    accepted|running --> completed | failed | cancelled   (final)
    accepted|running --process died, durable store--> interrupted
"""

from __future__ import annotations

import datetime

import attrs
import trio

from ._engines._base import Usage
from ._transcript import _Entry
from ._types import TurnError, TurnStatus, TurnSummary

__all__ = ["Turn"]


@attrs.define(eq=False)
class Turn:
    """A turn of one Worker, as its actor runs it (a store reads its
    :meth:`summary`)."""

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
    # Set when needed: the actor's cancel scope once the turn starts (the
    # turns before and after it run under the same scope until one is
    # cancelled), the event when someone waits for the end.
    scope: trio.CancelScope | None = None
    cancel_requested: bool = False
    _done: trio.Event | None = None

    def request_cancel(self, reason: str | None) -> None:
        """Cancel the turn's scope (now, or as soon as it starts)."""
        if self.status.is_final or self.cancel_requested:
            return
        self.cancel_requested = True
        self.reason = reason
        if self.scope is not None:
            self.scope.cancel()

    async def wait_done(self) -> None:
        """Block until the turn is final."""
        if self.status.is_final:
            await trio.lowlevel.checkpoint()
            return
        if self._done is None:
            self._done = trio.Event()
        await self._done.wait()

    def set_done(self) -> None:
        """Wake whoever waits in :meth:`wait_done`."""
        if self._done is not None:
            self._done.set()

    @classmethod
    def restore(cls, summary: TurnSummary) -> Turn:
        """Rebuild a turn from its stored summary."""
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
        """Return the turn as it is now."""
        # Positional: a call with 14 keywords costs half as much again.
        return TurnSummary(
            self.turn_id,
            worker_id,
            self.status,
            self.input,
            self.accepted_at,
            self.started_at,
            self.ended_at,
            self.usage,
            self.error,
            self.reason,
            self.input_id,
            self.finish_reason,
            self.finish_reason == "length",
            self.history_omitted,
        )
