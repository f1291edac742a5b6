"""The remote handle's connection: one client, opened lazily, shared, retired.

A :class:`Connector` keeps the :class:`~yoi_runtime.client.RuntimeClient`
of one :class:`~yoi_workspace.RemoteRuntimeHandle` and the streams it opens:

- **Lazy connect.** A call that finds no live client opens one
  (:func:`yoi_runtime.client.open_runtime_client`, then ``GET /v1/runtime``),
  the whole attempt bounded by ``connect_timeout`` seconds. Calls arriving
  while an attempt runs share it (its connection, or its error) rather than
  trying again one after another, so every call on an unreachable process
  fails within about ``connect_timeout`` seconds.
- **Discard on failure.** A call failing with ``RuntimeUnavailableError``
  (refused, reset, timed out, draining) or ``UnauthorizedError`` retires the
  client; it is closed once its last user is done, and the next call
  reconnects. So a process that comes back (even restarted on the same
  port) is used again without restarting the backend.
- **Token rotation.** A refused token (HTTP 401, or a refused event stream
  handshake) may be a stale one: the process restarted with a new token
  while the client still sends the old. So the refused call (or stream
  opening) retires the client and runs once more on a new one, whose
  connect reads the :class:`~yoi_workspace.SecretRef` again; only a second
  refusal raises ``UnauthorizedError``. The retry is safe for every
  command: the process checks the token before doing anything.
- **Identity.** The process must serve the Runtime ``config.runtime_id``
  names. A process reporting another id (checked on connect, and by
  :meth:`Connector.check_runtime` on what the handle returns) is treated as
  unavailable, with an error saying so: the handle never routes to the
  wrong Runtime.
- **Secrecy.** Errors are restated with the URL scrubbed and without their
  cause chain (an ``httpx`` error's request carries the URL).
- **Operations.** A change of availability is logged once
  (``yoi_workspace.remote``: ``remote runtime unavailable`` with the
  restated reason, ``remote runtime available`` / ``available again``),
  and every command carries the ``X-Request-Id`` of the browser request it
  serves (:data:`yoi_runtime._request_id.REQUEST_ID`; the connect probe and
  event streams do not: the client sets their headers once).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import attrs
import httpx
import trio

from yoi_runtime import (
    InternalError,
    InvalidInputError,
    OperationUnsupportedError,
    RuntimeSummary,
    RuntimeUnavailableError,
    UnauthorizedError,
    YoiRuntimeError,
)
from yoi_runtime.client import RuntimeClient, open_runtime_client
from yoi_runtime.serving import HEADER, REQUEST_ID

if TYPE_CHECKING:
    from ._remote import RemoteRuntimeConfig

__all__ = ["Connection", "Connector"]

T = TypeVar("T")

_log = logging.getLogger("yoi_workspace.remote")

#: Errors restated with the handle's own message (their constructors take a
#: message only); the Worker errors pass through unchanged.
_RESTATED = (
    RuntimeUnavailableError,
    UnauthorizedError,
    InternalError,
    OperationUnsupportedError,
)


@attrs.define(eq=False)
class Connection:
    """One open client and who uses it.

    Attributes:
        client: The open client.
        stack: Closes the client.
        users: Calls and streams using it now.
        retired: No new user may take it; closed when ``users`` drops to 0.
        closed: Its stack was closed.
    """

    client: RuntimeClient
    stack: contextlib.AsyncExitStack
    users: int = 0
    retired: bool = False
    closed: bool = False


class Connector:
    """The connection of a remote handle (see the module docstring).

    Args:
        config: Where the process is and how to authenticate.

    Attributes:
        last_summary: The last summary seen, on connect (and stored by the
            handle's ``describe``); None if the process was never reached.
    """

    def __init__(self, config: RemoteRuntimeConfig) -> None:
        self._config = config
        self._connection: Connection | None = None
        self._connect_lock = trio.Lock()
        #: Connect attempts that ended (with a connection or an error).
        self._finished_attempts = 0
        self._last_failure: YoiRuntimeError | None = None
        self._closed = False
        #: Whether the process answered last time (None: never tried).
        self.available: bool | None = None
        self.last_summary: RuntimeSummary | None = None
        netloc = httpx.URL(config.url).netloc.decode("ascii")
        self._hidden = tuple(text for text in (config.url.rstrip("/"), netloc) if text)

    def __repr__(self) -> str:
        return f"<connector of runtime {self.runtime_id!r}>"

    @property
    def runtime_id(self) -> str:
        return self._config.runtime_id

    @property
    def connected(self) -> bool:
        """Whether a live (not retired) connection is open."""
        return self._connection is not None

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    # -- errors -------------------------------------------------------------

    def _scrub(self, message: str) -> str:
        for text in self._hidden:
            message = message.replace(text, "<runtime>")
        return message

    def _restate(self, exc: YoiRuntimeError) -> YoiRuntimeError:
        """Return ``exc`` as the handle raises it: URL scrubbed, id named."""
        if type(exc) is UnauthorizedError:
            return UnauthorizedError(
                f"runtime {self.runtime_id} refused the configured token"
            )
        if type(exc) in _RESTATED:
            return type(exc)(f"runtime {self.runtime_id}: {self._scrub(exc.message)}")
        return exc

    @contextlib.contextmanager
    def errors_of(self, connection: Connection) -> Iterator[None]:
        """Restate errors raised while using ``connection``; retire it when
        they mean it is broken (unreachable, draining, token refused)."""
        try:
            yield
        except (RuntimeUnavailableError, UnauthorizedError) as exc:
            self._retire(connection)
            restated = self._restate(exc)
            if isinstance(exc, RuntimeUnavailableError):
                self._note_unavailable(restated)
            raise restated from None
        except (InternalError, OperationUnsupportedError) as exc:
            raise self._restate(exc) from None

    def _closed_error(self) -> RuntimeUnavailableError:
        return RuntimeUnavailableError(
            f"runtime {self.runtime_id}: the handle is closed"
        )

    def _wrong_runtime(self, reported: str) -> RuntimeUnavailableError:
        return RuntimeUnavailableError(
            f"runtime {self.runtime_id}: the configured process serves runtime "
            f"{reported!r} instead; not routing to it"
        )

    def check_runtime(self, reported: str) -> None:
        """Refuse an answer from another Runtime (a replaced process).

        Raises:
            RuntimeUnavailableError: ``reported`` is not this handle's id;
                the connection is retired so the next call reconnects (and
                checks again).
        """
        if reported != self.runtime_id:
            if self._connection is not None:
                self._retire(self._connection)
            raise self._wrong_runtime(reported)

    # -- the connection -----------------------------------------------------

    async def acquire(self) -> Connection:
        """Return the live connection (opening one if needed), counted as used.

        Give it back with :meth:`release`.

        Raises:
            YoiRuntimeError: The connect attempt failed (already restated).
        """
        if self._closed:
            raise self._closed_error()
        connection = self._connection
        if connection is None:
            connection = await self._connect()
        connection.users += 1
        return connection

    async def _connect(self) -> Connection:
        """Open the connection, or share the outcome of an attempt in flight.

        A call arriving while another call's attempt runs waits for it and
        gets its connection or (a copy of) its error, so every call on a
        process that is down fails within about ``connect_timeout`` seconds.
        """
        finished = self._finished_attempts
        async with self._connect_lock:
            if self._closed:
                raise self._closed_error()
            if self._connection is not None:
                return self._connection
            failure = self._last_failure
            if self._finished_attempts != finished and failure is not None:
                raise type(failure)(failure.message)
            try:
                connection = await self._open()
            except YoiRuntimeError as exc:
                self._last_failure = exc
                self._finished_attempts += 1
                self._note_unavailable(exc)
                raise
            self._last_failure = None
            self._finished_attempts += 1
            self._note_available()
            if self._closed:
                await self._close(connection)
                raise self._closed_error()
            self._connection = connection
            return connection

    async def _open(self) -> Connection:
        """Open a client and check whom it serves, within ``connect_timeout``.

        Raises:
            RuntimeUnavailableError: Unreachable, too slow, draining, another
                Runtime, or the token cannot be read.
            UnauthorizedError: The token was refused.
            InternalError: The process failed or answered nonsense.
        """
        config = self._config
        token = None
        if config.token is not None:
            try:
                token = await trio.to_thread.run_sync(config.token.resolve)
            except InvalidInputError as exc:
                raise RuntimeUnavailableError(
                    f"runtime {self.runtime_id}: cannot read its token: {exc.message}"
                ) from None
        async with contextlib.AsyncExitStack() as stack:
            try:
                with trio.fail_after(config.connect_timeout):
                    client = await stack.enter_async_context(
                        open_runtime_client(
                            config.url,
                            token=token,
                            connect_timeout=config.connect_timeout,
                            request_timeout=config.request_timeout,
                            reconnect_timeout=config.reconnect_timeout,
                        )
                    )
                    summary = await client.summary()
            except trio.TooSlowError:
                raise RuntimeUnavailableError(
                    f"runtime {self.runtime_id}: the process did not answer within "
                    f"{config.connect_timeout} s"
                ) from None
            except YoiRuntimeError as exc:
                raise self._restate(exc) from None
            if summary.runtime_id != self.runtime_id:
                raise self._wrong_runtime(summary.runtime_id)
            self.last_summary = summary
            _send_request_ids(client)
            return Connection(client, stack.pop_all())

    def _note_unavailable(self, error: YoiRuntimeError) -> None:
        """Log the process going away (once, until it answers again)."""
        if self.available is not False:
            self.available = False
            _log.warning(
                "remote runtime unavailable: runtime=%s: %s",
                self.runtime_id,
                error.message,
                extra={"runtime": self.runtime_id, "code": error.code},
            )

    def _note_available(self) -> None:
        if self.available is not True:
            again = self.available is False
            self.available = True
            _log.info(
                "remote runtime available%s: runtime=%s",
                " again" if again else "",
                self.runtime_id,
                extra={"runtime": self.runtime_id},
            )

    def _retire(self, connection: Connection) -> None:
        connection.retired = True
        if self._connection is connection:
            self._connection = None

    async def release(self, connection: Connection) -> None:
        """Stop using ``connection``; close it if it is retired and unused."""
        connection.users -= 1
        if connection.retired and connection.users == 0:
            await self._close(connection)

    async def _close(self, connection: Connection) -> None:
        if connection.closed:
            await trio.lowlevel.checkpoint()
            return
        connection.closed = True
        with trio.move_on_after(self._config.connect_timeout, shield=True):
            await connection.stack.aclose()

    async def call(self, operation: Callable[[RuntimeClient], Awaitable[T]]) -> T:
        """Run one client operation on the live connection.

        A refused token is retried once on a new connection, with the token
        read again (see :meth:`retry_refused`).

        Raises:
            UnauthorizedError: The token was refused, and again after it was
                read anew.
            YoiRuntimeError: Connecting or the operation failed (restated as
                the module docstring says).
        """
        return await self.retry_refused(partial(self._call_once, operation))

    async def _call_once(self, operation: Callable[[RuntimeClient], Awaitable[T]]) -> T:
        connection = await self.acquire()
        try:
            with self.errors_of(connection):
                return await operation(connection.client)
        finally:
            await self.release(connection)

    async def retry_refused(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt``; if the process refused the token, run it once more.

        ``attempt`` takes the connection with :meth:`acquire` and restates
        its errors with :meth:`errors_of`, so a refusal has retired the
        connection it used and the second attempt connects anew, reading the
        token again: a process restarted with a rotated token is used at
        once (module docstring, "Token rotation").

        Args:
            attempt: The call or stream opening; run at most twice.

        Returns:
            What the first attempt not refused returned.

        Raises:
            UnauthorizedError: The second attempt was refused too.
            YoiRuntimeError: Any other error of either attempt, unchanged.
        """
        try:
            return await attempt()
        except UnauthorizedError:
            # Retried outside this block, so the refusal is not chained to
            # what the second attempt raises.
            pass
        return await attempt()

    async def aclose(self) -> None:
        """Close the client (once streams using it are done); idempotent.

        Later calls raise ``RuntimeUnavailableError``.
        """
        self._closed = True
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.retired = True
            if connection.users == 0:
                await self._close(connection)
                return
        await trio.lowlevel.checkpoint()


def _send_request_ids(client: RuntimeClient) -> None:
    """Make every command of ``client`` carry the current request's id.

    The client has no hook of its own, so this adds an ``httpx`` request
    hook to its HTTP client (the client's commands all go through it).
    """

    async def add_request_id(request: httpx.Request) -> None:
        request_id = REQUEST_ID.get()
        if request_id is not None:
            request.headers[HEADER] = request_id

    client._http.event_hooks["request"].append(add_request_id)
