"""The Runtime API, written once: :class:`RuntimeAPI` and :class:`EventStream`.

Every way of reaching a Runtime implements these Protocols: the embedded
:class:`~yoi_runtime.Runtime`, the client
:class:`~yoi_runtime.client.RuntimeClient` and the workspace's reconnecting
wrapper of it. mypy checks each against them (a field added to the API
reaches every layer or fails type checking), the conformance suite
(``tests/conformance/``) runs against each, and every operation is
documented here; the implementations say only what is their own.

Errors (the tree: :mod:`yoi_runtime._errors`): every operation may raise
:class:`~yoi_runtime.RuntimeUnavailableError` (the Runtime is closing, or
its process is out of reach), those taking a ``worker_id``
:class:`~yoi_runtime.WorkerNotFoundError` for an unknown one; through the
network also :class:`~yoi_runtime.UnauthorizedError` (token refused) and
:class:`~yoi_runtime.InternalError` (the process failed or answered what
the client does not understand).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    ParamSpec,
    Protocol,
    TypedDict,
    TypeVar,
    Unpack,
)

from ._engines._base import Usage
from ._events import Event, Gap
from ._types import (
    CancelResult,
    Capabilities,
    Diagnostic,
    RuntimeSummary,
    TranscriptPage,
    TurnSummary,
    WorkerPage,
    WorkerStatus,
    WorkerSummary,
)

if TYPE_CHECKING:
    from ._ask import TurnResult, TurnStream

__all__ = [
    "DEFAULT_CANCEL_TIMEOUT",
    "EventStream",
    "RuntimeAPI",
    "TurnEvents",
    "TurnHost",
    "WorkerOptions",
    "forwarded",
]

P = ParamSpec("P")
R = TypeVar("R")

#: Seconds allowed, by default, for the cancel sent when a caller stops
#: following a turn (it waits until the turn ended).
DEFAULT_CANCEL_TIMEOUT = 10.0


class WorkerOptions(TypedDict, total=False):
    """The keyword arguments of :meth:`RuntimeAPI.create_worker` after
    ``profile``, declared once: every layer (the client, the workspace's
    handles and registry) passes them on as ``**options``, so a field added
    here reaches the Runtime or fails type checking.

    Attributes:
        display_name: A label for people; never used as identity. At most
            ``Limits.max_display_name_chars`` characters, without control
            characters.
        engine: An engine name from :attr:`Capabilities.engines`; None picks
            the Runtime's default engine.
        system_prompt: Replaces the profile's system prompt; at most
            ``Limits.max_system_prompt_chars`` characters.
        worker_id: Your own id, for idempotent create: creating again with
            the same id and settings returns the existing Worker.
        scopes: Exclusive scopes to claim in the allocation registry (for
            example ``"workdir:/srv/repo"``), held while the Worker is live
            (not stopped or failed); at most 16, each 1-1024 characters
            without control characters.
    """

    display_name: str | None
    engine: str | None
    system_prompt: str | None
    worker_id: str | None
    scopes: Sequence[str] | None


class TurnEvents(Protocol):
    """What a turn reads of an :class:`EventStream`: entering it and
    :meth:`EventStream.receive`."""

    async def __aenter__(self) -> object: ...

    async def __aexit__(self, *exc_info: object) -> bool | None: ...

    async def receive(self) -> Event | Gap: ...


class EventStream(TurnEvents, Protocol):
    """One event stream: replay, then live, then the end.

    :class:`~yoi_runtime.Subscription` (embedded) and
    :class:`~yoi_runtime.client.RemoteSubscription` (over WebSocket, across
    reconnects) are one. Enter it (``async with``), then iterate it (``async
    for item in events``) or call :meth:`receive` / :meth:`receive_batch`.
    Items are :class:`~yoi_runtime.Event` or :class:`~yoi_runtime.Gap` (where
    retention dropped events), in order, without duplicate. A Worker's stream
    ends after ``worker.stopped`` or ``worker.failed``; the Runtime-wide
    stream ends when the Runtime closes.
    """

    @property
    def position(self) -> int:
        """The cursor of the last item received: an event's ``seq`` on a
        Worker stream, its ``cursor`` on the Runtime-wide stream. Pass it as
        ``after`` to resume without gap or duplicate."""

    async def __aenter__(self) -> EventStream: ...

    async def __aexit__(self, *exc_info: object) -> bool | None: ...

    def __aiter__(self) -> AsyncIterator[Event | Gap]: ...

    async def receive(self) -> Event | Gap:
        """Wait for and return the next item.

        Raises:
            trio.EndOfChannel: The stream ended and everything was received.
            trio.ClosedResourceError: :meth:`aclose` was called.
            RuntimeUnavailableError: (remote) The connection broke and could
                not be restored in time.
        """

    async def receive_batch(self, max_items: int = ...) -> list[Event | Gap]:
        """Wait for at least one item; return every ready one, up to
        ``max_items``.

        Raises:
            As :meth:`receive`.
        """

    async def aclose(self) -> None:
        """Stop following the stream; idempotent."""


class TurnHost(Protocol):
    """The operations a turn needs (:func:`yoi_runtime._ask.open_turn`): the
    part of :class:`RuntimeAPI` a front end that is not a whole Runtime (the
    ``yoi`` command's workspace target) also offers.

    See the module docstring for the errors every operation may raise.
    """

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
            input_id: Your idempotency key for the input, recorded on the turn
                (over HTTP: the body's ``input_id`` or the ``Idempotency-Key``
                header): sending the same ``input_id`` and text again returns
                that turn (as it is now) instead of starting another, also
                after a restart on a durable store, so a call is safe to
                retry after a timeout.

        Returns:
            The accepted turn.

        Raises:
            WorkerBusyError: A turn is already accepted or running; nothing
                was queued.
            WorkerStoppedError: The Worker is stopped or failed.
            InvalidInputError: ``text`` is not a string, empty, too long or
                has a lone surrogate; a malformed ``input_id``.
            IdempotencyConflictError: ``input_id`` was sent with other text.
            StoreWriteError: The durable store cannot be written now
                (:class:`StorageFullError` for a full disk); the input was
                not acknowledged.
        """

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

    async def get_worker(self, worker_id: str) -> WorkerSummary:
        """Return one Worker's detail (never waits behind a running turn).

        Raises:
            WorkerNotFoundError: Unknown ``worker_id``.
        """

    async def transcript(
        self, worker_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> TranscriptPage:
        """Return a page of a Worker's transcript (input, answers, errors).

        Args:
            worker_id: The Worker.
            limit: Entries per page, 1 to 500; None means 50.
            cursor: ``next_cursor`` of the previous page; None starts at the
                oldest retained entry.

        Returns:
            A :class:`~yoi_runtime.Page` of entries (``items`` by index;
            ``truncated`` when retention dropped older ones).

        Raises:
            InvalidInputError: Bad limit or malformed cursor.
        """

    def subscribe(
        self, worker_id: str | None = None, *, after: int | None = None
    ) -> TurnEvents:
        """See :meth:`RuntimeAPI.subscribe`."""


class RuntimeAPI(TurnHost, Protocol):
    """The operations of one Runtime, wherever it runs.

    Every operation is a method taking ``worker_id``; together with
    :attr:`runtime_id` it is a Worker's identity. See the module docstring
    for the errors every operation may raise.
    """

    @property
    def runtime_id(self) -> str:
        """The Runtime's id: given to ``open_runtime`` (or generated), read
        from the process when a client opens."""

    # -- commands -----------------------------------------------------------------

    async def create_worker(
        self, profile: str = "companion", **options: Unpack[WorkerOptions]
    ) -> WorkerSummary:
        """Create a Worker and start its actor.

        On a durable store the Worker is committed before this returns.

        Args:
            profile: A profile name from :attr:`Capabilities.profiles`.
            options: The keyword arguments of :class:`WorkerOptions`
                (``display_name``, ``engine``, ``system_prompt``,
                ``worker_id``, ``scopes``), each optional.

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

    async def ask(
        self,
        worker_id: str,
        text: str,
        *,
        cancel_timeout: float = DEFAULT_CANCEL_TIMEOUT,
    ) -> TurnResult:
        """Give a Worker input and return its whole answer.

        Subscribes, sends ``text`` and waits for the turn's end (see
        ``docs/embedding.md``; one implementation for every Runtime:
        :func:`yoi_runtime._ask.ask`).

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
            TurnInterruptedError: The process running the turn died and a
                durable Runtime started again.
            WorkerBusyError: A turn is already accepted or running.
            WorkerStoppedError: The Worker is stopped or failed.
            InvalidInputError: ``text`` is not a string, empty or too long.

        Cancellation:
            Cancelling the call cancels the turn.
        """

    def open_turn(
        self,
        worker_id: str,
        text: str,
        *,
        cancel_timeout: float = DEFAULT_CANCEL_TIMEOUT,
    ) -> AbstractAsyncContextManager[TurnStream]:
        """Give a Worker input and stream that turn's answer.

        Use it as ``async with runtime.open_turn(worker_id, text) as turn:``,
        iterate ``turn`` for the text deltas, then read ``turn.result`` (one
        implementation for every Runtime: :func:`yoi_runtime._ask.open_turn`).

        Args:
            worker_id: The Worker.
            text: The user input (at most ``Limits.max_input_chars`` chars).
            cancel_timeout: Seconds allowed for cancelling the turn when the
                block is left before the turn ended.

        Returns:
            An async context manager yielding a :class:`TurnStream` (it holds
            the Worker's event stream open), whose iteration raises the
            turn's :class:`TurnNotCompletedError` if it did not complete.

        Raises:
            (on entering) WorkerBusyError, WorkerStoppedError,
            InvalidInputError: As :meth:`send_input`.

        Cancellation:
            Leaving the block before the turn ended (``break``, an error, a
            cancelled scope) cancels the turn.
        """

    # -- observation ------------------------------------------------------------

    async def list_workers(
        self,
        *,
        status: WorkerStatus | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> WorkerPage:
        """List Workers, oldest first, one page at a time.

        Args:
            status: Only Workers with this status.
            limit: Page size, 1 to 500; None means 50.
            cursor: ``next_cursor`` of the previous page; None starts over.

        Returns:
            A :class:`~yoi_runtime.Page` of Worker summaries, oldest first.

        Raises:
            InvalidInputError: Unknown status, bad limit or malformed cursor.
        """

    def subscribe(
        self, worker_id: str | None = None, *, after: int | None = None
    ) -> EventStream:
        """Follow one Worker's events, or every Worker's.

        Args:
            worker_id: The Worker; None for the Runtime-wide stream.
            after: Resume after this cursor (an event's ``seq`` on a Worker
                stream, its ``cursor`` on the Runtime stream); 0 replays all
                that is retained; None starts with the next new event.

        Returns:
            An :class:`EventStream` (replay, then live, without gap or
            duplicate; a :class:`Gap` where retention dropped events).

        Raises:
            WorkerNotFoundError: Unknown ``worker_id`` (a client: when the
                stream is entered).
            InvalidInputError: ``after`` is negative or ahead of the stream
                (a client: when the stream is entered).
        """

    async def summary(self) -> RuntimeSummary:
        """Return the Runtime's status, Worker counts, usage and capabilities."""

    def capabilities(self) -> Capabilities:
        """Return what this Runtime can do (fixed for its lifetime).

        Never blocks: a client returns what the process reported when it
        was opened.
        """

    async def diagnostics(self) -> tuple[Diagnostic, ...]:
        """Return what the Runtime noticed (crashed actors, ...), oldest first."""

    async def usage(self) -> Usage:
        """Return the tokens used by every turn of every Worker so far."""


if TYPE_CHECKING:
    from ._events import Subscription
    from ._runtime import Runtime

    def _runtime_is_api(runtime: Runtime) -> RuntimeAPI:
        """mypy proves the embedded Runtime implements the API."""
        return runtime

    def _subscription_is_stream(subscription: Subscription) -> EventStream:
        return subscription


def forwarded(
    operation: Callable[Concatenate[Any, P], R], attribute: str
) -> Callable[Concatenate[Any, P], R]:
    """A method that calls ``operation`` on the object in ``attribute``.

    For wrappers that pass some operations on unchanged (the workspace's
    :class:`~yoi_workspace.RuntimeAdapter`, the ``yoi`` command's targets):
    the method has the API's own signature (mypy checks every call against
    it), so a wrapper never writes a copy of it. An async operation's
    coroutine is returned as it is, for the caller to await.

    Args:
        operation: The API's operation, e.g. ``TurnHost.send_input``.
        attribute: The name of the wrapper's attribute holding the object
            that implements it.
    """
    name = operation.__name__

    def forward(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = getattr(getattr(self, attribute), name)(*args, **kwargs)
        return result

    forward.__signature__ = inspect.signature(operation)  # type: ignore[attr-defined]
    forward.__name__ = forward.__qualname__ = name
    forward.__doc__ = f"See :meth:`RuntimeAPI.{name}`."
    return forward
