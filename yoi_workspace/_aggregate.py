"""One event stream over every Runtime: the registry's aggregate.

Each authority Runtime's Runtime-wide stream is followed by its own
:class:`~yoi_workspace._follow.Follower` task (reopening it with backoff
when the Runtime goes away, including a Runtime that is down when the
subscription starts); their batches meet in one memory channel of size 0, so
the merge holds at most one batch per Runtime and never queues more. Compat
sources have no events and are not followed.

The resumable cursor is opaque to its users: the URL-safe base64 (no
padding) of the JSON object ``{runtime_id: cursor}`` holding each Runtime's
position. A Runtime missing from it starts from "now"; a Runtime whose
position the Runtime refuses (a process restarted with the same id) starts
again from its beginning, announced by a :class:`StreamReset` item.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import attrs
import trio

from yoi_runtime import (
    Event,
    Gap,
    InvalidInputError,
    WorkerNotFoundError,
)
from yoi_runtime.serving import item_to_json, position_of

from ._follow import (
    MAX_BATCH,
    Batch,
    Feed,
    Followed,
    Follower,
    Selector,
)
from ._handle import RuntimeHandle
from ._views import WorkerView

__all__ = [
    "AggregateItem",
    "AggregateSubscription",
    "StreamReset",
    "decode_cursor",
    "encode_cursor",
    "visible_events",
]


def encode_cursor(positions: Mapping[str, int]) -> str:
    """The opaque cursor for per-Runtime positions (see the module docstring)."""
    text = json.dumps(dict(positions), sort_keys=True, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> dict[str, int]:
    """Per-Runtime positions from an opaque cursor.

    Raises:
        InvalidInputError: Not a cursor this module made (path ``after``).
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError):
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and type(v) is int and v >= 0 for k, v in value.items()
    ):
        raise InvalidInputError("after is not a cursor of this stream", path="after")
    return value


@attrs.frozen
class StreamReset:
    """A Runtime's stream started again from its beginning.

    Its process restarted with the same id and forgot the old positions; what
    a reader built from that Runtime's earlier events is stale.

    Attributes:
        runtime_id: The Runtime.
        reason: ``"restarted"``.
    """

    runtime_id: str
    reason: str = "restarted"


@attrs.frozen
class AggregateItem:
    """One item of the aggregate stream.

    Attributes:
        runtime_id: The Runtime it comes from.
        item: An event, a gap of that Runtime's stream, or a reset.
        position: The opaque cursor to resume after this item.
    """

    runtime_id: str
    item: Event | Gap | StreamReset
    position: str

    def to_json(self) -> dict[str, Any]:
        """The item's JSON: an event or gap as the runtime process sends it
        (a gap also names its ``runtime_id``), or ``{"type": "stream.reset",
        "runtime_id", "reason"}``; each with ``position`` added."""
        item = self.item
        if isinstance(item, StreamReset):
            value = {"type": "stream.reset", **attrs.asdict(item)}
        else:
            value = item_to_json(item)
            value["runtime_id"] = self.runtime_id
        value["position"] = self.position
        return value


@attrs.define(eq=False)
class AggregateSubscription(Followed):
    """Every visible Worker's events, from every Runtime, in one stream.

    Made by :meth:`RuntimeRegistry.subscribe_all`. Enter it (``async
    with``), then call :meth:`receive_batch`; :attr:`position` is the opaque
    cursor to resume from. Items of one Runtime keep their order; items of
    different Runtimes interleave as they arrive. It never ends on its own
    while a remote Runtime is followed: a Runtime that goes away is followed
    again when it comes back, without breaking the others.
    """

    _followers: Sequence[Follower]
    _positions: dict[str, int]
    _pending: deque[AggregateItem] = attrs.field(factory=deque)
    _position: str | None = None

    @property
    def position(self) -> str:
        """The cursor after the last item received (pass it as ``after``)."""
        if self._position is not None and self._pending:
            return self._position
        return encode_cursor(self._positions)

    async def __aenter__(self) -> AggregateSubscription:
        async def start(nursery: trio.Nursery, send: Feed) -> None:
            async with trio.open_nursery() as starting:
                for follower in self._followers:
                    starting.start_soon(self._start, nursery, follower, send.clone())

        await self._open(start)
        return self

    async def _start(
        self, nursery: trio.Nursery, follower: Follower, send: Feed
    ) -> None:
        """Start one follower; wait for its first attempt (pins "now")."""
        pinned = await nursery.start(partial(follower.run, send, persistent=True))
        if isinstance(pinned, int):
            self._positions[follower.handle.runtime_id] = pinned

    async def receive_batch(self, max_items: int = MAX_BATCH) -> list[AggregateItem]:
        """Wait for at least one item; return every ready one, up to a limit.

        Raises:
            trio.EndOfChannel: Every followed Runtime's stream ended (only
                embedded ones end: when they close).

        Cancellation: safe; nothing is lost by a cancelled call.
        """
        while not self._pending:
            self._take(await self._next())
        count = min(max_items, len(self._pending))
        batch = [self._pending.popleft() for _ in range(count)]
        self._position = batch[-1].position
        return batch

    def _take(self, batch: Batch) -> None:
        runtime_id = batch.runtime_id
        positions = self._positions
        if batch.reset:
            positions[runtime_id] = 0
            reset = StreamReset(runtime_id)
            self._pending.append(
                AggregateItem(runtime_id, reset, encode_cursor(positions))
            )
        for event in batch.items:
            positions[runtime_id] = position_of(event, worker_stream=False)
            cursor = encode_cursor(positions)
            self._pending.append(AggregateItem(runtime_id, event, cursor))
        positions[runtime_id] = batch.position


def visible_events(
    handle: RuntimeHandle, sees: Callable[[WorkerView], bool]
) -> Selector:
    """A selector dropping the events of Workers ``sees`` rejects.

    Each Worker is looked up (``handle.get_worker``) and decided once, the
    first time one of its events arrives; a Worker the Runtime no longer
    knows is hidden. ``RuntimeUnavailableError`` from the lookup propagates
    (the follower reopens the stream before the batch).
    """
    decided: dict[str, bool] = {}

    async def select(items: list[Event | Gap]) -> list[Event | Gap]:
        kept: list[Event | Gap] = []
        for item in items:
            if isinstance(item, Event):
                if item.worker_id not in decided:
                    try:
                        worker = await handle.get_worker(item.worker_id)
                    except WorkerNotFoundError:
                        decided[item.worker_id] = False
                    else:
                        decided[item.worker_id] = sees(worker)
                if not decided[item.worker_id]:
                    continue
            kept.append(item)
        return kept

    return select
