"""The ``yoi`` commands' target on a ``yoi-workspace`` (see ``_cli_target``).

:class:`WorkspaceTarget` speaks the workspace's browser API
(``docs/workspace.md``) with httpx, and its per-Worker event streams with
this package's :class:`~yoi_runtime.client.RemoteSubscription`; a Worker is
``RUNTIME_ID/WORKER_ID`` (a bare ``WORKER_ID`` is looked up in every
Runtime). The workspace's ``WorkerView`` is read as a
:class:`~yoi_runtime.WorkerSummary`, so ``--json`` prints the same shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Unpack
from urllib.parse import quote

import attrs
import httpx

from .._api import WorkerOptions
from .._errors import (
    InternalError,
    InvalidInputError,
    RuntimeUnavailableError,
    WorkerNotFoundError,
)
from .._types import CancelResult, TranscriptPage, TurnSummary, WorkerSummary
from ._client import _without_none
from ._subscription import RemoteSubscription, StreamTarget
from ._translate import decode_json, error_from_response, map_http_errors, structure

__all__ = ["CONNECT_TIMEOUT", "PAGE", "REQUEST_TIMEOUT", "WorkspaceTarget"]

#: Workers read per page when listing.
PAGE = 500
#: Seconds allowed to open a TCP connection (and a WebSocket handshake).
CONNECT_TIMEOUT = 10.0
#: Seconds a command may wait for its response.
REQUEST_TIMEOUT = 30.0

#: The :class:`WorkerView` fields a :class:`WorkerSummary` does not have.
_VIEW_ONLY = ("kind", "stale")


# -- a yoi-workspace ------------------------------------------------------------


def _summary(view: Any, what: str) -> WorkerSummary:
    """Read a workspace ``WorkerView`` as the Runtime's ``WorkerSummary``."""
    if isinstance(view, dict):
        view = {k: v for k, v in view.items() if k not in _VIEW_ONLY}
    return structure(view, WorkerSummary, what)


@attrs.define(eq=False)
class WorkspaceTarget:
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
            "GET", path, params={"status": status, "limit": PAGE, "cursor": cursor}
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
        **options: Unpack[WorkerOptions],
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
        body = {"profile": profile, **options}
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
            connect_timeout=CONNECT_TIMEOUT,
            reconnect_timeout=self._reconnect_timeout,
        )
        return RemoteSubscription(target, after)
