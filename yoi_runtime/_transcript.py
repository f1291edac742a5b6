"""The transcript: a bounded projection of a Worker's events for people.

The Worker feeds it as events happen (input accepted, text streamed, turn
ended); readers page through it by entry index.
"""

from __future__ import annotations

import datetime

from ._errors import InvalidInputError
from ._types import Page, TranscriptEntry, TranscriptPage, TurnStatus
from ._util import parse_count

__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "Transcript"]

#: Transcript page size when the caller gives none, and the largest allowed.
DEFAULT_PAGE = 50
MAX_PAGE = 500


class _Entry:
    """A mutable transcript entry; an assistant entry grows while streaming.

    Its first text is kept as is and later pieces in a list made on the
    second, joined when the text is read (so a long stream stays linear,
    and a one-piece entry holds no list).
    """

    __slots__ = (
        "_more",
        "_text",
        "at",
        "finish_reason",
        "index",
        "kind",
        "status",
        "turn_id",
    )

    def __init__(
        self,
        index: int,
        kind: str,
        turn_id: str,
        text: str,
        status: TurnStatus,
        at: datetime.datetime,
    ) -> None:
        self.index = index
        self.kind = kind
        self.turn_id = turn_id
        self._text = text
        self._more: list[str] | None = None
        self.status = status
        self.at = at
        self.finish_reason: str | None = None

    def add_text(self, text: str) -> None:
        """Append ``text`` (a streamed piece) to the entry's text."""
        if self._more is None:
            self._more = [text]
        else:
            self._more.append(text)

    @property
    def text(self) -> str:
        """The entry's whole text so far."""
        if self._more is not None:
            self._text += "".join(self._more)
            self._more = None
        return self._text

    def snapshot(self) -> TranscriptEntry:
        return TranscriptEntry(
            index=self.index,
            kind=self.kind,
            turn_id=self.turn_id,
            text=self.text,
            status=self.status,
            at=self.at,
            finish_reason=self.finish_reason,
            truncated=self.finish_reason == "length",
        )


class Transcript:
    """Entries numbered 1, 2, 3, ...; keeps at least ``retention`` newest."""

    __slots__ = ("_entries", "_first", "_retention")

    def __init__(self, retention: int) -> None:
        self._entries: list[_Entry] = []
        self._first = 1
        self._retention = retention

    @property
    def first(self) -> int:
        """The index of the oldest entry kept in memory (last + 1 if none)."""
        return self._first

    @property
    def last(self) -> int:
        """The index of the newest entry (0 if none)."""
        return self._first + len(self._entries) - 1

    def restore(self, entries: list[TranscriptEntry], last: int) -> list[_Entry]:
        """Load stored entries (gap-free, oldest first, ending at ``last``)
        into an empty transcript, and return them."""
        restored = []
        for e in entries:
            entry = _Entry(e.index, e.kind, e.turn_id, e.text, e.status, e.at)
            entry.finish_reason = e.finish_reason
            restored.append(entry)
        self._entries = restored
        self._first = last - len(entries) + 1
        return list(self._entries)

    def add(
        self,
        kind: str,
        turn_id: str,
        text: str,
        status: TurnStatus,
        at: datetime.datetime,
    ) -> _Entry:
        entries = self._entries
        entry = _Entry(self._first + len(entries), kind, turn_id, text, status, at)
        entries.append(entry)
        if len(entries) > self._retention + (self._retention >> 2):
            drop = len(entries) - self._retention
            del entries[:drop]
            self._first += drop
        return entry

    def page(self, *, limit: int | None, cursor: str | None) -> TranscriptPage:
        """Return entries after ``cursor``, oldest first.

        Args:
            limit: Entries per page, 1 to 500; None means 50.
            cursor: A ``next_cursor`` from an earlier page, or None to start
                at the oldest retained entry.

        Raises:
            InvalidInputError: ``limit`` out of range or a malformed cursor.
        """
        limit = DEFAULT_PAGE if limit is None else limit
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInputError(
                f"limit must be between 1 and {MAX_PAGE}", path="limit"
            )
        after = 0
        if cursor is not None:
            parsed = parse_count(cursor)
            if parsed is None:
                raise InvalidInputError("malformed transcript cursor", path="cursor")
            after = parsed
        start = max(after - self._first + 1, 0)
        chunk = self._entries[start : start + limit]
        last = self._first + len(self._entries) - 1
        next_cursor = None
        if chunk and chunk[-1].index < last:
            next_cursor = str(chunk[-1].index)
        return Page(
            items=tuple(entry.snapshot() for entry in chunk),
            next_cursor=next_cursor,
            truncated=self._first > 1,
        )
