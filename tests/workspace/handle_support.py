"""Shared by the workspace handle tests: the three handle kinds, seeded alike,
local pods written to disk, a free loopback port, and a check that secrets
stay hidden.

:func:`open_handle_case` gives a :class:`HandleCase` for ``embedded`` (an
:class:`~yoi_workspace._handle.EmbeddedRuntimeHandle` over an in-process
Runtime), ``remote`` (a :class:`~yoi_workspace._remote.RemoteRuntimeHandle`
on a real ``yoi-runtime`` process) or ``compat`` (a
:class:`~yoi_workspace._compat.LocalPodSource` over a yoi home whose Pods
this module writes in yoi's format).
``HandleCase.seed`` makes the same Worker on each: a display name and echo
turns (the compat side writes the segment log the echo engine would have).
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import traceback
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
from conformance.support import (
    CONFIG,
    events_until,
    open_runtime_process,
    scripted_engines,
)

from yoi_runtime import Event, open_runtime
from yoi_workspace._compat import LocalPodSource
from yoi_workspace._handle import EmbeddedRuntimeHandle, RuntimeHandle
from yoi_workspace._pods import pod_worker_id
from yoi_workspace._remote import RemoteRuntimeConfig, open_remote_handle
from yoi_workspace._secrets import SecretRef
from yoi_workspace._views import RuntimeKind, WorkerView

#: The id the remote side's process is configured with.
REMOTE_ID = "rt-remote"
#: The id of the compat source.
COMPAT_ID = "rt-pods"
#: When the first seeded pod started; later ones start a second apart each.
EPOCH = datetime.datetime(2024, 5, 1, 10, 0, tzinfo=datetime.UTC)

KINDS = {
    "embedded": RuntimeKind.EMBEDDED,
    "remote": RuntimeKind.REMOTE,
    "compat": RuntimeKind.COMPAT_LOCAL_POD,
}


def runtime_config(
    directory: Path, runtime_id: str = REMOTE_ID, **settings: Any
) -> Path:
    """Write the conformance ``runtime.toml`` with a ``runtime_id`` (and more
    top-level settings) to ``directory``; return its path."""
    lines = [f"runtime_id = {json.dumps(runtime_id)}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    path = directory / "runtime-config.toml"
    path.write_text("\n".join([*lines, CONFIG.read_text()]))
    return path


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


#: The workspace root written into seeded Pods' metadata.
WORKSPACE_ROOT = "/workspace/project"


def uuid7(at: datetime.datetime, serial: int) -> str:
    """A UUIDv7 string whose time is ``at`` (``serial`` tells ids apart)."""
    millis = int(at.timestamp() * 1000)
    value = (millis << 80) | (0x7 << 76) | (0b10 << 62) | serial
    return str(uuid.UUID(int=value))


def echo_log(
    session_id: str, *turns: str, at: datetime.datetime = EPOCH
) -> list[dict[str, Any]]:
    """A yoi segment log of echo turns: each input, then ``echo: <input>``,
    each turn ended and completed (``yoi-local-pods.md`` 7.6)."""
    ts = int(at.timestamp() * 1000)
    config = {
        "max_tokens": None,
        "temperature": None,
        "top_p": None,
        "top_k": None,
        "stop_sequences": [],
        "reasoning": None,
    }
    lines: list[dict[str, Any]] = [
        {
            "kind": "segment_start",
            "ts": ts,
            "session_id": session_id,
            "system_prompt": None,
            "config": config,
            "history": [],
        }
    ]
    for number, text in enumerate(turns, start=1):
        segments = [{"kind": "text", "content": text}]
        message = {
            "kind": "message",
            "role": "assistant",
            "content": [{"kind": "text", "text": f"echo: {text}"}],
        }
        lines += [
            {"kind": "invoke", "ts": ts, "trigger": "user_send"},
            {"kind": "user_input", "ts": ts, "segments": segments},
            {"kind": "assistant_item", "ts": ts, "item": message},
            {"kind": "turn_end", "ts": ts, "turn_count": number},
            {
                "kind": "llm_usage",
                "ts": ts,
                "history_len": 2 * number,
                "input_total_tokens": 10,
                "cache_read_tokens": 0,
                "cache_write_tokens": 0,
                "output_tokens": 3,
            },
            {
                "kind": "run_completed",
                "ts": ts,
                "interrupted": False,
                "result": "finished",
            },
        ]
    return lines


def set_allocation(
    home: Path, pod_name: str, pid: int | None, segment: str | None = None
) -> None:
    """Add, change (``pid``) or remove (None) a Pod's ``pods.json`` entry."""
    table_path = home / "run" / "pods.json"
    table_path.parent.mkdir(parents=True, exist_ok=True)
    table = json.loads(table_path.read_text()) if table_path.exists() else {}
    rows = [r for r in table.get("allocations", []) if r["pod_name"] != pod_name]
    old = [r for r in table.get("allocations", []) if r["pod_name"] == pod_name]
    if pid is not None:
        rows.append(
            {
                "pod_name": pod_name,
                "pid": pid,
                "socket": str(home / "run" / pod_name / "sock"),
                "scope_allow": [],
                "scope_deny": [],
                "delegated_from": None,
                "segment_id": segment
                if segment
                else (old[0]["segment_id"] if old else None),
            }
        )
    table_path.write_text(json.dumps({"allocations": rows}, indent=2))


def write_pod(
    home: Path,
    pod_name: str,
    *turns: str,
    pid: int | None = None,
    allocated: bool = True,
    profile: str = "companion",
    workspace_root: str | None = WORKSPACE_ROOT,
    at: datetime.datetime = EPOCH,
    log: bool = True,
) -> str:
    """Write a Pod in yoi's format under the yoi home ``home``: its
    metadata, its active segment log of echo ``turns``, its allocation.

    Args:
        pid: The allocation's pid; None means this test process (alive).
        allocated: False writes no allocation (the Pod is stopped).
        log: False writes no segment log (it is missing).

    Returns:
        The Pod's Worker id.
    """
    session, segment = uuid7(at, 1), uuid7(at, 2)
    directory = home / "pods" / pod_name
    directory.mkdir(parents=True, exist_ok=True)
    metadata: dict[str, Any] = {
        "pod_name": pod_name,
        "active": {"session_id": session, "segment_id": segment},
    }
    if workspace_root is not None:
        metadata["workspace_root"] = workspace_root
    metadata["resolved_manifest_snapshot"] = {"profile_selector": profile}
    (directory / "metadata.json").write_text(json.dumps(metadata, indent=2))
    if log:
        logs = home / "sessions" / session
        logs.mkdir(parents=True, exist_ok=True)
        lines = echo_log(session, *turns, at=at)
        text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        (logs / f"{segment}.jsonl").write_text(text)
    if allocated:
        set_allocation(home, pod_name, os.getpid() if pid is None else pid, segment)
    return pod_worker_id(pod_name)


@attrs.define(eq=False)
class HandleCase:
    """One handle under test and how to give it Workers.

    Attributes:
        name: ``embedded``, ``remote`` or ``compat``.
        handle: The handle.
        home: The compat side's yoi home (None otherwise).
    """

    name: str
    handle: RuntimeHandle
    home: Path | None = None
    _pods: int = 0

    @property
    def kind(self) -> RuntimeKind:
        return KINDS[self.name]

    @property
    def read_only(self) -> bool:
        return self.home is not None

    @property
    def idle(self) -> str:
        """The status of a seeded Worker that is not running a turn: a live
        Pod on the compat side."""
        return "idle" if self.home is None else "live"

    def counts(self, idle: int, stopped: int) -> dict[str, int]:
        """``describe().workers`` with ``idle`` seeded and ``stopped`` stopped."""
        counts = {"idle": 0, "running": 0, "stopped": stopped, "failed": 0}
        if self.home is not None:
            counts.update(live=idle, stale=0, starting=0)
        else:
            counts["idle"] = idle
        return counts

    async def seed(self, display_name: str | None, *turns: str) -> WorkerView:
        """Make an idle Worker that ran echo ``turns``; return its projection."""
        if self.home is not None:
            self._pods += 1
            name = display_name or f"anon{self._pods}"
            started = EPOCH + datetime.timedelta(seconds=self._pods)
            worker_id = write_pod(self.home, name, *turns, at=started)
            return await self.handle.get_worker(worker_id)
        worker = await self.handle.create_worker(display_name=display_name)
        async with self.handle.subscribe(worker.worker_id) as events:
            for text in turns:
                await self.handle.send_input(worker.worker_id, text)
                await events_until(events, "turn.completed")
                idle = (await events.receive_batch(1))[0]
                assert isinstance(idle, Event)
                assert idle.type == "worker.status"
        return await self.handle.get_worker(worker.worker_id)

    async def mark_stopped(self, worker: WorkerView) -> None:
        """Stop a seeded Worker (the compat side drops its allocation, as a
        Pod's clean exit does)."""
        if self.home is None:
            await self.handle.stop(worker.worker_id)
            return
        assert worker.display_name is not None
        set_allocation(self.home, worker.display_name, None)


@asynccontextmanager
async def open_handle_case(name: str, directory: Path) -> AsyncIterator[HandleCase]:
    """Open a handle of kind ``name`` (see the module docstring)."""
    if name == "embedded":
        async with open_runtime(scripted_engines(), default_engine="echo") as runtime:
            yield HandleCase(name, EmbeddedRuntimeHandle(runtime))
        return
    if name == "compat":
        home = directory / "yoi-home"
        (home / "pods").mkdir(parents=True)
        source = LocalPodSource(COMPAT_ID, home, workspace_root=WORKSPACE_ROOT)
        yield HandleCase(name, source, home)
        return
    assert name == "remote", name
    config = runtime_config(directory)
    async with open_runtime_process(directory, config=config) as server:
        token = SecretRef(file=str(directory / "runtime-token"))
        remote = RemoteRuntimeConfig(REMOTE_ID, server.url, token=token)
        async with open_remote_handle(remote) as handle:
            yield HandleCase(name, handle)
    assert server.process.returncode == 0, "SIGTERM should end the process cleanly"


def shown(*values: object) -> str:
    """Everything a caller or a log could see of ``values``: ``str`` and
    ``repr``, and a formatted traceback (with causes) for exceptions."""
    parts = []
    for value in values:
        parts += [str(value), repr(value)]
        if isinstance(value, BaseException):
            parts.append("".join(traceback.format_exception(value)))
    return "\n".join(parts)


def assert_hidden(secrets: Iterable[str], *values: object) -> None:
    """Assert that no secret (URL, token, path) shows in ``values``."""
    text = shown(*values)
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked"
