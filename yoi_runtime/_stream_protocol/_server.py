"""The server's end of an event stream: its decisions and their table."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Generic, TypeVar

import attrs

from ._frames import BROKEN, ENDED, GOING_AWAY, Closing, Heartbeat, Items

T = TypeVar("T")


# -- the server's end -------------------------------------------------------------


class ServerState(enum.Enum):
    """Where a server's stream is."""

    OPEN = "open"  # forwarding items and heartbeats
    FLUSHING = "flushing"  # the app drains: sending what is ready, then 1001
    CLOSED = "closed"  # the close was decided; nothing more


class _ServerInput(enum.Enum):
    ITEMS = "items"
    SILENCE = "silence"
    SOURCE_ENDED = "source ended"
    DRAIN = "drain"
    SOURCE_BROKE = "source broke"
    FLUSHED = "flushed"


_S = ServerState
_SI = _ServerInput

#: Every transition of a server's stream.
SERVER_TRANSITIONS: dict[tuple[ServerState, _ServerInput], ServerState] = {
    (_S.OPEN, _SI.ITEMS): _S.OPEN,
    (_S.OPEN, _SI.SILENCE): _S.OPEN,
    (_S.OPEN, _SI.SOURCE_ENDED): _S.CLOSED,
    (_S.OPEN, _SI.DRAIN): _S.FLUSHING,
    (_S.OPEN, _SI.SOURCE_BROKE): _S.CLOSED,
    (_S.FLUSHING, _SI.ITEMS): _S.FLUSHING,
    (_S.FLUSHING, _SI.FLUSHED): _S.CLOSED,
}


@attrs.define(eq=False)
class ServerStream(Generic[T]):
    """The server's end of one stream: what to send for what happened.

    Its driver (:class:`~yoi_runtime.serving._streams.StreamPump`) reads the
    source and tells this object what it saw; each method returns the step
    to send and moves :attr:`state` by :data:`SERVER_TRANSITIONS`.

    Raises:
        RuntimeError: From any method, when the step is not allowed in the
            current state (a driver bug; e.g. anything after the close).
    """

    state: ServerState = ServerState.OPEN

    def _move(self, what: _ServerInput) -> None:
        new = SERVER_TRANSITIONS.get((self.state, what))
        if new is None:
            raise RuntimeError(f"stream {self.state.value}: {what.value} not allowed")
        self.state = new

    def items(self, items: Sequence[T]) -> Items[T]:
        """Items were read from the source (or the shutdown flush)."""
        self._move(_SI.ITEMS)
        return Items(items)

    def silence(self, position: int | str) -> Heartbeat:
        """The heartbeat interval passed without items; ``position`` is the
        source's cursor."""
        self._move(_SI.SILENCE)
        return Heartbeat(position)

    def source_ended(self, *, draining: bool) -> Closing | None:
        """The source ended, or the app closes its streams.

        Returns:
            ``Closing(1000, "stream ended")``; None when ``draining`` (flush
            what is ready with :meth:`items`, then call :meth:`flushed`).
        """
        if draining:
            self._move(_SI.DRAIN)
            return None
        self._move(_SI.SOURCE_ENDED)
        return Closing(ENDED, "stream ended")

    def source_broke(self, error_code: str) -> Closing:
        """The source raised a :class:`YoiRuntimeError` with ``error_code``:
        ``Closing(1011, error_code)``."""
        self._move(_SI.SOURCE_BROKE)
        return Closing(BROKEN, error_code)

    def flushed(self, reason: str) -> Closing:
        """The shutdown flush is done: ``Closing(1001, reason)``."""
        self._move(_SI.FLUSHED)
        return Closing(GOING_AWAY, reason)
