"""The handle interface, and the one adapter from the Runtime API to it.

A handle is the registry's only way to a Runtime: :class:`RuntimeHandle`.
Runtimes are reached through one adapter, :class:`RuntimeAdapter`, over any
:class:`yoi_runtime.RuntimeAPI`: a :class:`yoi_runtime.Runtime` in this
process (:class:`EmbeddedRuntimeHandle`) or a ``yoi-runtime`` process
through a reconnecting client (``RemoteRuntimeHandle``,
``yoi_workspace._remote``). The read-only ``LocalPodSource`` (a projection
of the older local-pod model) implements the interface on its own. One
conformance suite (``tests/workspace/``) runs against all of them.

Errors are :mod:`yoi_runtime`'s: ``WorkerNotFoundError``, ``WorkerBusyError``
(with its details), ``WorkerStoppedError``, ``InvalidInputError``,
``ScopeConflictError`` (a create claiming a scope a live Worker holds),
``OperationUnsupportedError`` (what a handle cannot do) and
``RuntimeUnavailableError`` (a Runtime that is closing or cannot be reached).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar, Unpack

import trio

from yoi_runtime import (
    CancelResult,
    Diagnostic,
    EventStream,
    Page,
    RuntimeAPI,
    RuntimeSummary,
    TranscriptPage,
    TurnSummary,
    WorkerOptions,
    WorkerSummary,
    YoiRuntimeError,
    forwarded,
)

from ._views import RuntimeKind, RuntimeView, WorkerView, WorkerViewPage

__all__ = [
    "EmbeddedRuntimeHandle",
    "EventStream",
    "RuntimeAdapter",
    "RuntimeHandle",
]

P = ParamSpec("P")
R = TypeVar("R")


class RuntimeHandle(Protocol):
    """One Runtime (or compat source) as the registry sees it.

    The operations are :class:`yoi_runtime.RuntimeAPI`'s (see there for
    arguments and errors), with Workers projected to :class:`WorkerView`,
    plus :meth:`describe` and :meth:`aclose`. Every ``async`` method may
    raise ``RuntimeUnavailableError`` (the Runtime is closing or cannot be
    reached within the handle's timeouts) except :meth:`describe`, which
    reports that as ``status="unavailable"``. A compat source raises
    ``OperationUnsupportedError`` for the commands (``create_worker``,
    ``send_input``, ``cancel``, ``stop``) and on entering a stream.
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

    async def diagnostics(self) -> tuple[Diagnostic, ...]: ...

    async def list_workers(
        self,
        *,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> WorkerViewPage: ...

    async def get_worker(self, worker_id: str) -> WorkerView: ...

    async def create_worker(
        self, profile: str = "companion", **options: Unpack[WorkerOptions]
    ) -> WorkerView:
        """Every argument reaches the Runtime; a handle that cannot pass one
        on refuses the create rather than drop it."""
        ...

    async def send_input(
        self, worker_id: str, text: str, *, input_id: str | None = None
    ) -> TurnSummary: ...

    async def cancel(
        self, worker_id: str, *, turn_id: str | None = None, reason: str | None = None
    ) -> CancelResult: ...

    async def stop(
        self, worker_id: str, *, reason: str | None = None
    ) -> WorkerView: ...

    async def transcript(
        self, worker_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> TranscriptPage: ...

    def subscribe(
        self, worker_id: str | None = None, *, after: int | None = None
    ) -> EventStream:
        """Errors surface when the stream is entered."""
        ...

    async def aclose(self) -> None:
        """Release what the handle holds (connections); idempotent."""
        ...


def _projected(
    operation: Callable[Concatenate[RuntimeAPI, P], Coroutine[Any, Any, WorkerSummary]],
) -> Callable[Concatenate[RuntimeAdapter, P], Coroutine[Any, Any, WorkerView]]:
    """An adapter method that calls ``operation`` and projects its Worker."""
    name = operation.__name__

    async def project(
        self: RuntimeAdapter, /, *args: P.args, **kwargs: P.kwargs
    ) -> WorkerView:
        summary: WorkerSummary = await getattr(self.api, name)(*args, **kwargs)
        return self.project(summary)

    project.__signature__ = inspect.signature(operation)  # type: ignore[attr-defined]
    project.__name__ = project.__qualname__ = name
    project.__doc__ = (
        f"See :meth:`yoi_runtime.RuntimeAPI.{name}`; the Worker projected."
    )
    return project


class RuntimeAdapter:
    """A :class:`RuntimeHandle` over any :class:`yoi_runtime.RuntimeAPI`.

    Every operation is the Runtime's; Workers come back as
    :class:`WorkerView` of this handle's ``kind``; :meth:`describe` keeps the
    last summary it saw and reports ``status="unavailable"`` with it (and
    the error's message) when the Runtime cannot be reached.

    Args:
        api: The Runtime (or a client of one) the handle calls.
        kind: The kind its projections carry.
        project: Projects one of its Workers; by default
            :meth:`WorkerView.from_summary` with ``kind``.
        remembered: Returns the last summary seen by other means (a
            reconnecting client's connect); consulted when :meth:`describe`
            cannot reach the Runtime and has seen none itself.
        on_close: Run by :meth:`aclose` (a client's connection); by default
            nothing: the handle owns nothing and closing it leaves an
            embedded Runtime running (its ``open_runtime`` block owns it).
    """

    def __init__(
        self,
        api: RuntimeAPI,
        kind: RuntimeKind,
        *,
        project: Callable[[WorkerSummary], WorkerView] | None = None,
        remembered: Callable[[], RuntimeSummary | None] | None = None,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.api = api
        self._kind = kind
        self._project = project
        self._remembered = remembered
        self._on_close = on_close
        self._last_summary: RuntimeSummary | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._kind.value} {self.api!r}>"

    @property
    def runtime_id(self) -> str:
        """The Runtime's id (:attr:`yoi_runtime.RuntimeAPI.runtime_id`)."""
        return self.api.runtime_id

    @property
    def kind(self) -> RuntimeKind:
        """The kind given when the handle was made."""
        return self._kind

    def project(self, summary: WorkerSummary) -> WorkerView:
        """Return the registry's projection of one of the Runtime's Workers."""
        if self._project is not None:
            return self._project(summary)
        return WorkerView.from_summary(summary, self._kind)

    async def describe(self) -> RuntimeView:
        """Return the Runtime's projection; never raises for a Runtime that
        cannot be reached.

        Returns:
            The live summary's projection, or ``status="unavailable"`` with
            the last summary seen (version, capabilities and Worker counts;
            None and empty if never reached) and ``error`` saying why.
        """
        try:
            summary = await self.api.summary()
        except YoiRuntimeError as exc:
            cached = self._last_summary
            if cached is None and self._remembered is not None:
                cached = self._remembered()
            return RuntimeView.of(
                self.runtime_id, self._kind, "unavailable", cached, exc.message
            )
        self._last_summary = summary
        return RuntimeView.of(self.runtime_id, self._kind, summary.status, summary)

    async def list_workers(
        self,
        *,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> WorkerViewPage:
        """See :meth:`yoi_runtime.RuntimeAPI.list_workers`; projected."""
        page = await self.api.list_workers(status=status, limit=limit, cursor=cursor)
        return Page(tuple(self.project(w) for w in page.items), page.next_cursor)

    diagnostics = forwarded(RuntimeAPI.diagnostics, "api")
    get_worker = _projected(RuntimeAPI.get_worker)
    create_worker = _projected(RuntimeAPI.create_worker)
    send_input = forwarded(RuntimeAPI.send_input, "api")
    cancel = forwarded(RuntimeAPI.cancel, "api")
    stop = _projected(RuntimeAPI.stop)
    transcript = forwarded(RuntimeAPI.transcript, "api")

    def subscribe(
        self, worker_id: str | None = None, *, after: int | None = None
    ) -> EventStream:
        """See :meth:`yoi_runtime.RuntimeAPI.subscribe`."""
        return self.api.subscribe(worker_id, after=after)

    async def aclose(self) -> None:
        """Run ``on_close`` (nothing by default); idempotent if it is."""
        if self._on_close is None:
            await trio.lowlevel.checkpoint()
        else:
            await self._on_close()


class EmbeddedRuntimeHandle(RuntimeAdapter):
    """The adapter on a :class:`yoi_runtime.Runtime` in this process.

    Calls go straight to the Runtime; closing the handle leaves the Runtime
    running (its ``open_runtime`` block owns it). Worker projections have
    kind ``embedded``.

    Args:
        runtime: The Runtime (any :class:`yoi_runtime.RuntimeAPI` will do).
    """

    def __init__(self, runtime: RuntimeAPI) -> None:
        super().__init__(runtime, RuntimeKind.EMBEDDED)


if TYPE_CHECKING:

    def _adapter_is_handle(adapter: RuntimeAdapter) -> RuntimeHandle:
        """mypy proves the adapter is a handle."""
        return adapter
