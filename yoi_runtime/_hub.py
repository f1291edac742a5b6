"""What every Worker of one Runtime shares: its bounds (:class:`Limits`), the
Runtime-wide log, usage totals, diagnostics, the allocation registry, the
engines' concurrency limits and the store (:class:`Hub`)."""

from __future__ import annotations

import collections
import datetime
import functools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence

import attrs
import trio

from ._engines._base import Completion, Engine, EngineInfo, TurnRequest, Usage
from ._errors import EngineConfigError
from ._events import EventLog
from ._store._base import Store
from ._store._journal import Journal
from ._types import Diagnostic

__all__ = ["Diagnostics", "Hub", "Limits", "MissingEngine", "now"]

_utc = datetime.UTC

# A library logs only where the program configured logging (the processes do);
# without that, nothing reaches stderr.
logging.getLogger("yoi_runtime").addHandler(logging.NullHandler())
#: Every diagnostic, as it is recorded.
_diagnostic_log = logging.getLogger("yoi_runtime.diagnostics")

#: Diagnostic levels as logging levels.
_LOG_LEVELS = {"error": logging.ERROR, "warning": logging.WARNING}


#: The time now, in UTC: ``now()``. (A partial rather than a function: no
#: Python frame for the four timestamps of every turn.)
now: Callable[[], datetime.datetime] = functools.partial(datetime.datetime.now, _utc)


@attrs.frozen
class Limits:
    """Bounds a Runtime keeps (``docs/runtime.md``, "Bounds").

    Attributes:
        worker_event_retention: Events each Worker's log retains (at least,
            unless ``worker_event_bytes`` is reached first).
        runtime_event_retention: Events the Runtime-wide log retains.
        transcript_retention: Transcript entries each Worker retains.
        history_turns: Completed exchanges a Worker keeps as history for the
            model. Each turn sends the newest of them that fit the engine's
            context (see ``docs/runtime.md``, "Context budget").
        max_input_chars: The longest input accepted, in characters.
        max_workers: The most Workers one Runtime holds (stopped and failed
            ones count: they keep their logs and transcripts).
        max_display_name_chars: The longest display name, in characters.
        max_system_prompt_chars: The longest system prompt, in characters.
        worker_event_bytes: Memory each Worker's event log may keep, in bytes
            (estimated: its events' text plus 512 per event); older events
            become a ``Gap`` in memory (a durable store keeps them on disk).
        runtime_event_bytes: The same for the Runtime-wide log, in bytes.
        max_diagnostics: Diagnostics kept (the newest; older ones are
            dropped and counted in ``Runtime.statistics()``).
        input_id_retention: The idempotency window: how many ``input_id`` s
            each Worker remembers (those of its newest turns that had one,
            also over a restart on a durable store). Input sent again with
            an older ``input_id`` is not recognised and starts a new turn
            (or is refused as busy). 0 turns idempotent input off.
    """

    worker_event_retention: int = 10_000
    runtime_event_retention: int = 100_000
    transcript_retention: int = 1_000
    history_turns: int = 20
    max_input_chars: int = 100_000
    max_workers: int = 1_000
    max_display_name_chars: int = 200
    max_system_prompt_chars: int = 100_000
    worker_event_bytes: int = 1 << 20
    runtime_event_bytes: int = 16 << 20
    max_diagnostics: int = 1_000
    input_id_retention: int = 1_000


class Diagnostics:
    """A Runtime's diagnostics: the newest ``most``, oldest first, and how
    many older ones were dropped to keep within that."""

    __slots__ = ("_items", "dropped")

    def __init__(self, most: int) -> None:
        self._items: collections.deque[Diagnostic] = collections.deque(maxlen=most)
        #: Diagnostics dropped so far (the oldest first).
        self.dropped = 0

    def append(self, item: Diagnostic) -> None:
        items = self._items
        if items.maxlen is not None and len(items) == items.maxlen:
            self.dropped += 1
        items.append(item)

    def extend(self, items: Iterable[Diagnostic]) -> None:
        for item in items:
            self.append(item)

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


@attrs.define(eq=False)
class Hub:
    """What every Worker of one Runtime shares.

    Attributes:
        runtime_id: The Runtime's id.
        limits: Its bounds.
        log: The Runtime-wide event log.
        store: Where changes go (:class:`~._store._base.Store`: memory or
            SQLite); the Workers note every event there.
        usage: Tokens used by every turn so far.
        diagnostics: What the Runtime noticed (bounded).
        allocations: The allocation registry: each exclusive scope a live
            Worker claimed, and that Worker's id.
        limiters: Per engine name, the FIFO limit on turns running at once.
    """

    runtime_id: str
    limits: Limits
    log: EventLog
    store: Store
    usage: Usage = Usage()
    diagnostics: Diagnostics = attrs.field(
        default=attrs.Factory(
            lambda self: Diagnostics(self.limits.max_diagnostics), takes_self=True
        )
    )
    allocations: dict[str, str] = attrs.field(factory=dict)
    limiters: dict[str, trio.CapacityLimiter] = attrs.field(factory=dict)
    _engine_infos: dict[str, tuple[Engine, EngineInfo]] = attrs.field(
        factory=dict, init=False
    )

    def engine_info(self, name: str, engine: Engine) -> EngineInfo:
        """Return what Workers report of ``engine``, configured as ``name``:
        one shared (frozen) :class:`EngineInfo` per engine, not one each."""
        cached = self._engine_infos.get(name)
        if cached is not None:
            known, info = cached
            same = info.kind == engine.kind and info.model == engine.model
            if known is engine and same:
                return info
        info = EngineInfo(name, engine.kind, engine.model)
        self._engine_infos[name] = (engine, info)
        return info

    @property
    def journal(self) -> Journal | None:
        """The SQLite store, None in memory (for readers not yet on
        ``Runtime.statistics()``)."""
        return self.store if isinstance(self.store, Journal) else None

    def limiter(self, name: str, engine: Engine) -> trio.CapacityLimiter | None:
        """Return the limit on ``engine``'s concurrent turns, None if none.

        One :class:`trio.CapacityLimiter` per engine name, made on first use
        from ``engine.max_concurrent``; it wakes waiting turns in FIFO order.
        """
        limiter = self.limiters.get(name)
        if limiter is None:
            if engine.max_concurrent is None:
                return None
            limiter = self.limiters[name] = trio.CapacityLimiter(engine.max_concurrent)
        return limiter

    def diagnose(
        self, level: str, code: str, message: str, worker_id: str | None = None
    ) -> None:
        """Record a diagnostic and log it (``yoi_runtime.diagnostics``)."""
        self.diagnostics.append(Diagnostic(now(), level, code, message, worker_id))
        _diagnostic_log.log(
            _LOG_LEVELS.get(level, logging.INFO),
            "diagnostic %s: %s%s",
            code,
            message,
            "" if worker_id is None else f" worker={worker_id}",
            extra={
                "code": code,
                "worker": worker_id,
                "runtime_id": self.runtime_id,
                "request_id": None,  # not the request whose task spawned it
            },
        )

    def claim(self, scope: str, worker_id: str) -> None:
        """Allocate ``scope`` to ``worker_id`` (the caller checked it is free)."""
        self.allocations[scope] = worker_id
        self.store.claim(scope, worker_id)

    def release(self, worker_id: str, scopes: Sequence[str]) -> None:
        """Free every one of ``scopes`` that ``worker_id`` holds."""
        for scope in scopes:
            if self.allocations.get(scope) == worker_id:
                del self.allocations[scope]
                self.store.release(scope)


class MissingEngine:
    """Stands in for an engine a restarted Runtime no longer has: every turn
    fails with ``engine_config_error``."""

    context_tokens: int | None = None
    max_tokens: int | None = None
    max_concurrent: int | None = None

    def __init__(self, info: EngineInfo) -> None:
        self.kind = info.kind
        self.model = info.model
        self._name = info.name

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        await trio.lowlevel.checkpoint()
        return [0 for _ in texts]

    async def run_turn(self, request: TurnRequest, listener: object) -> Completion:
        await trio.lowlevel.checkpoint()
        raise EngineConfigError(
            f"engine {self._name!r} is not configured in this runtime any more"
        )

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
