"""Opening a Runtime (:func:`open_runtime`): its store, its Hub, and the
nursery its actors run in. :class:`Runtime` itself is in
:mod:`._runtime_commands` (commands) and :mod:`._runtime_views` (reading)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import trio

from ._checks import check_id
from ._engines._base import Engine
from ._errors import InvalidInputError, StoreError
from ._events import EventLog
from ._hub import Hub, Limits
from ._profiles import COMPANION, Profile
from ._runtime_commands import Runtime
from ._runtime_views import EngineLoad, RuntimeStatistics
from ._store._open import open_store
from ._store._records import StoreSnapshot, parse_store_spec
from ._util import single_error

__all__ = [
    "DEFAULT_LIMITS",
    "EngineLoad",
    "Runtime",
    "RuntimeStatistics",
    "check_id",
    "open_runtime",
]

#: The bounds a Runtime keeps unless told otherwise.
DEFAULT_LIMITS = Limits()

#: The old private name of :func:`._ids.check_id` (still imported by callers).
_check_id = check_id


@asynccontextmanager
async def open_runtime(
    engines: Mapping[str, Engine],
    *,
    default_engine: str | None = None,
    runtime_id: str | None = None,
    profiles: Mapping[str, Profile] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    placement: str = "embedded",
    store: str = "memory",
    close_timeout: float = 10.0,
) -> AsyncIterator[Runtime]:
    """Open a Runtime in the caller's Trio program.

    On exit every running turn is cancelled with reason ``shutdown``, the
    event streams end, and the engines are closed. In memory every Worker is
    then ``stopped``; on a durable store Workers keep their status and come
    back with it when a Runtime opens the store again.

    Args:
        engines: Engines by name (``{"local": OpenAIChatEngine(...)}``). The
            Runtime owns them from now on and closes them on exit.
        default_engine: The engine for Workers created without one; None means
            the first of ``engines``.
        runtime_id: The Runtime's id; None means the store's (a durable store
            keeps the id it was created with), or a new ``rt-<16 hex digits>``.
        profiles: Profiles by name; None means ``{"companion": COMPANION}``.
        limits: Retention and size bounds.
        placement: ``"embedded"``, or ``"process"`` for a standalone process.
        store: ``"memory"`` (nothing outlives the Runtime) or
            ``"sqlite:PATH"`` (durable: see ``docs/store.md``).
        close_timeout: Seconds allowed for closing engines on exit.

    Raises:
        InvalidInputError: No engines, an unknown default, a malformed id or
            an unknown store.
        StoreError: The store is in use by another process, is not a
            yoi-runtime store, has a newer schema, or belongs to another
            ``runtime_id``.
    """
    if not engines:
        raise InvalidInputError("a Runtime needs at least one engine", path="engines")
    default_engine = next(iter(engines)) if default_engine is None else default_engine
    if default_engine not in engines:
        raise InvalidInputError(
            f"unknown default engine {default_engine!r}", path="default_engine"
        )
    if runtime_id is not None:
        check_id(runtime_id, "runtime_id")
    path = parse_store_spec(store)
    settings = (
        dict(engines),
        default_engine,
        {COMPANION.name: COMPANION} if profiles is None else dict(profiles),
        placement,
    )
    try:
        async with open_store(
            path,
            worker_event_retention=limits.worker_event_retention,
            runtime_event_retention=limits.runtime_event_retention,
            transcript_retention=limits.transcript_retention,
            input_id_retention=limits.input_id_retention,
        ) as (opened, snapshot):
            stored_id = snapshot.runtime_id
            if stored_id is not None and runtime_id not in (None, stored_id):
                raise StoreError(
                    f"store {path} belongs to runtime {stored_id}, not {runtime_id}"
                )
            events = snapshot.runtime_events
            log = EventLog(
                limits.runtime_event_retention,
                first=snapshot.last_cursor - len(events) + 1,
                events=events,
                max_bytes=limits.runtime_event_bytes,
            )
            hub = Hub(
                stored_id or runtime_id or "rt-" + secrets.token_hex(8),
                limits,
                log,
                opened,
            )
            opened.bind(log, hub.diagnose)
            if stored_id is None:
                opened.set_runtime_id(hub.runtime_id)
            async with _run(hub, settings, snapshot) as runtime:
                yield runtime
    finally:
        with trio.move_on_after(close_timeout, shield=True):
            for engine in engines.values():
                await engine.aclose()


_Settings = tuple[dict[str, Engine], str, dict[str, Profile], str]


@asynccontextmanager
async def _run(
    hub: Hub, settings: _Settings, snapshot: StoreSnapshot
) -> AsyncIterator[Runtime]:
    """Run the Runtime's nursery: one actor task per live Worker."""
    engines, default_engine, profiles, placement = settings
    runtime: Runtime | None = None
    try:
        async with hub.store.open_writer():
            with single_error():
                async with trio.open_nursery() as nursery:
                    runtime = Runtime(
                        hub, nursery, engines, default_engine, profiles, placement
                    )
                    runtime._restore(snapshot)
                    await runtime._committed()
                    try:
                        yield runtime
                    finally:
                        # The actors never raise: a nursery error is the body's.
                        runtime._begin_close()
    finally:
        hub.log.close()
        if runtime is not None:
            runtime._status = "closed"
