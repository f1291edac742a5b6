"""The Runtime's commands (create, input, cancel, stop, ask, open_turn) and
its closing; what it reads is in :mod:`._runtime_views`."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

import attrs
import trio

from . import _ask
from ._ask import DEFAULT_CANCEL_TIMEOUT, TurnResult, TurnStream
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
        """Create a Worker and start its actor.

        On a durable store the Worker is committed before this returns.

        Args:
            profile: A profile name from :attr:`Capabilities.profiles`.
            display_name: A label for people; never used as identity. At
                most ``Limits.max_display_name_chars`` characters, without
                control characters.
            engine: An engine name from :attr:`Capabilities.engines`; None
                picks the Runtime's default engine.
            system_prompt: Replaces the profile's system prompt; at most
                ``Limits.max_system_prompt_chars`` characters.
            worker_id: Your own id, for idempotent create: creating again with
                the same id and settings returns the existing Worker.
            scopes: Exclusive scopes to claim in the allocation registry (for
                example ``"workdir:/srv/repo"``), held while the Worker is
                live (not stopped or failed); at most 16, each 1-1024
                characters without control characters.

        Returns:
            The new (or existing) Worker, ``idle``.

        Raises:
            InvalidInputError: Unknown profile or engine, a malformed id, a
                display name or system prompt too long or with a lone
                surrogate, a display name with a control character.
            OperationUnsupportedError: A profile that needs tools (``coder``,
                ``reviewer``) on a Runtime that offers none.
            WorkerExistsError: ``worker_id`` exists with other settings.
            ScopeConflictError: A live Worker holds one of ``scopes``; its
                id is the error's ``worker_id``.
            LimitExceededError: The Runtime holds ``Limits.max_workers``.
            StoreWriteError: The durable store cannot be written now
                (:class:`StorageFullError` for a full disk).
        """
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
        """Give a Worker input; it starts a turn, or is refused at once.

        Returns as soon as the turn is accepted (on a durable store: and
        committed); follow the Worker's events (:meth:`subscribe`) for the
        answer.

        Args:
            worker_id: The Worker.
            text: The user input (at most ``Limits.max_input_chars`` chars).
            input_id: Your idempotency key for the input, recorded on the turn:
                sending the same ``input_id`` and text again returns that
                turn (as it is now) instead of starting another, also after
                a restart on a durable store.

        Returns:
            The accepted turn.

        Raises:
            WorkerBusyError: A turn is already accepted or running; nothing
                was queued.
            WorkerStoppedError: The Worker is stopped or failed.
            InvalidInputError: ``text`` is not a string, empty, too long or
                has a lone surrogate.
            IdempotencyConflictError: ``input_id`` was sent with other text.
            StoreWriteError: The durable store cannot be written now
                (:class:`StorageFullError` for a full disk); the input was
                not acknowledged.
        """
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
        """End a Worker's current turn and wait until it has ended.

        The engine's work is cancelled (an HTTP stream is closed); the turn
        becomes ``cancelled`` and the Worker ``idle``. Not an error on an idle
        Worker.

        Args:
            worker_id: The Worker.
            turn_id: The turn you mean to cancel. If it has already ended the
                outcome says so; None means whatever turn is active.
            reason: Recorded in the ``turn.cancelled`` event (at most 1,000
                characters).

        Returns:
            ``cancelled``; ``no_active_turn``; or ``already_completed`` when
            the turn ended (completed or failed) before the cancel took hold.
        """
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
        """Stop a Worker: cancel its turn, end its actor, refuse later input.

        Idempotent: stopping a stopped (or failed) Worker returns its summary.
        Waits until the actor has ended.

        Args:
            worker_id: The Worker.
            reason: Recorded in the ``turn.cancelled`` and ``worker.stopped``
                events (at most 1,000 characters).

        Returns:
            The Worker, ``stopped`` (or ``failed`` if it had crashed).
        """
        await trio.lowlevel.checkpoint()
        self._check_serving()
        worker = self._worker(worker_id)
        check_text(reason, "reason", MAX_REASON)
        worker.stop(reason)
        await worker.wait_ended()
        await self._committed()
        return worker.summary()

    async def ask(
        self,
        worker_id: str,
        text: str,
        *,
        cancel_timeout: float = DEFAULT_CANCEL_TIMEOUT,
    ) -> TurnResult:
        """Give a Worker input and return its whole answer.

        Subscribes, sends ``text`` and waits for the turn's end (see
        ``docs/embedding.md``).

        Args:
            worker_id: The Worker.
            text: The user input (at most ``Limits.max_input_chars`` chars).
            cancel_timeout: Seconds allowed for cancelling the turn when this
                call is cancelled.

        Returns:
            The completed turn's text, finish reason, usage and ids.

        Raises:
            TurnFailedError: The turn failed (``error.code`` says why).
            TurnCancelledError: Someone cancelled the turn or stopped the
                Worker, or the Runtime closed.
            WorkerBusyError: A turn is already accepted or running.
            WorkerStoppedError: The Worker is stopped or failed.
            InvalidInputError: ``text`` is not a string, empty or too long.

        Cancellation:
            Cancelling the call cancels the turn.
        """
        return await _ask.ask(self, worker_id, text, cancel_timeout=cancel_timeout)

    def open_turn(
        self,
        worker_id: str,
        text: str,
        *,
        cancel_timeout: float = DEFAULT_CANCEL_TIMEOUT,
    ) -> AbstractAsyncContextManager[TurnStream]:
        """Give a Worker input and stream that turn's answer.

        Use it as ``async with runtime.open_turn(worker_id, text) as turn:``,
        iterate ``turn`` for the text deltas, then read ``turn.result``.

        Args:
            worker_id: The Worker.
            text: The user input (at most ``Limits.max_input_chars`` chars).
            cancel_timeout: Seconds allowed for cancelling the turn when the
                block is left before the turn ended.

        Returns:
            An async context manager yielding a :class:`TurnStream`, whose
            iteration raises the turn's :class:`TurnNotCompletedError` if it
            did not complete.

        Raises:
            (on entering) WorkerBusyError, WorkerStoppedError,
            InvalidInputError: As :meth:`send_input`.

        Cancellation:
            Leaving the block before the turn ended (``break``, an error, a
            cancelled scope) cancels the turn.
        """
        return _ask.open_turn(self, worker_id, text, cancel_timeout=cancel_timeout)

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
