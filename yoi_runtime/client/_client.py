"""The client of a ``yoi-runtime`` process: the Runtime API over HTTP.

:func:`open_runtime_client` opens a :class:`RuntimeClient`, which has the
embedded :class:`~yoi_runtime.Runtime`'s async operations and result types
(``docs/runtime.md``) and speaks ``docs/protocol.md``: commands over one
``httpx.AsyncClient``, subscriptions over WebSocket
(:class:`~yoi_runtime.client.RemoteSubscription`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import quote

import attrs
import httpx

from .. import _ask
from .._ask import DEFAULT_CANCEL_TIMEOUT, TurnResult, TurnStream
from .._engines._base import Usage
from .._errors import InvalidInputError
from .._types import (
    CancelResult,
    Diagnostic,
    RuntimeSummary,
    TranscriptPage,
    TurnSummary,
    WorkerPage,
    WorkerStatus,
    WorkerSummary,
)
from ._subscription import RemoteSubscription, StreamTarget
from ._translate import decode_json, error_from_response, map_http_errors, structure

__all__ = ["RuntimeClient", "open_runtime_client"]

T = TypeVar("T")


def _worker_path(worker_id: str, *rest: str) -> str:
    return "/".join(("/v1/workers", quote(str(worker_id), safe=""), *rest))


def _field(value: Any, key: str | None) -> Any:
    """Return ``value[key]`` of a response body (None when it is missing)."""
    if key is None:
        return value
    return value.get(key) if isinstance(value, dict) else None


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


@attrs.define(eq=False)
class RuntimeClient:
    """A Runtime in a ``yoi-runtime`` process, with the embedded Runtime's API.

    Open one with :func:`open_runtime_client`. Every operation has the same
    name, arguments, result type and errors as on
    :class:`~yoi_runtime.Runtime`, so code (and the conformance suite) runs
    against either.

    Errors: every method may raise :class:`RuntimeUnavailableError` (the
    process is unreachable, broke the connection, did not answer within
    ``request_timeout`` seconds, or is shutting down),
    :class:`UnauthorizedError` (the token was refused) and
    :class:`InternalError` (the process failed or answered something this
    client does not understand); the ones taking a ``worker_id`` raise
    :class:`WorkerNotFoundError` for an unknown one. The token never appears
    in a ``repr``, a message or a log line.

    Attributes:
        base_url: The process's root URL (``http://127.0.0.1:8765``).
    """

    base_url: str
    _http: httpx.AsyncClient = attrs.field(repr=False)
    _ws_headers: list[tuple[bytes, bytes]] = attrs.field(repr=False)
    _connect_timeout: float = attrs.field(repr=False)
    _reconnect_timeout: float = attrs.field(repr=False)
    _runtime_id: str = ""

    @property
    def runtime_id(self) -> str:
        """The id of the Runtime the process serves (read when opened)."""
        return self._runtime_id

    # -- transport ----------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send one command and return its decoded JSON body.

        Raises:
            YoiRuntimeError: The process answered an error (mapped by
                :func:`error_from_response`) or could not be reached.
        """
        what = f"{method} {path}"
        with map_http_errors(what):
            response = await self._http.request(
                method,
                path,
                params=None if params is None else _without_none(params),
                json=None if body is None else _without_none(body),
            )
        if not response.is_success:
            raise error_from_response(response.status_code, response.content)
        return decode_json(response.content, what)

    async def _get(self, path: str, key: str | None, cls: type[T], **params: Any) -> T:
        value = await self._call("GET", path, params=params)
        return structure(_field(value, key), cls, f"GET {path}")

    # -- commands -------------------------------------------------------------------

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
        """Create a Worker (``POST /v1/workers``) and start its actor.

        Args:
            profile: A profile name from :attr:`Capabilities.profiles`.
            display_name: A label for people; never used as identity.
            engine: An engine name from :attr:`Capabilities.engines`; None
                picks the process's default engine.
            system_prompt: Replaces the profile's system prompt.
            worker_id: Your own id, for idempotent create: creating again with
                the same id and settings returns the existing Worker.
            scopes: Exclusive scopes to claim in the process's allocation
                registry while the Worker is live.

        Returns:
            The new (or existing) Worker, ``idle``.

        Raises:
            InvalidInputError: Unknown profile or engine, or a malformed id.
            WorkerExistsError: ``worker_id`` exists with other settings.
            ScopeConflictError: A live Worker holds one of ``scopes``.
        """
        body = {
            "profile": profile,
            "display_name": display_name,
            "engine": engine,
            "system_prompt": system_prompt,
            "worker_id": worker_id,
            "scopes": None if scopes is None else list(scopes),
        }
        value = await self._call("POST", "/v1/workers", body=body)
        return structure(_field(value, "worker"), WorkerSummary, "POST /v1/workers")

    async def send_input(
        self, worker_id: str, text: str, *, input_id: str | None = None
    ) -> TurnSummary:
        """Give a Worker input; it starts a turn, or is refused at once.

        Returns as soon as the turn is accepted; follow the Worker's events
        (:meth:`subscribe`) for the answer.

        Args:
            worker_id: The Worker.
            text: The user input (at most the process's ``max_input_chars``).
            input_id: Your idempotency key for the input: sending it again
                with the same text returns the original turn (safe to retry
                after a timeout or a restart of a durable process).

        Returns:
            The accepted turn.

        Raises:
            WorkerBusyError: A turn is already accepted or running; nothing
                was queued.
            WorkerStoppedError: The Worker is stopped or failed.
            InvalidInputError: ``text`` is empty or too long.
            IdempotencyConflictError: ``input_id`` was sent with other text.
        """
        path = _worker_path(worker_id, "input")
        value = await self._call(
            "POST", path, body={"text": text, "input_id": input_id}
        )
        return structure(_field(value, "turn"), TurnSummary, f"POST {path}")

    async def cancel(
        self, worker_id: str, *, turn_id: str | None = None, reason: str | None = None
    ) -> CancelResult:
        """End a Worker's current turn; returns once it has ended.

        Args:
            worker_id: The Worker.
            turn_id: The turn you mean to cancel. If it has already ended the
                outcome says so; None means whatever turn is active.
            reason: Recorded in the ``turn.cancelled`` event.

        Returns:
            ``cancelled``; ``no_active_turn``; or ``already_completed`` when
            the turn ended (completed or failed) before the cancel took hold.
        """
        path = _worker_path(worker_id, "cancel")
        value = await self._call(
            "POST", path, body={"turn_id": turn_id, "reason": reason}
        )
        return structure(_field(value, "result"), CancelResult, f"POST {path}")

    async def stop(self, worker_id: str, *, reason: str | None = None) -> WorkerSummary:
        """Stop a Worker: cancel its turn, end its actor, refuse later input.

        Idempotent; returns once the actor has ended.

        Args:
            worker_id: The Worker.
            reason: Recorded in the ``turn.cancelled`` and ``worker.stopped``
                events.

        Returns:
            The Worker, ``stopped`` (or ``failed`` if it had crashed).
        """
        path = _worker_path(worker_id, "stop")
        value = await self._call("POST", path, body={"reason": reason})
        return structure(_field(value, "worker"), WorkerSummary, f"POST {path}")

    async def ask(
        self,
        worker_id: str,
        text: str,
        *,
        cancel_timeout: float = DEFAULT_CANCEL_TIMEOUT,
    ) -> TurnResult:
        """Give a Worker input and return its whole answer.

        Subscribes (WebSocket), sends ``text`` and waits for the turn's end,
        as :meth:`yoi_runtime.Runtime.ask` does in-process.

        Args:
            worker_id: The Worker.
            text: The user input (at most the process's ``max_input_chars``).
            cancel_timeout: Seconds allowed for cancelling the turn when this
                call is cancelled.

        Returns:
            The completed turn's text, finish reason, usage and ids.

        Raises:
            TurnFailedError: The turn failed (``error.code`` says why).
            TurnCancelledError: Someone cancelled the turn or stopped the
                Worker, or the process shut down.
            TurnInterruptedError: The process died during the turn and a
                durable process started again.
            WorkerBusyError: A turn is already accepted or running.
            WorkerStoppedError: The Worker is stopped or failed.
            InvalidInputError: ``text`` is empty or too long.

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

        Use it as ``async with client.open_turn(worker_id, text) as turn:``,
        iterate ``turn`` for the text deltas, then read ``turn.result``; as
        :meth:`yoi_runtime.Runtime.open_turn`.

        Args:
            worker_id: The Worker.
            text: The user input.
            cancel_timeout: Seconds allowed for cancelling the turn when the
                block is left before the turn ended.

        Returns:
            An async context manager yielding a
            :class:`~yoi_runtime.TurnStream` (it holds the Worker's event
            stream open).

        Raises:
            (on entering) WorkerBusyError, WorkerStoppedError,
            InvalidInputError: As :meth:`send_input`.

        Cancellation:
            Leaving the block before the turn ended cancels the turn.
        """
        return _ask.open_turn(self, worker_id, text, cancel_timeout=cancel_timeout)

    # -- observation ------------------------------------------------------------

    async def get_worker(self, worker_id: str) -> WorkerSummary:
        """Return one Worker's detail (``GET /v1/workers/{worker_id}``).

        Raises:
            WorkerNotFoundError: Unknown ``worker_id``.
        """
        return await self._get(_worker_path(worker_id), "worker", WorkerSummary)

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

        Raises:
            InvalidInputError: Unknown status, bad limit or malformed cursor.
        """
        if isinstance(status, WorkerStatus):
            status = status.value
        return await self._get(
            "/v1/workers", None, WorkerPage, status=status, limit=limit, cursor=cursor
        )

    async def transcript(
        self, worker_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> TranscriptPage:
        """Return a page of a Worker's transcript (input, answers, errors).

        Args:
            worker_id: The Worker.
            limit: Entries per page, 1 to 500; None means 50.
            cursor: ``next_cursor`` of the previous page; None starts at the
                oldest retained entry.

        Raises:
            InvalidInputError: Bad limit or malformed cursor.
        """
        path = _worker_path(worker_id, "transcript")
        return await self._get(path, None, TranscriptPage, limit=limit, cursor=cursor)

    def subscribe(
        self, worker_id: str | None = None, *, after: int | None = None
    ) -> RemoteSubscription:
        """Follow one Worker's events, or every Worker's, over WebSocket.

        Nothing is sent until the subscription is entered: use it as
        ``async with client.subscribe(...) as events:``.

        Args:
            worker_id: The Worker; None for the Runtime-wide stream.
            after: Resume after this cursor (an event's ``seq`` on a Worker
                stream, its ``cursor`` on the Runtime stream); 0 replays all
                that is retained; None starts with the next new event (the
                position is read when the subscription is entered).

        Returns:
            A :class:`RemoteSubscription` (replay, then live, without gap or
            duplicate, across reconnects).

        Raises:
            (on entering) WorkerNotFoundError: Unknown ``worker_id``.
            (on entering) InvalidInputError: ``after`` is negative or ahead
                of the stream.
        """
        path = "/v1/events" if worker_id is None else _worker_path(worker_id, "events")
        base = httpx.URL(self.base_url)
        tls = base.scheme == "https"

        async def current_position() -> int:
            if worker_id is None:
                return (await self.summary()).last_cursor
            return (await self.get_worker(worker_id)).last_seq

        target = StreamTarget(
            host=base.host,
            port=base.port or (443 if tls else 80),
            tls=tls,
            path=base.path.rstrip("/") + path,
            headers=self._ws_headers,
            runtime_id=self._runtime_id,
            worker_stream=worker_id is not None,
            current_position=current_position,
            connect_timeout=self._connect_timeout,
            reconnect_timeout=self._reconnect_timeout,
        )
        return RemoteSubscription(target, after)

    async def summary(self) -> RuntimeSummary:
        """Return the Runtime's status, Worker counts, usage and capabilities."""
        return await self._get("/v1/runtime", None, RuntimeSummary)

    async def diagnostics(self) -> tuple[Diagnostic, ...]:
        """Return what the Runtime noticed (crashed actors, ...), oldest first."""
        return await self._get("/v1/diagnostics", "diagnostics", tuple[Diagnostic, ...])

    async def usage(self) -> Usage:
        """Return the tokens used by every turn of every Worker so far."""
        return (await self.summary()).usage


@asynccontextmanager
async def open_runtime_client(
    base_url: str,
    *,
    token: str | None = None,
    connect_timeout: float = 10.0,
    request_timeout: float = 30.0,
    reconnect_timeout: float = 30.0,
) -> AsyncIterator[RuntimeClient]:
    """Connect to a ``yoi-runtime`` process and check that it answers.

    Reads ``GET /v1/runtime`` before yielding, so an unreachable process or a
    refused token fails here rather than at the first command.

    Args:
        base_url: The process's root URL, ``http://HOST:PORT`` (or
            ``https://``), as its ``yoi-runtime listening on ...`` line says.
        token: The bearer token the process was started with, or None for a
            loopback process without one. Never shown in a repr or message.
        connect_timeout: Seconds allowed to open a TCP connection (and, for
            subscriptions, to complete the WebSocket handshake).
        request_timeout: Seconds a command may wait for the response's bytes.
            ``cancel`` and ``stop`` wait until the turn has ended, so keep it
            above the longest engine shutdown you expect.
        reconnect_timeout: Seconds a subscription whose connection broke keeps
            trying to reconnect before raising
            :class:`RuntimeUnavailableError`.

    Yields:
        A :class:`RuntimeClient`; its connections close on exit.

    Raises:
        InvalidInputError: ``base_url`` is not an ``http(s)://`` URL.
        RuntimeUnavailableError: The process cannot be reached or is shutting
            down.
        UnauthorizedError: The process refused the token (or needs one).
    """
    try:
        parsed = httpx.URL(base_url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInputError(
            "base_url must look like http://HOST:PORT", path="base_url"
        )
    base_url = base_url.rstrip("/")
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    timeout = httpx.Timeout(request_timeout, connect=connect_timeout)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=timeout
    ) as http:
        probe = RuntimeClient(
            base_url,
            http,
            [(name.encode(), value.encode()) for name, value in headers.items()],
            connect_timeout,
            reconnect_timeout,
        )
        summary = await probe.summary()
        yield attrs.evolve(probe, runtime_id=summary.runtime_id)
