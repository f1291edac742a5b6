"""The remote handle's event stream: a client subscription on a shared client.

:meth:`~yoi_workspace.RemoteRuntimeHandle.subscribe` returns a
:class:`RemoteEventStream`. Entering it takes the handle's connection (so
the client stays open while the stream is), and its errors are restated
like the handle's: the URL scrubbed, the Runtime named, a broken connection
retired (see ``yoi_workspace._remote_connection``). An opening whose
handshake is refused for its token is tried once more on a new connection,
with the token read again.

A refusal met later, when the subscription reconnects by itself after a
break, ends the stream with ``UnauthorizedError`` and retires the
connection; the aggregate's Runtime-wide follower then reopens it on a new
one (a caller following one Worker gets the error).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from yoi_runtime import Event, Gap
from yoi_runtime.client import RemoteSubscription

from ._remote_connection import Connection, Connector

__all__ = ["RemoteEventStream"]

#: Items a stream's ``receive_batch`` returns at most by default (as the
#: embedded :class:`yoi_runtime.Subscription`).
_DEFAULT_BATCH = 256


@asynccontextmanager
async def open_subscription(
    connector: Connector, worker_id: str | None, after: int | None
) -> AsyncIterator[tuple[Connection, RemoteSubscription]]:
    """Take the handle's connection and open a subscription on it.

    Yields:
        The connection (held until the block ends) and the entered
        subscription.

    Raises:
        YoiRuntimeError: Connecting or the handshake failed (restated; a
            refused token has retired the connection).
    """
    connection = await connector.acquire()
    try:
        async with AsyncExitStack() as stack:
            with connector.errors_of(connection):
                subscription = await stack.enter_async_context(
                    connection.client.subscribe(worker_id, after=after)
                )
            yield connection, subscription
    finally:
        await connector.release(connection)


class RemoteEventStream:
    """An event stream of a remote handle: a
    :class:`~yoi_runtime.client.RemoteSubscription` whose errors are
    restated like the handle's, holding the handle's client while open.

    Args:
        connector: The handle's connection.
        worker_id: The Worker to follow, or None for the Runtime-wide stream.
        after: Resume after this cursor (or ``seq``); None starts now.
    """

    def __init__(
        self, connector: Connector, worker_id: str | None, after: int | None
    ) -> None:
        self._connector = connector
        self._worker_id = worker_id
        self._after = after
        self._stack = AsyncExitStack()
        self._connection: Connection | None = None
        self._inner: RemoteSubscription | None = None
        self._entered = False

    def __repr__(self) -> str:
        return (
            f"<remote event stream of runtime {self._connector.runtime_id!r}, "
            f"worker {self._worker_id!r}>"
        )

    @property
    def position(self) -> int:
        """The cursor (or ``seq``) of the last item received."""
        if self._inner is None:
            raise RuntimeError("enter the subscription (async with) first")
        return self._inner.position

    async def __aenter__(self) -> RemoteEventStream:
        if self._entered:
            raise RuntimeError("a subscription can be entered only once")
        self._entered = True
        self._connection, self._inner = await self._connector.retry_refused(self._open)
        return self

    async def _open(self) -> tuple[Connection, RemoteSubscription]:
        """One attempt: a new :func:`open_subscription`, kept on the stack."""
        return await self._stack.enter_async_context(
            open_subscription(self._connector, self._worker_id, self._after)
        )

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        self._connection = None
        return await self._stack.__aexit__(*exc_info)

    def __aiter__(self) -> RemoteEventStream:
        return self

    async def __anext__(self) -> Event | Gap:
        inner, connection = self._open_parts()
        with self._connector.errors_of(connection):
            return await inner.__anext__()

    async def receive(self) -> Event | Gap:
        """Wait for and return the next item (see ``RemoteSubscription``)."""
        inner, connection = self._open_parts()
        with self._connector.errors_of(connection):
            return await inner.receive()

    async def receive_batch(self, max_items: int = _DEFAULT_BATCH) -> list[Event | Gap]:
        """Wait for at least one item; return every ready one, up to a limit."""
        inner, connection = self._open_parts()
        with self._connector.errors_of(connection):
            return await inner.receive_batch(max_items)

    async def aclose(self) -> None:
        """Stop following the stream; idempotent."""
        if self._inner is not None:
            await self._inner.aclose()
        else:
            await trio.lowlevel.checkpoint()

    def _open_parts(self) -> tuple[RemoteSubscription, Connection]:
        if self._inner is None or self._connection is None:
            raise RuntimeError("enter the subscription (async with) first")
        return self._inner, self._connection
