"""The RuntimeRegistry: the backend's aggregation boundary over Runtimes.

The registry looks Runtimes up by ``runtime_id``, projects their summaries,
and routes every operation to the right handle by ``runtime_id`` +
``worker_id``, applying the visibility policy, the command policy and the
audit sink on the way. It runs no Worker, owns no Worker record, no live
allocation and no engine (those are each Runtime's), and it does not own the
handles' lifetimes either: whoever opened a handle closes it.

Errors: :class:`UnknownRuntimeError` for an id nobody registered,
:class:`WorkerNotVisibleError` for a Worker the policy hides,
:class:`CommandRefusedError` for a refused command; everything a handle
raises passes through unchanged (``worker_not_found``, ``worker_busy`` with
its details, ``runtime_unavailable``, ``operation_unsupported``,
``invalid_input``, ...).
"""

from __future__ import annotations

import datetime
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar, Unpack

import attrs

from yoi_runtime import (
    CancelResult,
    Diagnostic,
    Page,
    ScopeConflictError,
    TranscriptPage,
    TurnSummary,
    WorkerOptions,
    YoiRuntimeError,
)

from ._aggregate import AggregateSubscription, decode_cursor, visible_events
from ._audit import AuditSink, audited
from ._errors import (
    CommandRefusedError,
    RuntimeExistsError,
    UnknownRuntimeError,
    WorkerNotVisibleError,
)
from ._follow import Follower, WorkerEventStream
from ._handle import RuntimeHandle
from ._listing import WorkerListing, gather, list_every_page, total_usage
from ._policy import (
    ALLOW_ALL,
    EVERYONE_SEES_ALL,
    Caller,
    Command,
    CommandPolicy,
    Operation,
    VisibilityPolicy,
)
from ._views import RuntimeKind, RuntimeView, WorkerView, WorkerViewPage

__all__ = ["RuntimeRegistry"]

T = TypeVar("T")


class RuntimeRegistry:
    """Runtimes by id, and every operation routed to them.

    Args:
        visibility: Which Workers a caller may see (default: all).
        commands: Which commands a caller may run (default: all).
        audit: Receives one record per command; None records nothing.
        diagnostics_retention: How many of its own diagnostics it keeps.
    """

    def __init__(
        self,
        *,
        visibility: VisibilityPolicy = EVERYONE_SEES_ALL,
        commands: CommandPolicy = ALLOW_ALL,
        audit: AuditSink | None = None,
        diagnostics_retention: int = 1000,
    ) -> None:
        self._visibility = visibility
        self._commands = commands
        self._audit = audit
        self._handles: dict[str, RuntimeHandle] = {}
        self._diagnostics: deque[Diagnostic] = deque(maxlen=diagnostics_retention)

    # -- the Runtimes -----------------------------------------------------------

    def add(self, handle: RuntimeHandle) -> None:
        """Register a handle under its ``runtime_id``.

        Raises:
            RuntimeExistsError: That id is registered already.
        """
        runtime_id = handle.runtime_id
        if runtime_id in self._handles:
            raise RuntimeExistsError(
                f"runtime {runtime_id} is registered already", runtime_id=runtime_id
            )
        self._handles[runtime_id] = handle

    def get(self, runtime_id: str) -> RuntimeHandle:
        """Return the handle registered under ``runtime_id``.

        Raises:
            UnknownRuntimeError: No such Runtime.
        """
        try:
            return self._handles[runtime_id]
        except KeyError:
            raise UnknownRuntimeError(
                f"no runtime {runtime_id!r}", runtime_id=runtime_id
            ) from None

    @property
    def runtime_ids(self) -> tuple[str, ...]:
        """The registered ids, in registration order."""
        return tuple(self._handles)

    async def describe(self, runtime_id: str) -> RuntimeView:
        """Return one Runtime's projection (``status="unavailable"`` when down),
        with ``usage``: the tokens of all its Workers, counted by walking
        every page of its listing (left None when that fails).

        Raises:
            UnknownRuntimeError: No such Runtime.
        """
        handle = self.get(runtime_id)
        view = await self._describe(handle)
        if view.usage is not None or view.status == "unavailable":
            return view
        return attrs.evolve(view, usage=await total_usage(handle))

    async def list_runtimes(self) -> tuple[RuntimeView, ...]:
        """Describe every Runtime, concurrently, in registration order.

        A Runtime that is down is listed as ``unavailable``; it never breaks
        or delays the list beyond its handle's own timeouts.
        """
        return tuple(await gather(self._describe, list(self._handles.values())))

    async def _describe(self, handle: RuntimeHandle) -> RuntimeView:
        try:
            return await handle.describe()
        except YoiRuntimeError as exc:  # describe() should not raise; be safe
            self._note("describe_failed", f"runtime {handle.runtime_id}: {exc.code}")
            return RuntimeView.of(
                handle.runtime_id, handle.kind, "unavailable", None, exc.code
            )

    def diagnostics(self) -> tuple[Diagnostic, ...]:
        """What the registry noticed, oldest first: Workers hidden from a
        caller who named them (with the policy's reason), audit records that
        could not be stored, Runtimes that could not be listed."""
        return tuple(self._diagnostics)

    def _note(self, code: str, message: str, worker_id: str | None = None) -> None:
        now = datetime.datetime.now(datetime.UTC)
        self._diagnostics.append(Diagnostic(now, "warning", code, message, worker_id))

    # -- observation ------------------------------------------------------------

    async def _visible(
        self, caller: Caller, handle: RuntimeHandle, worker_id: str
    ) -> WorkerView:
        """The Worker's projection, if ``caller`` may see it.

        Raises:
            WorkerNotVisibleError: The policy hides it (the reason is noted).
        """
        worker = await handle.get_worker(worker_id)
        reason = self._visibility.why_hidden(caller, worker)
        if reason is None:
            return worker
        self._note(
            "worker_hidden",
            f"runtime {handle.runtime_id}: hidden from {caller.caller_id}: {reason}",
            worker_id,
        )
        raise WorkerNotVisibleError(
            f"no worker {worker_id!r} in runtime {handle.runtime_id}",
            worker_id=worker_id,
            reason=reason,
        )

    async def _may_see(
        self, caller: Caller, handle: RuntimeHandle, worker_id: str
    ) -> bool:
        """Whether ``caller`` may see that Worker (False if it is gone)."""
        try:
            worker = await handle.get_worker(worker_id)
        except YoiRuntimeError:
            return False
        return self._visibility.why_hidden(caller, worker) is None

    async def get_worker(
        self, caller: Caller, runtime_id: str, worker_id: str
    ) -> WorkerView:
        """Return one Worker's projection."""
        return await self._visible(caller, self.get(runtime_id), worker_id)

    async def list_workers(
        self,
        caller: Caller,
        runtime_id: str,
        *,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> WorkerViewPage:
        """One page of a Runtime's Workers, oldest first, hidden ones left out.

        Paging is the Runtime's: a page holds at most ``limit`` Workers, fewer
        when some are hidden; follow ``next_cursor`` until it is None.
        """
        page = await self.get(runtime_id).list_workers(
            status=status, limit=limit, cursor=cursor
        )
        workers = tuple(w for w in page.items if self._sees(caller, w))
        return Page(workers, page.next_cursor)

    def _sees(self, caller: Caller, worker: WorkerView) -> bool:
        return self._visibility.why_hidden(caller, worker) is None

    def sees(self, caller: Caller, worker: WorkerView) -> bool:
        """Whether the visibility policy shows ``worker`` to ``caller``."""
        return self._sees(caller, worker)

    def handles(self) -> tuple[RuntimeHandle, ...]:
        """Every registered handle, in registration order."""
        return tuple(self._handles.values())

    async def list_all_workers(
        self,
        caller: Caller,
        runtime_id: str | None = None,
        *,
        status: str | None = None,
    ) -> WorkerListing:
        """Every visible Worker of one Runtime or of all, following every page.

        Runtimes are listed concurrently; one that fails (down, or refusing)
        is named in ``unavailable`` and the others are still listed.

        Raises:
            UnknownRuntimeError: ``runtime_id`` names no Runtime.
        """
        handles = self.handles() if runtime_id is None else (self.get(runtime_id),)
        listing = await list_every_page(handles, partial(self._sees, caller), status)
        for runtime_id in listing.unavailable:
            self._note("list_failed", f"runtime {runtime_id} could not be listed")
        return listing

    async def transcript(
        self,
        caller: Caller,
        runtime_id: str,
        worker_id: str,
        *,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> TranscriptPage:
        """A page of a visible Worker's transcript."""
        handle = self.get(runtime_id)
        await self._visible(caller, handle, worker_id)
        return await handle.transcript(worker_id, limit=limit, cursor=cursor)

    def subscribe(
        self,
        caller: Caller,
        runtime_id: str,
        worker_id: str,
        *,
        after: int | None = None,
    ) -> WorkerEventStream:
        """Follow a visible Worker's events (enter the result to start).

        Entering checks visibility and opens the stream once, raising what
        that met (``operation_unsupported`` on a compat source); then the
        stream resumes by itself when the Runtime goes away and comes back.

        Raises:
            UnknownRuntimeError: No such Runtime.
        """
        handle = self.get(runtime_id)

        async def check() -> None:
            await self._visible(caller, handle, worker_id)

        return WorkerEventStream(Follower(handle, worker_id, after), check)

    def subscribe_all(
        self, caller: Caller, *, after: str | None = None
    ) -> AggregateSubscription:
        """Follow every visible Worker of every Runtime (enter the result).

        Args:
            caller: Whose visibility applies (decided once per Worker).
            after: An opaque cursor from an earlier subscription's
                ``position`` (or an item's); None starts from now.

        Raises:
            InvalidInputError: ``after`` is not such a cursor.
        """
        positions = {} if after is None else decode_cursor(after)
        followers = [
            Follower(
                handle,
                None,
                positions.get(runtime_id),
                select=visible_events(handle, partial(self._sees, caller)),
            )
            for runtime_id, handle in self._handles.items()
            if handle.kind is not RuntimeKind.COMPAT_LOCAL_POD
        ]
        known = {k: v for k, v in positions.items() if k in self._handles}
        return AggregateSubscription(followers, known)

    # -- commands ---------------------------------------------------------------

    async def create_worker(
        self,
        caller: Caller,
        runtime_id: str,
        profile: str = "companion",
        *,
        request_id: str | None = None,
        **options: Unpack[WorkerOptions],
    ) -> WorkerView:
        """Create a Worker in a Runtime (audited as ``create``).

        Every field reaches the Runtime through its handle, ``scopes``
        included; none is dropped (a compat source refuses every create
        with ``OperationUnsupportedError``).

        Args:
            request_id: Recorded in the audit record.
            options: :class:`yoi_runtime.WorkerOptions`, passed on as they
                are.

        Raises:
            ScopeConflictError: A live Worker of that Runtime holds one of
                ``scopes``. It names the holder only when ``caller`` may see
                it; otherwise its ``worker_id`` is ``""``, so a refused
                claim reveals no hidden Worker.
        """

        async def run(handle: RuntimeHandle) -> WorkerView:
            try:
                return await handle.create_worker(profile, **options)
            except ScopeConflictError as exc:
                if await self._may_see(caller, handle, exc.worker_id):
                    raise
                raise ScopeConflictError(
                    f"scope {exc.scope!r} is held by another live Worker",
                    worker_id="",
                    scope=exc.scope,
                ) from None

        return await self._command(
            caller,
            Operation.CREATE,
            runtime_id,
            options.get("worker_id"),
            run,
            profile=profile,
            request_id=request_id,
        )

    async def send_input(
        self,
        caller: Caller,
        runtime_id: str,
        worker_id: str,
        text: str,
        *,
        input_id: str | None = None,
        request_id: str | None = None,
    ) -> TurnSummary:
        """Give a visible Worker input (audited as ``input``, with the turn
        it started).

        Args:
            input_id: The idempotency key, passed to the Runtime.
            request_id: Recorded in the audit record.
        """
        return await self._command(
            caller,
            Operation.INPUT,
            runtime_id,
            worker_id,
            lambda handle: handle.send_input(worker_id, text, input_id=input_id),
            request_id=request_id,
        )

    async def cancel(
        self,
        caller: Caller,
        runtime_id: str,
        worker_id: str,
        *,
        turn_id: str | None = None,
        reason: str | None = None,
        request_id: str | None = None,
    ) -> CancelResult:
        """Cancel a visible Worker's turn (audited as ``cancel``)."""
        return await self._command(
            caller,
            Operation.CANCEL,
            runtime_id,
            worker_id,
            lambda handle: handle.cancel(worker_id, turn_id=turn_id, reason=reason),
            request_id=request_id,
            turn_id=turn_id,
        )

    async def stop(
        self,
        caller: Caller,
        runtime_id: str,
        worker_id: str,
        *,
        reason: str | None = None,
        request_id: str | None = None,
    ) -> WorkerView:
        """Stop a visible Worker (audited as ``stop``, with the turn it
        ended, if any)."""
        return await self._command(
            caller,
            Operation.STOP,
            runtime_id,
            worker_id,
            lambda handle: handle.stop(worker_id, reason=reason),
            request_id=request_id,
        )

    async def _command(
        self,
        caller: Caller,
        operation: Operation,
        runtime_id: str,
        worker_id: str | None,
        run: Callable[[RuntimeHandle], Awaitable[T]],
        *,
        profile: str | None = None,
        request_id: str | None = None,
        turn_id: str | None = None,
    ) -> T:
        """Look up, check visibility and policy, run, and audit one command.

        ``worker_id`` is None only for a create without a requested id. The
        audit record gets the profile, the turn (``turn_id``, else the one
        the command started, cancelled or ended) and ``request_id``.
        """
        async with audited(
            self._audit,
            caller.caller_id,
            operation.value,
            runtime_id,
            worker_id,
            on_failure=partial(self._note, "audit_failed"),
            request_id=request_id,
        ) as entry:
            entry.profile = profile
            entry.turn_id = turn_id
            handle = self.get(runtime_id)
            worker = None
            if worker_id is not None and operation is not Operation.CREATE:
                worker = await self._visible(caller, handle, worker_id)
                profile = entry.profile = worker.profile
                if entry.turn_id is None and worker.active_turn is not None:
                    entry.turn_id = worker.active_turn.turn_id
            assert profile is not None
            command = Command(operation, runtime_id, handle.kind, profile, worker)
            refusal = self._commands.why_refused(caller, command)
            if refusal is not None:
                raise CommandRefusedError(refusal, operation=operation.value)
            result = await run(handle)
            if isinstance(result, WorkerView):
                entry.worker_id = result.worker_id
            elif isinstance(result, TurnSummary | CancelResult):
                entry.turn_id = result.turn_id or entry.turn_id
        return result
