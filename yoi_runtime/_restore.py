"""Starting a Runtime again from what its store read back."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from ._engines._base import Engine, Message
from ._events import EventLog
from ._hub import Hub, MissingEngine
from ._store._records import StoredWorker, StoreSnapshot
from ._transcript import Transcript
from ._turn import Turn
from ._types import TurnStatus, WorkerStatus
from ._worker import Worker

__all__ = ["FREEZE_AFTER", "bulk_restore", "restore_worker", "restore_workers"]

#: Restoring at least this many Workers ends with ``gc.freeze()``
#: (:func:`bulk_restore`).
FREEZE_AFTER = 1_000


@contextmanager
def bulk_restore(count: int) -> Iterator[None]:
    """Keep the cyclic garbage collector out of restoring ``count`` Workers.

    The collector is disabled for the block (and re-enabled afterwards only
    if it was enabled before): rebuilding many long-lived Workers would
    otherwise set off full collections that walk every object again and
    again. With ``count`` at least :data:`FREEZE_AFTER`, ``gc.freeze()``
    then moves every object alive at that moment (the restored Workers, and
    anything else the program holds) to the permanent generation, so later
    collections skip them; a reference cycle among those objects that
    becomes garbage later is not collected until ``gc.unfreeze()``. This is
    bulk work of the library's own (opening a Runtime on a store); a single
    ``Runtime.create_worker`` never touches the collector.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if count >= FREEZE_AFTER:
            gc.freeze()
        if enabled:
            gc.enable()


def restore_workers(
    hub: Hub, snapshot: StoreSnapshot, engines: Mapping[str, Engine]
) -> list[Worker]:
    """Rebuild every stored Worker, oldest first, and its allocations.

    Turns the dead process left accepted or running become ``interrupted``
    (:func:`restore_worker`). Allocation rows it left are reclaimed, each
    with a diagnostic: a scope of a Worker that is live again is claimed for
    it anew, any other is released. A Worker whose engine this Runtime no
    longer has is restored with one whose turns fail
    (``engine_config_error``), also with a diagnostic. An empty snapshot (a
    new store, or memory) gives no Workers.
    """
    hub.diagnostics.extend(snapshot.diagnostics)
    workers = []
    for stored in snapshot.workers:
        info = stored.record.engine
        engine = engines.get(info.name)
        if engine is None:
            engine = MissingEngine(info)
            hub.diagnose(
                "warning",
                "engine_missing",
                f"engine {info.name!r} of worker {stored.record.worker_id} is not "
                "configured; the worker's turns fail until it is",
                stored.record.worker_id,
            )
        workers.append(restore_worker(hub, stored, engine))
    live = {
        worker.worker_id: worker
        for worker in workers
        if worker.status not in (WorkerStatus.STOPPED, WorkerStatus.FAILED)
    }
    for scope, holder in snapshot.allocations:
        owner = live.get(holder)
        outcome = (
            "claimed again for it"
            if owner is not None and scope in owner.scopes
            else "released: the worker is no longer live"
        )
        hub.diagnose(
            "warning",
            "allocation_reclaimed",
            f"scope {scope!r} of worker {holder} was left by a process that "
            f"died; {outcome}",
            holder,
        )
    for worker in live.values():
        for scope in worker.scopes:
            first = hub.allocations.get(scope)
            if first is None:
                hub.claim(scope, worker.worker_id)
            else:
                hub.diagnose(
                    "error",
                    "scope_conflict",
                    f"scope {scope!r} is claimed by workers {first} and "
                    f"{worker.worker_id}; it stays with {first}",
                    worker.worker_id,
                )
    return workers


def restore_worker(hub: Hub, stored: StoredWorker, engine: Engine) -> Worker:
    """Rebuild a Worker from its stored record, log, turns and transcript.

    A turn that was accepted or running when the process died becomes
    ``interrupted`` (with a ``turn.interrupted`` event, its transcript
    entries marked so) and the Worker is ``idle`` again. Call
    :meth:`Worker.run` afterwards unless the Worker is stopped or failed.
    """
    record = stored.record
    live = record.status not in (WorkerStatus.STOPPED, WorkerStatus.FAILED)
    worker = Worker(
        hub,
        record.worker_id,
        record.ordinal,
        record.profile,
        record.system_prompt,
        record.display_name,
        record.engine.name,
        engine,
        record.tools,
        record.scopes,
        record.created_at,
        # Idle or running is not stored: a turn left active says running.
        WorkerStatus.IDLE if live else record.status,
        record.error,
        stored.turns,
        stored.usage,
    )
    worker.engine_info = record.engine
    limits = hub.limits
    first = stored.last_seq - len(stored.events) + 1
    log = EventLog(limits.worker_event_retention, first=first, events=stored.events)
    transcript = Transcript(limits.transcript_retention)
    entries = transcript.restore(stored.transcript, stored.transcript_last)
    turns = [Turn.restore(summary) for summary in stored.recent_turns]
    history: list[Message] = []
    for user, answer in zip(entries, entries[1:], strict=False):
        if (
            user.kind == "user"
            and answer.kind == "assistant"
            and answer.turn_id == user.turn_id
            and answer.status is TurnStatus.COMPLETED
        ):
            history += (
                Message("user", user.text),
                Message("assistant", answer.text),
            )
    worker.resume(record.stop_reason, log, transcript, history, turns, entries)
    return worker
