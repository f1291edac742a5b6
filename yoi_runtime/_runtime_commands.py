"""The Runtime's commands (create, input, cancel, stop, ask, open_turn) and
its closing; what it reads is in :mod:`._runtime_views`."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import attrs
import trio

from . import _ask
from ._checks import (
    CONTROL_RE,
    MAX_REASON,
    check_id,
    check_scopes,
    check_text,
)
from ._errors import (
    InvalidInputError,
    LimitExceededError,
    OperationUnsupportedError,
    RuntimeUnavailableError,
    ScopeConflictError,
    WorkerExistsError,
)
from ._profiles import TOOL_PROFILES
from ._restore import bulk_restore, restore_workers
from ._runtime_views import RuntimeViews
from ._store._records import StoreSnapshot
from ._types import (
    CancelOutcome,
    CancelResult,
    TurnStatus,
    TurnSummary,
    WorkerStatus,
    WorkerSummary,
)
from ._worker import Worker

__all__ = ["Runtime"]


@attrs.define(eq=False)
class Runtime(RuntimeViews):
    """Runs Workers as supervised actors in one Trio nursery.

    Create one with :func:`open_runtime`. Every operation is a method taking
    ``worker_id``; together with :attr:`runtime_id` it is a Worker's identity.

    Errors (see :mod:`yoi_runtime._errors` for the tree): every method may
    raise :class:`RuntimeUnavailableError` once the Runtime is closing, and
    the ones taking a ``worker_id`` raise :class:`WorkerNotFoundError` for an
    unknown one.
    """

    def _check_serving(self) -> None:
        if self._status != "serving":
            raise RuntimeUnavailableError(
                f"runtime {self.runtime_id} is {self._status}"
            )
        problem = self._hub.store.problem
        if problem is not None:
            raise type(problem)(problem.message)

    async def _committed(self, worker_id: str | None = None) -> None:
        """Return once the changes made so far are durable (at once in
        memory), so the caller can acknowledge them.

        Raises:
            StoreWriteError: The store cannot be written now (the Runtime is
                degraded); the change is not acknowledged.
            StoreError: A row of ``worker_id``'s change could not be stored.
        """
        await self._hub.store.wait_committed(worker_id)

    # -- commands -----------------------------------------------------------------

    async def create_worker(
        self,
        profile: str = "companion",
        *,
        display_name: str | None = None,
        engine: str | None = None,
        system_prompt: str | None = None,
        worker_id: str | None = None,
        scopes: Sequence[str] | None = None,
    ) -> WorkerSummary:
        """See :meth:`RuntimeAPI.create_worker`."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_serving()
        limits = self._hub.limits
        check_text(display_name, "display_name", limits.max_display_name_chars)
        if display_name is not None and CONTROL_RE.search(display_name):
            raise InvalidInputError(
                "display_name must not contain control characters",
                path="display_name",
            )
        check_text(system_prompt, "system_prompt", limits.max_system_prompt_chars)
        if profile not in self._profiles:
            if profile in TOOL_PROFILES:
                raise OperationUnsupportedError(
                    f"runtime {self.runtime_id} cannot run {profile} Workers: "
                    "it offers no filesystem, shell or git tools"
                )
            raise InvalidInputError(f"unknown profile {profile!r}", path="profile")
        engine = self._default_engine if engine is None else engine
        if engine not in self._engines:
            raise InvalidInputError(f"unknown engine {engine!r}", path="engine")
        chosen = self._profiles[profile]
        prompt = chosen.system_prompt if system_prompt is None else system_prompt
        claimed = check_scopes(scopes)
        if worker_id is None:
            worker_id = "w-" + secrets.token_hex(8)
        else:
            check_id(worker_id, "worker_id")
            existing = self._workers.get(worker_id)
            if existing is not None:
                same = (
                    existing.profile,
                    existing.display_name,
                    existing.engine_name,
                    existing.system_prompt,
                    existing.scopes,
                ) == (profile, display_name, engine, prompt, claimed)
                if not same:
                    raise WorkerExistsError(
                        f"worker {worker_id} exists with other settings",
                        worker_id=worker_id,
                    )
                await self._committed()
                return existing.summary()
        if len(self._workers) >= limits.max_workers:
            raise LimitExceededError(
                f"runtime {self.runtime_id} holds {limits.max_workers} Workers, "
                "its limit",
                limit="max_workers",
                value=limits.max_workers,
            )
        hub = self._hub
        for scope in claimed:
            holder = hub.allocations.get(scope)
            if holder is not None:
                raise ScopeConflictError(
                    f"scope {scope!r} is held by worker {holder}",
                    worker_id=holder,
                    scope=scope,
                )
        worker = Worker(
            hub,
            worker_id,
            self._next_ordinal,
            profile,
            prompt,
            display_name,
            engine,
            self._engines[engine],
            chosen.tools,
            claimed,
        )
        self._next_ordinal += 1
        self._adopt(worker)
        for scope in claimed:
            hub.claim(scope, worker_id)
        worker.announce()
        await self._committed(worker_id)
        return worker.summary()

    def _adopt(self, worker: Worker) -> None:
        worker.log.set_max_bytes(self._hub.limits.worker_event_bytes)
        self._workers[worker.worker_id] = worker
        self._ordered.append(worker)
        if worker.status not in (WorkerStatus.STOPPED, WorkerStatus.FAILED):
            name = f"yoi-worker-{worker.worker_id}"
            self._nursery.start_soon(worker.run, name=name)

    async def send_input(
        self, worker_id: str, text: str, *, input_id: str | None = None
    ) -> TurnSummary:
        """See :meth:`RuntimeAPI.send_input`."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_serving()
        worker = self._worker(worker_id)
        if not isinstance(text, str) or not text:
            raise InvalidInputError("input must be a non-empty string", path="text")
        if len(text) > self._hub.limits.max_input_chars:
            raise InvalidInputError(
                f"input is longer than {self._hub.limits.max_input_chars} characters",
                path="text",
            )
        check_text(text, "text")
        if input_id is not None:
            check_id(input_id, "input_id")
        turn = worker.accept_input(text, input_id)
        # Let the actor start the turn before the caller goes on (this is
        # _committed(), inlined: a coroutine less on every turn).
        await self._hub.store.wait_committed(worker_id)
        return turn

    async def cancel(
        self, worker_id: str, *, turn_id: str | None = None, reason: str | None = None
    ) -> CancelResult:
        """See :meth:`RuntimeAPI.cancel`."""
        await trio.lowlevel.checkpoint()
        self._check_serving()
        worker = self._worker(worker_id)
        check_text(reason, "reason", MAX_REASON)
        turn = worker.find_turn(turn_id)
        if turn is None:
            return CancelResult(CancelOutcome.NO_ACTIVE_TURN, worker_id)
        worker.cancel(turn, reason)
        await turn.wait_done()
        await self._committed()
        outcome = (
            CancelOutcome.CANCELLED
            if turn.status is TurnStatus.CANCELLED
            else CancelOutcome.ALREADY_COMPLETED
        )
        return CancelResult(outcome, worker_id, turn.turn_id)

    async def stop(self, worker_id: str, *, reason: str | None = None) -> WorkerSummary:
        """See :meth:`RuntimeAPI.stop`."""
        await trio.lowlevel.checkpoint()
        self._check_serving()
        worker = self._worker(worker_id)
        check_text(reason, "reason", MAX_REASON)
        worker.stop(reason)
        await worker.wait_ended()
        await self._committed()
        return worker.summary()

    ask = _ask.ask

    open_turn = _ask.open_turn

    # -- closing ------------------------------------------------------------------

    async def drain(self, reason: str = "shutdown") -> None:
        """Stop taking commands and stop every Worker; wait until all ended.

        Running turns end ``cancelled`` with ``reason``. In memory every
        Worker ends ``stopped`` (``worker.stopped`` with ``reason``); on a
        durable store it keeps its status for the next start. Observation keeps
        working: subscribers can still read every event, and the streams end
        when the Runtime closes. Leaving :func:`open_runtime` drains
        implicitly. Idempotent.

        Afterwards every command raises :class:`RuntimeUnavailableError`.
        """
        self._begin_close(reason)
        for worker in self._ordered:
            await worker.wait_ended()

    def _begin_close(self, reason: str = "shutdown") -> None:
        if self._status == "serving":
            self._status = "closing"
        durable = self._hub.store.durable
        for worker in self._ordered:
            if durable:
                worker.close(reason)
            else:
                worker.stop(reason)

    def _restore(self, snapshot: StoreSnapshot) -> None:
        self._hub.store.on_failure = self._store_failed
        with bulk_restore(len(snapshot.workers)):
            for worker in restore_workers(self._hub, snapshot, self._engines):
                self._adopt(worker)
                self._next_ordinal = max(self._next_ordinal, worker.ordinal + 1)

    def _store_failed(self, message: str) -> None:
        self._hub.diagnose("error", "store_failed", message)
        self._begin_close("store_failed")
