"""What the ``yoi`` commands talk to: a ``yoi-runtime`` process or a workspace.

:func:`open_target` looks at the URL once (``GET /api/health`` answers only
on a ``yoi-workspace``) and yields a :class:`Target`: the few operations the
commands need, with the Runtime's result types, so ``workers``, ``create``,
``chat``, ``tail`` and ``transcript`` do not care which it is
(``docs/cli.md``).

- :class:`_RuntimeTarget` is a :class:`~yoi_runtime.client.RuntimeClient`;
  a Worker is addressed by its ``worker_id``.
- :class:`_WorkspaceTarget` speaks the workspace's browser API
  (``docs/workspace.md``) with httpx, and its per-Worker event streams with
  this package's :class:`~yoi_runtime.client.RemoteSubscription`; a Worker is
  ``RUNTIME_ID/WORKER_ID`` (a bare ``WORKER_ID`` is looked up in every
  Runtime). The workspace's :class:`WorkerView` is read as a
  :class:`~yoi_runtime.WorkerSummary`, so ``--json`` prints the same shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol
from urllib.parse import quote

import attrs
import httpx

from .._ask import TurnHost
from .._errors import (
    InternalError,
    InvalidInputError,
    RuntimeUnavailableError,
    WorkerNotFoundError,
)
from .._types import CancelResult, TranscriptPage, TurnSummary, WorkerSummary
from ._client import RuntimeClient, _without_none, open_runtime_client
from ._subscription import RemoteSubscription, StreamTarget
from ._translate import decode_json, error_from_response, map_http_errors, structure

__all__ = ["Target", "open_target"]

#: Workers read per page when listing.
_PAGE = 500
#: Seconds allowed to open a TCP connection (and a WebSocket handshake).
_CONNECT_TIMEOUT = 10.0
#: Seconds a command may wait for its response.
_REQUEST_TIMEOUT = 30.0

#: The :class:`WorkerView` fields a :class:`WorkerSummary` does not have.
_VIEW_ONLY = ("kind", "stale")


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
        display_name: str | None,
        engine: str | None,
        system_prompt: str | None,
        worker_id: str | None,
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
                status=status, limit=_PAGE, cursor=cursor
            )
            workers.extend(page.workers)
            if page.next_cursor is None:
                return workers
            cursor = page.next_cursor

    async def create_worker(
        self,
        profile: str,
        *,
        runtime_id: str | None,
        display_name: str | None,
        engine: str | None,
        system_prompt: str | None,
        worker_id: str | None,
    ) -> WorkerSummary:
        if runtime_id is not None and runtime_id != self.client.runtime_id:
            raise InvalidInputError(
                f"{self.url} serves runtime {self.client.runtime_id!r}, "
                f"not {runtime_id!r}",
                path="runtime_id",
            )
        return await self.client.create_worker(
            profile,
            display_name=display_name,
            engine=engine,
            system_prompt=system_prompt,
            worker_id=worker_id,
        )

    def subscribe(
        self, worker_id: str | None = None, *, after: int | None = None
    ) -> RemoteSubscription:
        return self.client.subscribe(worker_id, after=after)

    async def send_input(
        self, worker_id: str, text: str, *, input_id: str | None = None
    ) -> TurnSummary:
        return await self.client.send_input(worker_id, text, input_id=input_id)

    async def cancel(
        self, worker_id: str, *, turn_id: str | None = None, reason: str | None = None
    ) -> CancelResult:
        return await self.client.cancel(worker_id, turn_id=turn_id, reason=reason)

    async def get_worker(self, worker_id: str) -> WorkerSummary:
        return await self.client.get_worker(worker_id)

    async def transcript(
        self, worker_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> TranscriptPage:
        return await self.client.transcript(worker_id, limit=limit, cursor=cursor)


# -- a yoi-workspace ------------------------------------------------------------


def _summary(view: Any, what: str) -> WorkerSummary:
    """Read a workspace ``WorkerView`` as the Runtime's ``WorkerSummary``."""
    if isinstance(view, dict):
        view = {k: v for k, v in view.items() if k not in _VIEW_ONLY}
    return structure(view, WorkerSummary, what)


@attrs.define(eq=False)
class _WorkspaceTarget:
    """A ``yoi-workspace``'s browser API; Workers are ``RUNTIME_ID/WORKER_ID``."""

    url: str
    _http: httpx.AsyncClient = attrs.field(repr=False)
    _ws_headers: list[tuple[bytes, bytes]] = attrs.field(repr=False)
    _reconnect_timeout: float
    _resolved: dict[str, tuple[str, str]] = attrs.field(factory=dict, repr=False)
    workspace: bool = True

    def address(self, worker: WorkerSummary) -> str:
        return f"{worker.runtime_id}/{worker.worker_id}"

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send one request to the browser API; return its decoded body.

        Raises:
            YoiRuntimeError: The workspace answered an error, mapped as a
                runtime process's (``unknown_runtime`` is
                :class:`InvalidInputError`), or could not be reached.
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
            value: Any = None
            try:
                value = response.json()["error"]
            except (ValueError, TypeError, KeyError):
                pass
            if isinstance(value, dict) and value.get("code") == "unknown_runtime":
                raise InvalidInputError(
                    f"{value.get('message')} (see 'yoi workers')", path="runtime_id"
                )
            raise error_from_response(response.status_code, response.content)
        return decode_json(response.content, what)

    async def check_caller(self) -> None:
        """Ask who the caller is (``GET /api/session``), so a refused token
        fails before the command starts."""
        await self._call("GET", "/api/session")

    async def _runtimes(self) -> list[tuple[str, bool]]:
        """Each Runtime's id, and whether it can be listed now (authorities
        only: a compat source's Pods take no commands)."""
        listing = await self._call("GET", "/api/runtimes")
        items = listing.get("items", []) if isinstance(listing, dict) else []
        return [
            (str(item["runtime_id"]), item.get("status") == "available")
            for item in items
            if isinstance(item, dict) and item.get("authority") is True
        ]

    async def _page(
        self, runtime_id: str, status: str | None, cursor: str | None
    ) -> tuple[list[WorkerSummary], str | None]:
        path = f"/api/runtimes/{quote(runtime_id, safe='')}/workers"
        value = await self._call(
            "GET", path, params={"status": status, "limit": _PAGE, "cursor": cursor}
        )
        if not isinstance(value, dict) or not isinstance(value.get("workers"), list):
            raise InternalError(f"GET {path}: the workspace sent no Worker list")
        workers = [_summary(view, f"GET {path}") for view in value["workers"]]
        return workers, value.get("next_cursor")

    async def all_workers(
        self, status: str | None, warn: Callable[[str], None]
    ) -> list[WorkerSummary]:
        workers: list[WorkerSummary] = []
        for runtime_id, _ in await self._runtimes():
            cursor = None
            try:
                while True:
                    page, cursor = await self._page(runtime_id, status, cursor)
                    workers.extend(page)
                    if cursor is None:
                        break
            except RuntimeUnavailableError:
                warn(f"runtime {runtime_id} is unavailable: its Workers are not listed")
        return workers

    async def create_worker(
        self,
        profile: str,
        *,
        runtime_id: str | None,
        display_name: str | None,
        engine: str | None,
        system_prompt: str | None,
        worker_id: str | None,
    ) -> WorkerSummary:
        if runtime_id is None:
            runtimes = await self._runtimes()
            serving = [rid for rid, available in runtimes if available]
            if len(serving) != 1:
                ids = ", ".join(rid for rid, _ in runtimes) or "none"
                raise InvalidInputError(
                    "name the Runtime to create it in with --runtime RUNTIME_ID "
                    f"(the workspace's Runtimes: {ids})",
                    path="runtime_id",
                )
            [runtime_id] = serving
        path = f"/api/runtimes/{quote(runtime_id, safe='')}/workers"
        body = {
            "profile": profile,
            "display_name": display_name,
            "engine": engine,
            "system_prompt": system_prompt,
            "worker_id": worker_id,
        }
        value = await self._call("POST", path, body=body)
        worker = value.get("worker") if isinstance(value, dict) else None
        return _summary(worker, f"POST {path}")

    async def _split(self, address: str) -> tuple[str, str]:
        """``(runtime_id, worker_id)`` of ``RUNTIME_ID/WORKER_ID``, or of a bare
        ``WORKER_ID`` found in exactly one Runtime.

        Raises:
            WorkerNotFoundError: No Runtime has such a Worker.
            InvalidInputError: Several have: the Runtime must be named.
        """
        runtime_id, slash, worker_id = address.partition("/")
        if slash:
            return runtime_id, worker_id
        if address in self._resolved:
            return self._resolved[address]
        found: list[str] = []
        for runtime_id, available in await self._runtimes():
            if not available:
                continue
            try:
                await self._call("GET", self._path(runtime_id, address))
            except WorkerNotFoundError:
                continue
            found.append(runtime_id)
        if not found:
            raise WorkerNotFoundError(f"no worker {address!r}", worker_id=address)
        if len(found) > 1:
            raise InvalidInputError(
                f"worker {address!r} is in several Runtimes "
                f"({', '.join(found)}): name it as RUNTIME_ID/{address}",
                path="worker_id",
            )
        self._resolved[address] = (found[0], address)
        return self._resolved[address]

    @staticmethod
    def _path(runtime_id: str, worker_id: str, *rest: str) -> str:
        ids = (quote(runtime_id, safe=""), "workers", quote(worker_id, safe=""))
        return "/".join(("/api/runtimes", *ids, *rest))

    async def get_worker(self, worker_id: str) -> WorkerSummary:
        path = self._path(*await self._split(worker_id))
        value = await self._call("GET", path)
        view = value.get("worker") if isinstance(value, dict) else None
        return _summary(view, f"GET {path}")

    async def send_input(
        self, worker_id: str, text: str, *, input_id: str | None = None
    ) -> TurnSummary:
        path = self._path(*await self._split(worker_id), "input")
        value = await self._call(
            "POST", path, body={"text": text, "input_id": input_id}
        )
        turn = value.get("turn") if isinstance(value, dict) else None
        return structure(turn, TurnSummary, f"POST {path}")

    async def cancel(
        self, worker_id: str, *, turn_id: str | None = None, reason: str | None = None
    ) -> CancelResult:
        path = self._path(*await self._split(worker_id), "cancel")
        value = await self._call(
            "POST", path, body={"turn_id": turn_id, "reason": reason}
        )
        result = value.get("result") if isinstance(value, dict) else None
        return structure(result, CancelResult, f"POST {path}")

    async def transcript(
        self, worker_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> TranscriptPage:
        path = self._path(*await self._split(worker_id), "transcript")
        value = await self._call("GET", path, params={"limit": limit, "cursor": cursor})
        return structure(value, TranscriptPage, f"GET {path}")

    def subscribe(
        self, worker_id: str | None = None, *, after: int | None = None
    ) -> RemoteSubscription:
        """One Worker's events (call :meth:`get_worker` first: a bare id is
        resolved there, and an unknown Runtime is reported there).

        Raises:
            InvalidInputError: ``worker_id`` is None: the workspace's stream of
                every Worker is not followed by ``yoi``.
        """
        if worker_id is None:
            raise InvalidInputError(
                "name the Worker to follow (RUNTIME_ID/WORKER_ID): 'yoi tail' "
                "follows one Worker of a workspace at a time",
                path="worker_id",
            )
        runtime_id, _, worker = worker_id.partition("/")
        if not worker:
            runtime_id, worker = self._resolved.get(worker_id, ("", worker_id))
        base = httpx.URL(self.url)
        tls = base.scheme == "https"

        async def current_position() -> int:
            return (await self.get_worker(worker_id)).last_seq

        target = StreamTarget(
            host=base.host,
            port=base.port or (443 if tls else 80),
            tls=tls,
            path=base.path.rstrip("/") + self._path(runtime_id, worker, "events"),
            headers=self._ws_headers,
            runtime_id=runtime_id,
            worker_stream=True,
            current_position=current_position,
            connect_timeout=_CONNECT_TIMEOUT,
            reconnect_timeout=self._reconnect_timeout,
        )
        return RemoteSubscription(target, after)


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
    timeout = httpx.Timeout(_REQUEST_TIMEOUT, connect=_CONNECT_TIMEOUT)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=timeout
    ) as http:
        if not await _is_workspace(http):
            async with open_runtime_client(
                url,
                token=token,
                connect_timeout=_CONNECT_TIMEOUT,
                request_timeout=_REQUEST_TIMEOUT,
                reconnect_timeout=reconnect_timeout,
            ) as client:
                yield _RuntimeTarget(client, url)
            return
        workspace = _WorkspaceTarget(
            url,
            http,
            [(name.encode(), value.encode()) for name, value in headers.items()],
            reconnect_timeout,
        )
        await workspace.check_caller()
        yield workspace
