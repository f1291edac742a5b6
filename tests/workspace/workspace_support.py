"""Shared by the registry, API and secret-leak tests: a served backend, and
WebSocket helpers that own their TCP stream.

:func:`serve_registry` serves a :class:`RuntimeRegistry` with the real app on
Hypercorn at ``127.0.0.1:0`` (started with ``nursery.start``, so it listens
before the test talks to it). :func:`open_workspace_process` runs the real
``python -m yoi_workspace`` command.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
from trio_websocket import ConnectionRejected, WebSocketConnection, wrap_client_stream
from workspace.handle_support import REMOTE_ID

from yoi_runtime import Event
from yoi_runtime.serving import serve_app
from yoi_runtime.serving._streams import StreamControl, StreamSettings
from yoi_runtime.testing import ServerProcess, open_server_process
from yoi_workspace import RuntimeRegistry
from yoi_workspace._server._app import WorkspaceState, create_app

#: The line ``yoi-workspace`` prints once it accepts connections.
WORKSPACE_LISTENING = re.compile(rb"yoi-workspace listening on (http://\S+)")


@attrs.define
class Served:
    """A backend serving a registry in this process."""

    url: str
    registry: RuntimeRegistry
    state: WorkspaceState
    http: httpx.AsyncClient


@asynccontextmanager
async def serve_registry(
    registry: RuntimeRegistry, *, heartbeat_interval: float = 15.0, **state: Any
) -> AsyncIterator[Served]:
    """Serve ``registry`` on a free loopback port; ``state`` goes to
    :class:`WorkspaceState` (``max_body_bytes``, ``caller_header``, ...)."""
    streams = StreamControl(StreamSettings(heartbeat_interval))
    workspace = WorkspaceState(registry, streams, **state)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(
                serve_app,
                create_app(workspace),
                "127.0.0.1",
                0,
                shutdown_trigger=stop,
                shutdown_timeout=10.0,
                drain=streams.close_streams,
            )
        )
        try:
            async with httpx.AsyncClient(base_url=binds[0]) as http:
                yield Served(binds[0], registry, workspace, http)
        finally:
            stop.set()


@asynccontextmanager
async def open_workspace_process(*args: str) -> AsyncIterator[ServerProcess]:
    """Run ``python -m yoi_workspace --bind 127.0.0.1:0 *args`` until exit."""
    command = [sys.executable, "-m", "yoi_workspace", "--bind", "127.0.0.1:0", *args]
    async with open_server_process(command, WORKSPACE_LISTENING) as served:
        yield served


@asynccontextmanager
async def open_ws(
    url: str, resource: str, headers: dict[str, str] | None = None
) -> AsyncIterator[WebSocketConnection]:
    """A client WebSocket whose TCP stream this helper owns and closes
    (trio-websocket 0.12 leaves it to the garbage collector when the server
    closes first or refuses the upgrade)."""
    parsed = httpx.URL(url)
    assert parsed.port is not None
    stream = await trio.open_tcp_stream(parsed.host, parsed.port)
    extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    try:
        async with trio.open_nursery() as nursery:
            ws = await wrap_client_stream(
                nursery, stream, parsed.host, resource, extra_headers=extra
            )
            yield ws
            await ws.aclose()
    finally:
        await stream.aclose()


async def rejection(
    url: str, resource: str, headers: dict[str, str] | None = None
) -> ConnectionRejected:
    """Open a WebSocket the server must refuse; return the refusal."""
    refusals: list[ConnectionRejected] = []
    try:
        async with open_ws(url, resource, headers):
            pass
    except* ConnectionRejected as group:
        refusals += [e for e in group.exceptions if isinstance(e, ConnectionRejected)]
    assert len(refusals) == 1, f"the server accepted {resource}"
    return refusals[0]


async def frames(ws: WebSocketConnection) -> list[dict[str, Any]]:
    """The items of the next frame (one object, or an array of them)."""
    frame = json.loads(await ws.get_message())
    return frame if isinstance(frame, list) else [frame]


async def items_until(
    ws: WebSocketConnection, done: Any, *, heartbeats: bool = False
) -> list[dict[str, Any]]:
    """Read items until ``done(items_so_far)`` is true; heartbeats dropped
    unless asked for."""
    seen: list[dict[str, Any]] = []
    while not done(seen):
        for item in await frames(ws):
            if heartbeats or item["type"] != "stream.heartbeat":
                seen.append(item)
    return seen


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error envelope's ``error`` object (checking the envelope)."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert "Traceback" not in response.text
    error: dict[str, Any] = body["error"]
    return error


def completed(worker_id: str) -> Any:
    """A ``done`` for :func:`items_until`: the Worker's turn completed."""
    return lambda items: any(
        i.get("type") == "turn.completed" and i.get("worker_id") == worker_id
        for i in items
    )


def through(worker_id: str, seq: int) -> Any:
    """A ``done`` for :func:`items_until`: the Worker's event ``seq`` arrived
    (7 is the ``worker.status`` idle after a first turn)."""
    return lambda items: any(
        i.get("seq") == seq and i.get("worker_id") == worker_id for i in items
    )


async def events_of(stream: Any, worker_id: str, final: str) -> list[Event]:
    """Receive from a registry stream until ``worker_id``'s ``final`` event."""
    seen: list[Event] = []
    while True:
        for item in await stream.receive_batch():
            event = getattr(item, "item", item)
            if isinstance(event, Event) and event.worker_id == worker_id:
                seen.append(event)
                if event.type == final:
                    return seen


def write_config(directory: Path, text: str) -> Path:
    """Write a workspace config file into ``directory``; return its path."""
    path = directory / "workspace.toml"
    path.write_text(text)
    return path


def three_kinds(remote_url: str, yoi_home: str | Path, *top: str) -> str:
    """A config with the three kinds: ``emb`` (embedded, scripted ``echo``),
    ``rt-remote`` at ``remote_url`` (token in ``runtime-token``, as
    ``conformance.support`` writes it) and ``pods`` (the yoi home
    ``yoi_home``, workspace root ``/workspace/project``); ``top`` adds
    top-level lines (``'audit_log = "audit.jsonl"'``)."""
    return "\n".join(
        [
            *top,
            'workspace_root = "/workspace/project"',
            "heartbeat_interval = 0.2",
            "[embedded]",
            'runtime_id = "emb"',
            "enable_test_engines = true",
            'default_engine = "echo"',
            "[embedded.engines.echo]",
            'kind = "scripted"',
            "[[remote]]",
            f'runtime_id = "{REMOTE_ID}"',
            f'url = "{remote_url}"',
            'token_file = "runtime-token"',
            "connect_timeout = 1.0",
            "[[compat]]",
            'runtime_id = "pods"',
            f'yoi_home = "{yoi_home}"',
        ]
    )
