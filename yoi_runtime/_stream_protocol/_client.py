"""The client's end of an event stream: positions, the reconnect budget and
the end, as one state machine; and the reconnect rules in words."""

from __future__ import annotations

import collections
import enum
from collections.abc import Callable, Iterable

import attrs

from .._errors import InternalError, RuntimeUnavailableError, YoiRuntimeError
from .._events import Event, Gap
from ._frames import (
    FINAL_EVENTS,
    LOST,
    CloseAction,
    CloseFrame,
    Heartbeat,
    TextFrame,
    close_action,
    decode_frame,
    position_of,
)

# -- the client's end -------------------------------------------------------------


@attrs.frozen
class Backoff:
    """The reconnect schedule, in seconds.

    Attributes:
        first: The wait before the second attempt (the first is immediate).
        factor: The wait grows by this much per attempt ...
        maximum: ... up to this; also how long a connection must stay up
            (or deliver a frame) to count as having worked.
    """

    first: float = 0.1
    factor: float = 2.0
    maximum: float = 2.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt`` (0, 1, ...)."""
        if attempt == 0:
            return 0.0
        return float(min(self.first * self.factor ** (attempt - 1), self.maximum))


class ClientState(enum.Enum):
    """Where a client's subscription is."""

    IDLE = "idle"  # not connected yet
    CONNECTED = "connected"  # reading frames
    BROKEN = "broken"  # lost the connection: reconnect
    ENDED = "ended"  # hand out what was received, then the end
    FAILED = "failed"  # hand out what was received, then raise
    CLOSED = "closed"  # the caller closed it


class _ClientInput(enum.Enum):
    CONNECTED = "connected"
    FRAME = "frame"
    FINAL_EVENT = "final event"
    CLOSE_END = "close: end"
    CLOSE_RESUME = "close: resume"
    CLOSE_RAISE = "close: raise"
    VIOLATION = "protocol violation"
    ATTEMPT_FAILED = "attempt failed"
    GAVE_UP = "gave up"
    REFUSED = "refused"
    CLOSE = "close"


_C = ClientState
_CI = _ClientInput

#: Every transition of a client's subscription (CLOSE moves any state to CLOSED).
CLIENT_TRANSITIONS: dict[tuple[ClientState, _ClientInput], ClientState] = {
    (_C.IDLE, _CI.CONNECTED): _C.CONNECTED,
    (_C.IDLE, _CI.REFUSED): _C.FAILED,
    (_C.CONNECTED, _CI.FRAME): _C.CONNECTED,
    (_C.CONNECTED, _CI.FINAL_EVENT): _C.ENDED,
    (_C.CONNECTED, _CI.CLOSE_END): _C.ENDED,
    (_C.CONNECTED, _CI.CLOSE_RESUME): _C.BROKEN,
    (_C.CONNECTED, _CI.CLOSE_RAISE): _C.FAILED,
    (_C.CONNECTED, _CI.VIOLATION): _C.FAILED,
    (_C.BROKEN, _CI.CONNECTED): _C.CONNECTED,
    (_C.BROKEN, _CI.ATTEMPT_FAILED): _C.BROKEN,
    (_C.BROKEN, _CI.GAVE_UP): _C.FAILED,
    (_C.BROKEN, _CI.REFUSED): _C.FAILED,
    **{(state, _CI.CLOSE): _C.CLOSED for state in ClientState},
}

_BY_ACTION = {
    CloseAction.END: _CI.CLOSE_END,
    CloseAction.RESUME: _CI.CLOSE_RESUME,
    CloseAction.RAISE: _CI.CLOSE_RAISE,
}


class Next(enum.Enum):
    """What a client's driver does when no item is ready."""

    READ = "read"  # read the next message of the connection
    RECONNECT = "reconnect"  # wait reconnect_delay(), then connect
    END = "end"  # the stream is over: raise trio.EndOfChannel
    FAIL = "fail"  # raise ClientStream.error
    CLOSED = "closed"  # raise trio.ClosedResourceError


def _error_from_code(code: str, message: str) -> YoiRuntimeError:
    """A plain fallback for :attr:`ClientStream.errors`."""
    if code == RuntimeUnavailableError.code:
        return RuntimeUnavailableError(message)
    return InternalError(f"{code}: {message}")


@attrs.define(eq=False)
class ClientStream:
    """The client's end of one subscription, across its reconnects.

    Tracks :attr:`position` (the last item handed out), the resume cursor
    (the last item received), the items received but not handed out, the
    reconnect budget, and :attr:`state` (moved by
    :data:`CLIENT_TRANSITIONS`). Its driver does the I/O: it connects with
    ``after=`` :meth:`resume_after`, feeds every message to
    :meth:`receive_message` (or :meth:`connection_lost`), and asks
    :meth:`next_batch` what to hand out or do.

    Attributes:
        url: The stream's URL, for messages.
        runtime_id: The Runtime every event must come from.
        worker_stream: True for a Worker's stream (positions are ``seq``; it
            ends after :data:`FINAL_EVENTS`), False for a Runtime's.
        position: The cursor of the last item handed out (the start before).
        reconnect_timeout: Seconds a broken stream keeps trying.
        backoff: The wait between attempts.
        errors: Makes the error a ``1011`` close raises from its reason (an
            error code) and a message.
    """

    url: str
    runtime_id: str
    worker_stream: bool
    position: int
    reconnect_timeout: float
    backoff: Backoff = Backoff()
    errors: Callable[[str, str], YoiRuntimeError] = _error_from_code
    state: ClientState = ClientState.IDLE
    error: YoiRuntimeError | None = None
    _received: int | None = None
    _pending: collections.deque[Event | Gap] = attrs.field(factory=collections.deque)
    _broken_since: float | None = None
    _attempts: int = 0
    _connected_at: float = 0.0
    _delivered: bool = False

    def _move(self, what: _ClientInput) -> None:
        new = CLIENT_TRANSITIONS.get((self.state, what))
        if new is None:
            raise RuntimeError(
                f"subscription {self.state.value}: {what.value} not allowed"
            )
        self.state = new

    def resume_after(self) -> int:
        """The ``after=`` of the next connection: the last item received."""
        return self.position if self._received is None else self._received

    def next_batch(self, max_items: int) -> list[Event | Gap] | Next:
        """Hand out up to ``max_items`` received items, or say what to do.

        Returns:
            A non-empty list in stream order (:attr:`position` is then the
            last one's), or the :class:`Next` step when none is ready.
        """
        if self.state is ClientState.CLOSED:
            return Next.CLOSED
        if self._pending:
            count = min(max_items, len(self._pending))
            batch = [self._pending.popleft() for _ in range(count)]
            self.position = position_of(batch[-1], worker_stream=self.worker_stream)
            return batch
        return {
            ClientState.IDLE: Next.RECONNECT,
            ClientState.CONNECTED: Next.READ,
            ClientState.BROKEN: Next.RECONNECT,
            ClientState.ENDED: Next.END,
            ClientState.FAILED: Next.FAIL,
        }[self.state]

    def connected(self, now: float) -> None:
        """A connection after :meth:`resume_after` is open (``now`` in
        seconds, on the driver's clock)."""
        self._move(_CI.CONNECTED)
        self._connected_at = now
        self._delivered = False

    def receive_message(self, message: TextFrame | CloseFrame, now: float) -> None:
        """Take one message of the connection.

        A text frame's events and gaps are kept for :meth:`next_batch`
        (heartbeats only show the connection works); a close does what
        :func:`close_action` says.
        """
        if isinstance(message, CloseFrame):
            self._closed_by_peer(message, now)
            return
        self._delivered = True
        try:
            items = self._check(decode_frame(message.text, f"a frame of {self.url}"))
        except YoiRuntimeError as exc:
            self._fail(_CI.VIOLATION, exc)
            return
        if items:
            self._received = position_of(items[-1], worker_stream=self.worker_stream)
            self._pending.extend(items)
        final = self.worker_stream and any(
            isinstance(item, Event) and item.type in FINAL_EVENTS for item in items
        )
        self._move(_CI.FINAL_EVENT if final else _CI.FRAME)

    def connection_lost(self, now: float) -> None:
        """The connection dropped without a close frame."""
        self._closed_by_peer(CloseFrame(LOST), now)

    def _closed_by_peer(self, close: CloseFrame, now: float) -> None:
        if self.state is ClientState.ENDED:
            return  # the close after a final event
        action = close_action(close.code)
        if action is CloseAction.RAISE:
            message = f"the event stream {self.url} broke for good ({close.reason})"
            self._fail(_CI.CLOSE_RAISE, self.errors(close.reason, message))
            return
        self._move(_BY_ACTION[action])
        if action is CloseAction.RESUME:
            self._note_break(now)

    def _check(self, items: Iterable[Event | Gap | Heartbeat]) -> list[Event | Gap]:
        kept: list[Event | Gap] = []
        for item in items:
            if isinstance(item, Heartbeat):
                continue
            if isinstance(item, Event) and item.runtime_id != self.runtime_id:
                raise RuntimeUnavailableError(
                    f"the runtime process at {self.url} was replaced: "
                    f"runtime {item.runtime_id}, not {self.runtime_id}"
                )
            kept.append(item)
        return kept

    def _fail(self, what: _ClientInput, error: YoiRuntimeError) -> None:
        self._move(what)
        self.error = error

    def _note_break(self, now: float) -> None:
        """Start a new reconnect budget, unless the last reconnect never worked.

        A connection that delivered a frame (heartbeats count) or stayed up
        for ``backoff.maximum`` seconds (or the whole budget, if shorter)
        worked; one that broke at once keeps the running budget, so a process
        that accepts and drops cannot keep a subscription retrying forever.
        """
        healthy = min(self.backoff.maximum, self.reconnect_timeout)
        worked = self._delivered or now - self._connected_at >= healthy
        if worked or self._broken_since is None:
            self._broken_since = now
            self._attempts = 0

    @property
    def deadline(self) -> float:
        """When reconnecting gives up (driver's clock, seconds)."""
        if self._broken_since is None:
            raise RuntimeError("the subscription is not broken")
        return self._broken_since + self.reconnect_timeout

    def reconnect_delay(self, now: float) -> float:
        """Seconds to wait before the next attempt (counts the attempt)."""
        if self._broken_since is None:
            self._note_break(now)
        delay = min(self.backoff.delay(self._attempts), self.deadline - now)
        self._attempts += 1
        return max(0.0, delay)

    def attempt_failed(self, now: float) -> None:
        """A reconnect attempt could not connect (unreachable, handshake
        broken); past the deadline this gives up: :attr:`error` is a
        :class:`RuntimeUnavailableError` and the state ``FAILED``."""
        if now < self.deadline:
            self._move(_CI.ATTEMPT_FAILED)
            return
        self._fail(
            _CI.GAVE_UP,
            RuntimeUnavailableError(
                f"lost the event stream {self.url} and could not "
                f"reconnect within {self.reconnect_timeout} s"
            ),
        )

    def refused(self, error: YoiRuntimeError) -> None:
        """A (re)connect was refused with ``error`` (an HTTP error before
        the upgrade, e.g. :class:`WorkerNotFoundError`): raise it."""
        self._fail(_CI.REFUSED, error)

    def close(self) -> None:
        """The caller closed the subscription; received items are dropped."""
        self._move(_CI.CLOSE)
        self._pending.clear()


def reconnect_rules(backoff: Backoff = Backoff()) -> str:
    """The reconnect rules of ``docs/protocol.md``, as a Markdown list."""
    final = " or ".join(f"`{kind.value}`" for kind in sorted(FINAL_EVENTS))
    return "\n".join(
        [
            "- A client resumes with `after=` the position of the last item it "
            "received (an event's `seq` on a Worker's stream, its `cursor` on "
            "`/v1/events`, a gap's `resume_after`): no gap, no duplicate.",
            f"- The first attempt is immediate; then it waits {backoff.first:g} s, "
            f"times {backoff.factor:g} per attempt up to {backoff.maximum:g} s, "
            "for up to the client's `reconnect_timeout` seconds from the break, "
            "then raises `RuntimeUnavailableError`.",
            "- A connection that delivered a frame (heartbeats count) or stayed "
            f"up for {backoff.maximum:g} s worked, so its break starts a new "
            "budget; one that broke at once keeps the running budget.",
            "- A refusal met when reconnecting (an HTTP error before the "
            "upgrade, e.g. `worker_not_found` from a restarted process) is raised.",
            f"- A Worker's stream ends after {final}, whatever close follows.",
        ]
    )
