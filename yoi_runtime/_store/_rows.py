"""Rows of the store file, to and from the records (:mod:`._records`).

A row that cannot be read parses to None; :func:`contiguous` keeps the
gap-free newest run of a table's rows. Rows are written with a few
multi-row statements (:func:`insert_rows`), built once a batch with each
timestamp formatted once (:func:`timestamps`).
"""

from __future__ import annotations

import datetime
import functools
import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .._engines._base import Usage
from .._events import Event, EventType
from .._types import TranscriptEntry, TurnError, TurnStatus, TurnSummary
from .._wire import converter, structure_event_data, unstructure_event_data

__all__ = [
    "CHUNKS",
    "ENTRY_COLUMNS",
    "EVENT_COLUMNS",
    "TURN_COLUMNS",
    "contiguous",
    "entry_rows",
    "event_rows",
    "insert_rows",
    "multi_row",
    "parse",
    "parse_entry",
    "parse_event",
    "parse_turn",
    "timestamps",
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


def timestamps() -> Callable[[datetime.datetime], str]:
    """Return a ``datetime.isoformat`` that formats each object once.

    A turn's events, its row and its transcript entries share a few
    timestamp objects (one per synchronous step of the actor), so a batch
    formats far fewer than it writes. Objects are known by ``id``: use the
    function for one batch only, while the batch holds every value it got.
    """
    cache: dict[int, str] = {}

    def iso(value: datetime.datetime) -> str:
        text = cache.get(id(value))
        if text is None:
            text = cache[id(value)] = value.isoformat()
        return text

    return iso


#: ``json.dumps`` with its defaults, without the check for circular
#: references (event data are trees) and without building a new encoder per
#: call: the same text, sooner.
_dumps = json.JSONEncoder(check_circular=False).encode
#: Each event type's value (faster than the enum's ``.value``).
_TYPE_VALUES = {kind: kind.value for kind in EventType}


def event_rows(
    events: Sequence[Event], iso: Callable[[datetime.datetime], str]
) -> list[tuple[Any, ...]]:
    """The ``events`` rows of ``events``; ``iso`` from :func:`timestamps`."""
    dumps, unstructure, types = _dumps, unstructure_event_data, _TYPE_VALUES
    return [
        (
            e.cursor,
            e.worker_id,
            e.seq,
            types[e.type],
            iso(e.at),
            dumps(unstructure(e.data)),
        )
        for e in events
    ]


def entry_rows(
    entries: Sequence[tuple[str, TranscriptEntry]],
    iso: Callable[[datetime.datetime], str],
) -> list[tuple[Any, ...]]:
    """The ``transcript`` rows of ``(worker_id, entry)`` pairs."""
    return [
        (
            w,
            e.index,
            e.kind,
            e.turn_id,
            e.text,
            e.status.value,
            iso(e.at),
            e.finish_reason,
        )
        for w, e in entries
    ]


def turn_row(
    turn: TurnSummary, iso: Callable[[datetime.datetime], str]
) -> tuple[Any, ...]:
    """The ``turns`` row of ``turn``; ``iso`` from :func:`timestamps`."""
    error, started, ended = turn.error, turn.started_at, turn.ended_at
    return (
        turn.worker_id,
        int(turn.turn_id[2:]),
        turn.status.value,
        turn.input,
        iso(turn.accepted_at),
        None if started is None else iso(started),
        None if ended is None else iso(ended),
        turn.usage.input_tokens,
        turn.usage.output_tokens,
        None if error is None else error.code,
        None if error is None else error.message,
        turn.reason,
        turn.input_id,
        turn.finish_reason,
        turn.history_omitted,
    )


#: The row counts of the multi-row statements the store writes with,
#: largest first: any count is a sum of them, and SQLite's statement cache
#: holds a bounded set of shapes (at most 4 a table).
CHUNKS = (64, 16, 4, 1)


@functools.cache
def multi_row(sql: str, rows: int) -> str:
    """``sql`` (an ``INSERT ... VALUES (?, ...)``) for ``rows`` rows at once."""
    values = sql[sql.rindex("(") :]
    return sql + f", {values}" * (rows - 1)


def insert_rows(db: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """Run ``sql`` for each of ``rows``, with a few multi-row statements
    when it is an ``INSERT ... VALUES (...)``.

    SQLite runs a statement in one step, and the store's thread gives up and
    takes back the GIL around each step: once a statement instead of once a
    row (as ``executemany`` would) when the Trio thread is busy.
    """
    count = len(rows)
    if count == 1:
        db.execute(sql, rows[0])
    elif count and not sql.endswith(")"):  # not an INSERT ... VALUES (...)
        db.executemany(sql, rows)
    elif count:
        start = 0
        for size in CHUNKS:
            while count - start >= size:
                end = start + size
                db.execute(
                    multi_row(sql, size),
                    [value for row in rows[start:end] for value in row],
                )
                start = end


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
