"""Rows of the store file, to and from the records (:mod:`._records`).

A row that cannot be read parses to None; :func:`contiguous` keeps the
gap-free newest run of a table's rows.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .._engines._base import Usage
from .._events import Event, EventType
from .._types import TranscriptEntry, TurnError, TurnStatus, TurnSummary
from .._wire import converter, structure_event_data

__all__ = [
    "ENTRY_COLUMNS",
    "EVENT_COLUMNS",
    "TURN_COLUMNS",
    "contiguous",
    "parse",
    "parse_entry",
    "parse_event",
    "parse_turn",
    "turn_row",
]

T = TypeVar("T")


def parse(text: Any, cls: type[T]) -> T | None:
    try:
        return converter.loads(text, cls)
    except Exception:
        return None


#: The turn columns :func:`parse_turn` reads, in table order after worker_id.
TURN_COLUMNS = (
    "turn_no, status, input, accepted_at, started_at, ended_at, input_tokens,"
    " output_tokens, error_code, error_message, reason, input_id, finish_reason,"
    " history_omitted"
)


def _iso(value: datetime.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def turn_row(turn: TurnSummary) -> tuple[Any, ...]:
    error = turn.error
    return (
        turn.worker_id,
        int(turn.turn_id[2:]),
        turn.status.value,
        turn.input,
        turn.accepted_at.isoformat(),
        _iso(turn.started_at),
        _iso(turn.ended_at),
        turn.usage.input_tokens,
        turn.usage.output_tokens,
        None if error is None else error.code,
        None if error is None else error.message,
        turn.reason,
        turn.input_id,
        turn.finish_reason,
        turn.history_omitted,
    )


def _time(value: Any) -> datetime.datetime | None:
    return None if value is None else datetime.datetime.fromisoformat(value)


def parse_turn(worker_id: str, row: Sequence[Any]) -> TurnSummary | None:
    (number, status, text, accepted, started, ended, tokens_in, tokens_out,
     code, message, reason, input_id, finish_reason, omitted) = row  # fmt: skip
    try:
        if not isinstance(text, str) or not isinstance(tokens_in + tokens_out, int):
            return None
        return TurnSummary(
            turn_id=f"t-{number}",
            worker_id=worker_id,
            status=TurnStatus(status),
            input=text,
            accepted_at=datetime.datetime.fromisoformat(accepted),
            started_at=_time(started),
            ended_at=_time(ended),
            usage=Usage(tokens_in, tokens_out),
            error=None if code is None else TurnError(str(code), str(message)),
            reason=reason,
            input_id=input_id,
            finish_reason=None if finish_reason is None else str(finish_reason),
            truncated=finish_reason == "length",
            history_omitted=int(omitted),
        )
    except (TypeError, ValueError):
        return None


#: The transcript columns :func:`parse_entry` reads.
ENTRY_COLUMNS = "idx, kind, turn_id, text, status, at, finish_reason"


def parse_entry(row: Sequence[Any]) -> TranscriptEntry | None:
    index, kind, turn_id, text, status, at, finish_reason = row
    try:
        if not isinstance(text, str) or kind not in ("user", "assistant", "error"):
            return None
        return TranscriptEntry(
            index, kind, str(turn_id), text, TurnStatus(status),
            datetime.datetime.fromisoformat(at),
            None if finish_reason is None else str(finish_reason),
            finish_reason == "length",
        )  # fmt: skip
    except (TypeError, ValueError):
        return None


#: The columns :func:`parse_event` reads, after the row's key.
EVENT_COLUMNS = "seq, cursor, worker_id, type, at, data"


def parse_event(runtime_id: str, row: Sequence[Any]) -> Event | None:
    _, seq, cursor, worker_id, type, at, data = row
    try:
        parsed = json.loads(data)
        if not isinstance(parsed, dict):
            return None
        kind = EventType(type)
        return Event(
            seq,
            cursor,
            kind,
            runtime_id,
            worker_id,
            datetime.datetime.fromisoformat(at),
            structure_event_data(kind, parsed),
        )
    except (TypeError, ValueError):
        return None


def contiguous(
    rows: Sequence[Sequence[Any]],
    last: int,
    parse: Callable[[Any], Any],
    field: str,
    worker_id: str | None,
    problem: Callable[[str, str | None], None] | None = None,
) -> list[Any]:
    """Parse rows (newest first) into a gap-free list ending at ``last``.

    Stops at the first row that is missing, unreadable or disagrees with its
    key (with a diagnostic if ``problem`` is given): what is older than that
    row is left out.
    """
    items: list[Any] = []
    expected = last
    for row in rows:
        key = row[0]
        item = parse(row)
        if key != expected or item is None or getattr(item, field) != key:
            if problem is None:
                break
            what = "event" if field in ("seq", "cursor") else "transcript entry"
            owner = "the runtime log" if worker_id is None else f"worker {worker_id}"
            problem(
                f"{what} {expected} of {owner} is missing or unreadable; "
                "older ones are left out",
                worker_id,
            )
            break
        items.append(item)
        expected -= 1
    items.reverse()
    return items
