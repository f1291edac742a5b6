"""The handle interface: how the registry reaches one Runtime.

A handle is the registry's only way to a Runtime. Three kinds implement it:
:class:`EmbeddedRuntimeHandle` (a :class:`yoi_runtime.Runtime` in this
process, called directly), ``RemoteRuntimeHandle`` (a ``yoi-runtime`` process
through :mod:`yoi_runtime.client`) and ``LocalPodSource`` (a read-only
projection of the older local-pod model). One conformance suite
(``tests/workspace/``) runs against all three.

Errors are :mod:`yoi_runtime`'s: ``WorkerNotFoundError``, ``WorkerBusyError``
(with its details), ``WorkerStoppedError``, ``InvalidInputError``,
``ScopeConflictError`` (a create claiming a scope a live Worker holds),
``OperationUnsupportedError`` (what a handle cannot do) and
``RuntimeUnavailableError`` (a Runtime that is closing or cannot be reached).
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import trio

from yoi_runtime import (
    CancelResult,
    Diagnostic,
    Event,
    Gap,
    Runtime,
    TranscriptPage,
    TurnSummary,
)

from ._views import RuntimeKind, RuntimeView, WorkerView, WorkerViewPage

__all__ = ["EmbeddedRuntimeHandle", "EventStream", "RuntimeHandle"]


class EventStream(Protocol):
    """An event subscription as a handle returns it.

    Both :class:`yoi_runtime.Subscription` and
    :class:`yoi_runtime.client.RemoteSubscription` are one. Enter it
    (``async with``), then iterate it or call :meth:`receive_batch`.
    """

    @property
    def position(self) -> int:
        """The cursor (or ``seq``) of the last item received."""
        ...

    async def __aenter__(self) -> EventStream: ...

    async def __aexit__(self, *exc_info: object) -> bool | None: ...

    def __aiter__(self) -> AsyncIterator[Event | Gap]: ...

    async def receive_batch(self, max_items: int = ...) -> list[Event | Gap]: ...

    async def aclose(self) -> None: ...


class RuntimeHandle(Protocol):
    """One Runtime (or compat source) as the registry sees it.

    Every ``async`` method may raise ``RuntimeUnavailableError`` (the Runtime
    is closing or cannot be reached within the handle's timeouts) except
    :meth:`describe`, which reports that as ``status="unavailable"``.
    """

    @property
    def runtime_id(self) -> str:
        """The id the registry routes by (fixed for the handle's life)."""
        ...

    @property
    def kind(self) -> RuntimeKind:
        """Which kind of handle this is."""
        ...

    async def describe(self) -> RuntimeView:
        """Return the Runtime's projection; never raises for a Runtime that
        is down (``status="unavailable"``, with the last known capabilities)."""
        ...

    async def diagnostics(self) -> tuple[Diagnostic, ...]:
        """Return what the Runtime (or source) noticed, oldest first."""
        ...

    async def list_workers(
        self,
        *,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> WorkerViewPage:
        """List Workers, oldest first (same paging as the Runtime's)."""
        ...

    async def get_worker(self, worker_id: str) -> WorkerView:
        """Return one Worker's projection."""
        ...

    async def create_worker(
        self,
        profile: str = "companion",
        *,
        display_name: str | None = None,
        engine: str | None = None,
        system_prompt: str | None = None,
        worker_id: str | None = None,
        scopes: Sequence[str] | None = None,
    ) -> WorkerView:
        """Create a Worker (``OperationUnsupportedError`` on a compat source).

        Every argument reaches the Runtime (see
        ``yoi_runtime.Runtime.create_worker``); a handle that cannot pass
        one on refuses the create rather than drop it.

        Args:
            scopes: Exclusive scopes the Worker claims in its Runtime's
                allocation registry while it is live; None claims none.

        Raises:
            ScopeConflictError: A live Worker holds one of ``scopes``.
            OperationUnsupportedError: The handle creates no Workers (a
                compat source).
        """
        ...

    async def send_input(
        self, worker_id: str, text: str, *, input_id: str | None = None
    ) -> TurnSummary:
        """Give a Worker input (``OperationUnsupportedError`` on compat)."""
        ...

    async def cancel(
        self, worker_id: str, *, turn_id: str | None = None, reason: str | None = None
    ) -> CancelResult:
        """Cancel a Worker's turn (``OperationUnsupportedError`` on compat)."""
        ...

    async def stop(self, worker_id: str, *, reason: str | None = None) -> WorkerView:
        """Stop a Worker (``OperationUnsupportedError`` on compat)."""
        ...

    async def transcript(
        self, worker_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> TranscriptPage:
        """Return a page of a Worker's transcript."""
        ...

    def subscribe(
        self, worker_id: str | None = None, *, after: int | None = None
    ) -> EventStream:
        """Follow one Worker's events, or the Runtime-wide stream.

        Errors surface when the stream is entered; a compat source raises
        ``OperationUnsupportedError`` there.
        """
        ...

    async def aclose(self) -> None:
        """Release what the handle holds (connections); idempotent."""
        ...


class EmbeddedRuntimeHandle:
    """A handle on a :class:`yoi_runtime.Runtime` in this process.

    Calls go straight to the Runtime; the handle owns nothing and closing it
    leaves the Runtime running (its ``open_runtime`` block owns it).
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    @property
    def runtime_id(self) -> str:
        return self._runtime.runtime_id

    @property
    def kind(self) -> RuntimeKind:
        return RuntimeKind.EMBEDDED

    async def describe(self) -> RuntimeView:
        summary = await self._runtime.summary()
        return RuntimeView(
            runtime_id=summary.runtime_id,
            kind=RuntimeKind.EMBEDDED,
            status=summary.status,
            authority=True,
            version=summary.version,
            protocol_version=summary.protocol_version,
            capabilities=summary.capabilities,
            workers=summary.workers,
            checked_at=datetime.datetime.now(datetime.UTC),
        )

    async def diagnostics(self) -> tuple[Diagnostic, ...]:
        return await self._runtime.diagnostics()

    async def list_workers(
        self,
        *,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> WorkerViewPage:
        page = await self._runtime.list_workers(
            status=status, limit=limit, cursor=cursor
        )
        kind = RuntimeKind.EMBEDDED
        return WorkerViewPage(
            tuple(WorkerView.from_summary(w, kind) for w in page.workers),
            page.next_cursor,
        )

    async def get_worker(self, worker_id: str) -> WorkerView:
        summary = await self._runtime.get_worker(worker_id)
        return WorkerView.from_summary(summary, RuntimeKind.EMBEDDED)

    async def create_worker(
        self,
        profile: str = "companion",
        *,
        display_name: str | None = None,
        engine: str | None = None,
        system_prompt: str | None = None,
        worker_id: str | None = None,
        scopes: Sequence[str] | None = None,
    ) -> WorkerView:
        summary = await self._runtime.create_worker(
            profile,
            display_name=display_name,
            engine=engine,
            system_prompt=system_prompt,
            worker_id=worker_id,
            scopes=scopes,
        )
        return WorkerView.from_summary(summary, RuntimeKind.EMBEDDED)

    async def send_input(
        self, worker_id: str, text: str, *, input_id: str | None = None
    ) -> TurnSummary:
        return await self._runtime.send_input(worker_id, text, input_id=input_id)

    async def cancel(
        self, worker_id: str, *, turn_id: str | None = None, reason: str | None = None
    ) -> CancelResult:
        return await self._runtime.cancel(worker_id, turn_id=turn_id, reason=reason)

    async def stop(self, worker_id: str, *, reason: str | None = None) -> WorkerView:
        summary = await self._runtime.stop(worker_id, reason=reason)
        return WorkerView.from_summary(summary, RuntimeKind.EMBEDDED)

    async def transcript(
        self, worker_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> TranscriptPage:
        return await self._runtime.transcript(worker_id, limit=limit, cursor=cursor)

    def subscribe(
        self, worker_id: str | None = None, *, after: int | None = None
    ) -> EventStream:
        return self._runtime.subscribe(worker_id, after=after)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
