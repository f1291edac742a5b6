"""What travels on an event stream, the close-code table, and the framing
(WebSocket text frames and SSE text) of both ends."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import attrs
import cattrs

from .._errors import InternalError
from .._events import Event, EventType, Gap
from .._wire import item_from_json

T = TypeVar("T")

#: The most items one frame carries.
MAX_BATCH = 256

GAP_TYPE = "stream.gap"
HEARTBEAT_TYPE = "stream.heartbeat"
RESET_TYPE = "stream.reset"
END_TYPE = "stream.end"

#: The events after which a Worker's stream has ended, whatever close follows.
FINAL_EVENTS = frozenset({EventType.WORKER_STOPPED, EventType.WORKER_FAILED})


# -- what travels -----------------------------------------------------------------


@attrs.frozen
class Items(Generic[T]):
    """Send these items (one or more, in stream order): one frame."""

    items: Sequence[T]


@attrs.frozen
class Heartbeat:
    """Nothing happened for ``heartbeat_interval`` seconds.

    Attributes:
        position: The stream's cursor so far (the source's ``position``).
    """

    position: int | str


@attrs.frozen
class Closing:
    """The stream is over: close with this WebSocket code and reason.

    Attributes:
        code: A code of :data:`CLOSE_CODES` (``1000``, ``1001``, ``1011``).
        reason: ``"stream ended"``, the shutdown reason, or an error code.
    """

    code: int
    reason: str


@attrs.frozen
class Reset:
    """The ``stream.reset`` item: a Runtime's stream started over (the
    workspace's aggregate stream only).

    Attributes:
        runtime_id: The Runtime whose stream started over.
        reason: ``"restarted"``.
    """

    runtime_id: str
    reason: str = "restarted"

    def to_json(self) -> dict[str, Any]:
        """``{"type": "stream.reset", "runtime_id", "reason"}``."""
        return {
            "type": RESET_TYPE,
            "runtime_id": self.runtime_id,
            "reason": self.reason,
        }


@attrs.frozen
class TextFrame:
    """One WebSocket text frame (an item, a batch, or a heartbeat)."""

    text: str


@attrs.frozen
class CloseFrame:
    """A WebSocket close, as the peer reported it.

    Attributes:
        code: The close code; :data:`LOST` when the connection dropped
            without a close frame.
        reason: The close reason (an error code with ``1011``).
    """

    code: int
    reason: str = ""


def position_of(item: Event | Gap, *, worker_stream: bool) -> int:
    """The cursor to resume after ``item``.

    Args:
        item: An event or a gap.
        worker_stream: True on a Worker's stream (an event's ``seq``), False
            on a Runtime's (its ``cursor``).

    Returns:
        The event's ``seq`` or ``cursor``; a gap's ``resume_after``.
    """
    if isinstance(item, Gap):
        return item.resume_after
    return item.seq if worker_stream else item.cursor


# -- close codes ------------------------------------------------------------------


class CloseAction(enum.Enum):
    """What a reconnecting client does after a close."""

    #: The stream is over: hand out what was received, then end.
    END = "end"
    #: Reconnect with ``after=`` the last position (backoff, budget).
    RESUME = "resume"
    #: Broken for good: hand out what was received, then raise.
    RAISE = "raise"


@attrs.frozen
class CloseCode:
    """One row of the close-code table.

    Attributes:
        code: The WebSocket close code.
        sent_when: When a server sends it (``"-"``: never sent).
        action: What a reconnecting client does.
        client_does: The action in words, with the error raised, if any.
    """

    code: int
    sent_when: str
    action: CloseAction
    client_does: str


ENDED = 1000
GOING_AWAY = 1001
#: What a WebSocket library reports for a connection lost without a close.
LOST = 1006
BROKEN = 1011

#: Every close code with its meaning; any other code is retried as :data:`LOST`.
CLOSE_CODES: tuple[CloseCode, ...] = (
    CloseCode(
        ENDED,
        "the stream ended: the Worker stopped or failed",
        CloseAction.END,
        "ends the stream after what it received",
    ),
    CloseCode(
        GOING_AWAY,
        "the process is shutting down, after what was ready",
        CloseAction.RESUME,
        "resumes after its position",
    ),
    CloseCode(
        LOST,
        "never: what a WebSocket library reports for a connection dropped "
        "without a close",
        CloseAction.RESUME,
        "resumes after its position",
    ),
    CloseCode(
        BROKEN,
        "the stream broke for good, the reason being the error code (the "
        "workspace backend, for a Worker a restarted Runtime no longer knows; "
        "never a runtime process)",
        CloseAction.RAISE,
        "raises the error the reason names (`worker_not_found`: "
        "`WorkerNotFoundError`; an unknown code: `InternalError`), no retry",
    ),
)

_ACTIONS = {row.code: row.action for row in CLOSE_CODES}


def close_action(code: int) -> CloseAction:
    """What a reconnecting client does after close ``code`` (any code not
    in :data:`CLOSE_CODES` is resumed, like a dropped connection)."""
    return _ACTIONS.get(code, CloseAction.RESUME)


def close_code_table() -> str:
    """The close-code table of ``docs/protocol.md``, as Markdown."""
    lines = ["| code | sent when | a reconnecting client |", "|---|---|---|"]
    lines += [
        f"| `{row.code}` | {row.sent_when} | {row.client_does} |" for row in CLOSE_CODES
    ]
    lines.append("| any other | never | resumes after its position |")
    return "\n".join(lines)


# -- framing ----------------------------------------------------------------------


def websocket_message(
    step: Items[T] | Heartbeat | Closing, encode: Callable[[T], Any]
) -> TextFrame | CloseFrame:
    """What one step of a stream is on a WebSocket.

    Args:
        step: The pump's step.
        encode: One item's JSON value (``item_to_json``, ...).

    Returns:
        A :class:`TextFrame` (one item's JSON, a JSON array of several, or a
        heartbeat) or, for :class:`Closing`, the :class:`CloseFrame`.
    """
    if isinstance(step, Closing):
        return CloseFrame(step.code, step.reason)
    if isinstance(step, Heartbeat):
        return TextFrame(
            json.dumps({"type": HEARTBEAT_TYPE, "position": step.position})
        )
    if len(step.items) == 1:
        return TextFrame(json.dumps(encode(step.items[0])))
    return TextFrame(json.dumps([encode(item) for item in step.items]))


def sse_event(data: str, event_id: str | None = None) -> str:
    """One SSE event: an ``id:`` line (when given), ``data:`` lines, a blank
    line."""
    lines = [] if event_id is None else [f"id: {event_id}"]
    lines += [f"data: {line}" for line in data.split("\n")]
    return "\n".join(lines) + "\n\n"


def sse_comment(text: str) -> str:
    """One SSE comment line (ignored by clients; keeps proxies from timing
    out)."""
    return f": {text}\n\n"


#: The first text of every SSE response (the subscription is live from then).
SSE_PREAMBLE = sse_comment("yoi event stream")


def sse_text(
    step: Items[T] | Heartbeat | Closing,
    encode: Callable[[T], Any],
    item_id: Callable[[T], str],
) -> str:
    """The SSE text of one step of a stream.

    Args:
        step: The pump's step.
        encode: One item's JSON value (as a WebSocket frame carries it).
        item_id: One item's ``id:`` (the cursor to resume after it).
    """
    if isinstance(step, Heartbeat):
        return sse_comment(f"heartbeat position={step.position}")
    if isinstance(step, Closing):
        end = {"type": END_TYPE, "code": step.code, "reason": step.reason}
        return sse_event(json.dumps(end))
    return "".join(
        sse_event(json.dumps(encode(item)), item_id(item)) for item in step.items
    )


def decode_frame(text: str | bytes, what: str) -> list[Event | Gap | Heartbeat]:
    """Decode one WebSocket text frame of a Runtime's or a Worker's stream.

    Args:
        text: The frame.
        what: The frame, for messages (``"a frame of ws://..."``).

    Returns:
        Its items in order: events, gaps and heartbeats.

    Raises:
        InternalError: Not JSON, or an item without the documented shape
            (``stream.reset`` and ``stream.end`` never travel on these).
    """
    try:
        frame = json.loads(text)
    except ValueError:
        raise InternalError(f"{what}: the runtime process sent invalid JSON") from None
    items: list[Event | Gap | Heartbeat] = []
    for value in frame if isinstance(frame, list) else [frame]:
        try:
            if value.get("type") == HEARTBEAT_TYPE:
                position = value["position"]
                if not isinstance(position, int | str):
                    raise TypeError("position")
                items.append(Heartbeat(position))
            else:
                items.append(item_from_json(value))
        except (
            cattrs.BaseValidationError,
            AttributeError,
            KeyError,
            TypeError,
            ValueError,
        ) as exc:
            raise InternalError(f"{what}: malformed stream item") from exc
    return items
