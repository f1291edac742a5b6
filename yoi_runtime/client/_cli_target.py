"""What the ``yoi`` commands talk to: a ``yoi-runtime`` process or a workspace.

:func:`open_target` looks at the URL once (``GET /api/health`` answers only
on a ``yoi-workspace``) and yields a :class:`Target`: the few operations the
commands need, with the Runtime's result types, so ``workers``, ``create``,
``chat``, ``tail`` and ``transcript`` do not care which it is
(``docs/cli.md``).

- :class:`_RuntimeTarget` is a :class:`~yoi_runtime.client.RuntimeClient`;
  a Worker is addressed by its ``worker_id``.
- :class:`~._cli_workspace.WorkspaceTarget` speaks the workspace's browser
  API; a Worker is ``RUNTIME_ID/WORKER_ID``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol, Unpack

import attrs
import httpx

from .._api import TurnHost, WorkerOptions, forwarded
from .._errors import InvalidInputError
from .._types import WorkerSummary
from ._cli_workspace import CONNECT_TIMEOUT, PAGE, REQUEST_TIMEOUT, WorkspaceTarget
from ._client import RuntimeClient, open_runtime_client
from ._subscription import RemoteSubscription
from ._translate import map_http_errors

__all__ = ["Target", "open_target"]


class Target(TurnHost, Protocol):
    """What the ``yoi`` commands do, on a Runtime process or a workspace.

    The :class:`~yoi_runtime._ask.TurnHost` operations (``subscribe``,
    ``send_input``, ``cancel``, ``get_worker``, ``transcript``) take a
    Worker's address: what :meth:`address` returns.

    Attributes:
        url: The root URL, for messages.
        workspace: True for a ``yoi-workspace``.
    """

    url: str
    workspace: bool

    def address(self, worker: WorkerSummary) -> str:
        """The name to give the commands for ``worker``."""
        ...

    async def all_workers(
        self, status: str | None, warn: Callable[[str], None]
    ) -> list[WorkerSummary]:
        """Every Worker (of every Runtime), oldest first per Runtime.

        Args:
            status: Only Workers with this status.
            warn: Called with a one-line message for each Runtime that could
                not be listed (the others still are).
        """
        ...

    async def create_worker(
        self,
        profile: str,
        *,
        runtime_id: str | None,
        **options: Unpack[WorkerOptions],
    ) -> WorkerSummary:
        """Create a Worker in ``runtime_id`` (None: the only one there is)."""
        ...

    def subscribe(
        self, worker_id: str | None = None, *, after: int | None = None
    ) -> RemoteSubscription:
        """Follow a Worker's events (None: every Worker's, where supported)."""
        ...


def _check_url(url: str) -> str:
    """``url`` without a trailing slash.

    Raises:
        InvalidInputError: It is not an ``http(s)://HOST`` URL (``path`` is
            ``base_url``, as :func:`open_runtime_client` says it).
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInputError(
            "base_url must look like http://HOST:PORT", path="base_url"
        )
    return url.rstrip("/")


# -- a yoi-runtime process ---------------------------------------------------------


@attrs.define(eq=False)
class _RuntimeTarget:
    """A ``yoi-runtime`` process, through its :class:`RuntimeClient`."""

    client: RuntimeClient
    url: str
    workspace: bool = False

    def address(self, worker: WorkerSummary) -> str:
        return worker.worker_id

    async def all_workers(
        self, status: str | None, warn: Callable[[str], None]
    ) -> list[WorkerSummary]:
        workers: list[WorkerSummary] = []
        cursor = None
        while True:
            page = await self.client.list_workers(
                status=status, limit=PAGE, cursor=cursor
            )
            workers.extend(page.items)
            if page.next_cursor is None:
                return workers
            cursor = page.next_cursor

    async def create_worker(
        self,
        profile: str,
        *,
        runtime_id: str | None,
        **options: Unpack[WorkerOptions],
    ) -> WorkerSummary:
        if runtime_id is not None and runtime_id != self.client.runtime_id:
            raise InvalidInputError(
                f"{self.url} serves runtime {self.client.runtime_id!r}, "
                f"not {runtime_id!r}",
                path="runtime_id",
            )
        return await self.client.create_worker(profile, **options)

    def subscribe(
        self, worker_id: str | None = None, *, after: int | None = None
    ) -> RemoteSubscription:
        return self.client.subscribe(worker_id, after=after)

    send_input = forwarded(TurnHost.send_input, "client")
    cancel = forwarded(TurnHost.cancel, "client")
    get_worker = forwarded(TurnHost.get_worker, "client")
    transcript = forwarded(TurnHost.transcript, "client")


# -- which one ------------------------------------------------------------------


async def _is_workspace(http: httpx.AsyncClient) -> bool:
    """Whether the URL serves a workspace: its ``GET /api/health`` (open in
    every auth mode) answers ``{"status": ...}``; a runtime process has no
    such route."""
    with map_http_errors("GET /api/health"):
        response = await http.get("/api/health")
    if response.status_code not in (200, 503):
        return False
    try:
        return "status" in response.json()
    except (ValueError, TypeError):
        return False


@asynccontextmanager
async def open_target(
    url: str, *, token: str | None, reconnect_timeout: float
) -> AsyncIterator[Target]:
    """Connect to a ``yoi-runtime`` process or a ``yoi-workspace``.

    Args:
        url: The root URL, ``http://HOST:PORT``.
        token: The bearer token, or None.
        reconnect_timeout: Seconds a broken event stream is retried.

    Yields:
        The :class:`Target`; its connections close on exit.

    Raises:
        InvalidInputError: ``url`` is not an ``http(s)://`` URL.
        RuntimeUnavailableError: Nothing answers there.
        UnauthorizedError: The token was refused (or one is needed).
    """
    url = _check_url(url)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    timeout = httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=timeout
    ) as http:
        if not await _is_workspace(http):
            async with open_runtime_client(
                url,
                token=token,
                connect_timeout=CONNECT_TIMEOUT,
                request_timeout=REQUEST_TIMEOUT,
                reconnect_timeout=reconnect_timeout,
            ) as client:
                yield _RuntimeTarget(client, url)
            return
        workspace = WorkspaceTarget(
            url,
            http,
            [(name.encode(), value.encode()) for name, value in headers.items()],
            reconnect_timeout,
        )
        await workspace.check_caller()
        yield workspace
