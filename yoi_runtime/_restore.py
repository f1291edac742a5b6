"""Starting a Runtime again from its durable store."""

from __future__ import annotations

from collections.abc import Mapping

from ._engines._base import Engine
from ._store._records import StoreSnapshot
from ._types import WorkerStatus
from ._worker import Hub, MissingEngine, Worker

__all__ = ["restore_workers"]


def restore_workers(
    hub: Hub, snapshot: StoreSnapshot, engines: Mapping[str, Engine]
) -> list[Worker]:
    """Rebuild every stored Worker, oldest first, and its allocations.

    Turns the dead process left accepted or running become ``interrupted``
    (:meth:`Worker.restore`). Allocation rows it left are reclaimed, each with
    a diagnostic: a scope of a Worker that is live again is claimed for it
    anew, any other is released. A Worker whose engine this Runtime no longer
    has is restored with one whose turns fail (``engine_config_error``), also
    with a diagnostic.
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
        workers.append(Worker.restore(hub, stored, engine))
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
