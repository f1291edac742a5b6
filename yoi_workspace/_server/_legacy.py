"""The original yoi workspace server's browser routes, and diagnostics.

``/api/hosts``, ``/api/runtimes``, ``/api/workers``,
``/api/hosts/{host_id}/workers`` and ``/api/workspace`` answer with the
shapes of upstream yoi's ``workspace-server`` at ``159704dc``
(``shared/reference/legacy-browser-api.md``): compact JSON, keys in
upstream's order, ``RuntimeListResponse`` bodies (``workspace_id``,
``limit`` 200, ``items``, ``source``, ``diagnostics``), the same ids, labels
and diagnostic texts. A local-pod compat source is upstream's single local
host and its ``local-pod-runtime``, byte for byte; embedded and remote
Runtimes are further items of the same shapes, with additive fields only
(``authority``, ``version``, ``usage``, ...). Unknown routes under ``/api``
answer upstream's ``{"error": "not_found", "message": "unknown api route"}``.

``GET /api/diagnostics`` gathers every source's diagnostics (the registry's
own and each Runtime's, through its handle) as ``{source, code, severity,
message, at, worker_id}``, with absolute paths masked. No route here
returns a 5xx for any content of a yoi home: a broken source is a
diagnostic of that source.
"""

from __future__ import annotations

import datetime
import json
import platform
import re
import sys
from typing import Any

from quart import Response, has_request_context, request
from quart_trio import QuartTrio
from werkzeug.exceptions import NotFound

from .._compat import LocalPodSource
from .._identity import WorkspaceIdentity
from .._pods import ACTIONS_NOT_IMPLEMENTED, LegacyDiagnostic, Pod, Scan
from .._policy import Caller
from .._registry import RuntimeRegistry
from .._views import RuntimeKind, RuntimeView, WorkerView
from .._yoi_home import bounded_backend_identifier
from ._diagnostics import all_diagnostics, rfc3339
from ._request import install_request_ids

__all__ = ["LegacyLists", "install_legacy_routes"]

#: Items per list (upstream's ``min(max_records, 200)``).
LIMIT = 200

#: Diagnostics per list (upstream's ``MAX_DIAGNOSTICS``).
MAX_DIAGNOSTICS = 16

#: What a valid ``host_id`` looks like (``validate_backend_identifier``).
_HOST_ID = re.compile(r"[A-Za-z0-9_:-]{1,120}")


SOURCE = "worker_runtime_registry"

_WORKSPACE = {"visibility": "current_workspace", "identity": "runtime_workspace"}


def _machine() -> tuple[str, str]:
    """Rust's ``std::env::consts::OS`` and ``ARCH`` for this machine."""
    os_name = {"darwin": "macos", "win32": "windows"}.get(sys.platform, sys.platform)
    arch = platform.machine().lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)
    return os_name, arch


def legacy_json(body: Any, status: int = 200) -> Response:
    """Compact JSON (as axum's ``Json``), keys in insertion order."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return Response(text, status=status, content_type="application/json")


def _diag(item: LegacyDiagnostic) -> dict[str, str]:
    return {"code": item.code, "severity": item.severity, "message": item.message}


def _capabilities(
    *,
    listable: bool,
    authority: bool,
    view: RuntimeView | None,
    pods: bool,
) -> dict[str, Any]:
    caps = None if view is None else view.capabilities
    os_name, arch = _machine()
    remote = view is not None and view.kind is RuntimeKind.REMOTE
    return {
        "can_list_hosts": True,
        "can_list_workers": listable,
        "can_get_worker": listable,
        "can_spawn_worker": authority and listable,
        "can_stop_worker": authority and listable,
        "can_accept_input": authority and listable,
        "can_stream_events": authority and listable,
        "can_read_bounded_transcript": authority and listable,
        "has_workspace_fs": bool(caps and caps.filesystem),
        "has_shell": bool(caps and caps.shell),
        "has_git": bool(caps and caps.git),
        "supports_worktrees": bool(caps and caps.worktree),
        "supports_backend_internal_tools": False,
        "local_pod_inspection": "available" if pods and listable else "unavailable",
        "workspace_scope": "current_workspace",
        "max_workers": LIMIT,
        "os": "unknown" if remote else os_name,
        "arch": "unknown" if remote else arch,
    }


class LegacyLists:
    """Builds the legacy bodies for one request (one caller).

    Args:
        registry: Where the Runtimes are.
        identity: The workspace served.
        caller: Whose visibility applies.
    """

    def __init__(
        self, registry: RuntimeRegistry, identity: WorkspaceIdentity, caller: Caller
    ) -> None:
        self._registry = registry
        self._identity = identity
        self._caller = caller
        self._views: dict[str, RuntimeView] = {}

    def _envelope(self, items: list[Any], diagnostics: list[Any]) -> dict[str, Any]:
        return {
            "workspace_id": self._identity.workspace_id,
            "limit": LIMIT,
            "items": items[:LIMIT],
            "source": SOURCE,
            "diagnostics": diagnostics[:MAX_DIAGNOSTICS],
        }

    def host_id(self, runtime_id: str) -> str:
        """The host id of a Runtime or compat source."""
        first_compat = next(
            (
                h.runtime_id
                for h in self._registry.handles()
                if isinstance(h, LocalPodSource)
            ),
            None,
        )
        workspace_id = self._identity.workspace_id
        if runtime_id == first_compat:
            return bounded_backend_identifier("local-", workspace_id)
        handle = self._registry.get(runtime_id)
        if isinstance(handle, LocalPodSource):
            return bounded_backend_identifier("local-", f"{workspace_id}/{runtime_id}")
        if _HOST_ID.fullmatch(runtime_id):
            return runtime_id
        return bounded_backend_identifier("runtime-", runtime_id)

    async def _runtime_views(self) -> dict[str, RuntimeView]:
        if not self._views:
            views = await self._registry.list_runtimes()
            self._views = {view.runtime_id: view for view in views}
        return self._views

    # -- hosts and runtimes ------------------------------------------------

    async def hosts(self) -> dict[str, Any]:
        """``GET /api/hosts``: one host per Runtime and compat source."""
        items, diagnostics = [], []
        views = await self._runtime_views()
        for handle in self._registry.handles():
            view = views[handle.runtime_id]
            host, host_diagnostics = self._host(handle.runtime_id, view)
            items.append(host)
            diagnostics += host_diagnostics
        return self._envelope(items, diagnostics)

    def _host(
        self, runtime_id: str, view: RuntimeView
    ) -> tuple[dict[str, Any], list[dict[str, str]]]:
        handle = self._registry.get(runtime_id)
        if isinstance(handle, LocalPodSource):
            configured = handle.configured
            diagnostics = [] if configured else [_diag(_UNCONFIGURED)]
            host: dict[str, Any] = {
                "runtime_id": runtime_id,
                "host_id": self.host_id(runtime_id),
                "label": self._identity.display_name,
                "kind": "local-pod-host",
                "status": "available" if configured else "degraded",
                "observed_at": rfc3339(datetime.datetime.now(datetime.UTC)),
                "last_seen_at": None,
                "capabilities": _capabilities(
                    listable=configured, authority=False, view=None, pods=True
                ),
                "diagnostics": diagnostics,
            }
            return host, diagnostics
        serving = view.status == "serving"
        diagnostics = [] if serving else [_unavailable(runtime_id, view.status)]
        host = {
            "runtime_id": runtime_id,
            "host_id": self.host_id(runtime_id),
            "label": runtime_id,
            "kind": f"{view.kind.value}-runtime-host",
            "status": "available" if serving else view.status,
            "observed_at": rfc3339(view.checked_at),
            "last_seen_at": None,
            "capabilities": _capabilities(
                listable=serving, authority=view.authority, view=view, pods=False
            ),
            "diagnostics": diagnostics,
            # additive fields of the new Runtime kinds
            "authority": view.authority,
        }
        return host, diagnostics

    async def runtimes(self) -> dict[str, Any]:
        """``GET /api/runtimes``: one item per Runtime and compat source."""
        items, diagnostics = [], []
        views = await self._runtime_views()
        for handle in self._registry.handles():
            view = views[handle.runtime_id]
            host, host_diagnostics = self._host(handle.runtime_id, view)
            if isinstance(handle, LocalPodSource):
                item: dict[str, Any] = {
                    "runtime_id": handle.runtime_id,
                    "label": "Local Pod runtime",
                    "kind": "local_pod",
                    "status": "available",
                    "host_ids": [host["host_id"]],
                    "capabilities": host["capabilities"],
                    "diagnostics": host_diagnostics,
                }
            else:
                item = {
                    "runtime_id": handle.runtime_id,
                    "label": handle.runtime_id,
                    "kind": view.kind.value,
                    "status": host["status"],
                    "host_ids": [host["host_id"]],
                    "capabilities": host["capabilities"],
                    "diagnostics": host_diagnostics,
                    "authority": view.authority,
                    "version": view.version,
                    "protocol_version": view.protocol_version,
                    "workers": dict(view.workers),
                }
            items.append(item)
            diagnostics += host_diagnostics
        return self._envelope(items, diagnostics)

    # -- workers -----------------------------------------------------------

    async def workers(self, runtime_id: str | None = None) -> dict[str, Any]:
        """``GET /api/workers`` (every source), or one host's Workers."""
        items: list[dict[str, Any]] = []
        diagnostics: list[dict[str, str]] = []
        handles = self._registry.handles()
        if runtime_id is not None:
            handles = (self._registry.get(runtime_id),)
        for handle in handles:
            if len(items) >= LIMIT:
                break
            if isinstance(handle, LocalPodSource):
                found, notes = await self._pod_workers(handle, LIMIT - len(items))
            else:
                found, notes = await self._runtime_workers(
                    handle.runtime_id, LIMIT - len(items)
                )
            items += found
            diagnostics += notes[:MAX_DIAGNOSTICS]
        return self._envelope(items, diagnostics)

    async def _pod_workers(
        self, source: LocalPodSource, room: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        if not source.configured:
            return [], [_diag(_UNCONFIGURED)]
        scan: Scan = await source.scan()
        if scan.legacy_problem is not None:
            return [], [_diag(scan.legacy_problem)]
        items: list[dict[str, Any]] = []
        diagnostics: list[dict[str, str]] = []
        host_id = self.host_id(source.runtime_id)
        for entry in scan.entries:
            if len(items) >= room:
                break  # upstream does not inspect what lies beyond the limit
            if isinstance(entry, LegacyDiagnostic):
                diagnostics.append(_diag(entry))
            elif self._registry.sees(self._caller, entry.view(source.runtime_id)):
                items.append(_pod_item(source.runtime_id, host_id, entry))
        return items, diagnostics

    async def _runtime_workers(
        self, runtime_id: str, room: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        listing = await self._registry.list_all_workers(self._caller, runtime_id)
        if listing.unavailable:
            return [], [_unavailable(runtime_id, "unavailable")]
        host_id = self.host_id(runtime_id)
        items = [_worker_item(host_id, w) for w in listing.workers[:room]]
        return items, []

    async def host_workers(self, host_id: str) -> tuple[int, dict[str, Any]]:
        """``GET /api/hosts/{host_id}/workers``: status and body."""
        if _HOST_ID.fullmatch(host_id) is None:
            shown = host_id[:120]
            return 400, {
                "error": "Bad Request",
                "message": f"invalid runtime host_id `{shown}`",
            }
        hosts = await self.hosts()
        for host in hosts["items"]:
            if host["host_id"] == host_id:
                body = await self.workers(host["runtime_id"])
                body["diagnostics"] = (host["diagnostics"] + body["diagnostics"])[
                    :MAX_DIAGNOSTICS
                ]
                return 200, body
        return 404, {"error": "Not Found", "message": f"unknown local host `{host_id}`"}

    def workspace(self) -> dict[str, Any]:
        """``GET /api/workspace``."""
        identity = self._identity
        return {
            "workspace_id": identity.workspace_id,
            "display_name": identity.display_name,
            "local_root": identity.root,
            "record_authority": "local_yoi_project_records",
            "schema_version": 2,
            "auth": {"LocalDevToken": {"token_configured": False}},
            "extension_points": {
                "store": identity.store,
                "event_stream": {
                    "status": "available",
                    "note": "WebSocket streams per Worker and for every visible "
                    "Worker: /api/runtimes/{runtime_id}/workers/{worker_id}/events "
                    "and /api/events",
                },
                "host_worker_bridge": {
                    "status": "read_only_local",
                    "note": "local Pods are shown read-only; Workers of embedded "
                    "and remote Runtimes take commands under /api/runtimes",
                },
            },
        }


_UNCONFIGURED = LegacyDiagnostic(
    "local_pod_registry_unavailable",
    "warning",
    "local Pod data directory is not configured; worker discovery is unavailable",
)


def _unavailable(runtime_id: str, status: str) -> dict[str, str]:
    return {
        "code": "runtime_unavailable",
        "severity": "warning",
        "message": f"runtime {runtime_id} is {status}",
    }


def _pod_item(runtime_id: str, host_id: str, pod: Pod) -> dict[str, Any]:
    return {
        "runtime_id": runtime_id,
        "worker_id": pod.worker_id,
        "host_id": host_id,
        "label": pod.label,
        "role": pod.role,
        "profile": pod.profile,
        "workspace": dict(_WORKSPACE),
        "state": pod.legacy_state,
        "status": pod.legacy_status,
        "last_seen_at": None,
        "implementation": {"kind": "local_pod", "display_hint": pod.label},
        "capabilities": {
            "can_accept_input": True,
            "can_stream_events": False,
            "can_stop": False,
            "can_spawn_followup": False,
            "can_read_bounded_transcript": False,
        },
        "diagnostics": [_ACTIONS],
    }


_ACTIONS = {
    "code": "worker_actions_not_implemented",
    "severity": "info",
    "message": ACTIONS_NOT_IMPLEMENTED,
}


def _worker_item(host_id: str, worker: WorkerView) -> dict[str, Any]:
    """A Worker of an embedded or remote Runtime, in the legacy shape plus
    additive fields."""
    live = worker.status not in ("stopped", "failed")
    diagnostics = []
    if worker.error is not None:
        diagnostics.append(
            {
                "code": worker.error.code,
                "severity": "error",
                "message": worker.error.message,
            }
        )
    return {
        "runtime_id": worker.runtime_id,
        "worker_id": worker.worker_id,
        "host_id": host_id,
        "label": worker.display_name or worker.worker_id,
        "role": None,
        "profile": worker.profile,
        "workspace": dict(_WORKSPACE),
        "state": worker.status,
        "status": worker.status,
        "last_seen_at": None,
        "implementation": {"kind": worker.kind.value, "display_hint": worker.worker_id},
        "capabilities": {
            "can_accept_input": live,
            "can_stream_events": True,
            "can_stop": live,
            "can_spawn_followup": False,
            "can_read_bounded_transcript": True,
        },
        "diagnostics": diagnostics,
        # additive fields of the new Runtime kinds
        "created_at": None if worker.created_at is None else rfc3339(worker.created_at),
        "turns": worker.turns,
        "usage": {
            "input_tokens": worker.usage.input_tokens,
            "output_tokens": worker.usage.output_tokens,
        },
    }


def install_legacy_routes(
    app: QuartTrio,
    registry: RuntimeRegistry,
    identity: WorkspaceIdentity,
    caller: Any,
) -> None:
    """Register the legacy routes, ``/api/diagnostics``, the legacy
    unknown-route answer and the ``X-Request-Id`` echo on ``app``.

    Args:
        app: The browser API's app.
        registry: Where the Runtimes are.
        identity: The workspace served.
        caller: A function returning the request's :class:`Caller`.
    """

    install_request_ids(app)

    def lists() -> LegacyLists:
        return LegacyLists(registry, identity, caller())

    @app.get("/api/hosts")
    async def legacy_hosts() -> Response:
        return legacy_json(await lists().hosts())

    @app.get("/api/runtimes")
    async def legacy_runtimes() -> Response:
        return legacy_json(await lists().runtimes())

    @app.get("/api/workers")
    async def legacy_workers() -> Response:
        return legacy_json(await lists().workers())

    @app.get("/api/hosts/<path:host_id>/workers")
    async def legacy_host_workers(host_id: str) -> Response:
        status, body = await lists().host_workers(host_id)
        return legacy_json(body, status)

    @app.get("/api/workspace")
    async def legacy_workspace() -> Response:
        return legacy_json(lists().workspace())

    @app.get("/api/diagnostics")
    async def diagnostics() -> Response:
        items = await all_diagnostics(registry)
        return legacy_json(
            {"workspace_id": identity.workspace_id, "diagnostics": items}
        )

    @app.errorhandler(NotFound)
    async def unknown_route(error: NotFound) -> Response:
        if not has_request_context() or request.path.startswith("/api"):
            return legacy_json(
                {"error": "not_found", "message": "unknown api route"}, 404
            )
        return legacy_json({"error": "not_found", "message": "unknown route"}, 404)
